"""``dicetalk evaluate VIDEO --portrait IMG``: one video scored with no reference dataset.

What a user can ask of any talking-head video made from a portrait, with the shipped judges:

- ``emotion``: the emotion judge's label of the video (mean frame logits, the first frames
  skipped, as :func:`~dicetalk.evaluation.scoring.video_emotion_logits` pools them) and
  ``probabilities``, the softmax of those logits over the eight emotions;
- ``fsim``: the mean over frames of the cosine similarity between the identity judge's embedding
  of the frame and of the portrait (``fsim_min``: the lowest frame);
- ``sync_c`` / ``sync_d`` / ``sync_offset``: Sync-C / Sync-D (:mod:`~dicetalk.evaluation.sync`)
  with the speech of the video's own audio track, or of ``audio`` when given; None, with a
  warning, when there is neither.

The portrait is read like a video frame (:func:`~dicetalk.evaluation.features.face_images`: the
centre square, resized to the judges' 64 px), so it should be framed as the video is — as
``generate`` crops it. ``segment`` scores only the frames of ``[start, end)`` seconds (the
long-video drift check compares the first and last 10 s this way).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .. import EMOTIONS
from ..errors import InputError
from .judges import Judges, load_judges

SILENT_RMS = 1e-4


def portrait_face(path: str | os.PathLike) -> np.ndarray:
    """The portrait as the judges see a frame: (1, 64, 64, 3) uint8."""
    from ..utils.image import load_image
    from .features import face_images

    return face_images(load_image(path)[None])


def _speech(arr_audio: np.ndarray | None, audio: str | os.PathLike | None) -> tuple[np.ndarray | None, str | None]:
    """(16 kHz speech, where it came from) — the given file first, else the video's track; None if silent."""
    if audio is not None:
        from ..utils.media import read_audio

        return read_audio(audio), "file"
    if arr_audio is None:
        return None, None
    if arr_audio.size == 0 or float(np.sqrt(np.mean(np.square(arr_audio, dtype=np.float64)))) < SILENT_RMS:
        return None, None
    return arr_audio, "video"


def score_video(
    video: str | os.PathLike,
    portrait: str | os.PathLike,
    judges: Judges | None = None,
    audio: str | os.PathLike | None = None,
    segment: tuple[float, float | None] | None = None,
) -> dict:
    """The report of one video (see the module docstring); :class:`InputError` for unusable files."""
    from .data import load_video_arrays
    from .features import FPS, SAMPLES_PER_FRAME
    from .scoring import score_frames, video_emotion_logits
    from .sync import sync_scores

    started = time.perf_counter()
    video = Path(video)
    if not video.is_file():
        raise InputError(f"{video}: no such video")
    judges = judges or load_judges()
    face = portrait_face(portrait)
    arr = load_video_arrays(video)
    speech, speech_from = _speech(arr.audio, audio)
    faces, mouths = arr.faces, arr.mouths
    first = 0
    if segment is not None:
        start, end = segment
        first = max(0, int(round(start * FPS)))
        last = len(faces) if end is None else min(len(faces), int(round(end * FPS)))
        if last - first < 1:
            raise InputError(f"{video}: no frames between {start:g} s and {end if end is not None else 'the end'} s")
        faces, mouths = faces[first:last], mouths[first:last]
        if speech is not None:
            speech = speech[first * SAMPLES_PER_FRAME : last * SAMPLES_PER_FRAME]
    scores = score_frames(judges.emotion, judges.identity, faces)
    logits = video_emotion_logits(scores.emotion_logits, judges.emotion.config.skip_frames if first == 0 else 0)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    portrait_embedding = judges.identity(_tensor(face))[0].numpy()[0]
    similarity = scores.identity_embeddings @ portrait_embedding
    warnings = []
    sync = None
    if speech is None:
        warnings.append("no speech: the video has no audio track (or a silent one); Sync-C / Sync-D need one (--audio FILE)")
    elif len(mouths) < judges.sync.config.window:
        warnings.append(f"too short for lip sync: {len(mouths)} frames, the sync judge needs {judges.sync.config.window}")
    else:
        sync = sync_scores(judges.sync, mouths, speech)
    return {
        "video": str(video),
        "portrait": str(portrait),
        "emotion": EMOTIONS[int(np.argmax(logits))],
        "probabilities": {e: float(p) for e, p in zip(EMOTIONS, probs)},
        "fsim": float(similarity.mean()),
        "fsim_min": float(similarity.min()),
        "sync_c": None if sync is None else sync.confidence,
        "sync_d": None if sync is None else sync.distance,
        "sync_offset": None if sync is None else sync.offset,
        "speech": speech_from,
        "num_frames": int(len(faces)),
        "first_frame": first,
        "fps": arr.fps,
        "seconds_of_video": round(len(faces) / FPS, 3),
        "resolution": list(arr.source_size),
        "warnings": warnings,
        "judges": {"folder": str(judges.folder), "command": judges.manifest.get("command")},
        "seconds": round(time.perf_counter() - started, 3),
    }


def _tensor(face: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(face))


def format_single(report: dict) -> str:
    """The report as a few aligned lines."""

    def fmt(v):
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    probs = sorted(report["probabilities"].items(), key=lambda kv: -kv[1])
    rows = [
        ("video", report["video"]),
        ("frames", f"{report['num_frames']} ({report['seconds_of_video']:g} s at 25 fps)"),
        ("emotion", f"{report['emotion']} ({report['probabilities'][report['emotion']]:.3f})"),
        ("probabilities", ", ".join(f"{e} {p:.3f}" for e, p in probs)),
        ("F-SIM to the portrait", f"{fmt(report['fsim'])} (lowest frame {fmt(report['fsim_min'])})"),
        ("Sync-C", fmt(report["sync_c"])),
        ("Sync-D", fmt(report["sync_d"])),
        ("sync offset (frames)", fmt(report["sync_offset"])),
        ("speech from", fmt(report["speech"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
