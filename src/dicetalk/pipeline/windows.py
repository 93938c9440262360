"""Long videos as windows of frames, moved at every denoising step, averaged in latent space.

The denoiser sees ``window`` frames at a time; at each step the window grid moves by ``shift``
frames so that no boundary stays at the same place (the seams of one step are the centres of the
next). Memory depends on the window, not on the video length. Two layouts:

* ``blend`` — windows inside ``[0, total)``, ``overlap`` frames apart from their neighbours (the first
  at 0, the last ending at ``total``), averaged with weights that fade towards window edges;
* ``circular`` — the release's: ``total`` frames (the video plus one window of null-conditioned
  padding frames) are covered by windows starting at ``0, window - overlap, ...`` moved back by the
  step's offset, wrapping around modulo ``total``; uniform averaging. For 100 frames and windows of
  25 moved by 7: ``[0, 25, 50, 75, 100]``, then ``[-7, 18, 43, 68, 93]``, ``[-14, 11, 36, 61, 86]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class WindowPlan:
    """The windows of one denoising step."""

    starts: list[int]  # first frame of each window (may be negative for circular windows)
    index: torch.Tensor  # (windows, window) long: the frames of each window
    weights: torch.Tensor  # (window,) blend weight of each position in a window


def window_starts(total: int, window: int, overlap: int, offset: int = 0) -> list[int]:
    """Start frames of the ``blend`` windows covering ``[0, total)``; the grid is moved by ``offset``."""
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


def circular_window_starts(total: int, window: int, overlap: int, offset: int = 0) -> list[int]:
    """Start frames of the ``circular`` windows over ``total`` frames at a grid offset of ``offset``."""
    return [s - offset % window for s in range(0, total, max(1, window - overlap))]


def window_weights(window: int, overlap: int) -> torch.Tensor:
    """Blend weights of the frames of one window: 1 in the middle, ramping down over the overlap."""
    ramp = max(1, overlap)
    i = torch.arange(window, dtype=torch.float32)
    edge = torch.minimum(i + 1, window - i)
    return (edge / (ramp + 1)).clamp(max=1.0)


def plan_windows(layout: str, total: int, window: int, overlap: int, offset: int) -> WindowPlan:
    """The windows of a step whose grid is moved by ``offset`` frames."""
    if layout == "circular":
        starts = circular_window_starts(total, window, overlap, offset)
        index = (torch.tensor(starts)[:, None] + torch.arange(window)[None]) % total
        return WindowPlan(starts, index, torch.ones(window))
    w = min(window, total)
    starts = window_starts(total, w, overlap, offset)
    index = torch.tensor(starts)[:, None] + torch.arange(w)[None]
    return WindowPlan(starts, index, window_weights(w, overlap if total > w else 0))
