"""Expression encoder: a face frame -> expression coefficients (the role 3DMM fitting plays in the paper).

The emotion embedder's visual stream reads per-frame expression coefficients. For reference
videos given at generation time they come from this small CNN, trained to regress the synthetic
world's coefficients from rendered frames (``dicetalk train-perception``). A real-face model would
put a 3DMM expression regressor here; the release ships none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ExpressionEncoder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, image_size: int = 64, channels: tuple[int, ...] = (32, 64, 128, 128), out_dim: int = 12):
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, out_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` (N, 3, H, W) in [-1, 1] (resized to ``image_size``) -> (N, out_dim)."""
        size = self.config.image_size
        if frames.shape[-1] != size or frames.shape[-2] != size:
            frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = self.features(frames)
        return self.head(x.mean(dim=(2, 3)))
