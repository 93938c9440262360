"""One temporary folder per web-UI server, holding everything it writes, removed when it stops.

``<tmp>/dicetalk-ui-<pid>-<random>/`` holds a lock file (``.lock``, locked while the server
lives), and ``gradio/``: gradio's upload and cache folder (``GRADIO_TEMP_DIR``), where the results
are written too (``gradio/results/``), so that gradio serves them from where they are instead of
copying them. A server killed without a chance to clean up (SIGKILL, power loss) leaves its folder
behind with its lock released; the next server to start removes it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no stale-folder sweep
    fcntl = None

log = logging.getLogger("dicetalk.ui")

PREFIX = "dicetalk-ui-"
LOCK = ".lock"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def remove_stale(base: Path) -> list[Path]:
    """Remove the folders of servers that are gone: ``PREFIX*`` folders of this user in ``base``
    whose lock file nobody holds. Folders without a lock file (being created, or made by
    something else) are left alone. Returns the removed folders."""
    if fcntl is None:
        return []
    removed = []
    try:
        candidates = sorted(base.glob(PREFIX + "*"))
    except OSError:
        return []
    for folder in candidates:
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            fd = os.open(folder / LOCK, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if _try_lock(fd):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        finally:
            os.close(fd)
    return removed


class Workspace:
    """The server's own temporary folder (see the module docstring); ``close()`` removes it."""

    def __init__(self, base: str | os.PathLike | None = None):
        base = Path(base or tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        self.removed_stale = remove_stale(base)
        for folder in self.removed_stale:
            log.info("removed the folder of a server that is gone: %s", folder)
        self.root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
        self._lock_fd = None
        if fcntl is not None:
            # Locked before it gets its name, so that no sweeping server ever sees it unlocked.
            fd, tmp = tempfile.mkstemp(prefix=".lock-", dir=self.root)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(tmp, self.root / LOCK)
            self._lock_fd = fd
        self.gradio = self.root / "gradio"
        self.results = self.gradio / "results"
        self.results.mkdir(parents=True)

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` lies inside this workspace."""
        try:
            return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(self.root))
        except (OSError, ValueError):
            return False

    def discard_upload(self, path: str | os.PathLike | None) -> None:
        """Delete an uploaded file (and its folder, when that is left empty); only inside the workspace."""
        if not path or not self.owns(path):
            return
        path = Path(path)
        path.unlink(missing_ok=True)
        if path.parent not in (self.gradio, self.results):
            try:
                path.parent.rmdir()
            except OSError:
                pass

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
