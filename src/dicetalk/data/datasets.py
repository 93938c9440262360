"""Seeded training samples from a :class:`~dicetalk.data.cache.FrameCache`.

Every sample is a pure function of ``(seed, index)``: the same seed gives the same data in any
number of workers, and a resumed run continues with exactly the samples it would have seen.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from ..models.audio_encoder import frame_windows
from .cache import FrameCache
from ..utils.pixels import to_pixels
from .features import clip_audio_features, clip_hidden


def face_mask(boxes: np.ndarray, size: int, expand: float = 1.25) -> np.ndarray:
    """(size, size) float mask covering the union of face boxes (normalised x0 y0 x1 y1), enlarged."""
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * expand / 2, (y1 - y0) * expand / 2
    mask = np.zeros((size, size), np.float32)
    a, b = max(0, int((cx - hw) * size)), min(size, int(np.ceil((cx + hw) * size)))
    c, d = max(0, int((cy - hh) * size)), min(size, int(np.ceil((cy + hh) * size)))
    mask[c:d, a:b] = 1.0
    return mask


@dataclass
class DiffusionFeatures:
    """Frozen-component features aligned with a frame cache (see :mod:`dicetalk.data.features`)."""

    latents: np.ndarray  # (N, C, h, w)
    image_embeds: np.ndarray  # (N, D)
    hidden: np.ndarray  # (rows, L+1, C)
    offsets: np.ndarray  # (clips + 1,)
    prior_mu: np.ndarray  # (clips, d)
    prior_var: np.ndarray  # (clips, d)


class WindowDataset(torch.utils.data.Dataset):
    """Random windows of ``num_frames`` frames, emotion and talking data mixed ``mix`` : 1 - ``mix``.

    Each item: the window (pixels, or cached latents and audio windows when ``features`` are
    given), a reference frame of the same video (of a neutral clip of the same person with
    ``neutral_reference``, for emotion data), the emotion reference clip (another clip of the
    same identity, emotion and level; the clip itself for unlabelled talking data), expression
    coefficients, the face mask, each frame's face box and the labels.
    """

    def __init__(
        self,
        cache: FrameCache,
        num_frames: int,
        seed: int = 0,
        mix: float = 0.5,
        length: int = 1 << 40,
        features: DiffusionFeatures | None = None,
        with_pixels: bool = True,
        neutral_reference: bool = False,
    ):
        self.cache, self.num_frames, self.seed, self.mix, self.length = cache, num_frames, seed, mix, length
        self.neutral_reference = neutral_reference
        self.features, self.with_pixels = features, with_pixels
        long_enough = [c for c in range(len(cache.records)) if cache.lengths[c] >= num_frames]
        self.pools = {
            "mead": [c for c in long_enough if cache.records[c].labelled],
            "hdtf": [c for c in long_enough if not cache.records[c].labelled],
        }
        if not long_enough:
            raise ValueError(f"no clip has {num_frames} frames")
        groups = defaultdict(list)
        for c, r in enumerate(cache.records):
            if r.labelled:
                groups[(r.identity, r.emotion, r.level)].append(c)
        self.same_emotion = {c: groups[(r.identity, r.emotion, r.level)] for c, r in enumerate(cache.records) if r.labelled}
        neutral = defaultdict(list)
        for c, r in enumerate(cache.records):
            if r.labelled and r.emotion == "neutral":
                neutral[r.identity].append(c)
        self.neutral_clips = dict(neutral)

    def __len__(self) -> int:
        return self.length

    def _pick_clip(self, rng: np.random.Generator) -> int:
        mead, hdtf = self.pools["mead"], self.pools["hdtf"]
        if mead and hdtf:
            pool = mead if rng.random() < self.mix else hdtf
        else:
            pool = mead or hdtf
        return int(pool[rng.integers(len(pool))])

    def __getitem__(self, k: int) -> dict:
        rng = np.random.default_rng((self.seed, int(k)))
        cache, f = self.cache, self.num_frames
        c = self._pick_clip(rng)
        record = cache.records[c]
        n = int(cache.lengths[c])
        start = int(rng.integers(0, n - f + 1))
        ref = int(rng.integers(0, n))
        others = [o for o in self.same_emotion.get(c, [c]) if o != c] or [c]
        emotion_ref = int(others[rng.integers(len(others))])
        g0 = int(cache.starts[c])
        r0 = g0 + ref  # the reference frame, from this video ...
        neutral = self.neutral_clips.get(record.identity) if self.neutral_reference and record.labelled else None
        if neutral:
            # ... or from a neutral clip of the same person: a user's portrait is usually neutral, and an
            # emotional reference frame would let the model copy the expression instead of reading
            # it from the emotion condition.
            rc = int(neutral[rng.integers(len(neutral))])
            r0 = int(cache.starts[rc]) + int(rng.integers(0, int(cache.lengths[rc])))
        window = slice(g0 + start, g0 + start + f)
        item = {
            "clip": c,
            "start": start,
            "emotion_ref": emotion_ref,
            "reference_frame": r0,  # index into the cache's frames
            "labelled": record.labelled,
            "class_id": record.class_id,
            "emotion_id": record.emotion_id,
            "expression": torch.from_numpy(np.array(cache.expression[window], np.float32)),
            "mask": torch.from_numpy(face_mask(np.array(cache.face_box[window]), cache.size)),
            "face_boxes": torch.from_numpy(np.array(cache.face_box[window], np.float32)),  # per frame, fractions of the frame
        }
        if self.with_pixels:
            item["frames"] = to_pixels(cache.frames[window])
            item["reference"] = to_pixels(cache.frames[r0 : r0 + 1])[0]
        if self.features is not None:
            feats = self.features
            item["latents"] = torch.from_numpy(np.array(feats.latents[window], np.float32))
            item["reference_latents"] = torch.from_numpy(np.array(feats.latents[r0], np.float32))
            item["image_embeds"] = torch.from_numpy(np.array(feats.image_embeds[r0], np.float32))
            hidden = clip_hidden(cache, feats.hidden, feats.offsets, c)
            item["audio_windows"] = frame_windows(hidden, n, cache.fps, frames=slice(start, start + f))
            item["prior_mu"] = torch.from_numpy(np.array(feats.prior_mu[emotion_ref], np.float32))
            item["prior_var"] = torch.from_numpy(np.array(feats.prior_var[emotion_ref], np.float32))
        return item


def contrastive_batch(
    cache: FrameCache,
    hidden: np.ndarray,
    offsets: np.ndarray,
    step: int,
    seed: int,
    groups: int,
    window: int,
    mix: float = 0.5,
) -> dict:
    """A batch for the emotion embedder's InfoNCE: ``groups`` pairs of positives.

    Emotion data: two clips of the same identity and emotion (positives share identity and
    emotion, paper Sec. 3.1). Talking data without labels: two windows of the same video.
    Windows are ``window`` frames (shorter clips are padded and masked).
    """
    rng = np.random.default_rng((seed, 7919, int(step)))
    by_group = defaultdict(list)
    unlabelled = []
    for c, r in enumerate(cache.records):
        if r.labelled:
            by_group[(r.identity, r.emotion)].append(c)
        else:
            unlabelled.append(c)
    pairs_groups = [g for g, cs in by_group.items() if len(cs) >= 2]
    keys = sorted(pairs_groups)
    chosen: list[tuple[int, int, int]] = []  # (clip a, clip b, label)
    for g in range(groups):
        use_unlabelled = unlabelled and (not keys or rng.random() >= mix)
        if use_unlabelled:
            c = int(unlabelled[rng.integers(len(unlabelled))])
            chosen.append((c, c, 10_000 + c))
        else:
            key = keys[rng.integers(len(keys))]
            a, b = rng.choice(len(by_group[key]), size=2, replace=False)
            chosen.append((by_group[key][a], by_group[key][b], keys.index(key)))
    expressions, audios, masks, labels = [], [], [], []
    for a, b, label in chosen:
        for c in (a, b):
            n = int(cache.lengths[c])
            length = min(n, window)
            s = int(rng.integers(0, n - length + 1))
            g0 = int(cache.starts[c])
            expr = np.zeros((window, cache.expression.shape[1]), np.float32)
            expr[:length] = cache.expression[g0 + s : g0 + s + length]
            feats = clip_audio_features(cache, hidden, offsets, c, slice(s, s + length))
            audio = torch.zeros(window, feats.shape[1])
            audio[:length] = feats
            pad = torch.ones(window, dtype=torch.bool)
            pad[:length] = False
            expressions.append(torch.from_numpy(expr))
            audios.append(audio)
            masks.append(pad)
            labels.append(label)
    return {
        "expression": torch.stack(expressions),
        "audio": torch.stack(audios),
        "padding_mask": torch.stack(masks),
        "labels": torch.tensor(labels, dtype=torch.long),
    }
