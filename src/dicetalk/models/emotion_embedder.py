"""Disentangled emotion embedder (paper Sec. 3.1, Eq. 2-6): a clip's expressions and speech -> a Gaussian emotion prior.

Two streams over the ``N`` frames of a clip, both of width ``d_s = model_dim`` (256 at full size):

* visual: per-frame expression coefficients (3DMM expression coefficients in the paper, following
  StyleTalk; the synthetic world's expression vector here) -> linear + positional embedding ->
  transformer encoder layers -> ``s_beta`` (every layer's output is kept for the fusion);
* audio: per-frame features of the frozen Whisper encoder
  (:func:`~dicetalk.models.audio_encoder.frame_features`) -> linear + positional embedding ->
  learnable transformer layers -> ``s_alpha``; after layer ``l`` the audio queries attend to the
  visual stream of the same layer, ``s_alpha <- s_alpha + lambda * CA_l(s_alpha, s_beta^l)``.

Attention pooling turns ``s_alpha`` into a diagonal Gaussian over the clip,
``w = softmax_t(W_s s_alpha)``, ``mu = sum_t w_t s_alpha_t``, ``sigma^2 = sum_t w_t (s_alpha_t - mu)^2``,
and the emotion prior is the reparameterised sample ``s = mu + sigma * eps``. Pooling over the
audio stream (not the visual one) is what makes the prior *emotion* rather than *expression*: the
visual stream only reaches it through the audio queries, so speech content drives where it looks.

Training (see :func:`dicetalk.training.losses.info_nce`) pulls priors of the same identity and
emotion together; modality dropout zeroes one stream per sample (never both) so that the embedder
also works from video only or audio only (the paper's Table 5 ablation).

The DICE-Talk release does not ship this module (only the per-emotion priors it produced), so its
parameter names are ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import nn


@dataclass
class EmbedderOutput(BaseOutput):
    """What :meth:`DisentangledEmotionEmbedder.forward` returns (``B`` clips, ``N`` frames, ``d_s`` channels)."""

    mu: torch.Tensor  # (B, d_s) mean of the clip's Gaussian
    var: torch.Tensor  # (B, d_s) its diagonal variance sigma^2
    prior: torch.Tensor  # (B, d_s) the sample mu + sigma * eps, or mu when not sampling
    weights: torch.Tensor | None = None  # (B, N) pooling weights, zero on padding frames
    dropped_visual: torch.Tensor | None = None  # (B,) bool, visual stream zeroed (dropout or missing)
    dropped_audio: torch.Tensor | None = None  # (B,) bool, audio stream zeroed (dropout or missing)
    s_alpha: torch.Tensor | None = None  # (B, N, d_s) fused audio stream, when ``return_streams``
    s_beta: torch.Tensor | None = None  # (B, N, d_s) last visual layer, when ``return_streams``


class _CrossModalFusion(nn.Module):
    """``CA_l``: audio queries attend to the visual stream of the same layer (pre-norm, padding-aware)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, s_alpha: torch.Tensor, s_beta: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        context = self.norm_context(s_beta)
        out, _ = self.attn(self.norm_query(s_alpha), context, context, key_padding_mask=key_padding_mask, need_weights=False)
        return self.dropout(out)


def _encoder_layer(dim: int, num_heads: int, ffn_dim: int, dropout: float) -> nn.TransformerEncoderLayer:
    # Pre-norm: stable without warm-up at every size we train, from tiny to full.
    return nn.TransformerEncoderLayer(dim, num_heads, ffn_dim, dropout, activation="gelu", batch_first=True, norm_first=True)


class DisentangledEmotionEmbedder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        expression_dim: int = 64,
        audio_dim: int = 384,
        model_dim: int = 256,
        num_layers: int = 4,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        fusion_lambda: float = 1.0,
        max_frames: int = 512,
        dropout: float = 0.1,
        modality_dropout: float = 0.2,
    ):
        super().__init__()
        if model_dim % num_heads:
            raise ValueError(f"model_dim={model_dim} must be divisible by num_heads={num_heads}")
        if not 0.0 <= modality_dropout <= 0.5:
            # Each stream is dropped with this probability and never both, so 2p <= 1.
            raise ValueError(f"modality_dropout must be in [0, 0.5], got {modality_dropout}")
        # Visual stream (expression coefficients -> s_beta).
        self.visual_in = nn.Linear(expression_dim, model_dim)
        self.visual_pos = nn.Embedding(max_frames, model_dim)
        self.visual_layers = nn.ModuleList(_encoder_layer(model_dim, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        # Audio stream (Whisper features -> s_alpha), fused with the visual stream layer by layer.
        self.audio_in = nn.Linear(audio_dim, model_dim)
        self.audio_pos = nn.Embedding(max_frames, model_dim)
        self.audio_layers = nn.ModuleList(_encoder_layer(model_dim, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        self.fusion = nn.ModuleList(_CrossModalFusion(model_dim, num_heads, dropout) for _ in range(num_layers))
        self.audio_norm = nn.LayerNorm(model_dim)
        # W_s. No bias: a shared offset cancels in the softmax over time.
        self.pool_proj = nn.Linear(model_dim, 1, bias=False)
        nn.init.normal_(self.visual_pos.weight, std=0.02)
        nn.init.normal_(self.audio_pos.weight, std=0.02)

    # ------------------------------------------------------------------------------------ pieces

    def pool(
        self, s_alpha: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attention pooling of the fused audio stream into a Gaussian.

        ``s_alpha`` (B, N, d_s); ``padding_mask`` (B, N) bool, True on padding frames.
        Returns ``weights`` (B, N) = ``softmax_t(W_s s_alpha)`` with zeros on padding,
        ``mu`` (B, d_s) = ``sum_t w_t s_alpha_t`` and ``var`` (B, d_s) = ``sum_t w_t (s_alpha_t - mu)^2``.
        """
        logits = self.pool_proj(s_alpha).squeeze(-1).float()
        if padding_mask is not None:
            logits = logits.masked_fill(padding_mask, float("-inf"))
            # Padding rows hold whatever the layers made of them; 0 * inf/nan would leak into mu.
            s_alpha = s_alpha.masked_fill(padding_mask[..., None], 0.0)
        weights = torch.softmax(logits, dim=1).to(s_alpha.dtype)
        mu = torch.einsum("bn,bnd->bd", weights, s_alpha)
        var = torch.einsum("bn,bnd->bd", weights, (s_alpha - mu[:, None]) ** 2)
        return weights, mu, var

    def modality_dropout_masks(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Which samples lose their visual and which their audio stream, (B,) bool each.

        One uniform draw per sample: below ``p`` drops the visual stream, in ``[p, 2p)`` the audio
        stream. Each stream is dropped with probability exactly ``p`` and never both together.
        """
        p = self.config.modality_dropout
        draw_device = generator.device if generator is not None else device
        u = torch.rand(batch_size, generator=generator, device=draw_device).to(device)
        return u < p, (u >= p) & (u < 2 * p)

    # ----------------------------------------------------------------------------------- forward

    def forward(
        self,
        expression: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        sample: bool | None = None,
        generator: torch.Generator | None = None,
        return_streams: bool = False,
    ) -> EmbedderOutput:
        """The emotion prior of ``B`` clips of ``N <= max_frames`` frames.

        Args:
            expression: (B, N, expression_dim) per-frame expression coefficients, or None (audio only).
            audio: (B, N, audio_dim) per-frame Whisper features, or None (video only).
            padding_mask: (B, N) bool, True on padding frames (PyTorch's key-padding convention);
                they get no attention and zero pooling weight. Every clip needs one real frame.
            sample: draw ``s = mu + sigma * eps`` (default: ``self.training``); otherwise ``prior = mu``.
            generator: source of ``eps`` and of the modality-dropout draws, for determinism.
            return_streams: also return ``s_alpha`` and ``s_beta``.

        A missing modality enters as a zeroed stream, exactly like modality dropout, which in training
        (``self.training`` with both modalities given) zeroes one stream of some samples.
        """
        cfg = self.config
        batch, frames = self._check_inputs(expression, audio)
        device, dtype = self.visual_in.weight.device, self.visual_in.weight.dtype
        padding_mask = self._check_padding(padding_mask, batch, frames, device)

        if self.training and cfg.modality_dropout > 0 and expression is not None and audio is not None:
            drop_visual, drop_audio = self.modality_dropout_masks(batch, device, generator)
        else:
            drop_visual = torch.full((batch,), expression is None, device=device)
            drop_audio = torch.full((batch,), audio is None, device=device)

        positions = torch.arange(frames, device=device)
        # Dropping zeroes the projected features rather than the raw inputs: zero coefficients are a
        # neutral face and zero Whisper features are not silence, but a zero token carries nothing.
        # The positional embedding stays, so a dropped stream is a constant, content-free sequence.
        visual = self._stream_input(self.visual_in, expression, drop_visual, batch, frames, dtype, device)
        visual = visual + self.visual_pos(positions)
        fused = self._stream_input(self.audio_in, audio, drop_audio, batch, frames, dtype, device)
        fused = fused + self.audio_pos(positions)

        for visual_layer, audio_layer, fusion in zip(self.visual_layers, self.audio_layers, self.fusion):
            visual = visual_layer(visual, src_key_padding_mask=padding_mask)
            fused = audio_layer(fused, src_key_padding_mask=padding_mask)
            fused = fused + cfg.fusion_lambda * fusion(fused, visual, padding_mask)
        s_alpha = self.audio_norm(fused)

        weights, mu, var = self.pool(s_alpha, padding_mask)
        if self.training if sample is None else sample:
            eps = randn_tensor(mu.shape, generator=generator, device=device, dtype=mu.dtype)
            # The clamp keeps d(sigma)/d(var) finite when a clip has a single real frame (var = 0).
            prior = mu + var.clamp_min(1e-12).sqrt() * eps
        else:
            prior = mu
        return EmbedderOutput(
            mu=mu,
            var=var,
            prior=prior,
            weights=weights,
            dropped_visual=drop_visual,
            dropped_audio=drop_audio,
            s_alpha=s_alpha if return_streams else None,
            s_beta=visual if return_streams else None,
        )

    def _check_inputs(self, expression: torch.Tensor | None, audio: torch.Tensor | None) -> tuple[int, int]:
        """(batch, frames) of the given streams, or a ValueError naming what is wrong."""
        if expression is None and audio is None:
            raise ValueError("the emotion embedder needs expression coefficients, audio features or both")
        cfg = self.config
        given = expression if expression is not None else audio
        if given.ndim != 3:
            raise ValueError(f"expected (batch, frames, features) inputs, got shape {tuple(given.shape)}")
        batch, frames = given.shape[:2]
        for name, x, dim in (("expression", expression, cfg.expression_dim), ("audio", audio, cfg.audio_dim)):
            if x is not None and (x.ndim != 3 or x.shape[:2] != (batch, frames) or x.shape[-1] != dim):
                raise ValueError(f"{name} must have shape ({batch}, {frames}, {dim}), got {tuple(x.shape)}")
        if frames > cfg.max_frames:
            raise ValueError(f"clips of {frames} frames exceed max_frames={cfg.max_frames}; crop or subsample the clip")
        return batch, frames

    @staticmethod
    def _check_padding(padding_mask: torch.Tensor | None, batch: int, frames: int, device) -> torch.Tensor | None:
        """The padding mask as bool on ``device``; None when nothing is padding."""
        if padding_mask is None:
            return None
        padding_mask = padding_mask.to(device=device, dtype=torch.bool)
        if padding_mask.shape != (batch, frames):
            raise ValueError(f"padding_mask must have shape ({batch}, {frames}), got {tuple(padding_mask.shape)}")
        if padding_mask.all(dim=1).any():
            raise ValueError("every clip needs at least one frame that is not padding")
        return padding_mask if padding_mask.any() else None

    @staticmethod
    def _stream_input(
        proj: nn.Linear,
        x: torch.Tensor | None,
        drop: torch.Tensor,
        batch: int,
        frames: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> torch.Tensor:
        if x is None:
            return torch.zeros(batch, frames, proj.out_features, device=device, dtype=dtype)
        return proj(x.to(device=device, dtype=dtype)).masked_fill(drop[:, None, None], 0.0)
