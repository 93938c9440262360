"""What EmotiveTalk's small modules learn from: cached per-frame audio and visual features of a split.

V-AID (:mod:`dicetalk.models.vaid`) maps speech to two per-frame streams, each trained to match a
*visual* representation of the same frames. The visual representation is what the frozen
expression encoder (the role 3DMM fitting plays in the paper) reads from every frame — not the
synthetic world's ground truth, which real data would not have:

* **lip motion**: the encoder's ``jaw_drop`` and ``lip_round`` minus their moving average over
  :data:`SLOW_FRAMES` frames — the syllable-rate motion of the mouth;
* **expression**: all 12 coefficients with the mouth's two replaced by that moving average — the
  slowly moving face (brows, lids, cheeks, lip corners, the mean opening), which the voice's
  emotion drives. Di-CTE (:mod:`dicetalk.models.dicte`) generates trajectories of it.

The split's frames are decoded once (:mod:`dicetalk.data.cache`); Whisper hidden states and the
encoder's coefficients are cached beside them under the hash of the weights that made them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from ..models.audio_encoder import frame_windows
from ..synthetic.expressions import EXPRESSION_INDEX, LEVEL_INTENSITY
from ..utils.pixels import to_pixels
from .cache import FrameCache
from .features import _cached, audio_hidden_states, audio_row_offsets, clip_hidden

MOUTH = (EXPRESSION_INDEX["jaw_drop"], EXPRESSION_INDEX["lip_round"])
SLOW_FRAMES = 15  # 0.6 s at 25 fps: longer than a syllable, shorter than an expression change


@torch.no_grad()
def visual_expression(cache: FrameCache, encoder, batch: int = 256, progress: bool = True) -> np.ndarray:
    """The expression encoder's coefficients of every frame of the cache, (N, 12) float32."""
    from tqdm.auto import tqdm

    def build():
        out = []
        for s in tqdm(range(0, len(cache.frames), batch), desc="expression coefficients", disable=not progress, unit="batch"):
            x = to_pixels(cache.frames[s : s + batch]).to(encoder.device, encoder.dtype)
            out.append(encoder(x).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    return _cached(cache, "expression", encoder, build)


def moving_average(x: np.ndarray, frames: int = SLOW_FRAMES) -> np.ndarray:
    """Centred moving average over ``frames`` frames along axis 0, edges padded by reflection."""
    x = np.asarray(x, np.float32)
    if len(x) < 2 or frames <= 1:
        return x.copy()
    half = frames // 2
    padded = np.pad(x, [(half, half)] + [(0, 0)] * (x.ndim - 1), mode="reflect" if len(x) > half else "edge")
    kernel = np.ones(2 * half + 1, np.float32) / (2 * half + 1)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, padded).astype(np.float32)


def stream_targets(visual: np.ndarray, frames: int = SLOW_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """(lip motion (T, 2), expression (T, 12)) of one clip's visual coefficients (T, 12) (module docstring)."""
    visual = np.asarray(visual, np.float32)
    mouth = visual[:, list(MOUTH)]
    slow = moving_average(mouth, frames)
    expression = visual.copy()
    expression[:, list(MOUTH)] = slow
    return mouth - slow, expression


@dataclass
class SplitFeatures:
    """One split's frames (cache), Whisper hidden states per clip and visual coefficients per frame."""

    cache: FrameCache
    hidden: np.ndarray  # (rows, L+1, C) float16, clips end to end
    offsets: np.ndarray  # (clips + 1,) first row of each clip
    visual: np.ndarray  # (N, 12) expression encoder output per frame

    @property
    def num_clips(self) -> int:
        return len(self.cache.records)

    def clip_windows(self, c: int) -> torch.Tensor:
        """Per-frame Whisper windows of clip ``c``: (T, window, L+1, C) float32."""
        n = int(self.cache.lengths[c])
        return frame_windows(clip_hidden(self.cache, self.hidden, self.offsets, c), n, self.cache.fps)

    def clip_visual(self, c: int) -> np.ndarray:
        return np.asarray(self.visual[self.cache.clip_frames(c)], np.float32)

    def clip_targets(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        return stream_targets(self.clip_visual(c))

    def labels(self) -> np.ndarray:
        """(clips,) emotion index of each clip, -1 when unlabelled."""
        return np.array([r.emotion_id for r in self.cache.records], np.int64)

    def strengths(self) -> np.ndarray:
        """(clips,) the intensity of each clip's emotion (:data:`LEVEL_INTENSITY`; neutral and unlabelled 0)."""
        return np.array([0.0 if r.emotion in (None, "neutral") else LEVEL_INTENSITY[r.level] for r in self.cache.records], np.float32)

    def same_emotion(self) -> dict[int, list[int]]:
        """clip -> the other clips of its identity, emotion and level (itself when none), labelled clips only."""
        groups = defaultdict(list)
        for c, r in enumerate(self.cache.records):
            if r.labelled:
                groups[(r.identity, r.emotion, r.level)].append(c)
        return {c: ([o for o in groups[(r.identity, r.emotion, r.level)] if o != c] or [c]) for c, r in enumerate(self.cache.records) if r.labelled}


def split_features(cache: FrameCache, audio_encoder, feature_extractor, expression_encoder, progress: bool = True) -> SplitFeatures:
    """The cached features of ``cache`` (computed on first use)."""
    hidden = audio_hidden_states(cache, audio_encoder, feature_extractor, progress=progress)
    visual = visual_expression(cache, expression_encoder, progress=progress)
    return SplitFeatures(cache, hidden, audio_row_offsets(cache), visual)


def clip_batch(features: SplitFeatures, clips: list[int], max_frames: int, rng: np.random.Generator | None = None) -> dict:
    """Whole clips (a random span of ``max_frames`` when longer), zero-padded to one length.

    Keys: ``windows`` (B, F, window, L+1, C), ``mask`` (B, F) bool (True: a real frame),
    ``lips`` (B, F, 2), ``expression`` (B, F, 12), ``label`` (B,), ``strength`` (B,), ``clip`` (B,).
    """
    items = []
    for c in clips:
        n = int(features.cache.lengths[c])
        start = 0 if n <= max_frames or rng is None else int(rng.integers(0, n - max_frames + 1))
        span = slice(start, start + min(n, max_frames))
        lips, expression = features.clip_targets(c)
        items.append((features.clip_windows(c)[span], lips[span], expression[span]))
    length = max(len(w) for w, _, _ in items)
    b = len(items)
    windows = torch.zeros(b, length, *items[0][0].shape[1:])
    mask = torch.zeros(b, length, dtype=torch.bool)
    lips = torch.zeros(b, length, 2)
    expression = torch.zeros(b, length, items[0][2].shape[1])
    for i, (w, lp, ex) in enumerate(items):
        windows[i, : len(w)] = w
        mask[i, : len(w)] = True
        lips[i, : len(w)] = torch.from_numpy(lp)
        expression[i, : len(w)] = torch.from_numpy(ex)
    labels, strengths = features.labels(), features.strengths()
    return {
        "windows": windows,
        "mask": mask,
        "lips": lips,
        "expression": expression,
        "label": torch.from_numpy(labels[clips]),
        "strength": torch.from_numpy(strengths[clips]),
        "clip": torch.tensor(clips),
    }
