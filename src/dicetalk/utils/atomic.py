"""Atomic outputs: write to a temporary sibling, then rename, so no half-written file remains."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dst`` (same suffix, so writers pick the right format).

    On success the temporary file replaces ``dst``; on any exception it is removed.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f"{dst.suffix}.tmp{dst.suffix}", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(tmp_path, dst)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``dst``; on success it replaces ``dst`` whole."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        if dst.exists():
            old = dst.with_name(f".{dst.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(dst, old)
            os.replace(tmp, dst)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(dst: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)


def write_text(dst: str | os.PathLike, text: str) -> None:
    write_bytes(dst, text.encode("utf-8"))


def write_json(dst: str | os.PathLike, obj: Any) -> None:
    """Deterministic JSON (sorted keys, fixed indentation) written atomically."""
    write_text(dst, json.dumps(obj, indent=2, sort_keys=True) + "\n")
