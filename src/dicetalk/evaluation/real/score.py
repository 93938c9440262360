"""One real video scored by the real-face judges, with the time series the report page draws.

Every frame is resampled to 25 fps (SyncNet's rate) and the face is tracked
(:func:`~.faces.locate_faces`: detected every 5th frame, interpolated and smoothed between).
Then, each over the same face track:

- ``emotion``: EMO-AffectNet on the face box of every ``emotion_every``-th frame; the video's
  label is the argmax of the mean frame probabilities (7 AffectNet classes, MEAD names;
  contempt has no class);
- ``fsim``: cosine similarity of dlib face-recognition embeddings of every ``identity_every``-th
  frame and of the portrait (``fsim_min``: the lowest frame);
- ``sync_c`` / ``sync_d`` / ``sync_offset``: SyncNet with the reference protocol
  (:func:`~.syncnet.sync_scores`) on the reference crop of the face track;
- ``mouth_opening``: the inner-lip gap of dlib's 68 landmarks per frame (face widths), and its
  correlation with the speech energy of the same 40 ms (``opening_energy_corr``).

A judge that is not downloaded is reported as None with one warning naming the command.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ...errors import InputError
from .judges import RealJudges, load_real_judges, missing_warning

FPS = 25
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
MAX_SIDE = 720  # frames are scaled down to this (larger side) first: faces stay far above every judge's input size
EMOTION_EVERY = 2
IDENTITY_EVERY = 5


def _downscale(frames: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    import cv2

    h, w = frames.shape[1:3]
    scale = max_side / max(h, w)
    if scale >= 1:
        return frames
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def read_frames(path: str | os.PathLike, with_audio: bool = True) -> tuple[np.ndarray, np.ndarray | None, float, tuple[int, int]]:
    """(frames at 25 fps, scaled to <= 720 px; 16 kHz speech or None; source fps; source (H, W))."""
    from ...utils.media import read_video
    from ..features import resample_frames

    clip = read_video(path, with_audio=with_audio)
    size = tuple(clip.frames.shape[1:3])
    return _downscale(resample_frames(clip.frames, clip.fps, FPS)), clip.audio, clip.fps, size


def speech_energy(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """RMS of each frame's 40 ms of speech (zeros past the end)."""
    out = np.zeros(num_frames, np.float32)
    n = min(num_frames, len(audio) // SAMPLES_PER_FRAME)
    if n:
        chunks = audio[: n * SAMPLES_PER_FRAME].astype(np.float64).reshape(n, SAMPLES_PER_FRAME)
        out[:n] = np.sqrt(np.mean(chunks**2, axis=1))
    return out


def _crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return np.zeros((8, 8, 3), np.uint8)
    return frame[y0:y1, x0:x1]


def emotion_probabilities(model, frames: np.ndarray, boxes: np.ndarray, every: int = EMOTION_EVERY, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(frame indices, (N, 7) softmax probabilities) of EMO-AffectNet on the face boxes."""
    import torch

    from .emotion import preprocess

    index = np.arange(0, len(frames), every)
    out = []
    with torch.inference_mode():
        for start in range(0, len(index), batch):
            faces = [_crop(frames[i], boxes[i]) for i in index[start : start + batch]]
            x = preprocess(faces).to(next(model.parameters()).device)
            out.append(torch.softmax(model(x).float(), dim=-1).cpu().numpy())
    return index, np.concatenate(out) if out else np.zeros((0, 7), np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) < 1e-9 or np.std(b[ok]) < 1e-9:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _speech(track: np.ndarray | None, audio: str | os.PathLike | None) -> tuple[np.ndarray | None, str | None]:
    if audio is not None:
        from ...utils.media import read_audio

        return read_audio(audio), "file"
    if track is None or track.size == 0 or float(np.sqrt(np.mean(np.square(track, dtype=np.float64)))) < 1e-4:
        return None, None
    return track, "video"


def score_real_video(
    video: str | os.PathLike,
    portrait: str | os.PathLike | np.ndarray | None,
    judges: RealJudges | None = None,
    audio: str | os.PathLike | None = None,
    progress=None,
    keep_frames: bool = False,
) -> dict:
    """The report of one video (module docstring); ``keep_frames`` adds ``"_frames"`` (not JSON) for the report page."""
    from ...utils.image import load_image
    from .faces import locate_faces
    from .identity import fsim

    started = time.perf_counter()
    video = Path(video)
    if not video.is_file():
        raise InputError(f"{video}: no such video")
    judges = judges or load_real_judges()
    step = progress or (lambda name: None)
    step("reading the video")
    frames, track, source_fps, source_size = read_frames(video)
    speech, speech_from = _speech(track, audio)
    step("tracking the face")
    boxes = locate_faces(frames, every=5, name=str(video))
    warnings = []
    if (note := missing_warning(judges)) is not None:
        warnings.append(note)
    t = np.arange(len(frames), dtype=np.float64) / FPS
    series: dict = {"time": t.round(3).tolist()}
    report: dict = {"video": str(video), "portrait": None if portrait is None or isinstance(portrait, np.ndarray) else str(portrait)}

    step("identity")
    if portrait is not None:
        image = portrait if isinstance(portrait, np.ndarray) else load_image(portrait)
        reference = judges.identity.embed(image)
        index = np.arange(0, len(frames), IDENTITY_EVERY)
        embeddings = judges.identity.embed_frames(frames[index], boxes[index])
        sim = fsim(embeddings, reference)
        report["fsim"], report["fsim_min"] = float(sim["mean"]), float(sim["min"])
        series["fsim"] = {"time": t[index].round(3).tolist(), "value": np.asarray(sim["per_frame"]).round(4).tolist()}
    else:
        report["fsim"] = report["fsim_min"] = None

    step("emotion")
    if judges.emotion is not None:
        from .emotion import AFFECTNET_CLASSES

        index, probs = emotion_probabilities(judges.emotion, frames, boxes)
        mean = probs.mean(axis=0)
        report["emotion"] = AFFECTNET_CLASSES[int(np.argmax(mean))]
        report["probabilities"] = {c: float(p) for c, p in zip(AFFECTNET_CLASSES, mean)}
        series["emotion"] = {"time": t[index].round(3).tolist(), **{c: probs[:, k].round(4).tolist() for k, c in enumerate(AFFECTNET_CLASSES)}}
    else:
        report["emotion"], report["probabilities"] = None, None

    step("lip sync")
    report["sync_c"] = report["sync_d"] = report["sync_offset"] = None
    if speech is None:
        warnings.append("no speech: the video has no audio track (or a silent one); Sync-C / Sync-D need one (--audio FILE)")
    elif judges.sync is not None:
        from .syncnet import face_crops_for_sync, sync_scores

        try:
            result = sync_scores(judges.sync, face_crops_for_sync(frames, boxes), speech)
        except InputError as exc:
            warnings.append(str(exc))
        else:
            report["sync_c"], report["sync_d"], report["sync_offset"] = float(result.sync_c), float(result.sync_d), int(result.offset)
            series["sync"] = {"offset": np.asarray(result.offsets).tolist(), "distance": np.asarray(result.curve).round(4).tolist()}

    step("mouth")
    from .landmarks import mouth_opening

    mouths = judges.landmarks.mouth(frames, boxes)
    opening = mouth_opening(mouths, boxes)
    series["mouth_opening"] = np.asarray(opening).round(4).tolist()
    if speech is not None:
        energy = speech_energy(speech, len(frames))
        series["speech_energy"] = energy.round(5).tolist()
        report["opening_energy_corr"] = _corr(np.asarray(opening, np.float64), energy.astype(np.float64))
    else:
        report["opening_energy_corr"] = None
    report.update(
        {
            "speech": speech_from,
            "num_frames": int(len(frames)),
            "seconds_of_video": round(len(frames) / FPS, 3),
            "fps": source_fps,
            "resolution": list(source_size),
            "judges": judges.describe(),
            "warnings": warnings,
            "seconds": round(time.perf_counter() - started, 3),
            "series": series,
        }
    )
    if keep_frames:
        report["_frames"], report["_boxes"], report["_mouths"] = frames, boxes, mouths
    return report


def format_real(report: dict) -> str:
    """The report as a few aligned lines (the judges named first)."""

    def fmt(v):
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    rows = [("real judges", ", ".join(report["judges"]["judges"])), ("video", report["video"]), ("frames", f"{report['num_frames']} ({report['seconds_of_video']:g} s at 25 fps)")]
    if report.get("probabilities"):
        probs = sorted(report["probabilities"].items(), key=lambda kv: -kv[1])
        rows += [("emotion", f"{report['emotion']} ({report['probabilities'][report['emotion']]:.3f})"), ("probabilities", ", ".join(f"{e} {p:.3f}" for e, p in probs))]
    else:
        rows.append(("emotion", "- (no emotion judge)"))
    rows += [
        ("F-SIM to the portrait", f"{fmt(report['fsim'])} (lowest frame {fmt(report['fsim_min'])})"),
        ("Sync-C", fmt(report["sync_c"])),
        ("Sync-D", fmt(report["sync_d"])),
        ("sync offset (frames)", fmt(report["sync_offset"])),
        ("mouth opening ~ speech", fmt(report.get("opening_energy_corr"))),
        ("speech from", fmt(report["speech"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
