"""Portrait loading (any common format, bounded in pixels) and the :class:`Box` type.

Face detection, the release's crop and mask rules and alignment to a face layout live in
:mod:`dicetalk.utils.faces`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

MAX_IMAGE_PIXELS = 8192 * 8192


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An RGB uint8 (H, W, 3) image; a clear :class:`InputError` for anything else."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise InputError(f"{path}: image of {img.width}x{img.height} pixels is too large")
            img.load()
            rgb = img.convert("RGB")
    except InputError:
        raise
    except Image.DecompressionBombError:  # PIL refuses to even open it: far past our own limit
        raise InputError(f"{path}: image is too large (more than {MAX_IMAGE_PIXELS:,} pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError(f"{path}: not a readable image") from None
    if min(rgb.size) < 16:
        raise InputError(f"{path}: image of {rgb.width}x{rgb.height} pixels is too small")
    return np.asarray(rgb, dtype=np.uint8).copy()


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2
