"""The portrait a video is made from: read, cropped around the face, and its face mask.

Three ways to frame it (``crop``):

``"release"``
    The release's crop (``demo.py --crop``): the face box grown by half its size on each side,
    made square toward the face (:func:`~dicetalk.utils.faces.release_crop`).
``"layout"``
    A square that puts the eyes and mouth where a model's training faces have them
    (:func:`~dicetalk.utils.faces.layout_crop`); the default layout is the synthetic world's,
    which the embedded default model is trained on.
``"none"``
    The image as it is.

The mask follows the release's rule (the face box x 1.1, 255 inside) on the portrait as
returned, at its own resolution; None when no face was found (only possible with ``"none"``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..utils.faces import SYNTHETIC_LAYOUT, Face, FaceLayout, detect_face, layout_crop, layout_crop_box, release_crop, release_crop_box, release_face_mask
from ..utils.image import load_image

CROP_MODES = ("release", "layout", "none")


@dataclass(frozen=True)
class Portrait:
    """``image`` (H, W, 3) uint8 RGB at its own resolution; ``mask`` (H, W) uint8 in {0, 255} or
    None; ``face`` the detected face in ``image``'s coordinates, or None. ``photo`` and ``box``: the
    whole photo and where ``image`` was cut from it, ``(x0, y0, width, height)`` in the photo's pixels
    (it may run past the photo's border) — the crop's inverse, for pasting back (None: no crop)."""

    image: np.ndarray
    mask: np.ndarray | None
    face: Face | None
    photo: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None


def prepare_portrait(path: str | os.PathLike, crop: str = "release", layout: FaceLayout | None = None) -> Portrait:
    """Read the portrait at ``path`` and frame it by ``crop`` (see the module docstring).

    ``layout`` is used with ``crop="layout"`` (None: :data:`~dicetalk.utils.faces.SYNTHETIC_LAYOUT`).
    Raises :class:`~dicetalk.errors.InputError` for an unreadable image, an unknown ``crop``,
    or no face when cropping.
    """
    if crop not in CROP_MODES:
        raise InputError(f"unknown crop {crop!r}; expected one of {', '.join(CROP_MODES)}")
    image = load_image(path)
    face = detect_face(image)
    if face is None:
        if crop != "none":
            raise InputError(f"{path}: no face found (use --no-crop to animate the whole image as it is)")
        return Portrait(image, None, None)
    photo, box = image, None
    if crop == "release":
        x0, y0, x1, y1 = release_crop_box(face.box, *image.shape[:2])
        image, face = release_crop(image, face)
        box = (x0, y0, x1 - x0, y1 - y0)
    elif crop == "layout":
        layout = SYNTHETIC_LAYOUT if layout is None else layout
        x0, y0, n = layout_crop_box(face, layout)
        image, face = layout_crop(image, face, layout)
        box = (x0, y0, n, n)
    h, w = image.shape[:2]
    return Portrait(image, release_face_mask(face.box, h, w), face, photo if box else None, box)
