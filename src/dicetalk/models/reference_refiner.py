"""Reference refiner: the decoded frame, corrected from the portrait.

A small autoencoder cannot carry a person's fine detail (hair texture, background pattern,
clothing, exact skin tone) through its latents, and the denoiser drifts further from it; but
at generation time that detail is on the portrait the user gave. This U-Net takes each decoded
frame together with the portrait and predicts a correction of the frame: the motion, mouth and
expression come from the decoded frame (it is trained with portraits of other expressions and
head poses than the target's), the person's appearance from the portrait. The same idea as the
source-image skip connections of warping talking-head generators (LivePortrait, SadTalker),
applied after the VAE so that the latent space, and any denoiser trained in it, stays as is.

The output convolution is zero-initialised: a fresh refiner returns the decoded frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class ReferenceRefiner(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, channels: int = 3, block_out_channels: tuple[int, ...] = (32, 64, 96), norm_groups: int = 8):
        super().__init__()
        ch = tuple(block_out_channels)
        self.conv_in = nn.Conv2d(2 * channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        c_prev = ch[0]
        for c in ch[:-1]:
            self.down_blocks.append(_ResBlock(c_prev, c, norm_groups))
            self.downsamplers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            c_prev = c
        self.mid = nn.Sequential(_ResBlock(c_prev, ch[-1], norm_groups), _ResBlock(ch[-1], ch[-1], norm_groups))
        self.up_blocks = nn.ModuleList()
        c_prev = ch[-1]
        for c in reversed(ch[:-1]):
            self.up_blocks.append(_ResBlock(c_prev + c, c, norm_groups))
            c_prev = c
        self.norm_out = nn.GroupNorm(norm_groups, ch[0])
        self.conv_out = nn.Conv2d(ch[0], channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def multiple(self) -> int:
        """Frame sides must be a multiple of this."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(self, frames: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """``frames`` (N, C, H, W) in [-1, 1], ``reference`` (N or 1, C, H, W) -> refined frames."""
        if frames.shape[-1] % self.multiple or frames.shape[-2] % self.multiple:
            raise ValueError(f"frame size {tuple(frames.shape[-2:])} is not a multiple of {self.multiple}")
        reference = reference.to(frames.dtype).expand(frames.shape[0], -1, -1, -1)
        h = self.conv_in(torch.cat([frames, reference], dim=1))
        skips = []
        for block, down in zip(self.down_blocks, self.downsamplers):
            h = block(h)
            skips.append(h)
            h = down(h)
        h = self.mid(h)
        for block in self.up_blocks:
            h = block(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skips.pop()], dim=1))
        return frames + self.conv_out(F.silu(self.norm_out(h)))
