"""V-AID, vision-guided audio information decoupling (EmotiveTalk): speech -> a lip stream and an expression stream.

Both streams read the same per-frame Whisper windows DICE-Talk's audio projection reads (10 feature
frames x every hidden state, :func:`~dicetalk.models.audio_encoder.frame_windows`) and give one
vector per video frame:

* the **lip stream** (``lip_dim``): a per-frame MLP and a 3-frame convolution — it sees 200 ms
  around each frame, what the lips need — minus its own moving average over ``rate_frames``
  frames: it carries syllable-rate motion and nothing that holds for longer (a voice's pitch,
  loudness or pace, where emotion lives);
* the **expression stream** (``expression_dim``): a per-frame projection, residual dilated temporal
  convolutions (dilations 1..32: about 5 s of context) — what the voice's emotion (pitch, range,
  rate, loudness) needs — then a moving average over ``rate_frames`` frames: it moves at the pace of
  expressions, not of syllables.

The two moving averages split the spectrum of the representation at the same rate as the visual
targets split the face's motion (:data:`~dicetalk.data.emotive.SLOW_FRAMES`).

Training may drop features of the expression stream (``dropout``): with a few dozen speakers, its
context is enough to memorise who speaks instead of how. "Vision-guided": each stream has a linear read-out trained to match a visual representation of
the same frames (:mod:`dicetalk.data.emotive`: the mouth's syllable-rate motion; the slowly moving
whole face), in standardised units (``*_mean`` / ``*_scale`` bring the read-outs back to
coefficients). The decoupling terms that keep emotion out of the lip stream and phonemes out of
the expression stream are training losses (:mod:`dicetalk.training.vaid`); this module is what
generation runs. Convolutions see zeros beyond the clip and on padding frames (``mask``), at
training and generation alike; any length works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class DecoupledAudio(BaseOutput):
    lip: torch.Tensor  # (B, F, lip_dim) lip stream
    expression: torch.Tensor  # (B, F, expression_dim) expression stream
    lip_readout: torch.Tensor  # (B, F, lip_targets) standardised lip motion
    expression_readout: torch.Tensor  # (B, F, expression_targets) standardised expression


class _DilatedBlock(nn.Module):
    """Pre-norm residual block: x + conv1x1(GELU(conv_k3,dilated(LN(x))))."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = (self.norm(x) * keep).transpose(1, 2)  # (B, C, F), zero on padding
        return x + self.mix(torch.nn.functional.gelu(self.conv(h))).transpose(1, 2)


def masked_moving_average(x: torch.Tensor, keep: torch.Tensor, frames: int) -> torch.Tensor:
    """Centred moving average of ``x`` (B, F, C) over ``frames`` frames, counting only kept frames (``keep`` (B, F, 1))."""
    if frames <= 1:
        return x
    half = frames // 2
    pool = lambda z: torch.nn.functional.avg_pool1d(z.transpose(1, 2), 2 * half + 1, stride=1, padding=half, count_include_pad=True)  # noqa: E731
    total, count = pool(x * keep), pool(keep.expand(*keep.shape[:2], 1).to(x.dtype))
    return (total / count.clamp_min(1e-6)).transpose(1, 2)


class AudioDecoupler(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        window: int = 10,
        blocks: int = 3,
        channels: int = 64,
        hidden_dim: int = 256,
        lip_dim: int = 32,
        expression_hidden: int = 128,
        expression_dim: int = 32,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
        rate_frames: int = 15,
        lip_targets: int = 2,
        expression_targets: int = 12,
        dropout: float = 0.0,
        lip_mean: tuple[float, ...] | None = None,
        lip_scale: tuple[float, ...] | None = None,
        expression_mean: tuple[float, ...] | None = None,
        expression_scale: tuple[float, ...] | None = None,
    ):
        super().__init__()
        self.input_dim = window * blocks * channels
        self.lip_in = nn.Sequential(
            nn.LayerNorm(self.input_dim), nn.Linear(self.input_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU()
        )
        self.lip_temporal = nn.Conv1d(hidden_dim, lip_dim, 3, padding=1)
        self.lip_head = nn.Linear(lip_dim, lip_targets)
        self.expression_in = nn.Sequential(nn.LayerNorm(self.input_dim), nn.Linear(self.input_dim, expression_hidden), nn.GELU())
        self.stream_dropout = nn.Dropout(dropout)
        self.expression_blocks = nn.ModuleList(_DilatedBlock(expression_hidden, d) for d in dilations)
        self.expression_out = nn.Sequential(nn.LayerNorm(expression_hidden), nn.Linear(expression_hidden, expression_dim))
        self.expression_head = nn.Linear(expression_dim, expression_targets)
        for name, size in (("lip", lip_targets), ("expression", expression_targets)):
            mean, scale = getattr(self.config, f"{name}_mean"), getattr(self.config, f"{name}_scale")
            self.register_buffer(f"{name}_mu", torch.tensor(mean if mean is not None else [0.0] * size), persistent=False)
            self.register_buffer(f"{name}_sd", torch.tensor(scale if scale is not None else [1.0] * size), persistent=False)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None = None) -> DecoupledAudio:
        """``windows`` (B, F, window, L+1, C) or (B, F, input_dim); ``mask`` (B, F) bool, True on real frames."""
        if windows.shape[-1] != self.input_dim:
            windows = windows.flatten(-3)
        if windows.ndim != 3 or windows.shape[-1] != self.input_dim:
            raise ValueError(f"expected (B, F, {self.input_dim}) audio windows, got {tuple(windows.shape)}")
        return self.streams(*self.frame_features(windows), mask)

    def frame_features(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-frame first layers of both streams, (B, F, hidden_dim) and (B, F, expression_hidden).

        Frame by frame, so a long speech can be encoded in chunks of frames (its Whisper windows are
        the largest tensor of the path) and :meth:`streams` run once on the result."""
        if windows.shape[-1] != self.input_dim:
            windows = windows.flatten(-3)
        windows = windows.to(self.dtype)
        return self.lip_in(windows), self.stream_dropout(self.expression_in(windows))

    def streams(self, lip: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> DecoupledAudio:
        """The temporal layers of both streams on :meth:`frame_features`' output."""
        keep = torch.ones(lip.shape[:2], dtype=lip.dtype, device=lip.device) if mask is None else mask.to(lip.dtype)
        keep = keep[..., None]
        lip = lip * keep
        lip = self.lip_temporal(lip.transpose(1, 2)).transpose(1, 2) * keep
        rate = self.config.rate_frames
        lip = (lip - masked_moving_average(lip, keep, rate)) * keep
        x = x * keep
        for block in self.expression_blocks:
            x = self.stream_dropout(block(x, keep)) * keep
        expression = masked_moving_average(self.expression_out(x) * keep, keep, rate) * keep
        return DecoupledAudio(lip, expression, self.lip_head(lip), self.expression_head(expression))

    def lip_motion(self, readout: torch.Tensor) -> torch.Tensor:
        """Standardised lip read-out -> lip motion in coefficient units."""
        return readout * self.lip_sd + self.lip_mu

    def expression_coefficients(self, readout: torch.Tensor) -> torch.Tensor:
        """Standardised expression read-out -> coefficients."""
        return readout * self.expression_sd + self.expression_mu

    def standardise(self, lips: torch.Tensor | None = None, expression: torch.Tensor | None = None):
        """Targets in coefficient units -> the read-outs' standardised units."""
        out = []
        if lips is not None:
            out.append((lips - self.lip_mu) / self.lip_sd)
        if expression is not None:
            out.append((expression - self.expression_mu) / self.expression_sd)
        return out[0] if len(out) == 1 else tuple(out)
