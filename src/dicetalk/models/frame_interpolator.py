"""Frame interpolator: the release's RIFE (HDv3) flow network, for doubling 12.5 fps to 25 fps.

The authors generate 12.5 frames per second and insert one frame between every consecutive pair
with RIFE's "HDv3" IFNet (their ``checkpoints/RIFE/flownet.pkl``). This is an independent
implementation of that network whose parameter names and shapes are the checkpoint's (after its
``module.`` prefix), so :func:`dicetalk.convert.rife.convert_frame_interpolator` can turn the
release's weights into safetensors that load here strictly.

How the middle frame is made (the facts of the released network):

* three refinement blocks run coarse to fine at downsampling ``scales = (4, 2, 1)`` (each divided by
  the ``scale`` argument); each block sees both frames warped by the current flow, the current
  blend mask and the flow, and predicts a flow update (4 channels: middle -> frame 0 and middle ->
  frame 1, in pixels) and a mask-logit update (1 channel);
* every block is run in both directions (frames exchanged, flow halves exchanged, mask negated) and
  the two predictions are averaged, which makes the result symmetric in the two frames;
* the frames are warped backwards with bilinear sampling (border padding, corner-aligned pixel
  grid, flow in pixels), and the middle frame is ``sigmoid(mask) * warped0 + (1 - sigmoid(mask)) * warped1``;
* a block works at ``1/4`` of its input resolution (two stride-2 convolutions, two stride-2
  transposed convolutions back), so the released network needs sides that are multiples of 16 at
  ``scale=1`` (512x512 and every multiple of 64 qualify: no padding, the release's computation).
  Other sizes are padded on the right and bottom by repeating the edge pixels and cropped back.

A fourth block, ``block_tea`` (the teacher used when RIFE was trained, which also sees the true
middle frame), is in the checkpoint and is kept so the weights load strictly; inference never runs it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import InputError

FLOW_CHANNELS = 4  # (dx, dy) towards frame 0, then (dx, dy) towards frame 1
BLOCK_STRIDE = 4  # a refinement block's features are at 1/4 of its input resolution


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B, C, H, W) at ``pixel + flow`` (B, 2, H, W; x then y, in pixels).

    Bilinear, corner-aligned (pixel ``i`` of ``n`` sits at ``-1 + 2i/(n-1)``), positions outside the
    image take the nearest edge pixel. A constant flow of ``+d`` in x makes ``out[..., j] = image[..., j + d]``.
    """
    _, _, h, w = flow.shape
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype).view(1, 1, w).expand(-1, h, -1)
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype).view(1, h, 1).expand(-1, -1, w)
    gx = xs + flow[:, 0] / ((image.shape[3] - 1.0) / 2.0)
    gy = ys + flow[:, 1] / ((image.shape[2] - 1.0) / 2.0)
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False, recompute_scale_factor=False)


class _ConvAct(nn.Sequential):
    """3x3 convolution (with bias) + per-channel PReLU; state-dict names ``0.*`` and ``1.weight``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.PReLU(c_out))


class _UpHead(nn.Sequential):
    """Two stride-2 4x4 transposed convolutions with a PReLU between: features -> ``c_out`` maps at 4x."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.ConvTranspose2d(c_in, c_in // 2, 4, 2, 1), nn.PReLU(c_in // 2), nn.ConvTranspose2d(c_in // 2, c_out, 4, 2, 1))


class FlowBlock(nn.Module):
    """One refinement step: (images, mask) and flow at full size -> flow and mask-logit updates at full size."""

    def __init__(self, in_channels: int, channels: int, num_residual: int = 4):
        super().__init__()
        self.num_residual = num_residual
        self.conv0 = nn.Sequential(_ConvAct(in_channels, channels // 2, 2), _ConvAct(channels // 2, channels, 2))
        for i in range(num_residual):
            self.add_module(f"convblock{i}", nn.Sequential(_ConvAct(channels, channels), _ConvAct(channels, channels)))
        self.conv1 = _UpHead(channels, FLOW_CHANNELS)
        self.conv2 = _UpHead(channels, 1)

    def forward(self, x: torch.Tensor, flow: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = _resize(x, 1.0 / scale)
        flow = _resize(flow, 1.0 / scale) / scale
        feat = self.conv0(torch.cat((x, flow), 1))
        for i in range(self.num_residual):
            feat = getattr(self, f"convblock{i}")(feat) + feat
        return _resize(self.conv1(feat), scale) * scale, _resize(self.conv2(feat), scale)


def _swap(flow: torch.Tensor) -> torch.Tensor:
    """Exchange the two flow halves (towards frame 0 <-> towards frame 1)."""
    return torch.cat((flow[:, 2:4], flow[:, 0:2]), 1)


class FrameInterpolator(ModelMixin, ConfigMixin):
    """The middle frame between two frames (RIFE HDv3 IFNet); :meth:`interpolate` for whole clips.

    ``scales``: the downsampling of each refinement block (one block per entry); ``teacher``: keep
    the training-time teacher block ``block_tea`` so the release's checkpoint loads strictly.
    """

    @register_to_config
    def __init__(
        self,
        image_channels: int = 3,
        hidden_channels: int = 90,
        num_residual: int = 4,
        scales: tuple[float, ...] = (4, 2, 1),
        teacher: bool = True,
    ):
        super().__init__()
        student_in = 2 * image_channels + 1 + FLOW_CHANNELS  # both warped frames, mask, flow
        for i in range(len(scales)):
            self.add_module(f"block{i}", FlowBlock(student_in, hidden_channels, num_residual))
        if teacher:  # + the true middle frame; used only when training RIFE
            self.block_tea = FlowBlock(student_in + image_channels, hidden_channels, num_residual)

    @property
    def blocks(self) -> list[FlowBlock]:
        return [getattr(self, f"block{i}") for i in range(len(self.config.scales))]

    def multiple(self, scale: float = 1.0) -> int:
        """Frame sides the network takes as they are at this ``scale``; others are padded to a multiple of it."""
        out = 1
        for s in self.config.scales:
            k = math.log2(s / scale) if s > 0 and scale > 0 else 0.5
            if abs(k - round(k)) > 1e-9:
                raise InputError(f"frame interpolation scale {scale} gives a block scale of {s / scale}; use a power of two such as 0.5, 1 or 2")
            out = max(out, round(BLOCK_STRIDE * 2.0 ** round(k)))
        return max(out, 1)

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """The frame halfway between ``frame0`` and ``frame1`` (B, C, H, W) in [0, 1], clamped to [0, 1].

        ``scale`` < 1 estimates the flow at lower resolution (faster, for large motion in big frames).
        """
        if frame0.ndim != 4 or frame0.shape != frame1.shape or frame0.shape[1] != self.config.image_channels:
            raise InputError(f"frame interpolation needs two (B, {self.config.image_channels}, H, W) batches of the same shape, got {tuple(frame0.shape)} and {tuple(frame1.shape)}")
        if scale <= 0:
            raise InputError(f"frame interpolation scale must be positive, got {scale}")
        h, w = frame0.shape[-2:]
        m = self.multiple(scale)
        pad = (0, -w % m, 0, -h % m)
        if any(pad):
            frame0, frame1 = F.pad(frame0, pad, mode="replicate"), F.pad(frame1, pad, mode="replicate")
        middle = self._middle(frame0, frame1, [s / scale for s in self.config.scales])
        return middle[..., :h, :w].clamp(0, 1)

    def _middle(self, img0: torch.Tensor, img1: torch.Tensor, scales: list[float]) -> torch.Tensor:
        b, _, h, w = img0.shape
        flow = img0.new_zeros(b, FLOW_CHANNELS, h, w)
        mask = img0.new_zeros(b, 1, h, w)
        warped0, warped1 = img0, img1
        for block, s in zip(self.blocks, scales):
            # Both directions in one batch: (0 -> 1) and the exchanged (1 -> 0), then averaged.
            x = torch.cat((torch.cat((warped0, warped1, mask), 1), torch.cat((warped1, warped0, -mask), 1)))
            f, m = block(x, torch.cat((flow, _swap(flow))), s)
            flow = flow + (f[:b] + _swap(f[b:])) / 2
            mask = mask + (m[:b] - m[b:]) / 2
            warped0 = backward_warp(img0, flow[:, :2])
            warped1 = backward_warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped0 * weight + warped1 * (1 - weight)

    @torch.no_grad()
    def interpolate(self, frames: torch.Tensor, factor: int = 2, scale: float = 1.0, batch_size: int = 8) -> torch.Tensor:
        """A clip (F, C, H, W) in [0, 1] at ``factor`` times the frame rate: (factor * (F - 1) + 1, C, H, W).

        The original frames stay at positions ``0, factor, 2 * factor, ...``. The network makes only
        midpoints, so ``factor`` must be a power of two (each doubling runs over all pairs at once,
        ``batch_size`` pairs per network call). Computed on the model's device and dtype; returned
        on the input's.
        """
        if frames.ndim != 4 or frames.shape[0] < 1:
            raise InputError(f"frame interpolation needs a clip of shape (F, C, H, W) with F >= 1, got {tuple(frames.shape)}")
        if factor < 1 or factor & (factor - 1):
            raise InputError(f"frame interpolation factor must be a power of two (1, 2, 4, ...), got {factor}")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        out = frames.to(self.device, self.dtype)
        for _ in range(factor.bit_length() - 1):
            out = self._double(out, scale, batch_size)
        return out.to(frames.device, frames.dtype)

    def _double(self, clip: torch.Tensor, scale: float, batch_size: int) -> torch.Tensor:
        n = clip.shape[0]
        if n < 2:
            return clip
        first, second = clip[:-1], clip[1:]
        middles = [self(first[i : i + batch_size], second[i : i + batch_size], scale) for i in range(0, n - 1, batch_size)]
        out = clip.new_empty((2 * n - 1, *clip.shape[1:]))
        out[0::2] = clip
        out[1::2] = torch.cat(middles)
        return out
