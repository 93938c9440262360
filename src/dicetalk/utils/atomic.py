"""Atomic outputs: write a temporary sibling, fsync it, then rename, so no half-written file remains.

Every writer of the project (videos, converted weights, downloads, caches, results, checkpoints)
goes through :func:`atomic_path` or :func:`atomic_dir`. The order of steps is what makes a failure
at any of them harmless: the temporary file is written, flushed, fsynced and closed; only when all
of that succeeded is it renamed over the target, and the folder is fsynced so that the rename
itself survives a power cut. On any failure the temporary file is removed and the target keeps its
earlier bytes. A full disk is reported as one line (:class:`~dicetalk.errors.DiskFullError`).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..errors import DiskFullError, InputError

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to the disk (a file another library wrote and closed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside ``path`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems do not fsync folders; the rename is as durable as they allow
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_file(Path(folder) / name)
        fsync_dir(folder)


@contextlib.contextmanager
def _disk_full_as_one_line(dst: Path) -> Iterator[None]:
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise DiskFullError(f"disk full while writing {dst}; the earlier file is untouched" if dst.exists()
                                else f"disk full while writing {dst}; nothing was written") from exc  # fmt: skip
        raise


def _remove_stale_temporaries(dst: Path) -> None:
    """Remove temporary siblings of ``dst`` left by a writer that was killed (its pid, in the name, is gone)."""
    for tmp in dst.parent.glob(f".{glob.escape(dst.stem)}.*.tmp{glob.escape(dst.suffix)}"):
        pid = tmp.name[len(dst.stem) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process (EPERM): leave its file alone
    return True


@contextlib.contextmanager
def _cannot_write(dst: Path) -> Iterator[None]:
    """A folder that cannot be made or written to (read-only, a file in the way, /proc): one line."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise
        raise InputError(f"cannot write {dst}: {exc.strerror or type(exc).__name__}") from None


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dst`` (same suffix, so writers pick the right format).

    The caller writes and closes the temporary file inside the block. On success it is fsynced,
    renamed over ``dst`` and the folder fsynced; on any exception it is removed and ``dst`` is left
    as it was. A full disk raises :class:`~dicetalk.errors.DiskFullError` with one line.
    """
    dst = Path(dst)
    with _disk_full_as_one_line(dst):
        with _cannot_write(dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(dst)
            fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.{os.getpid()}.", suffix=f"{dst.suffix}.tmp{dst.suffix}", dir=dst.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            fsync_file(tmp_path)
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual mode
            os.replace(tmp_path, dst)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        fsync_dir(dst.parent)


@contextlib.contextmanager
def atomic_dir(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``dst``; on success it replaces ``dst`` whole (fsynced first)."""
    dst = Path(dst)
    old = dst.with_name(f".{dst.name}.old")
    if old.is_dir() and not dst.exists():  # a kill between the two renames below: the earlier folder comes back
        os.replace(old, dst)
    with _disk_full_as_one_line(dst):
        with _cannot_write(dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
        try:
            yield tmp
            _fsync_tree(tmp)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
            if dst.exists():
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
        fsync_dir(dst.parent)


def write_bytes(dst: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dst) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()


def write_text(dst: str | os.PathLike, text: str) -> None:
    write_bytes(dst, text.encode("utf-8"))


def write_json(dst: str | os.PathLike, obj: Any) -> None:
    """Deterministic JSON (sorted keys, fixed indentation) written atomically."""
    write_text(dst, json.dumps(obj, indent=2, sort_keys=True) + "\n")
