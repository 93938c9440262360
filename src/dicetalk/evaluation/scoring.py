"""Judge outputs for one video, and the checks that measure the judges themselves on ground truth.

:func:`score_frames` runs the emotion and identity judges over a clip's 64 px faces;
:func:`video_emotion_logits` pools frame logits into the video's prediction.
:func:`judge_checks` scores ground-truth clips of held-out identities as the acceptance
criteria read: emotion accuracy per intensity, same- vs different-identity frame similarity,
lip-sync confidence with the true audio against the audio delayed by half a second, and the
mouth regressor's accuracy against the true mouth shapes (R^2, MAE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import EMOTIONS
from ..emotions import EASY_EMOTIONS
from .judges import EmotionJudge, IdentityJudge, Judges
from .metrics import same_vs_different
from .sync import sync_scores


@dataclass
class FrameScores:
    emotion_logits: np.ndarray  # (T, 8)
    emotion_features: np.ndarray  # (T, 128)
    identity_embeddings: np.ndarray  # (T, 64), unit norm
    identity_features: np.ndarray  # (T, 128)

    @property
    def features(self) -> np.ndarray:
        """(T, 256) per-frame features of the Fréchet distances: emotion then identity penultimate."""
        return np.concatenate([self.emotion_features, self.identity_features], axis=1)


@torch.no_grad()
def score_frames(emotion: EmotionJudge, identity: IdentityJudge, faces: np.ndarray, batch: int = 256) -> FrameScores:
    """Run both frame judges over (T, 64, 64, 3) uint8 faces."""
    x = torch.from_numpy(np.ascontiguousarray(faces))
    parts = []
    for i in range(0, len(x), batch):
        logits, ef, _ = emotion(x[i : i + batch])
        emb, idf = identity(x[i : i + batch])
        parts.append((logits, ef, emb, idf))
    cols = [torch.cat([p[k] for p in parts]).numpy() for k in range(4)]
    return FrameScores(*cols)


def video_emotion_logits(frame_logits: np.ndarray, skip_frames: int) -> np.ndarray:
    """Mean frame logits of a video, the first ``skip_frames`` left out when the clip is long enough."""
    skip = skip_frames if len(frame_logits) > 2 * skip_frames else 0
    return np.asarray(frame_logits[skip:], np.float64).mean(axis=0)


def emotion_accuracy(rows: list[dict]) -> dict:
    """Accuracy of rows with ``emotion`` / ``predicted`` (and ``level``): all, the paper's four, per level/emotion."""
    labelled = [r for r in rows if r.get("emotion") in EMOTIONS and r.get("predicted")]

    def acc(sel):
        return None if not sel else float(np.mean([r["predicted"] == r["emotion"] for r in sel]))

    return {
        "all8": acc(labelled),
        "easy4": acc([r for r in labelled if r["emotion"] in EASY_EMOTIONS]),
        "by_level": {str(k): acc([r for r in labelled if r.get("level") == k]) for k in sorted({r.get("level") for r in labelled if r.get("level")})},
        "by_emotion": {e: acc([r for r in labelled if r["emotion"] == e]) for e in EMOTIONS if any(r["emotion"] == e for r in labelled)},
        "count": len(labelled),
    }


@dataclass
class CheckRecord:
    """What :func:`checks_from_records` needs from one ground-truth clip."""

    identity: str
    emotion: str | None
    level: int | None
    predicted: str | None
    identity_embeddings: np.ndarray  # (n, 64) of a few frames
    sync_true: float | None = None
    sync_delayed: float | None = None
    sync_advanced: float | None = None
    sync_offset: int | None = None
    mouth_predicted: np.ndarray | None = None  # (T, 2) regressed mouth shape of every frame
    mouth_true: np.ndarray | None = None  # (T, 2) the world's true shape


def clip_mouths(judges: Judges, clip, arr) -> tuple[np.ndarray, np.ndarray] | None:
    """(regressed, true) mouth shapes of a ground-truth clip's frames; None without a mouth judge or a true shape."""
    from ..errors import InputError
    from .mouth import regress_mouths, true_mouth_shape

    if judges.mouth is None or arr.lips is None:
        return None
    try:
        true = true_mouth_shape(clip)
    except InputError:
        return None
    n = min(len(true), len(arr.lips))
    return regress_mouths(judges.mouth, arr.lips[:n]), true[:n]


def check_record(
    judges: Judges, clip, arr, shift_seconds: float = 0.5, frame_step: int = 8, scores: FrameScores | None = None, sync_true=None, mouths=None
) -> CheckRecord:
    """Score one ground-truth clip (``WorldClip``, ``ClipArrays``) for the judge checks (``mouths``: :func:`clip_mouths`, if known)."""
    from .features import shift_audio

    skip = judges.emotion.config.skip_frames
    scores = scores or score_frames(judges.emotion, judges.identity, arr.faces)
    predicted = None
    if clip.emotion is not None:
        predicted = EMOTIONS[int(np.argmax(video_emotion_logits(scores.emotion_logits, skip)))]
    pick = np.arange(min(skip, len(arr.faces) - 1), len(arr.faces), frame_step)
    record = CheckRecord(clip.identity, clip.emotion, clip.level, predicted, scores.identity_embeddings[pick])
    if arr.audio is not None and arr.num_frames >= judges.sync.config.window:
        true = sync_true or sync_scores(judges.sync, arr.mouths, arr.audio)
        record.sync_true, record.sync_offset = true.confidence, true.offset
        record.sync_delayed = sync_scores(judges.sync, arr.mouths, shift_audio(arr.audio, shift_seconds)).confidence
        record.sync_advanced = sync_scores(judges.sync, arr.mouths, shift_audio(arr.audio, -shift_seconds)).confidence
    mouths = mouths if mouths is not None else clip_mouths(judges, clip, arr)
    if mouths is not None:
        record.mouth_predicted, record.mouth_true = mouths
    return record


def checks_from_records(records: list[CheckRecord], shift_seconds: float = 0.5) -> dict:
    """The judge checks (see :func:`judge_checks`) from per-clip records."""
    rows = [{"emotion": r.emotion, "level": r.level, "predicted": r.predicted} for r in records if r.emotion is not None]
    out: dict = {"emotion": emotion_accuracy(rows), "clips": len(records)}
    labels = [r.identity for r in records for _ in range(len(r.identity_embeddings))]
    if len(set(labels)) >= 2:
        groups = [i for i, r in enumerate(records) for _ in range(len(r.identity_embeddings))]
        emb = np.concatenate([r.identity_embeddings for r in records])
        out["identity"] = same_vs_different(emb, np.array(labels), np.array(groups))
    synced = [r for r in records if r.sync_true is not None]
    if synced:
        t = np.array([r.sync_true for r in synced])
        late = np.array([r.sync_delayed for r in synced])
        early = np.array([r.sync_advanced for r in synced])
        out["sync"] = {
            "shift_seconds": shift_seconds,
            "true_beats_delayed": float((t > late).mean()),
            "true_beats_advanced": float((t > early).mean()),
            "sync_c_true": float(t.mean()),
            "sync_c_delayed": float(late.mean()),
            "sync_c_advanced": float(early.mean()),
            "offset_within_1": float(np.mean([abs(r.sync_offset) <= 1 for r in synced])),
            "clips": len(synced),
        }
    measured = [r for r in records if r.mouth_predicted is not None and len(r.mouth_predicted)]
    if measured:
        from .mouth import regression_checks

        out["mouth"] = regression_checks([r.mouth_predicted for r in measured], [r.mouth_true for r in measured])
    return out


def judge_checks(judges: Judges, clips: list, arrays: list | None = None, shift_seconds: float = 0.5, frame_step: int = 8, progress: bool = False) -> dict:
    """Measure the judges on ground-truth clips (``WorldClip`` + ``ClipArrays`` pairs; decoded one by one when ``arrays`` is None).

    - emotion: per-video accuracy over the MEAD-like clips, overall (``all8``), on the paper's
      four (``easy4``), per intensity level and per emotion;
    - identity: :func:`~dicetalk.evaluation.metrics.same_vs_different` over every
      ``frame_step``-th frame (positives from other clips of the same identity);
    - sync: share of clips whose Sync-C with the true audio exceeds Sync-C with the audio
      delayed by ``shift_seconds`` (and advanced by it), mean Sync-C of each, share of clips
      whose best offset is within one frame of 0;
    - mouth (with a mouth judge): R^2 and mean absolute error of each regressed measure over
      every frame, and the mean per-clip correlation of the regressed opening with the true one
      (:func:`~dicetalk.evaluation.mouth.regression_checks`).
    """
    from tqdm import tqdm

    from .data import load_video_arrays

    records = []
    for i, clip in enumerate(tqdm(clips, desc="judge checks", unit="clip", disable=not progress, dynamic_ncols=True)):
        arr = arrays[i] if arrays is not None else load_video_arrays(clip.video)
        records.append(check_record(judges, clip, arr, shift_seconds, frame_step))
    return checks_from_records(records, shift_seconds)
