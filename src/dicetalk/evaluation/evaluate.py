"""``dicetalk evaluate``: score generated videos against their source clips with the judges.

Every generated video ``X.mp4`` needs a sidecar ``X.json`` naming its source clip in the
reference dataset folder, e.g. ``{"source": "mead/mead_020/happy/level_3/001", "emotion":
"happy", "level": 3}``. The source supplies the reference image (its first frame), the
ground-truth frames of FID / FVD, the true mouth shapes of the mouth measures and, when the
generated video has no audio track, the speech. ``emotion`` (default: the source's) is the
emotion the video should show: a plain label, or ``label:strength``; anything else (a schedule,
a prior file) leaves the video out of Emo-Score. ``dicetalk evaluate`` takes sources from the
identities of one split (``--split``, default ``test``): videos made from other identities are
skipped with a warning, and the report states the split.

Per video:

- ``predicted``: the emotion judge's class of the mean frame logits (first 5 frames skipped);
- ``fsim``: mean over frames of the cosine similarity between the identity judge's embedding
  of the frame and of the reference image;
- ``sync_c`` / ``sync_d`` / ``sync_offset``: :mod:`~dicetalk.evaluation.sync` with the video's
  own audio track (the source's speech when it has none);
- ``mouth_error``, ``mouth_open_error``, ``mouth_width_error``, ``mouth_open_corr``: the mouth
  judge's regressed mouth shape against the source's true shape, frame by frame
  (:mod:`~dicetalk.evaluation.mouth`; None without a mouth judge or a world that can say).

Over all videos: ``emo_score`` (accuracy on videos meant to show neutral, happy, surprised or
angry, as in the paper), ``emo_score_all8`` (all eight), means of the per-video measures, and
the Fréchet distances ``fid`` and ``fvd`` of :mod:`~dicetalk.evaluation.metrics` (generated
frames against the frames of their distinct source clips; ``null`` with fewer than two samples
on a side). Each aggregate ``K`` also comes as ``K_ci`` = ``{"value", "low", "high"}``, its 95 %
bootstrap interval over clips (:mod:`~dicetalk.evaluation.stats`; ``bootstrap`` says how).

``--ground-truth`` scores the reference clips of one split as if they were generated (a sanity
run: ``fid`` and ``fvd`` are 0) and adds ``judge_checks``, the judges' own reliability on those
identities (:func:`~dicetalk.evaluation.scoring.judge_checks`). :func:`compare_reports` compares
two reports over the same clips (``dicetalk evaluate --compare A.json B.json``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import EMOTIONS
from ..emotions import EASY_EMOTIONS
from ..errors import DiceTalkError, InputError
from .data import WorldClip, find_clip, list_clips, load_video_arrays
from .judges import Judges, load_judges
from .metrics import frechet_distance, segment_features
from .scoring import check_record, checks_from_records, emotion_accuracy, score_frames, video_emotion_logits
from .sync import sync_scores

REPORT_KEYS = ("emo_score", "emo_score_all8", "fsim", "sync_c", "sync_d", "fid", "fvd", "num_videos", "videos")
MOUTH_KEYS = ("mouth_error", "mouth_open_error", "mouth_width_error", "mouth_open_corr")
MEAN_KEYS = ("fsim", "sync_c", "sync_d", *MOUTH_KEYS)
EVAL_SPLITS = ("val", "test")


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


def check_split(split: str) -> str:
    if split not in EVAL_SPLITS:
        raise InputError(f"split must be val or test (the identities no model or judge trained on), got {split!r}")
    return split


def read_sidecar(video: Path, reference_dir: Path, name: str, split: str | None = None) -> VideoItem:
    """The :class:`VideoItem` of a generated video from its sidecar; :class:`InputError` if unusable
    (or, with ``split``, if its source is not a clip of that split's identities)."""
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
    if split is not None and source.split != split:
        raise InputError(f"{name}: its source {source.relative} is a {source.split or 'unlisted'} identity, not {split} (--split)")
    emotion = _target_emotion(sidecar.get("emotion"), source)
    level = sidecar.get("level")
    if not isinstance(level, int) or isinstance(level, bool):
        level = source.level if emotion == source.emotion else None
    return VideoItem(name, video, source, emotion, level, sidecar)


def collect_generated(generated: str | os.PathLike, reference_dir: str | os.PathLike, split: str | None = None) -> tuple[list[VideoItem], list[str]]:
    """Every ``*.mp4`` under ``generated`` (or that one file) with a usable sidecar whose source
    belongs to ``split`` (None: any; ``dicetalk evaluate`` passes its ``--split``, default ``test``);
    warnings for the rest."""
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
            items.append(read_sidecar(video, reference_dir, name, split))
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


# ----------------------------------------------------------------------------- scoring


@dataclass
class _Source:
    """What a source clip lends every video made from it."""

    audio: np.ndarray | None
    embedding: np.ndarray  # identity embedding of its first frame (the reference image)
    features: np.ndarray  # (T, 256) per-frame judge features
    segments: np.ndarray  # (S, 512) segment features
    mouth_true: np.ndarray | None  # (T, 2) true mouth shape


@dataclass
class _Scored:
    """Everything :func:`evaluate_items` keeps of the videos scored so far."""

    rows: list[dict] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)  # per row
    segments: list[np.ndarray] = field(default_factory=list)  # per row
    records: list = field(default_factory=list)  # ground truth: judge-check records
    sources: dict[str, _Source] = field(default_factory=dict)


def _source_of(item: VideoItem, arr, scores, judges: Judges, ground_truth: bool, warnings: list[str]) -> _Source:
    """The source's arrays and scores (the video's own when scoring ground truth)."""
    from .mouth import true_mouth_shape

    src = arr if ground_truth else load_video_arrays(item.source.video)
    src_scores = scores if ground_truth else score_frames(judges.emotion, judges.identity, src.faces)
    mouth_true = None
    if judges.mouth is not None:
        try:
            mouth_true = true_mouth_shape(item.source)
        except InputError as exc:
            if not any(w.startswith("no mouth measures") for w in warnings):  # once: the cause is the same for every source
                warnings.append(f"no mouth measures for videos of {item.source.relative} (nor of other sources the world cannot describe): {exc}")
    features = src_scores.features
    return _Source(src.audio, src_scores.identity_embeddings[0], features, segment_features(features), mouth_true)


def _mouths(judges: Judges, arr, source: _Source) -> tuple[dict, tuple[np.ndarray, np.ndarray] | None]:
    """The row's mouth measures, and the frame-aligned (regressed, true) shapes they come from."""
    from .mouth import mouth_measures, regress_mouths

    if judges.mouth is None or source.mouth_true is None or arr.lips is None:
        return {k: None for k in MOUTH_KEYS}, None
    regressed = regress_mouths(judges.mouth, arr.lips)
    measures = mouth_measures(regressed, source.mouth_true)
    n = measures["mouth_frames"]
    return {k: measures[k] for k in MOUTH_KEYS}, (regressed[:n], source.mouth_true[:n])


def score_item(item: VideoItem, judges: Judges, done: _Scored, ground_truth: bool, shift_seconds: float, warnings: list[str]) -> dict:
    """Score one video (appending its features to ``done``); the report's row. :class:`DiceTalkError` if unreadable."""
    t0 = time.perf_counter()
    arr = load_video_arrays(item.video)
    scores = score_frames(judges.emotion, judges.identity, arr.faces)
    key = item.source.relative
    if key not in done.sources:
        done.sources[key] = _source_of(item, arr, scores, judges, ground_truth, warnings)
    source = done.sources[key]
    audio, audio_from = (arr.audio, "video") if arr.audio is not None else (source.audio, "source")
    logits = video_emotion_logits(scores.emotion_logits, judges.emotion.config.skip_frames)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    predicted = EMOTIONS[int(np.argmax(logits))]
    sync = sync_scores(judges.sync, arr.mouths, audio) if audio is not None and arr.num_frames >= judges.sync.config.window else None
    mouth_row, mouths = _mouths(judges, arr, source)
    row = {
        "video": item.name,
        "source": key,
        "identity": item.source.identity,
        "emotion": item.emotion,
        "level": item.level,
        "predicted": predicted,
        "probability": float(probs.max()),
        "correct": None if item.emotion is None else predicted == item.emotion,
        "fsim": float(np.mean(scores.identity_embeddings @ source.embedding)),
        "sync_c": None if sync is None else sync.confidence,
        "sync_d": None if sync is None else sync.distance,
        "sync_offset": None if sync is None else sync.offset,
        **mouth_row,
        "audio": None if audio is None else audio_from,
        "num_frames": arr.num_frames,
        "fps": arr.fps,
        "resolution": list(arr.source_size),
    }
    if ground_truth:
        done.records.append(check_record(judges, item.source, arr, shift_seconds, scores=scores, sync_true=sync, mouths=mouths))
    done.features.append(scores.features)
    done.segments.append(segment_features(scores.features))
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


# ----------------------------------------------------------------------------- aggregates


@dataclass
class BootstrapOptions:
    """How the intervals are drawn: ``resamples`` for every figure (0: none), ``frechet_resamples`` for FID / FVD."""

    resamples: int = 1000
    frechet_resamples: int = 200
    seed: int = 0


def aggregate(done: _Scored, bootstrap: BootstrapOptions, ground_truth: bool = False) -> dict:
    """The report's figures over ``done.rows``, each with its bootstrap interval as ``K_ci``; ``emotion_accuracy``; ``bootstrap``."""
    from .stats import LEVEL, frechet_interval, mean_interval, resample_indices, with_interval

    rows = done.rows
    accuracy = emotion_accuracy(rows)
    names = [r["source"] for r in rows]
    refs = {k: v.features for k, v in done.sources.items()}
    ref_segments = {k: v.segments for k, v in done.sources.items()}
    out = {
        "emo_score": accuracy["easy4"],
        "emo_score_all8": accuracy["all8"],
        **{k: _mean(r[k] for r in rows) for k in MEAN_KEYS},
        "fid": _frechet(done.features, list(refs.values())),
        "fvd": _frechet(done.segments, list(ref_segments.values())),
    }
    index = resample_indices(len(rows), bootstrap.resamples, bootstrap.seed)
    frechet_index = index[: bootstrap.frechet_resamples]
    easy = [None if r["correct"] is None or r["emotion"] not in EASY_EMOTIONS else float(r["correct"]) for r in rows]
    intervals = {
        "emo_score": mean_interval(easy, index),
        "emo_score_all8": mean_interval([None if r["correct"] is None else float(r["correct"]) for r in rows], index),
        **{k: mean_interval([r[k] for r in rows], index) for k in MEAN_KEYS},
    }
    for key, gen, ref in (("fid", done.features, refs), ("fvd", done.segments, ref_segments)):
        if out[key] is not None and ground_truth:
            intervals[key] = (0.0, 0.0)  # every resample compares the clips with themselves
        elif out[key] is not None:
            intervals[key] = frechet_interval(gen, names, ref, frechet_index)
    out.update({f"{k}_ci": with_interval(out[k], intervals.get(k)) for k in list(out)})
    out["emotion_accuracy"] = accuracy
    out["bootstrap"] = {
        "resamples": bootstrap.resamples, "frechet_resamples": min(bootstrap.frechet_resamples, bootstrap.resamples), "seed": bootstrap.seed,
        "level": LEVEL, "method": "percentile bootstrap, videos (clips) resampled with replacement",
    }  # fmt: skip
    return out


def evaluate_items(
    items: list[VideoItem],
    judges: Judges | None = None,
    ground_truth: bool = False,
    shift_seconds: float = 0.5,
    progress: bool = True,
    warnings: list[str] | None = None,
    bootstrap: BootstrapOptions | None = None,
    split: str | None = None,
) -> dict:
    """Score ``items`` (see the module docstring); returns the report (JSON-ready dict).

    Sets no global thread count: callers choose it (``dicetalk evaluate`` uses one thread).
    """
    from tqdm import tqdm

    judges = judges or load_judges()
    warnings = list(warnings or [])
    started = time.perf_counter()
    done = _Scored()
    for item in tqdm(items, desc="evaluate", unit="video", disable=not progress, dynamic_ncols=True):
        try:
            done.rows.append(score_item(item, judges, done, ground_truth, shift_seconds, warnings))
        except DiceTalkError as exc:
            warnings.append(f"skipping {item.name}: {exc}")
    if not done.rows:
        first = warnings[0].removeprefix("skipping ") if warnings else "nothing to score"
        more = f"; {len(warnings) - 1} more skipped" if len(warnings) > 1 else ""
        raise InputError(f"no usable videos to evaluate ({first}{more})")
    report = {
        **aggregate(done, bootstrap or BootstrapOptions(), ground_truth),
        "split": split if split is not None else _split_of(done.rows, items),
        "num_videos": len(done.rows),
        "videos": done.rows,
        "warnings": warnings,
        "judges": {"folder": str(judges.folder), "command": judges.manifest.get("command"), "mouth": judges.mouth is not None},
        "seconds": round(time.perf_counter() - started, 2),
    }
    if ground_truth:
        report["judge_checks"] = checks_from_records(done.records, shift_seconds)
    return report


def _split_of(rows: list[dict], items: list[VideoItem]) -> str | None:
    """The one split of the scored videos' sources, or None when they mix splits."""
    splits = {it.source.split for it in items if it.source.relative in {r["source"] for r in rows}}
    return splits.pop() if len(splits) == 1 else None


# ----------------------------------------------------------------------------- text


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _fmt_ci(report: dict, key: str, digits: int = 3) -> str:
    """``0.820 [0.780, 0.860]`` (the value alone when the report has no interval)."""
    ci = report.get(f"{key}_ci")
    if not isinstance(ci, dict) or ci.get("low") is None:
        return _fmt(report.get(key), digits)
    return f"{_fmt(ci['value'], digits)} [{_fmt(ci['low'], digits)}, {_fmt(ci['high'], digits)}]"


def _video_lines(report: dict) -> list[str]:
    header = f"{'video':<44} {'emotion':<12} {'predicted':<10} {'fsim':>6} {'sync_c':>7} {'sync_d':>7} {'offset':>6} {'mouth':>6} {'m_corr':>6}"
    lines = [header, "-" * len(header)]
    for r in report["videos"]:
        target = r["emotion"] or "-"
        if r["level"]:
            target += f"/{r['level']}"
        name = r["video"] if len(r["video"]) <= 44 else "..." + r["video"][-41:]
        lines.append(
            f"{name:<44} {target:<12} {r['predicted']:<10} {_fmt(r['fsim']):>6} {_fmt(r['sync_c']):>7} {_fmt(r['sync_d']):>7} {_fmt(r['sync_offset']):>6}"
            f" {_fmt(r.get('mouth_error'), 2):>6} {_fmt(r.get('mouth_open_corr'), 2):>6}"
        )
    return lines + [""]


def _check_lines(checks: dict) -> list[tuple[str, object]]:
    summary: list[tuple[str, object]] = []
    for level, acc in checks["emotion"]["by_level"].items():
        summary.append((f"check: emotion accuracy, level {level}", acc))
    if "identity" in checks:
        summary.append(("check: identity, same closer than different (triplets)", checks["identity"]["triplet"]))
    if "sync" in checks:
        s = checks["sync"]
        summary.append((f"check: Sync-C true > audio delayed {s['shift_seconds']:g} s", s["true_beats_delayed"]))
        summary.append((f"check: Sync-C true > audio advanced {s['shift_seconds']:g} s", s["true_beats_advanced"]))
    if "mouth" in checks:
        m = checks["mouth"]
        summary.append(("check: mouth opening R^2 / MAE (% of frame)", f"{_fmt(m['opening_r2'], 4)} / {_fmt(m['opening_mae'], 3)}"))
        summary.append(("check: mouth width R^2 / MAE (% of frame)", f"{_fmt(m['width_r2'], 4)} / {_fmt(m['width_mae'], 3)}"))
    return summary


def format_report(report: dict, per_video: bool = True) -> str:
    """A plain-text table: one line per video (when ``per_video``), then the summary with 95 % intervals."""
    lines = _video_lines(report) if per_video else []
    boot = report.get("bootstrap") or {}
    summary: list[tuple[str, object]] = [("videos", report["num_videos"]), ("split", report.get("split"))]
    figures = [
        ("Emo-Score (neutral/happy/surprised/angry)", "emo_score", 3), ("Emo-Score (all 8 emotions)", "emo_score_all8", 3),
        ("F-SIM", "fsim", 3), ("Sync-C", "sync_c", 3), ("Sync-D", "sync_d", 3),
        ("mouth error, LMD-style (% of frame)", "mouth_error", 3), ("  opening error (% of frame)", "mouth_open_error", 3),
        ("  width error (% of frame)", "mouth_width_error", 3), ("mouth opening correlation (Pearson)", "mouth_open_corr", 3),
        ("FID (judge features)", "fid", 2), ("FVD (judge features)", "fvd", 2),
    ]  # fmt: skip
    summary += [(label, _fmt_ci(report, key, digits)) for label, key, digits in figures]
    if boot.get("resamples"):
        summary.append(("[intervals]", f"95 % bootstrap over {report['num_videos']} clips, {boot['resamples']} resamples (FID/FVD {boot['frechet_resamples']}), seed {boot['seed']}"))
    if report.get("judge_checks"):
        summary += _check_lines(report["judge_checks"])
    width = max(len(k) for k, _ in summary)
    lines += [f"{k:<{width}}  {_fmt(v, 4)}" for k, v in summary]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- comparison


def _read_report(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such report")
    try:
        report = json.loads(path.read_text())
    except (ValueError, OSError):
        raise InputError(f"{path}: not a JSON report") from None
    if not isinstance(report, dict) or not isinstance(report.get("videos"), list) or not all(isinstance(r, dict) and "source" in r for r in report["videos"]):
        raise InputError(f"{path}: not an 'evaluate' report (no \"videos\" with their sources)")
    return report


def _match_key(row: dict) -> tuple:
    return (row.get("source"), row.get("emotion"), row.get("level"))


def _keyed(report: dict, with_name: bool) -> dict[tuple, dict] | None:
    """Rows by (source, emotion, level[, video name]); None when two rows share a key."""
    keys = [(*_match_key(r), r.get("video")) if with_name else _match_key(r) for r in report["videos"]]
    return dict(zip(keys, report["videos"])) if len(set(keys)) == len(keys) else None


def compare_reports(path_a, path_b, resamples: int = 1000, seed: int = 0) -> dict:
    """Paired comparison of two reports over the same clips (:mod:`~dicetalk.evaluation.stats`).

    Videos pair by source clip, target emotion and level (and by their name too when a report
    holds several videos of one clip).
    """
    from .stats import PAIRED_METRICS, compare_metric

    a, b = _read_report(path_a), _read_report(path_b)
    for with_name in (False, True):
        ka, kb = _keyed(a, with_name), _keyed(b, with_name)
        if ka is not None and kb is not None:
            break
    else:
        raise InputError(f"{path_a} or {path_b}: several videos share a source, emotion, level and name; cannot pair them")
    shared = sorted(set(ka) & set(kb), key=str)
    if not shared:
        raise InputError(f"{path_a} and {path_b} share no clip (videos are paired by source clip, emotion and level)")
    pairs = [(ka[k], kb[k]) for k in shared]
    metrics = {m: compare_metric(m, pairs, resamples, seed) for m in PAIRED_METRICS}
    return {
        "a": str(path_a), "b": str(path_b), "pairs": len(pairs), "only_in_a": len(set(ka) - set(kb)), "only_in_b": len(set(kb) - set(ka)),
        "split": {"a": a.get("split"), "b": b.get("split")}, "resamples": resamples, "seed": seed,
        "metrics": {m: v for m, v in metrics.items() if v is not None},
    }  # fmt: skip


def format_comparison(result: dict) -> str:
    lines = [
        f"A: {result['a']}",
        f"B: {result['b']}",
        f"{result['pairs']} clips in both (only in A: {result['only_in_a']}, only in B: {result['only_in_b']}); "
        f"95 % paired bootstrap ({result['resamples']} resamples, seed {result['seed']})",
        "",
        f"{'metric':<18} {'A':>8} {'B':>8} {'B - A':>8} {'95 % interval':>20} {'excl. 0':>7} {'better':>6} {'p':>8}  test",
    ]
    for name, m in result["metrics"].items():
        interval = "-" if m["low"] is None else f"[{m['low']:.3f}, {m['high']:.3f}]"
        lines.append(
            f"{name:<18} {m['a']:>8.3f} {m['b']:>8.3f} {m['difference']:>+8.3f} {interval:>20} {_fmt(m['excludes_zero']):>7} {m['better'] or '-':>6} {m['p_value']:>8.4f}  {m['test']} (n={m['pairs']})"
        )
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
