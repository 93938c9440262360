"""Small helpers shared by the conversion modules: one-line error text, paths in summaries, quiet transformers."""

from __future__ import annotations

import contextlib
from pathlib import Path


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its class name), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def rel(path: Path | None, root: Path) -> str:
    """``path`` relative to ``root`` when it lies below it, else as given (``?`` for None)."""
    if path is None:
        return "?"
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def quiet_transformers():
    """No transformers progress bars (loading/saving the Whisper encoder) inside the converter's output."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
