"""Read ``.npy`` files without ever unpickling arbitrary objects.

A ``.npy`` file whose dtype is ``object`` (``np.save`` of a dict, as the authors' emotion priors
are stored) carries a pickle, and ``np.load(..., allow_pickle=True)`` on such a file runs whatever
callables the pickle names. :func:`read_npy` instead

* parses the ``.npy`` header itself (``ast.literal_eval`` of a dict literal, no code);
* loads plain numeric arrays with ``np.load(..., allow_pickle=False)``;
* reads the pickle of an object array with :class:`NumpyOnlyUnpickler`, whose ``find_class``
  resolves only the three globals that NumPy's own array pickles need
  (``numpy[._]core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``), each through a
  wrapper that checks its arguments, and refuses every other global (``os.system``,
  ``builtins.eval``, ...) with :class:`~dicetalk.errors.UnsafeFileError` *before* anything runs.

Lists, dicts, tuples, strings, numbers and bytes are built by pickle opcodes and need no global,
so a dict of NumPy arrays round-trips; nothing else does.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UnsafeFileError
from ._common import first_line

MAX_FILE_BYTES = 64 * 1024 * 1024
"""Refuse larger files: a prior is a few hundred floats, and this bounds memory for hostile input."""

MAX_ELEMENTS = 1 << 24
"""Largest array the restricted reader will allocate."""

_NPY_MAGIC = b"\x93NUMPY"
# Simple dtype codes NumPy writes into array pickles: floats, ints, unsigned, bool, object.
_DTYPE_SPEC = re.compile(r"^[fiubO][0-9]{0,2}$")


class _NdarrayMarker:
    """Stands for ``numpy.ndarray`` inside a pickle: usable only as ``_reconstruct``'s first argument."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayMarker()


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """Checked stand-in for ``numpy.core.multiarray._reconstruct`` (an empty array, filled by BUILD)."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"_reconstruct of {subtype!r}, expected numpy.ndarray")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise pickle.UnpicklingError(f"_reconstruct with shape {shape!r}")
    if int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS:
        raise pickle.UnpicklingError(f"array of shape {shape} is too large")
    if dtype not in (b"b", "b"):
        raise pickle.UnpicklingError(f"_reconstruct with dtype {dtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, "b")


def _dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """Checked stand-in for ``numpy.dtype``: simple numeric or object types only."""
    if not isinstance(spec, str) or not _DTYPE_SPEC.match(spec):
        raise pickle.UnpicklingError(f"dtype {spec!r} is not a simple numeric type")
    return np.dtype(spec, align=bool(align), copy=bool(copy))


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # pickles written by NumPy 1.x
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # ... and by NumPy 2.x
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays (and plain containers of them), nothing else."""

    def __init__(self, file, source: str = "<pickle>"):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeFileError(
                f"{self._source}: refusing to unpickle {module}.{name} "
                "(only NumPy arrays, dicts, lists and numbers are allowed; this file may be malicious)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(f"{self._source}: refusing a pickle with persistent ids")


def safe_unpickle(data: bytes, source: str = "<pickle>") -> Any:
    """Unpickle ``data`` with :class:`NumpyOnlyUnpickler`; any refusal or corruption is one clear error."""
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data), source).load()
    except UnsafeFileError:
        raise
    except (pickle.UnpicklingError, EOFError) as exc:
        raise InputError(f"{source}: corrupt or truncated pickle data ({first_line(exc)})") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError, OverflowError, RecursionError) as exc:
        raise InputError(f"{source}: malformed pickle data ({type(exc).__name__}: {first_line(exc)})") from None


def _read_npy_header(f, source: str) -> tuple[dict[str, Any], np.dtype]:
    magic = f.read(8)
    if len(magic) < 8 or magic[:6] != _NPY_MAGIC:
        raise InputError(f"{source}: not a NumPy .npy file (no NumPy magic header)")
    major = magic[6]
    if major == 1:
        raw = f.read(2)
        size = int.from_bytes(raw, "little") if len(raw) == 2 else -1
    elif major in (2, 3):
        raw = f.read(4)
        size = int.from_bytes(raw, "little") if len(raw) == 4 else -1
    else:
        raise InputError(f"{source}: unsupported .npy format version {major}.{magic[7]}")
    header = f.read(size) if size >= 0 else b""
    if size < 0 or len(header) != size:
        raise InputError(f"{source}: truncated .npy header")
    try:
        text = header.decode("utf-8" if major == 3 else "latin1")
        meta = ast.literal_eval(text)
    except (UnicodeDecodeError, ValueError, SyntaxError, MemoryError, RecursionError):
        raise InputError(f"{source}: malformed .npy header") from None
    if not isinstance(meta, dict) or set(meta) != {"descr", "fortran_order", "shape"}:
        raise InputError(f"{source}: malformed .npy header")
    shape = meta["shape"]
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise InputError(f"{source}: malformed .npy header (shape {shape!r})")
    try:
        dtype = np.lib.format.descr_to_dtype(meta["descr"])
    except (TypeError, ValueError):
        raise InputError(f"{source}: .npy header has an unsupported dtype {meta['descr']!r}") from None
    return meta, dtype


def read_npy(path: str | os.PathLike) -> Any:
    """The content of a ``.npy`` file, read without running code.

    A numeric array comes back as an ``ndarray``; an object array (a pickle) comes back as whatever
    plain structure it holds (a 0-d object array is unwrapped: ``np.save(p, {"mu": a})`` gives the
    dict back). Raises :class:`~dicetalk.errors.UnsafeFileError` for pickles naming any other global,
    :class:`~dicetalk.errors.InputError` for missing, truncated or malformed files.
    """
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    if size > MAX_FILE_BYTES:
        raise InputError(f"{source}: {size:,} bytes is too large for an emotion prior")
    with open(path, "rb") as f:
        meta, dtype = _read_npy_header(f, source)
        if dtype.hasobject:
            payload = f.read()
            array = safe_unpickle(payload, source)
            if not isinstance(array, np.ndarray) or array.dtype != np.dtype(object):
                raise InputError(f"{source}: object .npy does not hold an object array")
            if tuple(array.shape) != tuple(meta["shape"]):
                raise InputError(f"{source}: pickled array has shape {array.shape}, header says {meta['shape']}")
            return array.item() if array.ndim == 0 else array
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{source}: truncated or malformed .npy data ({first_line(exc)})") from None
