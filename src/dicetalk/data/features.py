"""Per-frame features of frozen components, computed once per frame cache and reused.

Training the diffusion model only needs, for every frame, what frozen networks make of it:
VAE latents, the CLIP image embedding and the Whisper hidden states; for every clip, the
emotion embedder's Gaussian (mu, var). They are stored beside the frame cache under the hash of
the component's weights, so a changed component gets fresh features.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models.audio_encoder import encode_audio, feature_length, frame_features
from ..utils.atomic import atomic_path
from ..utils.pixels import to_pixels
from .cache import FrameCache
from .mapped import load_mapped


def weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:12]


def _cached(cache: FrameCache, kind: str, module: torch.nn.Module, build) -> np.ndarray:
    path = cache.folder / f"{kind}_{weights_hash(module)}.npy"
    if not path.is_file():
        array = build()
        with atomic_path(path) as tmp:
            np.save(tmp, array)
    return load_mapped(path)


@torch.no_grad()
def audio_hidden_states(cache: FrameCache, encoder, feature_extractor, progress: bool = True) -> np.ndarray:
    """Whisper hidden states of every clip end to end at 50 Hz (2 rows per frame at 25 fps):
    (rows, L+1, C) float16; :func:`audio_row_offsets` says where each clip starts."""

    def build():
        rows = []
        for c in tqdm(range(len(cache.records)), desc="audio features", disable=not progress, unit="clip"):
            n = int(cache.lengths[c])
            hidden = encode_audio(encoder, feature_extractor, cache.clip_audio(c), n, cache.fps)
            rows.append(hidden.float().cpu().numpy().astype(np.float16))
        return np.concatenate(rows)

    return _cached(cache, "audio", encoder, build)


@torch.no_grad()
def vae_latents(cache: FrameCache, vae, batch: int = 64, progress: bool = True) -> np.ndarray:
    """Scaled VAE latents (mode of the posterior) of every frame: (N, C, h, w) float16."""

    def build():
        out = []
        for s in tqdm(range(0, len(cache.frames), batch), desc="latents", disable=not progress, unit="batch"):
            x = to_pixels(cache.frames[s : s + batch]).to(vae.device, vae.dtype)
            z = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
            out.append(z.float().cpu().numpy().astype(np.float16))
        return np.concatenate(out)

    return _cached(cache, "latents", vae, build)


@torch.no_grad()
def image_embeddings(cache: FrameCache, encode_image, module, batch: int = 128, progress: bool = True) -> np.ndarray:
    """Image-encoder embeddings of every frame: (N, D) float16 (``encode_image``: uint8 (B, H, W, 3) frames -> (B, D))."""

    def build():
        out = []
        for s in tqdm(range(0, len(cache.frames), batch), desc="image embeddings", disable=not progress, unit="batch"):
            out.append(encode_image(np.asarray(cache.frames[s : s + batch])).float().cpu().numpy().astype(np.float16))
        return np.concatenate(out)

    return _cached(cache, "image", module, build)


def audio_row_offsets(cache: FrameCache) -> np.ndarray:
    """First hidden-state row of each clip in :func:`audio_hidden_states` (50 Hz rows), plus the end."""
    rows = [feature_length(int(n), cache.fps) for n in cache.lengths]
    return np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)


def clip_hidden(cache: FrameCache, hidden: np.ndarray, offsets: np.ndarray, c: int) -> torch.Tensor:
    """Cached Whisper hidden states of clip ``c``, (rows, L+1, C) float32."""
    return torch.from_numpy(np.array(hidden[offsets[c] : offsets[c + 1]], np.float32))


def clip_audio_features(cache: FrameCache, hidden: np.ndarray, offsets: np.ndarray, c: int, frames: slice | None = None) -> torch.Tensor:
    """The embedder's per-frame audio features of clip ``c`` (N, C), from cached hidden states."""
    feats = frame_features(clip_hidden(cache, hidden, offsets, c), int(cache.lengths[c]), cache.fps)
    return feats if frames is None else feats[frames]
