"""EDI, expression-decoupling injection (EmotiveTalk): a target expression trajectory into DICE-Talk's denoiser.

The denoiser (frozen, DICE-Talk's) draws the emotion from its emotion tokens, and copies what its
reference latent shows — so a portrait that already shows an emotion leaks that emotion into
every frame. EDI conditions the denoiser on the *target* expression and decouples the portrait's:

* ``prior``: the target trajectory (per frame, 12 expression coefficients; Di-CTE's output) ->
  one emotion prior per frame, in the space of DICE-Talk's prompt priors — the emotion the
  denoiser's bank turns into tokens. Trained by regression (``dicetalk train-edi``, first stage):
  the expression the frames of a clip show -> the prompt prior of the clip's label at its
  strength. Frame by frame, so the prior follows the trajectory;
* ``delta``: (target, portrait, target - portrait) -> offsets added to the emotion tokens of every
  frame (``num_tokens`` x ``token_dim``), zero-initialised — the injection that cancels what the
  portrait's own expression puts into the reference latent and adds what the target needs.
  Trained through the frozen denoiser (second stage) on windows whose reference frame shows
  another expression of the same person. The portrait's expression is the frozen expression
  encoder's reading of the portrait (:class:`~dicetalk.models.expression_encoder.ExpressionEncoder`).

All inputs are standardised by ``expression_mean`` / ``expression_scale`` (the trajectories' own).
The denoiser's call itself is unchanged (:func:`dicetalk.models.denoiser.denoise`): EDI only
changes the emotion tokens it is given.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ExpressionInjector(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        expression_dim: int = 12,
        prior_dim: int = 64,
        num_tokens: int = 8,
        token_dim: int = 128,
        hidden_dim: int = 256,
        expression_mean: tuple[float, ...] | None = None,
        expression_scale: tuple[float, ...] | None = None,
    ):
        super().__init__()
        self.prior = nn.Sequential(
            nn.Linear(expression_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, prior_dim)
        )
        self.delta = nn.Sequential(nn.Linear(3 * expression_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU())
        self.delta_out = nn.Linear(hidden_dim, num_tokens * token_dim)
        nn.init.zeros_(self.delta_out.weight)  # starts as no injection: the denoiser as trained
        nn.init.zeros_(self.delta_out.bias)
        mean, scale = self.config.expression_mean, self.config.expression_scale
        self.register_buffer("mu", torch.tensor(mean if mean is not None else [0.0] * expression_dim), persistent=False)
        self.register_buffer("sd", torch.tensor(scale if scale is not None else [1.0] * expression_dim), persistent=False)

    def standardise(self, expression: torch.Tensor) -> torch.Tensor:
        return (expression.to(self.mu.dtype) - self.mu) / self.sd

    def emotion_prior(self, trajectory: torch.Tensor) -> torch.Tensor:
        """(..., 12) target expression -> (..., prior_dim) emotion prior per frame."""
        return self.prior(self.standardise(trajectory).to(self.dtype))

    def token_offsets(self, trajectory: torch.Tensor, portrait: torch.Tensor) -> torch.Tensor:
        """(B, F, 12) target trajectory and (B, 12) portrait expression -> (B, F, num_tokens, token_dim)."""
        target = self.standardise(trajectory)
        source = self.standardise(portrait)[:, None].expand_as(target)
        h = self.delta(torch.cat([target, source, target - source], dim=-1).to(self.dtype))
        return self.delta_out(h).unflatten(-1, (self.config.num_tokens, self.config.token_dim))

    def forward(self, trajectory: torch.Tensor, portrait: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(priors (B, F, prior_dim), token offsets (B, F, num_tokens, token_dim))."""
        return self.emotion_prior(trajectory), self.token_offsets(trajectory, portrait)
