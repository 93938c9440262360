"""The user's own frame: generated crops pasted back into the whole photo (``generate --frame full``).

The crop of :func:`~dicetalk.pipeline.portrait.prepare_portrait` keeps its inverse (``Portrait.box``,
where it was cut from ``Portrait.photo``), so pasting back is, per frame, one resize of the
generated crop to that box and one blend through a feathered mask made once. Where the box runs
past the photo's border only its inside part is used. The crop's colour is matched to the photo in
the feather ring (a per-frame offset that fades toward the face), so a drift of the generated
background shows no seam. Outside the box the output pixels are the photo's own.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError
from .options import FRAMES  # noqa: F401 - the choices, defined with the other options
from .portrait import Portrait

FEATHER = 0.08  # of the box's shorter side: the blend ramp at its edges


class PasteBack:
    """``paste(frames)``: (N, h, w, 3) uint8 generated crops (``generated`` = (h, w)) -> (N, H, W, 3)
    uint8 whole frames.

    ``max_side``: the output's longer side at most this (the photo scaled down to it; H.264 needs
    even sides, so odd sides lose their last pixel).
    """

    def __init__(self, portrait: Portrait, generated: tuple[int, int], max_side: int = 1920):
        from PIL import Image

        if portrait.photo is None or portrait.box is None:
            raise ValueError("the portrait was not cropped: there is nothing to paste back into")
        photo, (x0, y0, bw, bh) = portrait.photo, portrait.box
        height, width = photo.shape[:2]
        scale = min(1.0, max_side / max(height, width))
        out_h, out_w = max(2, int(height * scale) // 2 * 2), max(2, int(width * scale) // 2 * 2)
        sx = sy = 1.0  # at the photo's size an odd side only loses its last pixel: no resampling
        if scale < 1.0:
            sx, sy = out_w / width, out_h / height
            photo = np.asarray(Image.fromarray(photo).resize((out_w, out_h), Image.LANCZOS))
        self.background = np.ascontiguousarray(photo[:out_h, :out_w])
        # The box in output pixels, and the part of it inside the frame.
        self.left, self.top = round(x0 * sx), round(y0 * sy)
        self.size = (max(1, round(bw * sx)), max(1, round(bh * sy)))  # (w, h) the crop is resized to
        if max(generated) > max_side:
            raise InputError(f"--max-side {max_side} is below the generated crop's {max(generated)} px: use a larger --max-side or --frame crop")
        cx0, cy0 = max(0, self.left), max(0, self.top)
        cx1, cy1 = min(out_w, self.left + self.size[0]), min(out_h, self.top + self.size[1])
        if cx1 <= cx0 or cy1 <= cy0:
            raise InputError("the face's crop lies outside the photo: nothing to paste back")
        self.region = (slice(cy0, cy1), slice(cx0, cx1))
        self.inside = (slice(cy0 - self.top, cy1 - self.top), slice(cx0 - self.left, cx1 - self.left))
        w, h = self.size
        feather = max(2.0, FEATHER * min(w, h))
        edge = np.minimum(  # each pixel's distance to the box's nearest edge
            np.minimum(np.arange(h), h - 1 - np.arange(h))[:, None], np.minimum(np.arange(w), w - 1 - np.arange(w))[None, :]
        ) + 0.5
        mask = np.clip(edge / feather, 0, 1)
        mask = mask * mask * (3 - 2 * mask)  # smoothstep: no visible edge where the ramp starts
        # Colour match: measured in the ring where the crop meets the photo, faded out over twice the feather.
        fade = np.clip(1 - edge / (2 * feather), 0, 1)
        inside = self.inside
        self.mask = np.ascontiguousarray(mask.astype(np.float32)[inside])
        self.photo_share = np.ascontiguousarray(1 - self.mask)
        # The colour offset's weight per pixel, 3 channels (OpenCV multiplies a 3-channel image by a
        # per-channel scalar in one pass), and the ring the drift is measured on, as an OpenCV mask.
        self.fade = np.ascontiguousarray(np.repeat(fade.astype(np.float32)[inside][..., None], 3, axis=2))
        self.ring = ((mask > 0) & (mask < 1))[inside].astype(np.uint8)
        self.has_ring = bool(self.ring.any())
        self.under = np.ascontiguousarray(self.background[self.region])  # the photo behind the crop, blended every frame
        self._under_ring = np.array(cv2.mean(self.under, self.ring)[:3]) if self.has_ring else np.zeros(3)
        self.output_shape = self.background.shape
        # Upscaling: bicubic; downscaling: area averaging (bicubic would alias).
        self._filter = cv2.INTER_CUBIC if self.size[0] * self.size[1] >= generated[0] * generated[1] else cv2.INTER_AREA

    def paste(self, frames: np.ndarray) -> np.ndarray:
        out = np.empty((len(frames), *self.output_shape), np.uint8)
        out[:] = self.background
        for k, frame in enumerate(frames):
            crop = np.ascontiguousarray(np.asarray(frame, np.uint8))
            if crop.shape[1::-1] != self.size:
                crop = cv2.resize(crop, self.size, interpolation=self._filter)
            crop = np.ascontiguousarray(crop[self.inside])
            if self.has_ring:  # shift the crop by what its edge is off by, fading toward the face
                drift = self._under_ring - np.array(cv2.mean(crop, self.ring)[:3])
                crop = cv2.add(crop, cv2.multiply(self.fade, (*drift, 0.0)), dtype=cv2.CV_8U)
            # photo * (1 - mask) + mask * crop, rounded and saturated to uint8 in one pass
            out[k][self.region] = cv2.blendLinear(crop, self.under, self.mask, self.photo_share)
        return out
