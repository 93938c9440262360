"""The denoiser ``D(x; sigma, c)``: how (noisy latents, noise level, conditions) become one UNet call.

One definition for training and sampling alike (EDM preconditioning, as Stable Video Diffusion)::

    D(x; sigma, c) = c_skip(sigma) x + c_out(sigma) F([c_in(sigma) x, z_ref], c_noise(sigma); c)

where ``z_ref`` is the reference image's (unscaled) VAE latent concatenated on the channels of every
frame, and ``c`` the CLIP image embedding, the added time ids, the per-frame audio and emotion tokens,
the face-mask encoder's features and, for UNets that gate their condition attention by the face
(``masked_condition_attention``), the face mask itself. A dropped condition is given as its null
value (zero image latent and embedding, the audio projection of silence, the emotion bank's dropped
token) by the caller: training drops at random per sample, sampling stacks guidance branches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import edm


@dataclass
class DenoiserConditions:
    """The conditions of a batch of ``B`` windows of ``F`` frames."""

    image_latents: torch.Tensor  # (B, C, h, w) reference latents, unscaled (zeros: image dropped)
    image_embeds: torch.Tensor  # (B, 1, D) CLIP image embedding (zeros: image dropped)
    audio_tokens: torch.Tensor  # (B, F, T, D)
    emotion_tokens: torch.Tensor  # (B, F, T, D)
    mask_features: torch.Tensor  # (B, F, C0, h, w) face-mask encoder output
    time_ids: torch.Tensor  # (B, 3) added time ids
    face_mask: torch.Tensor | None = None  # (1 or B, 1, H, W) in [0, 1]: where audio and emotion act


def denoise(unet, x: torch.Tensor, sigma: torch.Tensor, cond: DenoiserConditions):
    """``(D(x; sigma, c), UNet output)`` for latents ``x`` (B, F, C, h, w) at ``sigma`` (a scalar or (B,)).

    The UNet runs in its own dtype; the estimate is returned in ``x``'s dtype.
    """
    b, f = x.shape[:2]
    s = sigma.reshape(-1, 1, 1, 1, 1) if sigma.ndim else sigma
    dtype = unet.dtype
    scaled = (x * edm.c_in(s)).to(dtype)
    reference = cond.image_latents[:, None].expand(b, f, *cond.image_latents.shape[1:]).to(dtype)
    out = unet(
        torch.cat([scaled, reference], dim=2),
        edm.c_noise(sigma).to(dtype),
        cond.image_embeds.to(dtype),
        cond.time_ids.to(dtype),
        audio_tokens=cond.audio_tokens.to(dtype),
        emotion_tokens=cond.emotion_tokens.to(dtype),
        mask_features=cond.mask_features.to(dtype),
        face_mask=cond.face_mask,
    )
    return edm.c_skip(s) * x + edm.c_out(s) * out.sample.to(x.dtype), out


def time_ids(values: tuple[float, float, float], batch: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The UNet's added time ids, one row per batch item."""
    return torch.tensor([values], device=device, dtype=dtype).expand(batch, 3)
