"""The user's own frame: generated crops pasted back into the whole photo (``generate --frame full``).

The crop of :func:`~dicetalk.pipeline.portrait.prepare_portrait` keeps its inverse (``Portrait.box``,
where it was cut from ``Portrait.photo``), so pasting back is, per frame, one resize of the
generated crop to that box and one blend through a feathered mask made once. Where the box runs
past the photo's border only its inside part is used. The crop's colour is matched to the photo in
the feather ring (a per-frame offset that fades toward the face), so a drift of the generated
background shows no seam. Outside the box the output pixels are the photo's own.
"""

from __future__ import annotations

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
        self.mask = mask.astype(np.float32)[..., None][self.inside]
        self.fade = fade.astype(np.float32)[..., None][self.inside]
        self.ring = ((mask > 0) & (mask < 1))[self.inside]
        self.output_shape = self.background.shape
        self._under_rest = None

    def paste(self, frames: np.ndarray) -> np.ndarray:
        from PIL import Image

        if self._under_rest is None:  # what the photo adds to every frame, computed once
            under = self.background[self.region].astype(np.float32)
            self._under_rest = under * (1 - self.mask)
            self._under_ring = under[self.ring].mean(axis=0)
            self._mask_fade = self.mask * self.fade
            self._ring_index = np.flatnonzero(self.ring)
        out = np.empty((len(frames), *self.output_shape), np.uint8)
        out[:] = self.background
        for k, frame in enumerate(frames):
            crop = np.asarray(Image.fromarray(frame).resize(self.size, Image.BICUBIC), dtype=np.float32)[self.inside]
            # photo * (1 - mask) + mask * (crop + fade * drift): the drift is what the crop's edge is off by
            drift = self._under_ring - crop.reshape(-1, 3)[self._ring_index].mean(axis=0) if len(self._ring_index) else np.zeros(3, np.float32)
            crop *= self.mask
            crop += self._under_rest
            crop += self._mask_fade * drift.astype(np.float32)
            crop += 0.5
            np.clip(crop, 0, 255, out=crop)
            out[k][self.region] = crop
        return out
