"""``dicetalk evaluate``: score generated videos against their source clips with the judges.

Every generated video ``X.mp4`` needs a sidecar ``X.json`` naming its source clip in the
reference dataset folder, e.g. ``{"source": "mead/mead_020/happy/level_3/001", "emotion":
"happy", "level": 3}``. The source supplies the reference image (its first frame), the
ground-truth frames of FID / FVD and, when the generated video has no audio track, the speech.
``emotion`` (default: the source's) is the emotion the video should show: a plain label, or
``label:strength``; anything else (a schedule, a prior file) leaves the video out of Emo-Score.

Per video:

- ``predicted``: the emotion judge's class of the mean frame logits (first 5 frames skipped);
- ``fsim``: mean over frames of the cosine similarity between the identity judge's embedding
  of the frame and of the reference image;
- ``sync_c`` / ``sync_d`` / ``sync_offset``: :mod:`~dicetalk.evaluation.sync` with the video's
  own audio track (the source's speech when it has none).

Over all videos: ``emo_score`` (accuracy on videos meant to show neutral, happy, surprised or
angry, as in the paper), ``emo_score_all8`` (all eight), means of ``fsim``, ``sync_c`` and
``sync_d``, and the Fréchet distances ``fid`` and ``fvd`` of :mod:`~dicetalk.evaluation.metrics`
(generated frames against the frames of their distinct source clips; ``null`` with fewer than
two samples on a side).

``--ground-truth`` scores the reference clips of one split as if they were generated (a sanity
run: ``fid`` and ``fvd`` are 0) and adds ``judge_checks``, the judges' own reliability on those
identities (:func:`~dicetalk.evaluation.scoring.judge_checks`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import EMOTIONS
from ..errors import DiceTalkError, InputError
from .data import ClipArrays, WorldClip, find_clip, list_clips, load_video_arrays
from .judges import Judges, load_judges
from .metrics import frechet_distance, segment_features
from .scoring import check_record, checks_from_records, emotion_accuracy, score_frames, video_emotion_logits
from .sync import sync_scores

REPORT_KEYS = ("emo_score", "emo_score_all8", "fsim", "sync_c", "sync_d", "fid", "fvd", "num_videos", "videos")


@dataclass
class VideoItem:
    """One video to score, with the clip it was made from."""

    name: str
    video: Path
    source: WorldClip
    emotion: str | None
    level: int | None
    sidecar: dict = field(default_factory=dict)


def _target_emotion(value, source: WorldClip) -> str | None:
    if value is None:
        return source.emotion
    if not isinstance(value, str):
        return None
    label, _, strength = value.strip().lower().partition(":")
    if strength:
        try:
            float(strength)
        except ValueError:
            return None
    return label.strip() if label.strip() in EMOTIONS else None


def read_sidecar(video: Path, reference_dir: Path, name: str) -> VideoItem:
    """The :class:`VideoItem` of a generated video from its sidecar; :class:`InputError` if unusable."""
    sidecar_path = video.with_suffix(".json")
    if not sidecar_path.is_file():
        raise InputError(f"{name}: no sidecar {sidecar_path.name} naming its source clip")
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (ValueError, OSError):
        raise InputError(f"{name}: sidecar {sidecar_path.name} is not valid JSON") from None
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("source"), str) or not sidecar["source"].strip():
        raise InputError(f"{name}: sidecar {sidecar_path.name} has no \"source\" (the clip it was made from, e.g. \"mead/mead_020/happy/level_3/001\")")
    source = find_clip(reference_dir, sidecar["source"])
    emotion = _target_emotion(sidecar.get("emotion"), source)
    level = sidecar.get("level")
    if not isinstance(level, int) or isinstance(level, bool):
        level = source.level if emotion == source.emotion else None
    return VideoItem(name, video, source, emotion, level, sidecar)


def collect_generated(generated: str | os.PathLike, reference_dir: str | os.PathLike) -> tuple[list[VideoItem], list[str]]:
    """Every ``*.mp4`` under ``generated`` (or that one file) with a usable sidecar; warnings for the rest."""
    generated, reference_dir = Path(generated), Path(reference_dir)
    if not generated.exists():
        raise InputError(f"{generated}: no such folder")
    if generated.is_file():
        videos, root = [generated], generated.parent
    else:
        videos = sorted(p for p in generated.rglob("*.mp4") if not p.name.startswith(".") and ".tmp." not in p.name)
        root = generated
    if not videos:
        raise InputError(f"{generated}: no .mp4 videos to evaluate")
    items, warnings = [], []
    for video in videos:
        name = video.relative_to(root).as_posix()
        try:
            items.append(read_sidecar(video, reference_dir, name))
        except InputError as exc:
            warnings.append(f"skipping {exc}")
    return items, warnings


def collect_ground_truth(reference_dir: str | os.PathLike, split: str = "test", datasets: tuple[str, ...] = ("mead", "hdtf")) -> list[VideoItem]:
    """The reference clips of one split, each standing for a generated video of itself."""
    clips = list_clips(reference_dir, (split,), datasets)
    if not clips:
        raise InputError(f"{reference_dir}: no clips of {split!r} identities")
    return [VideoItem(c.relative, c.video, c, c.emotion, c.level, {"source": c.relative}) for c in clips]


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _frechet(a: list[np.ndarray], b: list[np.ndarray]) -> float | None:
    if not a or not b:
        return None
    x, y = np.concatenate(a), np.concatenate(b)
    if len(x) < 2 or len(y) < 2:
        return None
    return frechet_distance(x, y)


def evaluate_items(
    items: list[VideoItem],
    judges: Judges | None = None,
    ground_truth: bool = False,
    shift_seconds: float = 0.5,
    progress: bool = True,
    warnings: list[str] | None = None,
) -> dict:
    """Score ``items`` (see the module docstring); returns the report (JSON-ready dict)."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    judges = judges or load_judges()
    warnings = list(warnings or [])
    started = time.perf_counter()
    skip = judges.emotion.config.skip_frames
    gen_frames, gen_segments, ref_frames, ref_segments = [], [], [], []
    references: dict[str, tuple[ClipArrays, np.ndarray]] = {}  # source -> arrays, reference embedding
    rows, records = [], []
    for item in tqdm(items, desc="evaluate", unit="video", disable=not progress, dynamic_ncols=True):
        t0 = time.perf_counter()
        try:
            arr = load_video_arrays(item.video)
            if item.source.relative not in references:
                src = arr if ground_truth else load_video_arrays(item.source.video)
                src_scores = arr_scores = score_frames(judges.emotion, judges.identity, src.faces)
                ref_frames.append(src_scores.features)
                ref_segments.append(segment_features(src_scores.features))
                references[item.source.relative] = (src, src_scores.identity_embeddings[0])
            src, ref_embedding = references[item.source.relative]
            if not ground_truth:
                arr_scores = score_frames(judges.emotion, judges.identity, arr.faces)
        except DiceTalkError as exc:
            warnings.append(f"skipping {item.name}: {exc}")
            continue
        audio, audio_from = (arr.audio, "video") if arr.audio is not None else (src.audio, "source")
        logits = video_emotion_logits(arr_scores.emotion_logits, skip)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        predicted = EMOTIONS[int(np.argmax(logits))]
        sync = sync_scores(judges.sync, arr.mouths, audio) if audio is not None and arr.num_frames >= judges.sync.config.window else None
        gen_frames.append(arr_scores.features)
        gen_segments.append(segment_features(arr_scores.features))
        row = {
            "video": item.name,
            "source": item.source.relative,
            "identity": item.source.identity,
            "emotion": item.emotion,
            "level": item.level,
            "predicted": predicted,
            "probability": float(probs.max()),
            "correct": None if item.emotion is None else predicted == item.emotion,
            "fsim": float(np.mean(arr_scores.identity_embeddings @ ref_embedding)),
            "sync_c": None if sync is None else sync.confidence,
            "sync_d": None if sync is None else sync.distance,
            "sync_offset": None if sync is None else sync.offset,
            "audio": None if audio is None else audio_from,
            "num_frames": arr.num_frames,
            "fps": arr.fps,
            "resolution": list(arr.source_size),
        }
        if ground_truth:
            records.append(check_record(judges, item.source, arr, shift_seconds, scores=arr_scores, sync_true=sync))
        row["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    if not rows:
        first = warnings[0].removeprefix("skipping ") if warnings else "nothing to score"
        more = f"; {len(warnings) - 1} more skipped" if len(warnings) > 1 else ""
        raise InputError(f"no usable videos to evaluate ({first}{more})")
    accuracy = emotion_accuracy(rows)
    report = {
        "emo_score": accuracy["easy4"],
        "emo_score_all8": accuracy["all8"],
        "fsim": _mean(r["fsim"] for r in rows),
        "sync_c": _mean(r["sync_c"] for r in rows),
        "sync_d": _mean(r["sync_d"] for r in rows),
        "fid": _frechet(gen_frames, ref_frames),
        "fvd": _frechet(gen_segments, ref_segments),
        "num_videos": len(rows),
        "videos": rows,
        "emotion_accuracy": accuracy,
        "warnings": warnings,
        "judges": {"folder": str(judges.folder), "command": judges.manifest.get("command")},
        "seconds": round(time.perf_counter() - started, 2),
    }
    if ground_truth:
        report["judge_checks"] = checks_from_records(records, shift_seconds)
    return report


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_report(report: dict, per_video: bool = True) -> str:
    """A plain-text table: one line per video (when ``per_video``), then the summary."""
    lines = []
    if per_video:
        header = f"{'video':<44} {'emotion':<12} {'predicted':<10} {'fsim':>6} {'sync_c':>7} {'sync_d':>7} {'offset':>6}"
        lines += [header, "-" * len(header)]
        for r in report["videos"]:
            target = r["emotion"] or "-"
            if r["level"]:
                target += f"/{r['level']}"
            name = r["video"] if len(r["video"]) <= 44 else "..." + r["video"][-41:]
            lines.append(
                f"{name:<44} {target:<12} {r['predicted']:<10} {_fmt(r['fsim']):>6} {_fmt(r['sync_c']):>7} {_fmt(r['sync_d']):>7} {_fmt(r['sync_offset']):>6}"
            )
        lines.append("")
    summary = [
        ("videos", report["num_videos"]),
        ("Emo-Score (neutral/happy/surprised/angry)", report["emo_score"]),
        ("Emo-Score (all 8 emotions)", report["emo_score_all8"]),
        ("F-SIM", report["fsim"]),
        ("Sync-C", report["sync_c"]),
        ("Sync-D", report["sync_d"]),
        ("FID (judge features)", report["fid"]),
        ("FVD (judge features)", report["fvd"]),
    ]
    checks = report.get("judge_checks")
    if checks:
        for level, acc in checks["emotion"]["by_level"].items():
            summary.append((f"check: emotion accuracy, level {level}", acc))
        if "identity" in checks:
            summary.append(("check: identity, same closer than different (triplets)", checks["identity"]["triplet"]))
        if "sync" in checks:
            s = checks["sync"]
            summary.append((f"check: Sync-C true > audio delayed {s['shift_seconds']:g} s", s["true_beats_delayed"]))
            summary.append((f"check: Sync-C true > audio advanced {s['shift_seconds']:g} s", s["true_beats_advanced"]))
    width = max(len(k) for k, _ in summary)
    lines += [f"{k:<{width}}  {_fmt(v, 4)}" for k, v in summary]
    return "\n".join(lines)


def embedding_report(path: str | os.PathLike, normalize: bool = False) -> dict:
    """Clustering strength of a safetensors file with ``embeddings`` (N, d) and ``labels`` (N,).

    Class names come from an optional JSON sidecar (same stem): ``{"names": [...]}`` indexed by
    label, or ``{"names": {"<label>": name}}``.
    """
    from safetensors.numpy import load_file

    from .metrics import clustering_strength

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        tensors = load_file(str(path))
    except Exception:
        raise InputError(f"{path}: not a readable safetensors file") from None
    if "embeddings" not in tensors or "labels" not in tensors:
        raise InputError(f"{path}: needs tensors 'embeddings' (N, d) and 'labels' (N,), found {', '.join(sorted(tensors)) or 'none'}")
    emb, labels = tensors["embeddings"], tensors["labels"]
    if emb.ndim != 2 or labels.ndim != 1 or emb.shape[0] != labels.shape[0]:
        raise InputError(f"{path}: 'embeddings' must be (N, d) and 'labels' (N,), got {emb.shape} and {labels.shape}")
    if not np.issubdtype(emb.dtype, np.floating) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path}: 'embeddings' must be float and 'labels' integer, got {emb.dtype} and {labels.dtype}")
    emb = emb.astype(np.float64)
    if not np.isfinite(emb).all():
        raise InputError(f"{path}: 'embeddings' holds NaN or infinite values")
    if normalize:
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
    if np.unique(labels).size < 2:
        raise InputError(f"{path}: clustering strength needs at least two classes, found {np.unique(labels).size}")
    names = {}
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            raw = json.loads(sidecar.read_text()).get("names")
        except (ValueError, AttributeError):
            raise InputError(f"{sidecar}: not a JSON object with \"names\"") from None
        if isinstance(raw, list):
            names = {i: str(n) for i, n in enumerate(raw)}
        elif isinstance(raw, dict):
            names = {int(k): str(v) for k, v in raw.items() if str(k).lstrip("-").isdigit()}
    result = clustering_strength(emb, labels)
    result["names"] = [names.get(c, str(c)) for c in result["classes"]]
    result["normalized"] = normalize
    result["file"] = str(path)
    return result


def format_embedding_report(result: dict) -> str:
    lines = [f"{'class':<20} {'count':>6} {'intra':>8}"]
    for name, count, intra in zip(result["names"], result["per_class_count"], result["per_class_intra"]):
        lines.append(f"{name:<20} {count:>6} {intra:>8.4f}")
    lines += [
        "",
        f"d_inter (mean centroid distance)          {result['d_inter']:.4f}",
        f"d_intra (mean distance to own centroid)   {result['d_intra']:.4f}",
        f"clustering strength d_inter / d_intra      {result['strength']:.4f}",
    ]
    return "\n".join(lines)
