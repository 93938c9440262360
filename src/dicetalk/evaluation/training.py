"""``dicetalk train-judges``: train the judges on ground-truth clips of the training identities.

Only identities of the ``train`` split (``splits.json``) are used for training, MEAD-like and
HDTF-like alike (emotion labels come from MEAD-like clips only; the mouth judge's true shapes
come from every clip's expression coefficients and the person's traits in ``world.json``).
The ``val`` identities, when present, are scored at the end
(:func:`~dicetalk.evaluation.scoring.judge_checks`) and the figures are stored in
``judges.json``; ``test`` identities are never read.

Determinism: every random draw (initialisation, order, augmentation) comes from
``torch.Generator``s seeded from ``seed`` (one stream per judge), and data are read in path
order, so the same data, seed, options and thread count give byte-identical weights (the
``train-judges`` command trains on one CPU thread).

Output (written atomically as a whole folder)::

    OUT/judges.json             command, options, data, validation figures, sizes
    OUT/emotion/   config.json + diffusion_pytorch_model.safetensors (float16)
    OUT/identity/  ...
    OUT/sync/      ...
    OUT/mouth/     ...

``judges`` (``--only``) trains a subset; when ``OUT`` already holds judges, the others are kept
as they are and the manifest records the run that added the new ones under ``"added"``.

The shipped judges (``dicetalk/assets/judges``) were made by
``dicetalk train-judges DATA --out src/dicetalk/assets/judges --seed 0`` on the ``default``
world (``dicetalk synth DATA --preset default --seed 0``), the mouth judge added later by
``dicetalk train-judges DATA --out src/dicetalk/assets/judges --seed 0 --only mouth``;
``judges.json`` there records both.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import EMOTIONS, __version__
from ..errors import InputError
from ..utils.atomic import atomic_dir, write_json
from .data import ClipArrays, WorldClip, list_clips, load_annotations, load_video_arrays
from .features import frame_mels
from .judges import JUDGE_NAMES, MANIFEST_NAME, REQUIRED_JUDGES, EmotionJudge, IdentityJudge, Judges, MouthJudge, SyncJudge, round_to_half, save_judge


@dataclass
class TrainOptions:
    seed: int = 0
    emotion_epochs: int = 10
    identity_epochs: int = 6
    sync_epochs: int = 8
    mouth_epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    frame_stride: int = 3  # every n-th frame of a clip trains the frame judges
    sync_batch: int = 16  # clip segments per step
    sync_windows: int = 24  # 5-frame windows per segment
    aux_weight: float = 2.0  # expression/pose regression beside the emotion classes
    hue: float = 0.5  # chance of a channel shuffle in the emotion judge's colour augmentation
    blur: float = 0.3  # share of the emotion judge's frames that lose resolution
    validate: bool = True
    max_steps: int | None = None  # per judge; for quick tests
    judges: tuple[str, ...] = JUDGE_NAMES  # which judges to train


@dataclass
class PreparedData:
    """Decoded training clips: sampled faces for the frame judges, all mouths + mels for sync."""

    faces: torch.Tensor  # (N, 64, 64, 3) uint8
    emotion: torch.Tensor  # (N,) int64, -1 where the clip has no emotion label
    identity: torch.Tensor  # (N,) int64 index into identities
    aux: torch.Tensor  # (N, 15) expression + pose targets
    identities: tuple[str, ...]
    lips: torch.Tensor | None = None  # (N, 32, 48, 3) uint8 colour lower-face crops of the same frames
    mouth: torch.Tensor | None = None  # (N, 2) float32 true mouth shape (percent of the frame side)
    mouths: list[torch.Tensor] = field(default_factory=list)  # per clip (T, 32, 48) uint8
    mels: list[torch.Tensor] = field(default_factory=list)  # per clip (T + 2K, 4, 40) float16
    clips: int = 0
    frames: int = 0


def _decode(clips: list[WorldClip], progress: bool, desc: str) -> list[tuple[WorldClip, ClipArrays, dict]]:
    from tqdm import tqdm

    out = []
    for clip in tqdm(clips, desc=desc, unit="clip", disable=not progress, dynamic_ncols=True):
        out.append((clip, load_video_arrays(clip.video), load_annotations(clip)))
    return out


def prepare_training_data(decoded: list, frame_stride: int, max_offset: int, traits: dict | None = None) -> PreparedData:
    """Sample every ``frame_stride``-th frame for the frame judges; with ``traits`` (identity ->
    (head_scale, mouth_width), :func:`~dicetalk.evaluation.mouth.mouth_traits`) also the mouth
    judge's colour crops and true shapes."""
    from .mouth import mouth_shape

    identities = tuple(sorted({clip.identity for clip, _, _ in decoded}))
    faces, emo, ident, aux, mouths, mels, lips, shapes = [], [], [], [], [], [], [], []
    frames = 0
    for i, (clip, arr, ann) in enumerate(decoded):
        n = min(arr.num_frames, len(ann["expression"]))
        frames += n
        pick = np.arange(i % frame_stride, n, frame_stride)
        faces.append(arr.faces[pick])
        if traits is not None:
            if clip.identity not in traits:
                raise InputError(f"{clip.relative}: identity {clip.identity} is not in the world's world.json")
            lips.append(arr.lips[pick])
            shapes.append(mouth_shape(ann["expression"][pick], *traits[clip.identity]))
        label = -1 if clip.emotion is None else EMOTIONS.index(clip.emotion)
        emo.append(np.full(len(pick), label, np.int64))
        ident.append(np.full(len(pick), identities.index(clip.identity), np.int64))
        aux.append(np.concatenate([ann["expression"][pick], ann["pose"][pick] * 10.0], axis=1))
        if arr.audio is not None and n >= 5:
            mouths.append(torch.from_numpy(arr.mouths[:n]))
            mels.append(torch.from_numpy(frame_mels(arr.audio, n, pad_frames=max_offset).astype(np.float16)))
    return PreparedData(
        faces=torch.from_numpy(np.concatenate(faces)),
        emotion=torch.from_numpy(np.concatenate(emo)),
        identity=torch.from_numpy(np.concatenate(ident)),
        aux=torch.from_numpy(np.concatenate(aux).astype(np.float32)),
        identities=identities,
        lips=torch.from_numpy(np.concatenate(lips)) if lips else None,
        mouth=torch.from_numpy(np.concatenate(shapes)) if shapes else None,
        mouths=mouths,
        mels=mels,
        clips=len(decoded),
        frames=frames,
    )


# ----------------------------------------------------------------------------- augmentation


def _rand(g: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def augment_images(
    x: torch.Tensor,
    g: torch.Generator,
    colour: float = 0.1,
    hue: float = 0.0,
    blur: float = 0.5,
    shift: float = 0.06,
    scale: float = 0.08,
    degrees: float = 5.0,
) -> torch.Tensor:
    """Random similarity transform, resolution loss, contrast/brightness and noise on (N, C, H, W) in [0, 1].

    Generated videos are blurrier, slightly misplaced and re-encoded: the judges should not care.
    """
    n, _, h, w = x.shape
    s = _rand(g, n, 1 - scale, 1 + scale)
    a = _rand(g, n, -degrees, degrees) * math.pi / 180
    tx, ty = _rand(g, n, -shift, shift), _rand(g, n, -shift, shift)
    theta = torch.stack([torch.stack([s * torch.cos(a), -s * torch.sin(a), tx], 1), torch.stack([s * torch.sin(a), s * torch.cos(a), ty], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), padding_mode="border", align_corners=False)
    # Resolution loss on a share ``blur`` of the batch: down to 50..90 % of the size and back.
    lossy = torch.rand(n, generator=g) < blur
    if lossy.any():
        factor = float(_rand(g, 1, 0.5, 0.9))
        small = F.interpolate(x[lossy], size=(max(8, int(h * factor)), max(8, int(w * factor))), mode="area")
        x = x.clone()
        x[lossy] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    if hue:  # colours say who it is, not what the face does: shuffle channels, grey some, tint the rest
        perm = torch.stack([torch.randperm(3, generator=g) for _ in range(n)])
        swap = torch.rand(n, generator=g) < hue
        x = torch.where(swap.view(n, 1, 1, 1), torch.gather(x, 1, perm.view(n, 3, 1, 1).expand(-1, -1, h, w)), x)
        grey = torch.rand(n, generator=g) < hue / 2
        x = torch.where(grey.view(n, 1, 1, 1), x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1), x)
        x = x * _rand(g, 3 * n, 0.8, 1.2).view(n, 3, 1, 1)
    if colour:
        c = _rand(g, n, 1 - colour, 1 + colour).view(n, 1, 1, 1)
        b = _rand(g, n, -colour / 2, colour / 2).view(n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean + b
    sigma = _rand(g, n, 0.0, 0.03).view(n, 1, 1, 1)
    x = x + sigma * torch.randn(x.shape, generator=g)
    return x.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- training loops


def _optimizer(model: torch.nn.Module, opts: TrainOptions, total_steps: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    warmup = max(1, min(200, total_steps // 10))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)


def _steps(count: int, batch: int, epochs: int, max_steps: int | None) -> int:
    steps = max(1, count // batch) * epochs
    return min(steps, max_steps) if max_steps else steps


def _batches(count: int, batch: int, epochs: int, total: int, g: torch.Generator):
    """Index batches over ``epochs`` shuffled passes, ``total`` batches in all (drop last)."""
    done = 0
    for _ in range(epochs):
        perm = torch.randperm(count, generator=g)
        for i in range(0, max(1, count - batch + 1), batch):
            if done == total:
                return
            yield perm[i : i + batch]
            done += 1


def _images(faces: torch.Tensor) -> torch.Tensor:
    return faces.permute(0, 3, 1, 2).float().div_(255.0)


def train_emotion(data: PreparedData, opts: TrainOptions, progress: bool) -> EmotionJudge:
    from tqdm import tqdm

    g = torch.Generator().manual_seed(opts.seed * 1000 + 1)
    torch.manual_seed(opts.seed * 1000 + 1)
    judge = EmotionJudge()
    # Every frame teaches the expression regression; MEAD-like frames also teach the classes.
    index = torch.arange(data.faces.shape[0])
    labelled = data.emotion[data.emotion >= 0]
    if labelled.numel() < opts.batch_size:
        raise InputError(f"too few labelled emotion frames to train on ({labelled.numel()})")
    counts = torch.bincount(labelled, minlength=len(EMOTIONS)).float()
    weight = torch.where(counts > 0, counts.sum() / (counts.clamp_min(1) * (counts > 0).sum()), torch.zeros_like(counts))
    total = _steps(index.numel(), opts.batch_size, opts.emotion_epochs, opts.max_steps)
    optimizer, scheduler = _optimizer(judge, opts, total)
    judge.train()
    bar = tqdm(total=total, desc="emotion judge", unit="step", disable=not progress, dynamic_ncols=True)
    for step, batch in enumerate(_batches(index.numel(), opts.batch_size, opts.emotion_epochs, total, g)):
        sel = index[batch]
        x = augment_images(_images(data.faces[sel]), g, hue=opts.hue, blur=opts.blur)
        logits, _, aux = judge(x)
        labels = data.emotion[sel]
        labelled = labels >= 0
        ce = F.cross_entropy(logits[labelled], labels[labelled], weight=weight) if labelled.any() else logits.sum() * 0
        reg = F.mse_loss(aux, data.aux[sel])
        loss = ce + opts.aux_weight * reg
        _update(loss, optimizer, scheduler, bar, step, shown={"ce": ce, "aux": reg})
    bar.close()
    return judge.eval()


def train_identity(data: PreparedData, opts: TrainOptions, progress: bool) -> IdentityJudge:
    from tqdm import tqdm

    g = torch.Generator().manual_seed(opts.seed * 1000 + 2)
    torch.manual_seed(opts.seed * 1000 + 2)
    if len(data.identities) < 2:
        raise InputError("the identity judge needs at least two training identities")
    judge = IdentityJudge(identities=data.identities)
    count = data.faces.shape[0]
    total = _steps(count, opts.batch_size, opts.identity_epochs, opts.max_steps)
    optimizer, scheduler = _optimizer(judge, opts, total)
    judge.train()
    bar = tqdm(total=total, desc="identity judge", unit="step", disable=not progress, dynamic_ncols=True)
    for step, batch in enumerate(_batches(count, opts.batch_size, opts.identity_epochs, total, g)):
        x = augment_images(_images(data.faces[batch]), g, colour=0.05)
        emb, _ = judge(x)
        labels = data.identity[batch]
        loss = F.cross_entropy(judge.margin_logits(emb, labels), labels)
        _update(loss, optimizer, scheduler, bar, step)
    bar.close()
    return judge.eval()


def _augment_mouths(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, T, h, w) float mouth sequences: one small shift/scale and blur per sequence."""
    b, t, h, w = x.shape
    s = _rand(g, b, 0.93, 1.07)
    tx, ty = _rand(g, b, -0.08, 0.08), _rand(g, b, -0.08, 0.08)
    zero = torch.zeros(b)
    theta = torch.stack([torch.stack([s, zero, tx], 1), torch.stack([zero, s, ty], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, [b, t, h, w], align_corners=False), padding_mode="border", align_corners=False)
    blur = torch.rand(b, generator=g) < 0.4
    if blur.any():
        factor = float(_rand(g, 1, 0.45, 0.9))
        small = F.interpolate(x[blur], size=(max(4, int(h * factor)), max(4, int(w * factor))), mode="area")
        x = x.clone()
        x[blur] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return x + _rand(g, b, 0.0, 0.02).view(b, 1, 1, 1) * torch.randn(x.shape, generator=g)


def sync_loss(judge: SyncJudge, mouths: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
    """Contrastive loss of a batch of segments: ``mouths`` (B, L + 4, h, w) float, ``mels`` (B, L + 4 + 2K, 4, 40).

    Each video window must match its own audio window (offset 0) against the same clip's
    audio at every other offset in ``-K .. K`` and the aligned audio of the other segments.
    """
    k = judge.config.max_offset
    b, frames = mouths.shape[:2]
    feats = judge.frame_features(mouths.reshape(b * frames, 1, *mouths.shape[2:])).reshape(b, frames, -1)
    video = judge.embed_video(feats)  # (B, L, D)
    audio = judge.embed_audio(mels.float())  # (B, L + 2K, D)
    n = video.shape[1]
    same = torch.einsum("bld,bldo->blo", video, audio.unfold(1, 2 * k + 1, 1)[:, :n])  # (B, L, 2K + 1)
    aligned = audio[:, k : k + n]  # (B, L, D)
    cross = torch.einsum("bld,cld->blc", video, aligned)
    logits = torch.cat([same, cross], dim=2) * judge.logit_scale.exp().clamp(max=100.0)
    # A segment's own aligned audio is the positive, not a negative (masked after scaling: no 0 * inf).
    own = torch.zeros(b, 1, logits.shape[2], dtype=torch.bool)
    own[:, 0, 2 * k + 1 :] = torch.eye(b, dtype=torch.bool)
    logits = logits.masked_fill(own, -1e4)
    target = torch.full((b * n,), k, dtype=torch.long)
    return F.cross_entropy(logits.reshape(b * n, -1), target)


def train_sync(data: PreparedData, opts: TrainOptions, progress: bool) -> SyncJudge:
    from tqdm import tqdm

    g = torch.Generator().manual_seed(opts.seed * 1000 + 3)
    torch.manual_seed(opts.seed * 1000 + 3)
    judge = SyncJudge()
    k = judge.config.max_offset
    if len(data.mouths) < 2:
        raise InputError("the lip-sync judge needs at least two training clips with audio")
    lengths = [len(m) for m in data.mouths]
    windows = max(1, min(opts.sync_windows, min(lengths) - 4))
    # An epoch visits every clip about once per `windows` windows it holds.
    plan = [i for i, n in enumerate(lengths) for _ in range(max(1, round((n - 4) / windows)))]
    batch = min(opts.sync_batch, len(data.mouths))
    total = _steps(len(plan), batch, opts.sync_epochs, opts.max_steps)
    optimizer, scheduler = _optimizer(judge, opts, total)
    judge.train()
    bar = tqdm(total=total, desc="lip-sync judge", unit="step", disable=not progress, dynamic_ncols=True)
    for step, sel in enumerate(_batches(len(plan), batch, opts.sync_epochs, total, g)):
        clips = [plan[int(i)] for i in sel]
        mouths, mels = [], []
        for c in clips:
            start = int(torch.randint(0, lengths[c] - 4 - windows + 1, (1,), generator=g))
            mouths.append(data.mouths[c][start : start + windows + 4])
            mels.append(data.mels[c][start : start + windows + 4 + 2 * k])
        x = _augment_mouths(torch.stack(mouths).float().div_(255.0), g)
        loss = sync_loss(judge, x, torch.stack(mels))
        _update(loss, optimizer, scheduler, bar, step)
    bar.close()
    return judge.eval()


def _augment_lips(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, h, w) colour crops in [0, 1]: a small shift, scale and tilt, resolution loss, contrast and
    noise, as generated videos differ. Returns the crops and each one's magnification (the true
    shape in the crop scales with it)."""
    b, _, h, w = x.shape
    s = _rand(g, b, 0.95, 1.05)  # the grid's scale: the content shrinks by 1 / s
    a = _rand(g, b, -3.0, 3.0) * math.pi / 180
    tx, ty = _rand(g, b, -0.06, 0.06), _rand(g, b, -0.06, 0.06)
    theta = torch.stack([torch.stack([s * torch.cos(a), -s * torch.sin(a), tx], 1), torch.stack([s * torch.sin(a), s * torch.cos(a), ty], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), padding_mode="border", align_corners=False)
    lossy = torch.rand(b, generator=g) < 0.5
    if lossy.any():
        factor = float(_rand(g, 1, 0.45, 0.9))
        small = F.interpolate(x[lossy], size=(max(4, int(h * factor)), max(4, int(w * factor))), mode="area")
        x = x.clone()
        x[lossy] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    c = _rand(g, b, 0.9, 1.1).view(b, 1, 1, 1)
    bright = _rand(g, b, -0.05, 0.05).view(b, 1, 1, 1)
    tint = _rand(g, 3 * b, 0.95, 1.05).view(b, 3, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * c + mean + bright) * tint
    x = x + _rand(g, b, 0.0, 0.03).view(b, 1, 1, 1) * torch.randn(x.shape, generator=g)
    return x.clamp(0.0, 1.0), 1.0 / s


def _half_exact(values: torch.Tensor) -> tuple[float, ...]:
    """Plain floats that float16 stores exactly (the saved judge is the measured one)."""
    return tuple(float(v) for v in values.half().float())


def train_mouth(data: PreparedData, opts: TrainOptions, progress: bool) -> MouthJudge:
    from tqdm import tqdm

    g = torch.Generator().manual_seed(opts.seed * 1000 + 4)
    torch.manual_seed(opts.seed * 1000 + 4)
    if data.lips is None or data.mouth is None or len(data.mouth) < opts.batch_size:
        raise InputError(f"too few frames with a true mouth shape to train the mouth judge on ({0 if data.mouth is None else len(data.mouth)})")
    mean, scale = _half_exact(data.mouth.mean(dim=0)), _half_exact(data.mouth.std(dim=0).clamp_min(1e-3))
    judge = MouthJudge(target_mean=mean, target_scale=scale)
    mean_t, scale_t = torch.tensor(mean), torch.tensor(scale)
    count = data.lips.shape[0]
    total = _steps(count, opts.batch_size, opts.mouth_epochs, opts.max_steps)
    optimizer, scheduler = _optimizer(judge, opts, total)
    judge.train()
    bar = tqdm(total=total, desc="mouth judge", unit="step", disable=not progress, dynamic_ncols=True)
    for step, batch in enumerate(_batches(count, opts.batch_size, opts.mouth_epochs, total, g)):
        x, magnify = _augment_lips(_images(data.lips[batch]), g)
        target = (data.mouth[batch] * magnify[:, None] - mean_t) / scale_t
        loss = F.smooth_l1_loss(judge.standardised(x), target, beta=0.5)
        _update(loss, optimizer, scheduler, bar, step)
    bar.close()
    return judge.eval()


# ----------------------------------------------------------------------------- entry point


def _world_summary(dataset_dir: Path) -> dict:
    try:
        world = json.loads((dataset_dir / "world.json").read_text())
        return {"preset": world.get("preset"), "seed": world.get("seed"), "options": world.get("options")}
    except (OSError, ValueError):
        return {}


def _file_sizes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_options(opts: TrainOptions, dataset_dir: Path, out: Path) -> None:
    for name in ("emotion_epochs", "identity_epochs", "sync_epochs", "mouth_epochs", "batch_size", "frame_stride", "sync_batch", "sync_windows"):
        if getattr(opts, name) < 1:
            raise InputError(f"{name.replace('_', '-')} must be at least 1, got {getattr(opts, name)}")
    if opts.seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {opts.seed}")
    unknown = [n for n in opts.judges if n not in JUDGE_NAMES]
    if unknown or not opts.judges:
        raise InputError(f"judges to train must come from {', '.join(JUDGE_NAMES)}, got {', '.join(unknown) or 'none'}")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; the output must be a folder")
    if out.resolve() == dataset_dir.resolve() or dataset_dir.resolve() in out.resolve().parents:
        raise InputError(f"{out}: write the judges outside the dataset folder")


def _kept_judges(out: Path, chosen: tuple[str, ...]) -> tuple[list[str], dict | None]:
    """Judges of an existing judges folder ``out`` that this run keeps (those it does not train), and its manifest."""
    kept = [n for n in JUDGE_NAMES if n not in chosen and (out / n).is_dir()] if (out / MANIFEST_NAME).is_file() else []
    missing = [n for n in REQUIRED_JUDGES if n not in chosen and n not in kept]
    if missing:
        raise InputError(f"{out}: no {', '.join(missing)} judge to keep beside the {', '.join(chosen)} judge (train them too, or point --out at a judges folder)")
    if not kept:
        return [], None
    try:
        return kept, json.loads((out / MANIFEST_NAME).read_text())
    except ValueError:
        raise InputError(f"{out / MANIFEST_NAME}: not valid JSON") from None


def _train_chosen(data: PreparedData, opts: TrainOptions, progress: bool, timings: dict) -> dict:
    trainers = {"emotion": train_emotion, "identity": train_identity, "sync": train_sync, "mouth": train_mouth}
    trained = {}
    for name in JUDGE_NAMES:
        if name in opts.judges:
            t0 = time.perf_counter()
            trained[name] = round_to_half(trainers[name](data, opts, progress))  # stored in float16: validate exactly what is saved
            timings[name] = round(time.perf_counter() - t0, 1)
    return trained


def _validate(dataset_dir: Path, out: Path, trained: dict, kept: list[str], progress: bool, timings: dict) -> dict | None:
    """The judge checks on the val identities, with the new judges and the kept ones."""
    from .judges import load_judge
    from .scoring import judge_checks

    val_clips = list_clips(dataset_dir, ("val",))
    if not val_clips:
        return None
    t0 = time.perf_counter()
    judges = {**{n: load_judge(n, out / n) for n in kept}, **trained}
    checks = judge_checks(Judges(judges["emotion"], judges["identity"], judges["sync"], out, {}, judges.get("mouth")), val_clips, None, progress=progress)
    timings["validation"] = round(time.perf_counter() - t0, 1)
    if kept:  # only what the new judges measure
        checks = {k: v for k, v in checks.items() if k == "clips" or k in trained}
    return checks


def _command(dataset_dir: Path, out: Path, opts: TrainOptions) -> str:
    only = "" if tuple(opts.judges) == JUDGE_NAMES else f" --only {','.join(opts.judges)}"
    return f"dicetalk train-judges {shlex.quote(str(dataset_dir))} --out {shlex.quote(str(out))} --seed {opts.seed}{only}"


def train_judges(
    dataset_dir: str | os.PathLike,
    out: str | os.PathLike,
    options: TrainOptions | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Train the judges named in ``options.judges`` on ``dataset_dir``'s training identities into ``out``.

    Returns the manifest written to ``out/judges.json``.
    """
    from .mouth import mouth_traits

    opts = options or TrainOptions()
    dataset_dir, out = Path(dataset_dir), Path(out)
    _check_options(opts, dataset_dir, out)
    train_clips = list_clips(dataset_dir, ("train",))
    if not train_clips:
        raise InputError(f"{dataset_dir}: no complete clips of training identities")
    kept, previous = _kept_judges(out, tuple(opts.judges))
    try:
        traits = mouth_traits(dataset_dir) if "mouth" in opts.judges else None
    except InputError as exc:
        raise InputError(f"{exc}; without it, train the other judges: --only emotion,identity,sync") from None
    started = time.perf_counter()
    decoded = _decode(train_clips, progress, "read train clips")
    data = prepare_training_data(decoded, opts.frame_stride, SyncJudge().config.max_offset, traits)
    del decoded
    timings = {"read": round(time.perf_counter() - started, 1)}
    trained = _train_chosen(data, opts, progress, timings)
    validation = _validate(dataset_dir, out, trained, kept, progress, timings) if opts.validate else None
    world = _world_summary(dataset_dir)
    make_world = f"dicetalk synth DATASET --preset {world['preset']} --seed {world['seed']}" if world.get("preset") and world.get("seed") is not None else None
    run = {
        "dicetalk_version": __version__,
        "command": command or _command(dataset_dir, out, opts),
        "options": asdict(opts),
        "data": {
            "world": world,
            "train_identities": list(data.identities),
            "train_clips": data.clips,
            "train_frames": data.frames,
            "frame_judge_samples": int(data.faces.shape[0]),
            "make_world": make_world,
        },
        "validation": validation,
        "seconds": {**timings, "total": round(time.perf_counter() - started, 1)},
        "torch_version": torch.__version__,
    }
    if previous is None:
        manifest = run
    else:  # a partial run: the earlier run's record stays as it was, this one is added
        manifest = {**previous, "added": [*previous.get("added", []), {"judges": list(trained), **run}]}
    with atomic_dir(out) as tmp:
        for name in kept:
            shutil.copytree(out / name, tmp / name)
        for name, judge in trained.items():
            save_judge(judge, tmp / name)
        manifest["files"] = _file_sizes(tmp)
        write_json(tmp / MANIFEST_NAME, manifest)
    return manifest


def _update(loss, optimizer, scheduler, bar, step: int, shown: dict | None = None) -> None:
    """One optimiser step of a judge, with its progress bar (``shown``, default the loss, every 20 steps:
    reading a value back is a host sync)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    bar.update()
    if step % 20 == 0:
        bar.set_postfix({name: f"{value.item():.4f}" for name, value in (shown or {"loss": loss}).items()})
