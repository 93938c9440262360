"""Long videos as overlapping windows of frames, shifted at every denoising step.

The denoiser sees ``window`` frames at a time. Windows overlap by ``overlap`` frames and their
predictions are averaged in latent space with weights that fade towards window edges; at each
step the window grid moves by ``shift`` frames so that no boundary stays at the same place
(the seams of one step are the centres of the next). Memory depends on the window, not on the
video length.
"""

from __future__ import annotations

import torch


def window_starts(total: int, window: int, overlap: int, offset: int = 0) -> list[int]:
    """Start frames of the windows covering ``[0, total)``; the grid is moved by ``offset``."""
    if total <= window:
        return [0]
    stride = max(1, window - overlap)
    offset %= stride
    starts = {0, total - window}
    s = offset - stride if offset else 0
    while s < total - window:
        if s > 0:
            starts.add(s)
        s += stride
    return sorted(starts)


def window_weights(window: int, overlap: int) -> torch.Tensor:
    """Blend weights of the frames of one window: 1 in the middle, ramping down over the overlap."""
    ramp = max(1, overlap)
    i = torch.arange(window, dtype=torch.float32)
    edge = torch.minimum(i + 1, window - i)
    return (edge / (ramp + 1)).clamp(max=1.0)
