"""Emotion prior files: read safely, validate, return a float32 vector.

Accepted formats (``prior_dim`` is 256 at full size, 16 for ``tiny``):

* ``.npy`` holding a plain float array of shape ``(prior_dim,)`` or ``(1, prior_dim)``;
* ``.npy`` in the authors' release format: ``np.save(path, {"mu": array (1, prior_dim)})``, i.e. a
  pickled 0-d object array wrapping a dict. It is read by
  :func:`~dicetalk.convert.safe_pickle.read_npy`, which never unpickles anything but NumPy arrays;
* ``.safetensors`` with a tensor ``mu`` (optionally ``var`` or ``sigma``);
* ``.json``: ``{"mu": [...]}`` (optionally ``"var"``/``"sigma"``) or a bare list of numbers.

A dict must hold ``mu`` and nothing but ``mu``, ``var``, ``sigma``; every array must be a finite
floating-point array of ``prior_dim`` values. Anything else raises
:class:`~dicetalk.errors.InputError` (or :class:`~dicetalk.errors.UnsafeFileError` for a pickle
that names other globals) with one line naming the file and the problem.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DiceTalkError, InputError
from ._common import first_line
from .safe_pickle import MAX_FILE_BYTES, read_npy

PRIOR_SUFFIXES = (".npy", ".safetensors", ".json")
PRIOR_KEYS = ("mu", "var", "sigma")


@dataclass(frozen=True)
class Prior:
    """One emotion prior: the mean (what generation uses) and, when stored, the variance."""

    mu: np.ndarray  # float32 (prior_dim,)
    var: np.ndarray | None = None  # float32 (prior_dim,), non-negative


def load_prior(path: str | os.PathLike, prior_dim: int = 256) -> np.ndarray:
    """The prior mean in ``path`` as a float32 array of shape ``(prior_dim,)``."""
    return read_prior(path, prior_dim).mu


def read_prior(path: str | os.PathLike, prior_dim: int = 256) -> Prior:
    """The prior in ``path`` (mean and optional variance; a stored ``sigma`` becomes ``var = sigma**2``)."""
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in PRIOR_SUFFIXES:
        raise InputError(f"{source}: unsupported emotion prior format {path.suffix or '(no extension)'!r}; expected .npy, .safetensors or .json")
    if not path.is_file():
        raise InputError(f"{source}: emotion prior file not found")
    if suffix == ".npy":
        content = read_npy(path)
    elif suffix == ".safetensors":
        content = _read_safetensors(path)
    else:
        content = _read_json(path)
    return _validate(content, prior_dim, source)


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            unknown = [k for k in keys if k not in PRIOR_KEYS]
            if unknown:
                raise InputError(f"{path}: unexpected tensor {unknown[0]!r} (a prior holds 'mu' and optionally 'var' or 'sigma')")
            out = {}
            for k in keys:
                t = f.get_tensor(k)
                if not t.is_floating_point():
                    raise InputError(f"{path}: {k!r} has dtype {str(t.dtype).replace('torch.', '')}, expected floating point")
                out[k] = t.float().numpy()
            return out
    except DiceTalkError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None


def _read_json(path: Path) -> Any:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"{path}: too large for an emotion prior")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{path}: not valid JSON ({first_line(exc)})") from None


def _validate(content: Any, prior_dim: int, source: str) -> Prior:
    if isinstance(content, dict):
        bad = [k for k in content if not isinstance(k, str) or k not in PRIOR_KEYS]
        if bad:
            raise InputError(f"{source}: unexpected key {bad[0]!r} (a prior holds 'mu' and optionally 'var' or 'sigma')")
        if "mu" not in content:
            raise InputError(f"{source}: no 'mu' entry (keys: {', '.join(map(repr, content)) or 'none'})")
        if "var" in content and "sigma" in content:
            raise InputError(f"{source}: holds both 'var' and 'sigma'; keep one")
        mu = _vector(content["mu"], prior_dim, source, "mu")
        var = None
        if "var" in content:
            var = _vector(content["var"], prior_dim, source, "var")
        elif "sigma" in content:
            var = np.square(_vector(content["sigma"], prior_dim, source, "sigma"))
        if var is not None and (var < 0).any():
            raise InputError(f"{source}: 'var' has negative values")
        return Prior(mu=mu, var=var)
    return Prior(mu=_vector(content, prior_dim, source, "prior"))


def _vector(value: Any, prior_dim: int, source: str, what: str) -> np.ndarray:
    if isinstance(value, list):  # JSON
        flat = value[0] if len(value) == 1 and isinstance(value[0], list) else value
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
            raise InputError(f"{source}: {what!r} must be a list of numbers")
        array = np.asarray(value, dtype=np.float64)
    elif isinstance(value, np.ndarray):
        array = value
        if array.dtype.kind != "f":
            raise InputError(f"{source}: {what!r} has dtype {array.dtype}, expected floating point")
    else:
        raise InputError(f"{source}: {what!r} is a {type(value).__name__}, expected an array of {prior_dim} floats")
    if array.shape not in ((prior_dim,), (1, prior_dim)):
        raise InputError(f"{source}: {what!r} has shape {tuple(array.shape)}, expected ({prior_dim},) or (1, {prior_dim})")
    if not np.isfinite(array).all():
        raise InputError(f"{source}: {what!r} contains NaN or infinite values")
    out = np.ascontiguousarray(array.reshape(prior_dim), dtype=np.float32)
    if not np.isfinite(out).all():
        raise InputError(f"{source}: {what!r} overflows float32")
    return out
