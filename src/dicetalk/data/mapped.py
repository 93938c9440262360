"""Memory-mapped ``.npy`` arrays that a spawned worker reopens instead of receiving a copy.

A plain ``np.memmap`` pickles as its whole contents, so handing a dataset of cached latents to a
spawned data-loader worker would copy every array into each worker. A :class:`MappedArray`
opened by :func:`load_mapped` pickles as its path; views of it pickle as ordinary arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class MappedArray(np.memmap):
    _path: str | None = None

    def __array_finalize__(self, obj):
        super().__array_finalize__(obj)
        self._path = None  # a view or a result is not the whole file: it pickles by value

    def __reduce__(self):
        if self._path is None:
            return np.asarray(self).__reduce__()
        return (load_mapped, (self._path,))


def load_mapped(path: str | Path) -> np.ndarray:
    """The ``.npy`` file at ``path``, read-only and memory-mapped (never unpickled)."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    mapped = array.view(MappedArray)
    mapped._path = str(path)
    return mapped
