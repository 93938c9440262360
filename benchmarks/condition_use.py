"""Does a trained denoiser use its conditions? Its loss when each one is swapped or dropped.

On windows of emotion data (training identities by default; ``--split test`` for held-out ones) (reference frame from a neutral clip of the
same person, as at generation), the denoising loss at fixed noise levels with every condition
as trained, then with one condition changed:

* emotion swapped: the prior of a window with another emotion; audio swapped: another clip's speech;
* emotion, audio or image dropped: that condition's null input, exactly as condition dropout
  gives it in training (and as the unconditional guidance branches give it in sampling).

A denoiser that reads a condition loses accuracy without it (a positive delta); one whose
delta is ~0 ignores that condition, whatever its guidance scale. Prints one table::

    python benchmarks/condition_use.py DATASET --backbone B --embedder E WEIGHTS [WEIGHTS ...] \
        [--windows 24] [--sigmas 1.5 4 10] [--readout] [--split train|val|test]

``--readout`` adds a second table: does the denoiser *draw* the emotion? On level-3 windows of
happy, surprised and angry (neutral reference frames), its one-shot x0 prediction at each noise
level, decoded by the VAE, read by the emotion judge — with the clip's prior (as trained), the
emotion's label prior through the bank attention (as ``generate`` does) and the neutral prior.
Ground truth reads ~1.0; a model that copies the neutral reference reads neutral whatever the prior.

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


def emotion_windows(data, records, count: int, keep) -> list[dict]:
    """The first ``count`` windows of ``data`` whose clip passes ``keep`` (labelled data only)."""
    items = []
    for k in range(200 * count):
        item = data[k]
        if item["labelled"] and keep(records[item["clip"]]):
            items.append(item)
            if len(items) == count:
                break
    return items


def loss_table(args, parts_of, batches, cache, scale) -> None:
    from dicetalk.training.diffusion import DiffusionOptions, diffusion_loss

    print("| weights | sigma | loss | " + " | ".join(CHANGES) + " |")
    print("|---|---|---|" + "---|" * len(CHANGES))
    for weights in args.weights:
        parts = parts_of(weights)
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


READOUT_EMOTIONS = ("happy", "surprised", "angry")


def readout_table(args, parts_of, batches, cache, vae, priors) -> None:
    """The emotion judge's reading of the decoded one-shot x0 prediction, per noise level and prior."""
    from dicetalk import EMOTIONS
    from dicetalk.evaluation.judges import load_judges
    from dicetalk.training.diffusion import denoise

    judge = load_judges().emotion
    scale = vae.config.scaling_factor

    def read(latents: torch.Tensor, targets: list[int]) -> np.ndarray:
        """(B, F, C, h, w) scaled latents -> per window (judge's top == target, P(target), P(neutral))."""
        rows = []
        for lat, target in zip(latents, targets):
            pixels = vae.decode(lat / scale, num_frames=lat.shape[0]).sample
            frames = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
            p = torch.softmax(judge(frames)[0], -1).mean(0)
            rows.append((float(p.argmax() == target), float(p[target]), float(p[EMOTIONS.index("neutral")])))
        return np.array(rows)

    def row(weights, sigma, prior, values: list[np.ndarray]) -> None:
        acc, p_target, p_neutral = np.concatenate(values).mean(0)
        print(f"| {weights} | {sigma} | {prior} | {acc:.2f} | {p_target:.2f} | {p_neutral:.2f} |", flush=True)

    print("\n| weights | sigma | prior | judge reads the emotion | P(emotion) | P(neutral) |")
    print("|---|---|---|---|---|---|")
    with torch.no_grad():
        targets = [[EMOTIONS.index(cache.records[int(c)].emotion) for c in b["clip"]] for b in batches]
        row("ground truth", "-", "-", [read(b["latents"], t) for b, t in zip(batches, targets)])
        for weights in args.weights:
            parts = parts_of(weights)
            for sigma in args.sigmas:
                for prior_name, use_bank in (("clip's (training path)", False), ("label (sampling path)", True), ("neutral (sampling path)", True)):
                    values = []
                    for i, (batch, target) in enumerate(zip(batches, targets)):
                        x0 = batch["latents"]
                        b = x0.shape[0]
                        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(args.seed * 1000 + i))
                        if prior_name.startswith("clip"):
                            prior = batch["prior_mu"]
                        else:
                            name = "neutral" if prior_name.startswith("neutral") else None
                            prior = torch.stack([priors.prior(name or EMOTIONS[t]) for t in target])
                        keep = torch.zeros(b, dtype=torch.bool)
                        sig = torch.full((b,), sigma)
                        x = x0 + sigma * noise
                        denoised, _, _ = denoise(parts, batch, x, sig, prior, (keep, keep, keep), cache.fps, scale, use_bank=use_bank)
                        values.append(read(denoised, target))
                    row(weights, f"{sigma:g}", prior_name, values)


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
    parser.add_argument("--readout", action="store_true", help="also the judge's reading of the one-shot x0 prediction")
    parser.add_argument("--split", choices=("train", "val", "test"), default="train", help="whose windows: training or held-out identities")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from dicetalk.configs import get_config
    from dicetalk.data.cache import build_frame_cache
    from dicetalk.data.datasets import WindowDataset
    from dicetalk.data.index import scan
    from dicetalk.training.assemble import load_backbone, load_embedder, prepare_features
    from dicetalk.training.diffusion import DiffusionOptions, _collate, build_trainable

    cfg = get_config(args.config)
    cache = build_frame_cache(scan(args.dataset, splits=(args.split,)), cfg.image_size, progress=False)
    backbone = load_backbone(args.backbone)
    embedder, priors = load_embedder(args.embedder)
    features = prepare_features(cache, backbone, embedder, progress=False)
    data = WindowDataset(cache, cfg.num_frames, seed=args.seed, mix=1.0, features=features, with_pixels=False, neutral_reference=True)

    def batched(items: list[dict]) -> list[dict]:
        return [_collate(items[i : i + args.batch]) for i in range(0, len(items), args.batch)]

    def parts_of(weights: Path) -> dict:
        parts = build_trainable(DiffusionOptions(dataset="", out="", backbone="", embedder="", config=args.config, init=str(weights)))
        return {name: m.eval() for name, m in parts.items()}

    items = emotion_windows(data, cache.records, args.windows, lambda r: r.emotion != "neutral")
    print(f"{len(items)} {args.split} emotion windows, neutral reference frames; loss with every condition, then its change (+: the condition is used)\n")
    loss_table(args, parts_of, batched(items), cache, backbone["vae"].config.scaling_factor)
    if args.readout:
        strong = emotion_windows(data, cache.records, args.windows, lambda r: r.emotion in READOUT_EMOTIONS and r.level == 3)
        print(f"\n{len(strong)} {args.split} level-3 {'/'.join(READOUT_EMOTIONS)} windows: the emotion judge on the decoded one-shot x0 prediction")
        readout_table(args, parts_of, batched(strong), cache, backbone["vae"], priors)


if __name__ == "__main__":
    main()
