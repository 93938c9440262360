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
from ..utils.faces import SYNTHETIC_LAYOUT, Face, FaceLayout, detect_face, layout_crop, release_crop, release_face_mask
from ..utils.image import load_image

CROP_MODES = ("release", "layout", "none")


@dataclass(frozen=True)
class Portrait:
    """``image`` (H, W, 3) uint8 RGB at its own resolution; ``mask`` (H, W) uint8 in {0, 255} or
    None; ``face`` the detected face in ``image``'s coordinates, or None."""

    image: np.ndarray
    mask: np.ndarray | None
    face: Face | None


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
    if crop == "release":
        image, face = release_crop(image, face)
    elif crop == "layout":
        image, face = layout_crop(image, face, SYNTHETIC_LAYOUT if layout is None else layout)
    h, w = image.shape[:2]
    return Portrait(image, release_face_mask(face.box, h, w), face)
