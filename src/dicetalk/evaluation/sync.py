"""Lip-sync scores of one clip with the :class:`~dicetalk.evaluation.judges.SyncJudge` (SyncNet's LSE-C / LSE-D).

For a clip of ``T`` frames the mouth tower gives window embeddings ``v_t`` (window ``t`` =
frames ``t .. t + 4``, ``t = 0 .. T - 5``) and the audio tower, over the speech padded with
``K = 15`` frames of silence on both sides, gives ``a_u`` for ``u = -K .. T - 5 + K``. With
``d(t, o) = || v_t - a_{t + o} ||`` (Euclidean distance of normalised embeddings, 0..2):

- ``D(o) = mean_t d(t, o)`` for every offset ``o`` in ``-K .. K``;
- **Sync-D** = ``min_o D(o)`` (lower is better);
- **Sync-C** = ``median_o D(o) - min_o D(o)`` (higher is better: a clear minimum);
- **offset** = ``argmin_o D(o)``: the audio that matches frame ``t`` is at frame ``t + offset``
  (positive: the sound comes after the mouth; 0 for a synchronised clip).

Those are SyncNet's definitions (``syncnet_python``: ``conf = median - min`` of the mean
distance over offsets); the numbers live on this judge's own scale, not on SyncNet's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .features import frame_mels
from .judges import SyncJudge


@dataclass
class SyncResult:
    confidence: float  # Sync-C
    distance: float  # Sync-D
    offset: int  # frames; 0 when in sync
    distances: np.ndarray  # (2K + 1,) mean distance per offset, from -K to K


@torch.no_grad()
def mouth_frame_features(judge: SyncJudge, mouths: np.ndarray, batch: int = 512) -> torch.Tensor:
    """(T, h, w) uint8 mouth crops -> (T, frame_dim) per-frame features of the mouth tower."""
    x = torch.from_numpy(np.ascontiguousarray(mouths))
    return torch.cat([judge.frame_features(x[i : i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def sync_embeddings(judge: SyncJudge, mouths: np.ndarray, audio: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """-> video window embeddings (T - 4, D) and audio window embeddings (T - 4 + 2K, D)."""
    k = judge.config.max_offset
    video = judge.embed_video(mouth_frame_features(judge, mouths)[None])[0]
    mels = torch.from_numpy(frame_mels(audio, len(mouths), pad_frames=k))
    return video, judge.embed_audio(mels[None])[0]


def offset_distances(video: torch.Tensor, audio: torch.Tensor, max_offset: int) -> np.ndarray:
    """``D(o)`` for ``o = -K .. K`` from embeddings as returned by :func:`sync_embeddings`."""
    n = video.shape[0]
    # d[t, j] = ||v_t - a_{t + j}|| for j = 0 .. 2K (padded index), i.e. offset j - K.
    windows = audio.unfold(0, n, 1)  # (2K + 1, D, n)
    d = (video.T[None] - windows).norm(dim=1)  # (2K + 1, n)
    return d.mean(dim=1).double().numpy()[: 2 * max_offset + 1]


def sync_scores(judge: SyncJudge, mouths: np.ndarray, audio: np.ndarray) -> SyncResult:
    """Sync-C, Sync-D and offset of one clip: ``mouths`` (T, 32, 48) uint8, ``audio`` 16 kHz mono."""
    window = judge.config.window
    if len(mouths) < window:
        raise ValueError(f"a clip needs at least {window} frames for lip-sync scores, got {len(mouths)}")
    video, audio_emb = sync_embeddings(judge, mouths, audio)
    k = judge.config.max_offset
    dists = offset_distances(video, audio_emb, k)
    best = int(np.argmin(dists))
    return SyncResult(float(np.median(dists) - dists[best]), float(dists[best]), best - k, dists)
