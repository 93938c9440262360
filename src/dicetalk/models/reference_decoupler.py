"""EDI's first half: the portrait's own expression taken out of the reference latent.

DICE-Talk's denoiser copies what its reference latent shows (``benchmarks/edi_diagnosis.py``: with
an emotional portrait, replacing the reference latent by the person's neutral frame's removes the
leak, the CLIP embedding and the refiner's pixels carry none of it). EmotiveTalk's EDI separates
the portrait's expression from its identity; here that separation acts where the leak is: a small
residual network in the autoencoder's latent space maps the portrait's latent to the latent of the
same face, same pose, at the person's neutral expression. The denoiser then gets the emotion only
from its emotion tokens, as with a neutral portrait.

Trained by regression (``dicetalk train-decoupler``) on pairs the synthetic world renders exactly:
a frame of a train person's clip, and the same person and pose re-rendered at their neutral
expression. The last layer starts at zero: untrained, the module returns its input.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class _Block(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ReferenceDecoupler(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, latent_channels: int = 4, channels: int = 64, blocks: int = 4, groups: int = 8):
        super().__init__()
        self.inp = nn.Conv2d(latent_channels, channels, 3, padding=1)
        # A coarse path (half resolution) gives every position the whole face: a smile is read at
        # the mouth corners and undone there, but the brows and eyes move with it.
        self.local = nn.Sequential(*[_Block(channels, groups) for _ in range(blocks // 2)])
        self.down = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.coarse = nn.Sequential(*[_Block(channels, groups) for _ in range(blocks - blocks // 2)])
        self.up = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
        self.out = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, latent_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) unscaled reference latents (as the pipeline's ``image_latents``) -> the same at the neutral expression."""
        x = latents.to(self.dtype)
        h = self.local(self.inp(x))
        coarse = self.up(self.coarse(self.down(h)))
        if coarse.shape[-2:] != h.shape[-2:]:  # odd latent sizes
            coarse = nn.functional.interpolate(coarse, size=h.shape[-2:], mode="nearest")
        h = h + coarse
        return (x + self.out(h)).to(latents.dtype)
