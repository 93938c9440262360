"""``dicetalk train-embedder``: the disentangled emotion embedder (paper Sec. 3.1) and its prompt priors.

InfoNCE on cosine similarity (positives: same identity and emotion; for talking data without
labels, windows of the same video), with modality dropout inside the embedder and the
reparameterised Gaussian sample as the embedding. Afterwards the per-emotion prompt priors
("Ours-P") are the mean of the embedder's ``mu`` over many training clips of each emotion at
its strongest level, saved as an :class:`~dicetalk.models.emotion_priors.EmotionPriors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import EMOTIONS
from ..configs import get_config
from ..data.cache import FrameCache
from ..data.datasets import contrastive_batch
from ..data.features import audio_row_offsets, clip_audio_features
from ..models.emotion_priors import EmotionPriors
from ..models.registry import build_component
from ..utils.atomic import atomic_dir
from .common import Run, fit, make_accelerator
from .losses import info_nce


@dataclass
class EmbedderOptions:
    dataset: str
    out: str
    backbone: str  # folder with the frozen audio_encoder/ (pretrained or whisper-tiny)
    config: str = "synthetic"
    steps: int = 1500
    groups: int = 32  # positive pairs per batch
    window: int = 64  # frames per clip window
    temperature: float = 0.1
    lr: float = 5e-4
    seed: int = 0
    mixed_precision: str = "no"
    cache_dir: str | None = None


def embedder_loss(cache: FrameCache, hidden: np.ndarray, offsets: np.ndarray, opts: EmbedderOptions):
    def loss_fn(step, modules, _batch, generator):
        emb = modules["emotion_embedder"]
        b = contrastive_batch(cache, hidden, offsets, step, opts.seed, opts.groups, opts.window)
        dev = next(emb.parameters()).device
        out = emb(
            expression=b["expression"].to(dev),
            audio=b["audio"].to(dev),
            padding_mask=b["padding_mask"].to(dev),
            sample=True,
            generator=generator,
        )
        loss = info_nce(out.prior, b["labels"].to(dev), temperature=opts.temperature)
        return loss, {"sigma": out.var.mean().sqrt().detach()}

    return loss_fn


@torch.no_grad()
def clip_gaussians(embedder, cache: FrameCache, hidden: np.ndarray, offsets: np.ndarray, modalities: str = "both") -> tuple[np.ndarray, np.ndarray]:
    """(mu, var) of the embedder over every clip of the cache (whole clips, up to ``max_frames``)."""
    embedder.eval()
    dev = next(embedder.parameters()).device
    mus, variances = [], []
    limit = int(embedder.config.max_frames)
    for c in range(len(cache.records)):
        n = min(int(cache.lengths[c]), limit)
        g0 = int(cache.starts[c])
        expression = torch.from_numpy(np.array(cache.expression[g0 : g0 + n], np.float32))[None].to(dev)
        audio = clip_audio_features(cache, hidden, offsets, c, slice(0, n))[None].to(dev)
        out = embedder(
            expression=expression if modalities in ("both", "video") else None,
            audio=audio if modalities in ("both", "audio") else None,
            sample=False,
        )
        mus.append(out.mu[0].cpu().numpy())
        variances.append(out.var[0].cpu().numpy())
    return np.stack(mus).astype(np.float32), np.stack(variances).astype(np.float32)


def prompt_priors(cache: FrameCache, mu: np.ndarray, var: np.ndarray) -> EmotionPriors:
    """Per-emotion prompt priors: mean Gaussian of the clips of each emotion at its top level."""
    means, variances = {}, {}
    for emotion in EMOTIONS:
        levels = [r.level for r in cache.records if r.emotion == emotion]
        if not levels:
            continue
        top = max(levels)
        idx = [c for c, r in enumerate(cache.records) if r.emotion == emotion and r.level == top]
        means[emotion] = torch.from_numpy(mu[idx].mean(0))
        # Total variance of the mixture: within-clip plus between-clip spread.
        variances[emotion] = torch.from_numpy(var[idx].mean(0) + mu[idx].var(0))
    return EmotionPriors.from_tensors(means, variances)


def train_embedder(opts: EmbedderOptions, cache: FrameCache, hidden: np.ndarray, resume: bool = False) -> Path:
    """Train, then save ``OUT/emotion_embedder/`` and ``OUT/priors/``; returns OUT."""
    config = get_config(opts.config)
    out = Path(opts.out)
    torch.manual_seed(opts.seed)
    embedder = build_component("emotion_embedder", config)
    offsets = audio_row_offsets(cache)
    run = Run(out / "run", opts, resume=resume)
    accelerator = make_accelerator(run.folder, opts.mixed_precision)
    fit(
        run,
        accelerator,
        {"emotion_embedder": embedder},
        embedder_loss(cache, hidden, offsets, opts),
        steps=opts.steps,
        lr=opts.lr,
        seed=opts.seed,
        warmup=min(100, opts.steps // 10 + 1),
        save_every=max(100, opts.steps // 5),
        desc="train-embedder",
    )
    embedder = accelerator.unwrap_model(embedder)
    mu, var = clip_gaussians(embedder, cache, hidden, offsets)
    priors = prompt_priors(cache, mu, var)
    with atomic_dir(out / "emotion_embedder") as tmp:
        embedder.save_pretrained(tmp)
    with atomic_dir(out / "priors") as tmp:
        priors.save_pretrained(tmp)
    return out
