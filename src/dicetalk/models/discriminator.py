"""Emotion discriminator (paper Sec. 3.3, Eq. 16).

Adaptive average pooling of an intermediate denoiser feature map (the UNet mid block) followed
by an MLP classifier over the 22 MEAD classes (neutral + 7 emotions x 3 levels). Its
cross-entropy, averaged over the sampled noise levels, is the discrimination objective that
pushes the denoiser to make the conditioned emotion recognisable in its own features.
Parameter names match the ``classifier.*`` part of the released ``emo_model.pth``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..emotions import NUM_CLASSES


class EmotionDiscriminator(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        in_channels: int = 1280,
        hidden_dims: tuple[int, int] = (512, 256),
        num_classes: int = NUM_CLASSES,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.fc1 = nn.Linear(in_channels, hidden_dims[0])
        self.fc2 = nn.Linear(hidden_dims[0], hidden_dims[1])
        self.fc3 = nn.Linear(hidden_dims[1], num_classes)
        self.drop = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` (N, C, H, W) -> logits (N, num_classes)."""
        x = F.adaptive_avg_pool2d(features, 1).flatten(1)
        x = self.drop(torch.relu(self.fc1(x)))
        x = self.drop(torch.relu(self.fc2(x)))
        return self.fc3(x)

    def loss(self, features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of per-frame features against per-sample labels.

        ``features`` holds ``B * F`` frames (frame-major within each sample); ``labels`` (B,) are
        repeated over frames. ``weight`` (B,) masks samples without an emotion label (0) — e.g.
        unlabelled talking data or samples whose emotion condition was dropped.
        """
        logits = self(features)
        frames = logits.shape[0] // labels.shape[0]
        per_frame = F.cross_entropy(logits.float(), labels.repeat_interleave(frames), reduction="none")
        if weight is None:
            return per_frame.mean()
        w = weight.to(per_frame.dtype).repeat_interleave(frames)
        return (per_frame * w).sum() / w.sum().clamp_min(1.0)
