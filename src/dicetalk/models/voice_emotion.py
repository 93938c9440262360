"""The voice's emotion (EmotiveTalk, ``--emotion speech``): a clip-level read-out of V-AID's expression stream.

Di-CTE can draw a trajectory from the speech alone (its null condition), but a generative model
spreads its draws over every emotion the voice leaves open, and the renderer turns a weak,
averaged expression into an even weaker one (results.md: 0.37 of Di-CTE's speech-only draws name
the emotion, 0.22 of the videos). This read-out makes the voice's clip-level decision explicit:
the expression stream's mean and spread over the clip (the slow prosody it carries: pitch level
and range, loudness, pace), standardised, then one linear layer onto the emotions. Di-CTE then
expands the decided emotion into a moving trajectory as it does for a label.

Fitted by L-BFGS on a convex loss (multinomial logistic regression, weight decay chosen on the val
split) by ``dicetalk train-voice-emotion`` (:mod:`dicetalk.training.voice_emotion`).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .. import EMOTIONS


def pooled_statistics(stream: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, F, d) per-frame stream (``mask`` (B, F) True on real frames) -> (B, 2d): its mean and std over frames."""
    keep = torch.ones(stream.shape[:2], dtype=stream.dtype, device=stream.device) if mask is None else mask.to(stream.dtype)
    keep = keep[..., None]
    count = keep.sum(1).clamp_min(1.0)
    mean = (stream * keep).sum(1) / count
    var = (((stream - mean[:, None]) ** 2) * keep).sum(1) / count
    return torch.cat([mean, var.clamp_min(0).sqrt()], dim=-1)


class VoiceEmotionReader(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        stream_dim: int = 32,
        emotions: tuple[str, ...] = EMOTIONS,
        feature_mean: tuple[float, ...] | None = None,
        feature_scale: tuple[float, ...] | None = None,
    ):
        super().__init__()
        features = 2 * stream_dim
        self.classifier = nn.Linear(features, len(emotions))
        mean, scale = self.config.feature_mean, self.config.feature_scale
        self.register_buffer("mu", torch.tensor(mean if mean is not None else [0.0] * features), persistent=False)
        self.register_buffer("sd", torch.tensor(scale if scale is not None else [1.0] * features), persistent=False)

    @property
    def emotions(self) -> tuple[str, ...]:
        return tuple(self.config.emotions)

    def features(self, stream: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised clip features (B, 2d) of V-AID's expression stream (B, F, d)."""
        pooled = pooled_statistics(stream.float(), mask)
        return ((pooled - self.mu.float()) / self.sd.float()).to(self.dtype)

    def forward(self, stream: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, emotions) of the clip's emotion."""
        return self.classifier(self.features(stream, mask))

    @torch.no_grad()
    def read(self, stream: torch.Tensor) -> tuple[str, torch.Tensor]:
        """(the most probable emotion, probabilities (emotions,)) of one clip's stream (1, F, d)."""
        probs = self(stream).float().softmax(-1)[0]
        return self.emotions[int(probs.argmax())], probs.cpu()
