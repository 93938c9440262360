"""What the web UI accepts: messages without server paths, login options, the host rule."""

from __future__ import annotations

import html
import ipaddress
import re
from pathlib import Path

from ..errors import InputError

# An absolute path (POSIX or Windows) of at least two parts, not part of a word or of "k/N".
_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:)?[/\\][^\s'\"<>|,;:()]*[/\\][^\s'\"<>|,;:()]*")


def public_message(exc: BaseException | str, labels: dict[str, str] | None = None) -> str:
    """One line for the page: ``exc``'s message with each known server path replaced by its
    label (``{"/tmp/.../x.png": "portrait"}``) and any other path by "a server file"."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    for path, label in sorted((labels or {}).items(), key=lambda kv: -len(kv[0])):
        if path:
            text = text.replace(path, label)
    return _PATH.sub("a server file", text)


def page_text(message: str) -> str:
    """``message`` as gradio shows it (its error modal renders HTML)."""
    return html.escape(message, quote=False)


def is_local_host(host: str) -> bool:
    """Whether binding ``host`` keeps the page on this machine (loopback only)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_auth(pairs: list[str] | None, auth_file: Path | None) -> list[tuple[str, str]]:
    """``user:password`` logins from the command line and from a file (one a line, ``#`` comments)."""
    logins: list[tuple[str, str]] = []

    def add(text: str, where: str) -> None:
        user, sep, password = text.partition(":")
        if not sep or not user.strip() or not password:
            raise InputError(f"{where}: expected user:password")
        logins.append((user.strip(), password))

    for text in pairs or []:
        add(text, "--auth")
    if auth_file is not None:
        try:
            lines = Path(auth_file).read_text(encoding="utf-8-sig").splitlines()  # -sig: a BOM (Notepad) is not part of the first user
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--auth-file {auth_file}: cannot be read ({type(exc).__name__})") from None
        for number, line in enumerate(lines, start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                add(line.rstrip("\r\n"), f"--auth-file {auth_file} line {number}")
        if not logins:
            raise InputError(f"--auth-file {auth_file}: no user:password line")
    return logins


def check_exposure(host: str, logins: list[tuple[str, str]], insecure: bool) -> None:
    """Refuse to open the page beyond this machine without a login, unless told to."""
    if not is_local_host(host) and not logins and not insecure:
        raise InputError(
            f"--host {host} opens the page to the network: require a login with --auth user:password or --auth-file, "
            "or pass --insecure to serve it without one"
        )
