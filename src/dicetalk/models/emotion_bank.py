"""Correlation-enhanced emotion conditioning (paper Sec. 3.2, Eq. 9-14, 17).

A learnable bank of ``num_codes`` emotion prototypes. The emotion prior ``s`` (from the emotion
embedder, or a stored per-emotion prompt prior) becomes query tokens; keys and values come from
the bank:

* training (``use_bank=False``): the nearest code ``s*`` to the projected prior is retrieved
  (vector quantisation with the straight-through estimator) and the VQ loss
  ``||sg[z] - C_k||^2 + beta * ||z - sg[C_k]||^2`` keeps bank and priors together;
* inference (``use_bank=True``): keys and values come from *every* code, so the prior mixes
  several correlated prototypes (e.g. "fear" borrowing from "surprised").

The output tokens (``num_tokens`` x ``token_dim``, 32 x 1024 at full size) enter the denoiser
through their own cross-attention beside the audio one (Eq. 14). Parameter names match the
released ``emo_model.pth`` (minus its ``classifier.*`` part, which is :class:`EmotionDiscriminator`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .token_projection import TokenProjection


@dataclass
class EmotionBankOutput(BaseOutput):
    tokens: torch.Tensor  # (B, F, num_tokens, token_dim)
    vq_loss: torch.Tensor  # scalar; zero when the whole bank is used
    indices: torch.Tensor | None = None  # (B, F) retrieved codes, training mode only
    attention: torch.Tensor | None = None  # (B, F, heads, num_tokens, keys) when requested


class _Codebook(nn.Module):
    """Projection of the prior into code space and the codes themselves."""

    def __init__(self, prior_dim: int, code_dim: int, num_codes: int):
        super().__init__()
        self.fc = nn.Linear(prior_dim, code_dim)
        self.codebook = nn.Embedding(num_codes, code_dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / num_codes, 1.0 / num_codes)


class _QKVAttention(nn.Module):
    """Multi-head attention from prior tokens to bank tokens (no output projection, as released)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.fc_q = nn.Linear(dim, dim)
        self.fc_k = nn.Linear(dim, dim)
        self.fc_v = nn.Linear(dim, dim)

    def keys_values(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected multi-head keys and values of ``y`` (N, Tk, D): (N, h, Tk, d) each."""
        h = self.num_heads
        return self.fc_k(y).unflatten(-1, (h, -1)).transpose(-3, -2), self.fc_v(y).unflatten(-1, (h, -1)).transpose(-3, -2)

    def forward(self, x: torch.Tensor, y: torch.Tensor | tuple[torch.Tensor, torch.Tensor], return_attention: bool = False):
        """``x`` (N, Tq, D) attends to ``y`` (N or 1, Tk, D), or to precomputed :meth:`keys_values`."""
        h = self.num_heads
        q = self.fc_q(x).unflatten(-1, (h, -1)).transpose(-3, -2)  # (N, h, Tq, d)
        k, v = y if isinstance(y, tuple) else self.keys_values(y)
        k, v = k.expand(q.shape[0], -1, -1, -1), v.expand(q.shape[0], -1, -1, -1)
        if return_attention:
            weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
            out = weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(-3, -2).flatten(-2), weights


class EmotionBank(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        prior_dim: int = 256,
        code_dim: int = 1024,
        num_codes: int = 64,
        num_tokens: int = 32,
        token_dim: int = 1024,
        hidden_dim: int = 1024,
        num_heads: int = 8,
        beta: float = 0.25,
        use_bank: bool = True,
    ):
        super().__init__()
        self.emo_linear = TokenProjection(1, 1, prior_dim, hidden_dim, token_dim, num_tokens)
        self.kv_tokens_linear = TokenProjection(1, 1, code_dim, hidden_dim, token_dim, num_tokens)
        self.codebook = _Codebook(prior_dim, code_dim, num_codes)
        self.attention = _QKVAttention(token_dim, num_heads)

    @property
    def codes(self) -> torch.Tensor:
        return self.codebook.codebook.weight

    def quantize(self, prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest code of each projected prior (Eq. 9-10, 17).

        Returns the straight-through quantised vectors (forward value = the code, gradient flows
        to the projected prior), the VQ loss and the code indices.
        """
        z = self.codebook.fc(prior)
        codes = self.codes
        flat = z.reshape(-1, z.shape[-1])
        distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(1)[None]
        indices = distances.argmin(dim=1)
        quantized = codes[indices].view_as(z)
        codebook_loss = F.mse_loss(quantized, z.detach())
        commitment_loss = F.mse_loss(z, quantized.detach())
        vq_loss = codebook_loss + self.config.beta * commitment_loss
        straight_through = z + (quantized - z).detach()
        return straight_through, vq_loss, indices.view(z.shape[:-1])

    def bank_tokens(self) -> torch.Tensor:
        """Key/value tokens of every code, (num_codes * num_tokens, token_dim)."""
        return self.kv_tokens_linear(self.codes).flatten(0, 1)

    def bank_keys_values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention's keys and values over the whole bank, (1, heads, K*T, d) each.

        They depend on the weights only: compute once per generation and pass as ``bank=``
        (at full size this saves ~11 GFLOP per call).
        """
        return self.attention.keys_values(self.bank_tokens()[None])

    def forward(
        self,
        prior: torch.Tensor,
        use_bank: bool | None = None,
        drop: torch.Tensor | None = None,
        return_attention: bool = False,
        bank: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> EmotionBankOutput:
        """Emotion tokens for a prior ``(B, F, prior_dim)`` (or ``(B, prior_dim)``: one per sample).

        ``use_bank`` defaults to ``not self.training``. A bank built with ``use_bank=False`` (the
        paper's ablation) skips retrieval and attention altogether. ``drop`` (B,) bool marks samples whose
        emotion condition is dropped (condition dropout, guidance branches): their prior is
        zeroed and, when retrieving, so is their retrieved code.
        """
        if prior.ndim == 2:
            prior = prior[:, None]
        use_bank = (not self.training) if use_bank is None else use_bank
        if drop is not None:
            prior = torch.where(drop.view(-1, 1, 1), torch.zeros_like(prior), prior)
        queries = self.emo_linear(prior)  # (B, F, T, D)
        b, f, t, d = queries.shape
        if not self.config.use_bank:  # ablation "without emotion bank": the prior's tokens as they are
            return EmotionBankOutput(tokens=queries, vq_loss=prior.new_zeros(()))
        if use_bank:
            kv = bank if bank is not None else self.bank_tokens()[None]  # shared by every sample and frame
            vq_loss = prior.new_zeros(())
            indices = None
        else:
            retrieved, vq_loss, indices = self.quantize(prior)
            if drop is not None:
                retrieved = torch.where(drop.view(-1, 1, 1), torch.zeros_like(retrieved), retrieved)
            kv = self.kv_tokens_linear(retrieved).flatten(0, 1)  # (B*F, T, D)
        tokens, weights = self.attention(queries.flatten(0, 1), kv, return_attention)
        tokens = tokens.view(b, f, t, d)
        if weights is not None:
            weights = weights.unflatten(0, (b, f))
        return EmotionBankOutput(tokens=tokens, vq_loss=vq_loss, indices=indices, attention=weights)
