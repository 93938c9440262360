"""Di-CTE, diffusion-based co-speech temporal expansion (EmotiveTalk): speech + emotion -> a per-frame expression trajectory.

A small diffusion model over the slowly moving whole-face expression (12 coefficients per frame,
:mod:`dicetalk.data.emotive`; standardised by ``trajectory_mean`` / ``trajectory_scale``) with EDM
preconditioning (:mod:`dicetalk.edm`). Conditions:

* per frame, V-AID's **expression stream** (``speech_dim``): the trajectory moves with the speech;
* one **emotion condition** per clip, from any of three sources, or none:

  - a label with a strength: ``E[neutral] + s (E[label] - E[neutral])`` (``s = 0`` is neutral,
    as a prompt prior's strength);
  - a reference video: the mean and spread over its frames of the expression it shows (24 numbers,
    :func:`reference_statistics`), through a small MLP;
  - none: a learned null vector — the emotion then comes from the voice alone.

The network is a stack of residual dilated temporal convolutions (any length; about 2.5 s of
context) whose normalisations are modulated by the noise level and the emotion condition. Trained
with the condition (and, less often, the speech) dropped, it samples classifier-free guided
(:meth:`guided`); :func:`sample_trajectory` draws one trajectory per seed — the same seed, the same
trajectory; other seeds, other plausible ones.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .. import EMOTIONS, edm

NEUTRAL = EMOTIONS.index("neutral")


def reference_statistics(expression: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean and spread over frames of a reference's expression (B, F, E) -> (B, 2E)."""
    keep = torch.ones(expression.shape[:2], device=expression.device) if mask is None else mask.float()
    keep = keep[..., None].to(expression.dtype)
    count = keep.sum(1).clamp_min(1)
    mean = (expression * keep).sum(1) / count
    std = (((expression - mean[:, None]) ** 2 * keep).sum(1) / count).sqrt()
    return torch.cat([mean, std], dim=-1)


class _Block(nn.Module):
    """x + conv1x1(GELU(dilated conv(GroupNorm(x) * (1 + scale) + shift))), scale/shift from the embedding."""

    def __init__(self, channels: int, embed_dim: int, dilation: int):
        super().__init__()
        self.norm = nn.GroupNorm(8, channels, affine=False)
        self.modulation = nn.Linear(embed_dim, 2 * channels)
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(emb)[..., None].chunk(2, dim=1)  # (B, C, 1)
        h = self.norm(x) * (1 + scale) + shift
        return x + self.mix(torch.nn.functional.gelu(self.conv(h * keep))) * keep


class TrajectoryDenoiser(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        trajectory_dim: int = 12,
        speech_dim: int = 32,
        channels: int = 128,
        embed_dim: int = 128,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1, 2, 4, 8, 16),
        num_emotions: int = len(EMOTIONS),
        trajectory_mean: tuple[float, ...] | None = None,
        trajectory_scale: tuple[float, ...] | None = None,
    ):
        super().__init__()
        self.input = nn.Conv1d(trajectory_dim + speech_dim, channels, 3, padding=1)
        self.noise_embedding = nn.Sequential(nn.Linear(64, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.emotion_labels = nn.Embedding(num_emotions, embed_dim)
        self.reference = nn.Sequential(nn.Linear(2 * trajectory_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.null_emotion = nn.Parameter(torch.zeros(embed_dim))
        self.blocks = nn.ModuleList(_Block(channels, embed_dim, d) for d in dilations)
        self.output = nn.Sequential(nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv1d(channels, trajectory_dim, 3, padding=1))
        mean, scale = self.config.trajectory_mean, self.config.trajectory_scale
        self.register_buffer("mu", torch.tensor(mean if mean is not None else [0.0] * trajectory_dim), persistent=False)
        self.register_buffer("sd", torch.tensor(scale if scale is not None else [1.0] * trajectory_dim), persistent=False)

    # ------------------------------------------------------------------ conditions
    def label_condition(self, labels: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
        """(B,) emotion indices and strengths -> (B, embed_dim); strength 0 is neutral, 1 the label."""
        neutral = self.emotion_labels.weight[NEUTRAL]
        return neutral + strengths.to(neutral.dtype)[:, None] * (self.emotion_labels(labels) - neutral)

    def reference_condition(self, expression: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """A reference video's expression (B, F, E), in coefficients -> (B, embed_dim)."""
        statistics = reference_statistics(self.standardise(expression.to(self.mu.dtype)), mask)
        return self.reference(statistics.to(self.null_emotion.dtype))

    def null_condition(self, batch: int) -> torch.Tensor:
        return self.null_emotion[None].expand(batch, -1)

    def standardise(self, trajectory: torch.Tensor) -> torch.Tensor:
        return (trajectory - self.mu) / self.sd

    def coefficients(self, standardised: torch.Tensor) -> torch.Tensor:
        return standardised * self.sd + self.mu

    # ------------------------------------------------------------------ denoiser
    def _noise_features(self, sigma: torch.Tensor) -> torch.Tensor:
        half = 32
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device) / half)
        angles = edm.c_noise(sigma).float()[:, None] * 100.0 * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1).to(self.null_emotion.dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, speech: torch.Tensor | None, emotion: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``D(x; sigma)``: the denoised standardised trajectory (B, F, E).

        ``x`` (B, F, E) noisy standardised trajectory, ``sigma`` (B,), ``speech`` (B, F, speech_dim) (None:
        dropped), ``emotion`` (B, embed_dim) from one of the ``*_condition`` methods, ``mask`` (B, F) bool.
        """
        b, f, _ = x.shape
        dtype = self.null_emotion.dtype
        keep = (torch.ones(b, f, device=x.device) if mask is None else mask.float()).to(dtype)[:, None]  # (B, 1, F)
        s = sigma.reshape(b, 1, 1).to(dtype)
        if speech is None:
            speech = torch.zeros(b, f, self.config.speech_dim, device=x.device, dtype=dtype)
        h = torch.cat([(x.to(dtype) * edm.c_in(s)).transpose(1, 2), speech.to(dtype).transpose(1, 2)], dim=1) * keep
        h = self.input(h) * keep
        emb = self.noise_embedding(self._noise_features(sigma.reshape(b))) + emotion.to(dtype)
        for block in self.blocks:
            h = block(h, emb, keep)
        out = (self.output(h) * keep).transpose(1, 2)
        return (edm.c_skip(s) * x.to(dtype) + edm.c_out(s) * out).to(x.dtype)

    def guided(self, x, sigma, speech, emotion, mask=None, scale: float = 1.0, speech_scale: float = 1.0) -> torch.Tensor:
        """Classifier-free guidance: ``D(-, 0) + speech_scale (D(s, 0) - D(-, 0)) + scale (D(s, c) - D(s, 0))``.

        ``-``: no speech, ``0``: the null emotion condition, ``s``: the speech, ``c``: ``emotion``. With
        ``speech_scale`` 1 the first branch cancels; with ``scale`` 1 the last two do (one pass).
        """
        b = x.shape[0]
        null = self.null_condition(b)
        branches = []  # (speech or None, emotion)
        if speech_scale != 1.0:
            branches.append((None, null))
        if speech_scale != 1.0 or scale != 1.0:
            branches.append((speech, null))
        branches.append((speech, emotion))
        if len(branches) == 1:
            return self(x, sigma, speech, emotion, mask)
        zeros = torch.zeros(b, x.shape[1], self.config.speech_dim, device=x.device, dtype=x.dtype) if speech is not None else None
        out = self(
            torch.cat([x] * len(branches)), torch.cat([sigma] * len(branches)),
            None if speech is None else torch.cat([zeros if sp is None else sp for sp, _ in branches]),
            torch.cat([e for _, e in branches]), None if mask is None else torch.cat([mask] * len(branches)),
        ).chunk(len(branches))  # fmt: skip
        full, plain = out[-1], out[-2]
        estimate = plain + scale * (full - plain)
        if speech_scale != 1.0:
            estimate = estimate + (speech_scale - 1.0) * (plain - out[0])
        return estimate


@torch.no_grad()
def sample_trajectory(
    model: TrajectoryDenoiser,
    speech: torch.Tensor,
    emotion: torch.Tensor,
    generator: torch.Generator | None = None,
    steps: int = 16,
    guidance: float = 1.0,
    speech_guidance: float = 1.0,
    sigma_max: float = 20.0,
    sigma_min: float = 0.01,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw trajectories (B, F, E) in coefficient units with Heun's 2nd-order EDM sampler.

    ``speech`` (B, F, speech_dim): V-AID's expression stream; ``emotion`` (B, embed_dim). The initial
    noise comes from ``generator`` (CPU), so a seed fixes the trajectory on any device.
    """
    b, f = speech.shape[:2]
    sigmas = edm.karras_sigmas(steps, sigma_min, sigma_max).to(speech.device)
    x = torch.randn((b, f, model.config.trajectory_dim), generator=generator, dtype=torch.float32).to(speech.device) * sigmas[0]

    def denoise(x, sigma):
        return model.guided(x, sigma.expand(b), speech, emotion, mask, guidance, speech_guidance).float()

    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = (x - denoise(x, s)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d2 = (x_next - denoise(x_next, s_next)) / s_next
            x_next = x + (s_next - s) * (d + d2) / 2
        x = x_next
    return model.coefficients(x)
