"""``dicetalk train-sync-expert``: the latent lip-sync expert the denoiser's sync loss asks.

Trained on the ground-truth latents and audio windows of the training clips — the same cached
features and windows the denoiser trains on — with the contrastive loss of
:meth:`~dicetalk.models.sync_expert.LatentSyncExpert.loss`, then frozen and passed to
``dicetalk train --sync-expert``. Windows it did not train on (another seed's draws from the same
clips) report how often a chunk picks its own offset among its window's others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..configs import get_config
from ..data.cache import FrameCache
from ..data.datasets import DiffusionFeatures, WindowDataset
from ..models.sync_expert import LatentSyncExpert
from ..utils.atomic import atomic_dir
from .common import Run, fit, make_accelerator


@dataclass
class SyncExpertOptions:
    dataset: str
    out: str
    backbone: str  # folder with the frozen vae/ and audio_encoder/ whose features the denoiser trains on
    embedder: str  # folder with emotion_embedder/ (the cached features are shared with ``train``)
    config: str = "synthetic"
    steps: int = 3000
    batch: int = 16  # windows per step
    frames: int = 16  # frames per window
    lr: float = 1e-3  # peak; cosine decay to 0
    mix: float = 0.5
    seed: int = 0
    mixed_precision: str = "no"
    cache_dir: str | None = None


def build_sync_expert(config_name: str) -> LatentSyncExpert:
    return LatentSyncExpert(**get_config(config_name).sync_expert)


def _collate(items: list[dict]) -> dict:
    keys = ("latents", "face_boxes", "audio_windows")
    return {k: torch.stack([it[k] for it in items]) for k in keys}


def windows(cache: FrameCache, features: DiffusionFeatures, opts: SyncExpertOptions, seed: int) -> WindowDataset:
    return WindowDataset(cache, opts.frames, seed=seed, mix=opts.mix, features=features, with_pixels=False)


@torch.no_grad()
def offset_accuracy(expert: LatentSyncExpert, dataset: WindowDataset, count: int = 64, batch: int = 16) -> float:
    """Share of chunks whose own audio scores highest among the chunks of the same window."""
    expert.eval()
    dev = next(expert.parameters()).device
    hits, total = 0, 0
    for first in range(0, count, batch):
        b = _collate([dataset[k] for k in range(first, min(count, first + batch))])
        v = expert.embed_mouths(b["latents"].to(dev), b["face_boxes"].to(dev))
        a = expert.embed_audio(b["audio_windows"].to(dev))
        picks = (v @ a.transpose(1, 2)).argmax(-1)
        hits += int((picks == torch.arange(v.shape[1], device=dev)).sum())
        total += picks.numel()
    return hits / total


def train_sync_expert(opts: SyncExpertOptions, cache: FrameCache, features: DiffusionFeatures, resume: bool = False) -> tuple[Path, float]:
    """Train, save ``OUT/sync_expert/``; returns (that folder, held-out offset accuracy)."""
    out = Path(opts.out)
    torch.manual_seed(opts.seed)
    expert = build_sync_expert(opts.config)
    dataset = windows(cache, features, opts, opts.seed)
    run = Run(out / "run", opts, resume=resume)
    accelerator = make_accelerator(run.folder, opts.mixed_precision)

    def loss_fn(step, modules, _batch, generator):
        ex = modules["sync_expert"]
        dev = next(ex.parameters()).device
        b = _collate([dataset[step * opts.batch + i] for i in range(opts.batch)])
        loss, hit = ex.loss(b["latents"].to(dev), b["face_boxes"].to(dev), b["audio_windows"].to(dev))
        return loss, {"accuracy": hit.detach()}

    fit(
        run,
        accelerator,
        {"sync_expert": expert},
        loss_fn,
        steps=opts.steps,
        lr=opts.lr,
        seed=opts.seed,
        warmup=min(100, opts.steps // 10 + 1),
        weight_decay=1e-4,
        grad_clip=0.0,
        cosine=True,
        save_every=max(100, opts.steps // 5),
        desc="train-sync-expert",
    )
    expert = accelerator.unwrap_model(expert)
    accuracy = offset_accuracy(expert, windows(cache, features, opts, opts.seed + 1))
    with atomic_dir(out / "sync_expert") as tmp:
        expert.save_pretrained(tmp)
    return out / "sync_expert", accuracy
