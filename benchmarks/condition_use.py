"""Does a trained denoiser use its conditions? Its loss when each one is swapped or dropped.

On held-out-free training windows of emotion data (reference frame from a neutral clip of the
same person, as at generation), the denoising loss at fixed noise levels with every condition
as trained, then with one condition changed:

* emotion swapped: the prior of a window with another emotion; audio swapped: another clip's speech;
* emotion, audio or image dropped: that condition's null input, exactly as condition dropout
  gives it in training (and as the unconditional guidance branches give it in sampling).

A denoiser that reads a condition loses accuracy without it (a positive delta); one whose
delta is ~0 ignores that condition, whatever its guidance scale. Prints one table::

    python benchmarks/condition_use.py DATASET --backbone B --embedder E WEIGHTS [WEIGHTS ...] \
        [--windows 24] [--sigmas 1.5 4 10]

``WEIGHTS``: an exported model or a training checkpoint folder (``RUN/run/checkpoints/step_N``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

CHANGES = ("emotion swapped", "emotion dropped", "audio swapped", "audio dropped", "image dropped")


def _other(ids: torch.Tensor) -> torch.Tensor:
    """For each item, the index of the next item (cyclically) with a different id (itself if none)."""
    n = len(ids)
    out = []
    for i in range(n):
        j = next((k % n for k in range(i + 1, i + n) if ids[k % n] != ids[i]), i)
        out.append(j)
    return torch.tensor(out)


def swapped(batch: dict, change: str) -> dict:
    b = dict(batch)
    if change == "emotion swapped":
        o = _other(batch["emotion_id"])
        b["prior_mu"], b["prior_var"] = batch["prior_mu"][o], batch["prior_var"][o]
    elif change == "audio swapped":
        b["audio_windows"] = batch["audio_windows"][_other(batch["clip"])]
    return b


def dropped(change: str) -> dict:
    """Condition-dropout rates that drop the condition exactly as training did (its null input)."""
    return {f"drop_{change.split()[0]}": 1.0} if change.endswith("dropped") else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--backbone", type=Path, required=True)
    parser.add_argument("--embedder", type=Path, required=True)
    parser.add_argument("--config", default="synthetic")
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1.5, 4.0, 10.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from dicetalk.configs import get_config
    from dicetalk.data.cache import build_frame_cache
    from dicetalk.data.datasets import WindowDataset
    from dicetalk.data.index import scan
    from dicetalk.training.assemble import load_backbone, load_embedder, prepare_features
    from dicetalk.training.diffusion import DiffusionOptions, _collate, build_trainable, diffusion_loss

    cfg = get_config(args.config)
    cache = build_frame_cache(scan(args.dataset, splits=("train",)), cfg.image_size, progress=False)
    backbone = load_backbone(args.backbone)
    embedder, _ = load_embedder(args.embedder)
    features = prepare_features(cache, backbone, embedder, progress=False)
    scale = backbone["vae"].config.scaling_factor
    data = WindowDataset(cache, cfg.num_frames, seed=args.seed, mix=1.0, features=features, with_pixels=False, neutral_reference=True)
    neutral = "neutral"
    items = []
    for k in range(100 * args.windows):
        item = data[k]
        if item["labelled"] and cache.records[item["clip"]].emotion != neutral:
            items.append(item)
        if len(items) == args.windows:
            break
    batches = [_collate(items[i : i + args.batch]) for i in range(0, len(items), args.batch)]

    print(f"{len(items)} emotion windows, neutral reference frames; loss with every condition, then its change (+: the condition is used)\n")
    print("| weights | sigma | loss | " + " | ".join(CHANGES) + " |")
    print("|---|---|---|" + "---|" * len(CHANGES))
    for weights in args.weights:
        parts = build_trainable(DiffusionOptions(dataset="", out="", backbone="", embedder="", config=args.config, init=str(weights)))
        for m in parts.values():
            m.eval()
        for sigma in args.sigmas:
            losses = {}
            for change in ("none", *CHANGES):
                opts = DiffusionOptions(
                    dataset="", out="", backbone="", embedder="", config=args.config, p_mean=math.log(sigma), p_std=0.0,
                    deterministic_prior=True, **{"drop_audio": 0.0, "drop_image": 0.0, "drop_emotion": 0.0, "drop_all": 0.0, **dropped(change)},
                )
                loss_fn = diffusion_loss(opts, cache.fps, scale)
                values = []
                for i, batch in enumerate(batches):
                    with torch.no_grad():  # the same noise for every change: differences are the condition's
                        _, logs = loss_fn(0, parts, swapped(batch, change), torch.Generator().manual_seed(args.seed * 1000 + i))
                    values.append(float(logs["denoise"]))
                losses[change] = float(np.mean(values))
            base = losses["none"]
            cells = " | ".join(f"{losses[c] - base:+.4f}" for c in CHANGES)
            print(f"| {weights} | {sigma:g} | {base:.4f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
