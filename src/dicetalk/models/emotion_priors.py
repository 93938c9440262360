"""Stored per-emotion prompt priors (the paper's "Ours-P").

Each emotion's prior is the mean of many emotion-embedder outputs for clips of that emotion
(its Gaussian: ``mu`` and ``var``). Kept as a pipeline component so that a weights folder carries
its priors in safetensors like every other part. ``prior(name, strength)`` moves from neutral
towards the emotion: strength 0 is neutral, 1 the stored prior, above 1 exaggerates.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ..errors import InputError


class EmotionPriors(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, emotions: tuple[str, ...] = (), prior_dim: int = 256):
        super().__init__()
        self.register_buffer("mu", torch.zeros(len(emotions), prior_dim))
        self.register_buffer("var", torch.zeros(len(emotions), prior_dim))

    @classmethod
    def from_tensors(cls, priors: dict[str, torch.Tensor], variances: dict[str, torch.Tensor] | None = None) -> "EmotionPriors":
        names = tuple(sorted(priors))
        if not names:
            raise ValueError("no priors given")
        dim = int(priors[names[0]].numel())
        table = cls(emotions=names, prior_dim=dim)
        with torch.no_grad():
            for i, name in enumerate(names):
                table.mu[i] = priors[name].reshape(-1).float()
                if variances and name in variances:
                    table.var[i] = variances[name].reshape(-1).float()
        return table

    @property
    def emotions(self) -> tuple[str, ...]:
        return tuple(self.config.emotions)

    def __contains__(self, name: str) -> bool:
        return name in self.config.emotions

    def prior(self, name: str, strength: float = 1.0) -> torch.Tensor:
        """The prior of ``name`` at ``strength`` (linear path from the neutral prior), (prior_dim,)."""
        if name not in self.config.emotions:
            raise InputError(f"unknown emotion {name!r}; this model knows {', '.join(self.config.emotions)}")
        mu = self.mu[self.config.emotions.index(name)]
        if "neutral" in self.config.emotions:
            neutral = self.mu[self.config.emotions.index("neutral")]
        else:
            neutral = torch.zeros_like(mu)  # no neutral prior stored: scale from the origin
        return neutral + strength * (mu - neutral)
