"""Conversions between images and model inputs, defined once for training and generation.

* :func:`to_pixels` / :func:`to_uint8`: uint8 RGB (N, H, W, 3) <-> float (N, 3, H, W) in [-1, 1] (the VAE's range);
* :func:`resize` and :func:`resize_mask`: PIL's LANCZOS, as the authors resize the portrait and its face mask;
* :func:`clip_input`: the CLIP image encoder's input, as ``CLIPImageProcessor`` makes it from an image the
  authors first resize to the encoder's square with LANCZOS (rescale to [0, 1], normalise).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3) -> float32 (N, 3, H, W) in [-1, 1]."""
    images = np.array(images, dtype=np.uint8, copy=None)
    if images.ndim == 3:
        images = images[None]
    if not images.flags.writeable or not images.flags.c_contiguous:  # e.g. a memory-mapped frame cache
        images = np.ascontiguousarray(images).copy()
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3), rounded, on the same device."""
    return ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3) RGB resized with LANCZOS (a copy when the size already matches)."""
    image = np.asarray(image, dtype=np.uint8)
    if image.shape[:2] == (height, width):
        return image.copy()
    return np.asarray(Image.fromarray(image).resize((width, height), Image.LANCZOS))


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A face mask (uint8 in {0..255}, or float in [0, 1]) as float32 (height, width) in [0, 1].

    Resized as an 8-bit image with LANCZOS, so the edges come out soft, as the authors' mask does.
    """
    mask = np.asarray(mask)
    if mask.dtype != np.uint8:
        mask = (np.clip(mask.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if mask.shape != (height, width):
        mask = np.asarray(Image.fromarray(mask, mode="L").resize((width, height), Image.LANCZOS))
    return mask.astype(np.float32) / 255.0


def clip_input(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) images -> the CLIP encoder's normalised (N, 3, size, size) float32 input."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    square = np.stack([resize(image, size, size) for image in images])
    x = ((to_pixels(square) + 1) / 2).clamp(0, 1)  # through [-1, 1], as the cached training features were made
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std
