"""EDM preconditioning as Stable Video Diffusion uses it (v-prediction, sigma_data = 1).

The denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` wraps the UNet ``F``; the
same formulas serve training (loss weighting, log-normal noise levels) and sampling.
Reference: Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models".
"""

from __future__ import annotations

import torch

SIGMA_DATA = 1.0


def c_skip(sigma: torch.Tensor) -> torch.Tensor:
    return SIGMA_DATA**2 / (sigma**2 + SIGMA_DATA**2)


def c_out(sigma: torch.Tensor) -> torch.Tensor:
    # v-prediction: the network predicts -(x - x0 c_skip)/c_out, sign as in SVD.
    return -sigma * SIGMA_DATA / (sigma**2 + SIGMA_DATA**2).sqrt()


def c_in(sigma: torch.Tensor) -> torch.Tensor:
    return 1.0 / (sigma**2 + SIGMA_DATA**2).sqrt()


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    return 0.25 * sigma.log()


def loss_weight(sigma: torch.Tensor) -> torch.Tensor:
    """lambda(sigma) = 1 / c_out^2: equalises the loss magnitude across noise levels."""
    return (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2


def sample_training_sigmas(n: int, p_mean: float, p_std: float, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Log-normal noise levels ``ln sigma ~ N(p_mean, p_std^2)`` (EDM training distribution)."""
    return (torch.randn(n, generator=generator, device=device) * p_std + p_mean).exp()


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0) -> torch.Tensor:
    """Sampling noise levels of Karras et al., high to low, with a final 0 appended."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([inv**rho, torch.zeros(1, dtype=torch.float64)]).float()


def expand(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample sigma (B,) over a (B, ...) tensor."""
    return sigma.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def guided(
    image: torch.Tensor,
    full: torch.Tensor,
    emotion_scale: float,
    identity_scale: float = 1.0,
    none: torch.Tensor | None = None,
    audio: torch.Tensor | None = None,
    audio_scale: float | None = None,
) -> torch.Tensor:
    """Classifier-free guidance over the condition groups (sampling and distillation alike):

    ``none + s_id (image - none) + s_ae (full - image)`` = ``image + s_ae (full - image) + (s_id - 1)(image - none)``;
    at ``s_id = 1`` the unconditional estimate cancels and ``none`` is not needed. With a separate
    audio scale ``s_a`` (``audio``: the estimate with image and audio, emotion dropped) the
    audio + emotion term splits into ``s_a (audio - image) + s_ae (full - audio)``: the mouth follows
    the speech at its own strength while the emotion keeps ``s_ae`` (``s_a = s_ae`` gives the
    joint form back).
    """
    if audio_scale is None or audio_scale == emotion_scale:
        estimate = image + emotion_scale * (full - image)
    elif audio is None:
        raise ValueError("a separate audio scale needs the image + audio estimate")
    else:
        estimate = image + audio_scale * (audio - image) + emotion_scale * (full - audio)
    if identity_scale == 1.0:
        return estimate
    if none is None:
        raise ValueError("identity scale != 1 needs the unconditional estimate")
    return estimate + (identity_scale - 1.0) * (image - none)
