"""``docs/cli.md``: every command's own ``--help``, in one page (``python -m dicetalk.cli.reference``).

The options are defined once, in the commands; this page is made from them, and a test fails when
the committed page differs from what the commands print now.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

WIDTH = "100"  # a terminal this wide: click then wraps at its own 80 columns, the same on every machine
PAGE = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def _help(args: list[str]) -> str:
    from .main import main

    out = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        with contextlib.redirect_stdout(out):
            main([*args, "--help"])
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return out.getvalue().rstrip() + "\n"


def commands() -> list[str]:
    from .main import _register_commands, app

    _register_commands()
    return sorted(c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands)


def cli_reference() -> str:
    """The page: an index, then each command's help as the CLI prints it."""
    names = commands()
    parts = [
        "# Command reference\n",
        "Made from the commands' own `--help` by `python -m dicetalk.cli.reference` (a test checks it is current).\n",
        "```\n" + _help([]) + "```\n",
        " · ".join(f"[{n}](#{n})" for n in names) + "\n",
    ]
    for name in names:
        parts.append(f"## {name}\n\n```\n{_help([name])}```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    PAGE.write_text(cli_reference(), encoding="utf-8")
    print(f"wrote {PAGE}", file=sys.stderr)
