"""A lip-sync expert in latent space: the teacher of the denoiser's sync loss.

Wav2Lip (Prajwal et al. 2020) showed that a generator learns lip sync far better from a frozen,
pre-trained sync "expert" than from its reconstruction loss alone; LatentSync (Li et al. 2024)
applies the idea to a latent diffusion model. Reconstruction alone lets the denoiser hedge between
mouth shapes where the noise hides them — the averaged, soft mouth motion that costs Sync-C —
while the expert rewards the one shape that matches the speech.

Two towers, SyncNet-style, over ``span`` consecutive frames:

* mouth: the lower face of each frame's latent (the face box's lower part, resampled to
  ``crop`` x ``crop`` cells), the frames stacked on channels, a small conv net;
* audio: the denoiser's own per-frame audio windows (the frozen audio encoder's hidden states),
  a per-frame projection, the frames concatenated, an MLP;

both giving unit embeddings, trained contrastively (:meth:`LatentSyncExpert.loss`): every chunk
of a window must pick its own audio among every chunk of every window in the batch — the other
offsets of the same clip being the hard negatives. It reads latents only, never pixels or the
evaluation's mel features, so it shares nothing with the sync judge that scores the videos.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

# The lower face (mouth, lips and chin, with room for a wide smile) as fractions of the face box.
LOWER_FACE = (0.15, 0.55, 0.85, 1.0)


def lower_face_box(face_boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 4) face boxes (x0 y0 x1 y1, fractions of the frame) -> the lower face's (left, top, right, bottom)."""
    x0, y0, x1, y1 = face_boxes.unbind(-1)
    fx0, fy0, fx1, fy1 = LOWER_FACE
    return x0 + fx0 * (x1 - x0), y0 + fy0 * (y1 - y0), x0 + fx1 * (x1 - x0), y0 + fy1 * (y1 - y0)


def crop_lower_face(latents: torch.Tensor, face_boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(B, F, C, h, w) latents, (B, F, 4) face boxes (x0 y0 x1 y1, fractions) -> (B, F, C, size, size).

    Bilinear resampling, so it follows the head smoothly and passes gradients to the latents.
    """
    b, f, c, h, w = latents.shape
    left, top, right, bottom = lower_face_box(face_boxes.reshape(b * f, 4).to(latents.dtype))
    theta = torch.zeros(b * f, 2, 3, dtype=latents.dtype, device=latents.device)
    # affine_grid maps the output's [-1, 1] onto the input's [-1, 1]: scale and centre of the box.
    theta[:, 0, 0], theta[:, 0, 2] = right - left, left + right - 1
    theta[:, 1, 1], theta[:, 1, 2] = bottom - top, top + bottom - 1
    grid = F.affine_grid(theta, [b * f, c, size, size], align_corners=False)
    out = F.grid_sample(latents.reshape(b * f, c, h, w), grid, mode="bilinear", align_corners=False)
    return out.view(b, f, c, size, size)


class LatentSyncExpert(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        audio_dim: int = 10 * 5 * 384,  # one frame's audio window: window x (layers + 1) x channels
        span: int = 5,
        crop: int = 8,
        width: int = 64,
        embed_dim: int = 64,
    ):
        super().__init__()
        if crop % 4:
            raise ValueError(f"crop must be a multiple of 4, got {crop}")
        w = width
        self.mouth = nn.Sequential(
            nn.Conv2d(latent_channels * span, w, 3, 1, 1), nn.GroupNorm(8, w), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.GroupNorm(8, 2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, 2, 1), nn.GroupNorm(8, 2 * w), nn.SiLU(),
            nn.Flatten(), nn.Linear(2 * w * (crop // 4) ** 2, 4 * w), nn.SiLU(), nn.Linear(4 * w, embed_dim),
        )  # fmt: skip
        self.audio_frame = nn.Sequential(nn.Linear(audio_dim, 2 * w), nn.SiLU())
        self.audio = nn.Sequential(nn.Linear(2 * w * span, 4 * w), nn.SiLU(), nn.Linear(4 * w, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def embed_mouths(self, latents: torch.Tensor, face_boxes: torch.Tensor) -> torch.Tensor:
        """(B, F, C, h, w) latents -> (B, F - span + 1, embed_dim): one unit embedding per chunk of ``span`` frames."""
        cfg = self.config
        m = crop_lower_face(latents, face_boxes, cfg.crop)
        b, f = m.shape[:2]
        chunks = m.unfold(1, cfg.span, 1)  # (B, T, C, s, s, span)
        chunks = chunks.permute(0, 1, 5, 2, 3, 4).reshape(b * (f - cfg.span + 1), -1, cfg.crop, cfg.crop)
        return F.normalize(self.mouth(chunks).float(), dim=-1).view(b, f - cfg.span + 1, -1)

    def embed_audio(self, audio_windows: torch.Tensor) -> torch.Tensor:
        """(B, F, ...) per-frame audio windows -> (B, F - span + 1, embed_dim)."""
        b, f = audio_windows.shape[:2]
        a = self.audio_frame(audio_windows.reshape(b, f, -1))
        chunks = a.unfold(1, self.config.span, 1).permute(0, 1, 3, 2).reshape(b, f - self.config.span + 1, -1)
        return F.normalize(self.audio(chunks).float(), dim=-1)

    def loss(self, latents: torch.Tensor, face_boxes: torch.Tensor, audio_windows: torch.Tensor, weight: torch.Tensor | None = None):
        """Contrastive sync loss of a batch of windows, and the share of chunks that pick their own audio.

        Each mouth chunk scores every audio chunk of the batch (its own window's other offsets and
        the other windows); the loss is the cross-entropy of the true one. ``weight`` (B,) masks
        windows out (0), e.g. those whose speech condition was dropped. Returns (loss, accuracy).
        """
        v, a = self.embed_mouths(latents, face_boxes), self.embed_audio(audio_windows)
        b, t, d = v.shape
        logits = self.logit_scale.exp() * v.reshape(b * t, d) @ a.reshape(b * t, d).t()
        target = torch.arange(b * t, device=logits.device)
        ce = F.cross_entropy(logits, target, reduction="none").view(b, t).mean(1)
        hit = (logits.argmax(1) == target).float().view(b, t).mean(1)
        if weight is None:
            return ce.mean(), hit.mean()
        w = weight.to(ce.dtype)
        return (ce * w).sum() / w.sum().clamp(min=1.0), (hit * w).sum() / w.sum().clamp(min=1.0)
