"""``dicetalk train-voice-emotion``: the clip-level emotion read-out of V-AID's expression stream.

The frozen V-AID's expression stream is computed once for every labelled clip of the train and
val splits. Each step draws ``batch`` random spans of train clips (``min_frames`` frames up to the
whole clip: a user's speech is of any length) and fits
:class:`~dicetalk.models.voice_emotion.VoiceEmotionReader` by cross-entropy with AdamW's weight
decay (``--weight-decay``, chosen on the val split by comparing runs). At the end the read-out is
scored on the val split's whole clips, their first 2 s, and level 3 only (``OUT/val.json``).

Every random draw of step ``t`` comes from ``(seed, t)`` (``--resume`` continues the same curve).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import EMOTIONS
from ..data.emotive import SplitFeatures
from ..models.vaid import AudioDecoupler
from ..models.voice_emotion import VoiceEmotionReader, pooled_statistics
from ..utils.atomic import atomic_dir, write_json
from .common import Run, fit, make_accelerator


@dataclass
class VoiceEmotionOptions:
    dataset: str
    vaid: str
    out: str
    weights: str | None = None
    steps: int = 1500
    batch: int = 64
    min_frames: int = 25
    lr: float = 1e-2
    warmup: int = 50
    weight_decay: float = 1e-2
    seed: int = 0
    mixed_precision: str = "no"
    save_every: int = 500
    log_every: int = 50
    cache_dir: str | None = None


@dataclass
class ClipStreams:
    """V-AID's expression stream of every labelled clip of one split."""

    streams: list[torch.Tensor]  # (F_c, d) each
    labels: np.ndarray  # (clips,)
    levels: np.ndarray  # (clips,) MEAD level (neutral: 1)


@torch.no_grad()
def clip_streams(vaid: AudioDecoupler, features: SplitFeatures) -> ClipStreams:
    streams, labels, levels = [], [], []
    for c, record in enumerate(features.cache.records):
        if not record.labelled:
            continue
        streams.append(vaid(features.clip_windows(c)[None].to(vaid.dtype)).expression[0].float())
        labels.append(record.emotion_id)
        levels.append(record.level or 1)
    return ClipStreams(streams, np.array(labels, np.int64), np.array(levels, np.int64))


def feature_statistics(data: ClipStreams) -> dict[str, list[float]]:
    pooled = torch.cat([pooled_statistics(s[None]) for s in data.streams])
    return {"feature_mean": pooled.mean(0).tolist(), "feature_scale": pooled.std(0).clamp_min(1e-4).tolist()}


def span_batch(data: ClipStreams, clips: list[int], min_frames: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random spans of ``clips`` (at least ``min_frames``, at most the clip), zero-padded: (streams, mask)."""
    spans = []
    for c in clips:
        stream = data.streams[c]
        n = len(stream)
        length = int(rng.integers(min(min_frames, n), n + 1))
        start = int(rng.integers(0, n - length + 1))
        spans.append(stream[start : start + length])
    longest = max(len(s) for s in spans)
    out = torch.zeros(len(spans), longest, spans[0].shape[1])
    mask = torch.zeros(len(spans), longest, dtype=torch.bool)
    for i, s in enumerate(spans):
        out[i, : len(s)] = s
        mask[i, : len(s)] = True
    return out, mask


@torch.no_grad()
def accuracy(reader: VoiceEmotionReader, data: ClipStreams, frames: int | None = None, level: int | None = None) -> float:
    """Share of ``data``'s clips (their first ``frames``; only MEAD ``level``) whose emotion the read-out names."""
    neutral = EMOTIONS.index("neutral")  # recorded at level 1 only: kept with every level
    keep = [i for i in range(len(data.streams)) if level is None or data.levels[i] == level or data.labels[i] == neutral]
    right = [int(reader(data.streams[i][:frames][None]).argmax()) == int(data.labels[i]) for i in keep]
    return float(np.mean(right)) if right else float("nan")


def voice_emotion_loss(opts: VoiceEmotionOptions, data: ClipStreams):
    def loss_fn(step, modules, _batch, generator):
        reader = modules["voice"]
        rng = np.random.default_rng((opts.seed, 9121, step))
        clips = rng.integers(0, len(data.streams), opts.batch).tolist()
        streams, mask = span_batch(data, clips, opts.min_frames, rng)
        logits = reader(streams, mask)
        target = torch.from_numpy(data.labels[clips])
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        return loss, {"accuracy": (logits.argmax(-1) == target).float().mean()}

    return loss_fn


def train_voice_emotion(opts: VoiceEmotionOptions, train: ClipStreams, val: ClipStreams, resume: bool = False, dry_run: bool = False) -> VoiceEmotionReader:
    """Train; the read-out is exported to ``OUT/voice`` and scored on ``val`` (``OUT/val.json``)."""
    torch.manual_seed(opts.seed)
    reader = VoiceEmotionReader(stream_dim=int(train.streams[0].shape[1]), emotions=EMOTIONS, **feature_statistics(train))
    run = Run(Path(opts.out) / "run", opts, resume=resume)
    if dry_run:
        return reader
    accelerator = make_accelerator(run.folder, opts.mixed_precision)
    modules = {"voice": reader}
    fit(
        run, accelerator, modules, voice_emotion_loss(opts, train), steps=opts.steps, lr=opts.lr, seed=opts.seed, warmup=opts.warmup,
        save_every=opts.save_every, log_every=opts.log_every, desc="train-voice-emotion", cosine=True, weight_decay=opts.weight_decay,
    )  # fmt: skip
    reader = accelerator.unwrap_model(modules["voice"]).eval()
    if accelerator.is_main_process:
        scores = {
            "val_whole_clips": accuracy(reader, val), "val_first_2s": accuracy(reader, val, frames=50),
            "val_level3_first_2s": accuracy(reader, val, frames=50, level=3), "train_whole_clips": accuracy(reader, train),
            "chance": float(np.bincount(val.labels).max() / len(val.labels)), "val_clips": len(val.streams),
        }  # fmt: skip
        write_json(Path(opts.out) / "val.json", scores)
        with atomic_dir(Path(opts.out) / "voice") as tmp:
            reader.save_pretrained(tmp)
    return reader
