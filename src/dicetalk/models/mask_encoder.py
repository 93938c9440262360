"""Face-region mask encoder (the released ``pose_guider``).

A small strided CNN turns the face-region mask image (pixel resolution) into features with the
UNet's first-block channel count at latent resolution; they are added to the output of the
UNet's input convolution, telling the denoiser where the face may move. The last convolution is
zero-initialised so that a fresh encoder leaves the backbone unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class FaceMaskEncoder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        conditioning_embedding_channels: int = 320,
        conditioning_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 96, 256),
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], kernel_size=3, padding=1)
        blocks = []
        for c_in, c_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            blocks.append(nn.Conv2d(c_in, c_in, kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(block_out_channels[-1], conditioning_embedding_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downscale_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """``mask`` (B, F, C, H, W) or (N, C, H, W) in [0, 1] -> features at H/f x W/f."""
        video = mask.ndim == 5
        x = mask.flatten(0, 1) if video else mask
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        x = self.conv_out(x)
        return x.unflatten(0, mask.shape[:2]) if video else x
