"""Portrait loading (any common format, bounded in pixels) and the :class:`Box` type.

Face detection, the release's crop and mask rules and alignment to a face layout live in
:mod:`dicetalk.utils.faces`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

MAX_IMAGE_PIXELS = 8192 * 8192


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An RGB uint8 (H, W, 3) image the way a viewer shows it; a clear :class:`InputError` for anything else.

    Phones store pictures sideways with an EXIF orientation tag: it is applied. An animated file gives
    its first frame; transparency is composited on white; grayscale, palette, CMYK and 16-bit or
    float images are converted (16-bit scaled to 8, not clipped).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below says it in one line
            with Image.open(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise InputError(f"{path}: image of {img.width}x{img.height} pixels is too large")
                img.seek(0)  # an animated GIF/PNG/WebP: its first frame
                img.load()
                rgb = _as_rgb(ImageOps.exif_transpose(img))
    except InputError:
        raise
    except Image.DecompressionBombError:  # PIL refuses to even open it: far past our own limit
        raise InputError(f"{path}: image is too large (more than {MAX_IMAGE_PIXELS:,} pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):  # SyntaxError: PIL's word for a broken file
        raise InputError(f"{path}: not a readable image") from None
    if min(rgb.shape[:2]) < 16:
        raise InputError(f"{path}: image of {rgb.shape[1]}x{rgb.shape[0]} pixels is too small")
    return rgb


def _as_rgb(img) -> np.ndarray:
    """uint8 RGB pixels of a PIL image of any mode."""
    from PIL import Image

    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):  # deep grayscale: scale, do not clip at 255
        gray = np.asarray(img).astype(np.float64)
        top = 1.0 if img.mode == "F" and gray.max(initial=0) <= 1.0 else 255.0 if gray.max(initial=0) <= 255 else 65535.0
        gray = np.clip(np.nan_to_num(gray) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "La":  # premultiplied gray + alpha (PIL cannot convert it): on white that is l + (255 - a)
        la = np.asarray(img).astype(np.int32)
        gray = np.clip(la[..., 0] + 255 - la[..., 1], 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "RGBa") or (img.mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8).copy()
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


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
