"""Portrait loading, the :class:`Box` type and a simple square crop around the face.

Face detection, the release's crop and mask rules and alignment to a face layout live in
:mod:`dicetalk.utils.faces`; :func:`detect_face` here returns the largest face's box from it.
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
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
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

    def scaled(self, factor: float) -> "Box":
        cx, cy = self.center
        hw, hh = self.width * factor / 2, self.height * factor / 2
        return Box(cx - hw, cy - hh, cx + hw, cy + hh)


def detect_face(image: np.ndarray) -> Box | None:
    """The box of the largest face in an RGB image (WIDER FACE-style, see :mod:`.faces`), or None."""
    from .faces import detect_face as detect

    face = detect(image)
    return None if face is None else face.box


def crop_square(image: np.ndarray, box: Box) -> np.ndarray:
    """The square region ``box`` (made square around its centre) of ``image``, edge-padded."""
    cx, cy = box.center
    side = int(round(max(box.width, box.height)))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        x0, y0 = x0 + pad, y0 + pad
    return image[y0 : y0 + side, x0 : x0 + side]


def crop_portrait(image: np.ndarray, face: Box, scale: float = 2.0) -> tuple[np.ndarray, Box]:
    """Square crop ``scale`` times the face size around the face (a little below it, for the chin).

    Returns the crop and the face box in the crop's pixel coordinates.
    """
    cx, cy = face.center
    side = max(face.width, face.height) * scale
    region = Box(cx - side / 2, cy - side * 0.45, cx + side / 2, cy + side * 0.55)
    crop = crop_square(image, region)
    s = crop.shape[0] / side
    ox, oy = region.x0, region.y0
    return crop, Box((face.x0 - ox) * s, (face.y0 - oy) * s, (face.x1 - ox) * s, (face.y1 - oy) * s)


def face_region_mask(face: Box, image_size: int, crop_size: int, expand: float = 1.25) -> np.ndarray:
    """(image_size, image_size) float mask, 1 inside the enlarged face box (given in crop pixels)."""
    box = face.scaled(expand)
    s = image_size / crop_size
    mask = np.zeros((image_size, image_size), np.float32)
    x0, y0 = max(0, int(box.x0 * s)), max(0, int(box.y0 * s))
    x1, y1 = min(image_size, int(np.ceil(box.x1 * s))), min(image_size, int(np.ceil(box.y1 * s)))
    mask[y0:y1, x0:x1] = 1.0
    return mask
