"""Audio and emotion cross-attention beside the image cross-attention (paper Eq. 14).

Every ``attn2`` of the SVD UNet (spatial and temporal transformer blocks alike, as in the
released checkpoint) gets an :class:`AudioEmotionAttnProcessor`: the usual attention to the CLIP
image token, plus one attention per condition stream (0 = audio, 1 = emotion) with its own
key/value projections (``to_k_ip.{i}``, ``to_v_ip.{i}``) and scale:

    out = Attn(q, K_img, V_img) + sum_i scale_i * Attn(q, K_i, V_i)

The stream tokens are per frame, ``(B, F, T, D)``. diffusers' UNet forward repeats
``encoder_hidden_states`` once per frame before any processor sees it, so the tokens travel
through an explicit :class:`ConditionContext` that :class:`~dicetalk.models.unet.DiceTalkUNet`
fills on each call. Spatial blocks attend to their own frame's tokens; temporal blocks attend
to the tokens averaged over the window (the global audio perception of the Sonic backbone).

Face-masked conditioning (``masked=True``, spatial blocks only, as the released model runs): each
stream's attention output is multiplied by the face mask resized to the block's grid, so speech and
emotion act on the face region and leave the background to the image condition. The mask is resized
by diffusers' ``IPAdapterMaskProcessor.downsample`` (bicubic to the block's grid), once per grid size
and call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

STREAMS = ("audio", "emotion")


@dataclass
class ConditionContext:
    """Per-call inputs shared by every processor and hook of one UNet."""

    streams: list[torch.Tensor | None] = field(default_factory=lambda: [None] * len(STREAMS))
    batch_size: int = 0
    num_frames: int = 0
    mask_features: torch.Tensor | None = None  # (B, F, C0, h, w), added after conv_in
    mid_features: torch.Tensor | None = None  # (B*F, C_mid, h', w'), captured for the discriminator
    face_mask: torch.Tensor | None = None  # (1 or B, 1, H, W) in [0, 1], gates the streams of masked processors
    grid_masks: dict = field(default_factory=dict)  # face mask resized per number of queries, for this call

    def __deepcopy__(self, memo) -> "ConditionContext":
        # Per-call inputs are not part of a model: a copied model starts with an empty context.
        return ConditionContext()

    def clear(self) -> None:
        self.streams = [None] * len(STREAMS)
        self.mask_features = None
        self.mid_features = None
        self.face_mask = None
        self.grid_masks = {}

    def mask_for(self, queries: int, frames: int, dtype: torch.dtype) -> torch.Tensor:
        """The face mask on a grid of ``queries`` positions, ``(1 or B*F, queries, 1)``."""
        key = (queries, dtype)
        if key not in self.grid_masks:
            from diffusers.image_processor import IPAdapterMaskProcessor

            mask = self.face_mask.float()
            rows = [IPAdapterMaskProcessor.downsample(m[:, 0], 1, queries, 1) for m in mask.split(1)]
            grid = torch.cat(rows).to(dtype)  # (1 or B, queries, 1)
            self.grid_masks[key] = grid if grid.shape[0] == 1 else grid.repeat_interleave(frames, dim=0)
        return self.grid_masks[key]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head SDPA on (N, Lq, C) x (N, Lk, C) -> (N, Lq, C)."""
    n, lq, c = q.shape
    q = q.view(n, lq, heads, -1).transpose(1, 2)
    k = k.view(n, k.shape[1], heads, -1).transpose(1, 2)
    v = v.view(n, v.shape[1], heads, -1).transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, lq, c)


class AudioEmotionAttnProcessor(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        cross_attention_dim: int,
        scales: tuple[float, ...] = (1.0, 1.0),
        temporal: bool = False,
        context: ConditionContext | None = None,
        masked: bool = False,
    ):
        super().__init__()
        self.to_k_ip = nn.ModuleList(nn.Linear(cross_attention_dim, hidden_size, bias=False) for _ in scales)
        self.to_v_ip = nn.ModuleList(nn.Linear(cross_attention_dim, hidden_size, bias=False) for _ in scales)
        self.scales = list(scales)
        self.temporal = temporal
        self.masked = masked and not temporal
        self.context = context if context is not None else ConditionContext()

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is None or attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError("AudioEmotionAttnProcessor serves unmasked cross-attention on (N, L, C) inputs")
        n, length, _ = hidden_states.shape
        query = attn.to_q(hidden_states)
        if encoder_hidden_states.shape[1] == 1:
            # Softmax over a single key is 1: the attention output is that key's value, exactly.
            out = attn.to_v(encoder_hidden_states).expand(n, length, -1)
        else:
            out = _attend(query, attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states), attn.heads)

        ctx = self.context
        gate = ctx.mask_for(length, ctx.num_frames, out.dtype) if self.masked and ctx.face_mask is not None else None
        for i, tokens in enumerate(ctx.streams):
            if tokens is None or self.scales[i] == 0.0:
                continue
            if self.temporal:
                # Rows are (batch, position) pairs over the frames: one query set per batch item.
                batch = tokens.shape[0]
                tokens = tokens.mean(dim=1)  # (B, T, D)
                q = query.reshape(batch, -1, query.shape[-1])
            else:
                tokens = tokens.flatten(0, 1)  # (B*F, T, D), rows match the UNet's (batch, frame) order
                q = query
            if q.shape[0] * q.shape[1] != n * length or tokens.shape[0] != q.shape[0]:
                raise ValueError(f"{STREAMS[i]} tokens {tuple(ctx.streams[i].shape)} do not match the UNet batch")
            attended = _attend(q, self.to_k_ip[i](tokens), self.to_v_ip[i](tokens), attn.heads).reshape(n, length, -1)
            out = out + self.scales[i] * (attended if gate is None else attended * gate)

        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor
