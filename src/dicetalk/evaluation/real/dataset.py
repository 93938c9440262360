"""``dicetalk evaluate OUT_DIR --reference DATA_DIR --judges real``: the paper's table on real judges.

Each generated ``X.mp4`` needs a sidecar ``X.json`` with ``"source"``: its reference clip, a path
under DATA_DIR (``.mp4`` may be left out) — a synthetic-world folder or any folder of real clips
(MEAD, HDTF, ...) — and ``"emotion"``, the emotion it was asked for (a world clip's own emotion
when left out). The identity reference is ``"portrait"`` (an image path, relative to DATA_DIR or
absolute) when given, else frame ``"reference_frame"`` (default 0) of the source clip, as
``dicetalk render-eval`` writes. With ``--ground-truth`` the reference clips score themselves.

Figures, each with a 95 % percentile-bootstrap interval over videos:

- ``emo_score``: EMO-AffectNet's label equals the asked emotion, over videos asked neutral, happy,
  surprised or angry (the paper's Table 1 set); ``emo_neutral`` / ``emo_non_neutral``: over the
  videos asked neutral / asked any other of the 7 AffectNet emotions (contempt has no class and
  is left out);
- ``sync_c`` / ``sync_d``: SyncNet, reference protocol; ``fsim``: dlib cosine similarity;
- ``lmd``: mouth landmark distance to the source clip (:func:`~.landmarks.lmd`).

- ``fid``: Fréchet distance of InceptionV3 pool3 features (:mod:`.frechet`, torch-fidelity's
  network and weights, our code: the maintained packages need torchvision) of every
  ``FID_EVERY``-th frame of the generated videos against the same frames of their sources;
- ``fvd``: Fréchet distance of I3D logits (:mod:`.i3d`, VideoGPT's protocol) of consecutive
  16-frame clips, generated against source.

Both with intervals from resampled videos (:func:`~dicetalk.evaluation.stats.frechet_interval`),
and only when the judges are downloaded (``dicetalk download --judges``); with ``--ground-truth``
they compare the clips with themselves and are left out.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DiceTalkError, InputError
from .judges import RealJudges, load_real_judges

PAPER_EMOTIONS = ("neutral", "happy", "surprised", "angry")
AFFECTNET_EMOTIONS = ("neutral", "happy", "sad", "surprised", "fear", "disgusted", "angry")
MEAN_KEYS = ("fsim", "sync_c", "sync_d", "lmd")
FID_EVERY = 5  # frames: neighbours are near duplicates, and InceptionV3 costs ~0.2 s a frame on a CPU


@dataclass(frozen=True)
class RealItem:
    name: str
    video: Path
    reference: Path | None  # the source clip (LMD, and the portrait frame)
    emotion: str | None  # asked
    portrait: Path | None  # an image; None: frame `reference_frame` of the reference clip
    reference_frame: int = 0


def _clip_path(data_dir: Path, source: str) -> Path:
    path = data_dir / source
    for candidate in (path, path.with_suffix(".mp4") if path.suffix != ".mp4" else path):
        if candidate.is_file():
            return candidate
    raise InputError(f"no reference clip {source!r} under {data_dir}")


def _asked(value, reference: Path | None) -> str | None:
    from ... import EMOTIONS

    if isinstance(value, str):
        label = value.strip().lower().partition(":")[0].strip()
        return label if label in EMOTIONS else None
    if reference is not None and reference.with_suffix(".json").is_file():
        try:
            meta = json.loads(reference.with_suffix(".json").read_text())
            return meta.get("emotion") if meta.get("emotion") in EMOTIONS else None
        except (ValueError, OSError, AttributeError):
            return None
    return None


def collect_real(generated: str | os.PathLike | None, data_dir: str | os.PathLike, ground_truth: bool = False, split: str | None = None) -> tuple[list[RealItem], list[str]]:
    """The videos to score and warnings for those skipped (see the module docstring)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: no such reference folder")
    warnings: list[str] = []
    if ground_truth:
        if (data_dir / "splits.json").is_file():
            from ..evaluate import collect_ground_truth

            clips = collect_ground_truth(data_dir, split or "test")
            return [RealItem(c.name, c.video, c.video, c.emotion, None, 0) for c in clips], warnings
        videos = sorted(p for p in data_dir.rglob("*.mp4") if not p.name.startswith("."))
        if not videos:
            raise InputError(f"{data_dir}: no .mp4 clips")
        return [RealItem(str(v.relative_to(data_dir)), v, v, _asked(None, v), None, 0) for v in videos], warnings
    generated = Path(generated)
    if not generated.exists():
        raise InputError(f"{generated}: no such folder")
    videos = [generated] if generated.is_file() else sorted(p for p in generated.rglob("*.mp4") if not p.name.startswith(".") and ".tmp." not in p.name)
    if not videos:
        raise InputError(f"{generated}: no .mp4 videos to evaluate")
    root = generated.parent if generated.is_file() else generated
    items = []
    for video in videos:
        name = str(video.relative_to(root))
        try:
            sidecar = json.loads(video.with_suffix(".json").read_text())
            if not isinstance(sidecar, dict) or not isinstance(sidecar.get("source"), str):
                raise ValueError
        except (OSError, ValueError):
            warnings.append(f"skipping {name}: no sidecar {video.with_suffix('.json').name} naming its \"source\" clip")
            continue
        try:
            reference = _clip_path(data_dir, sidecar["source"])
        except InputError as exc:
            warnings.append(f"skipping {name}: {exc}")
            continue
        portrait = sidecar.get("portrait")
        portrait = None if not isinstance(portrait, str) else (Path(portrait) if Path(portrait).is_absolute() else data_dir / portrait)
        frame = sidecar.get("reference_frame", 0)
        items.append(RealItem(name, video, reference, _asked(sidecar.get("emotion"), reference), portrait, frame if isinstance(frame, int) and frame >= 0 else 0))
    return items, warnings


def _portrait_of(item: RealItem, cache: dict) -> np.ndarray:
    from ...utils.image import load_image
    from .score import read_frames

    if item.portrait is not None:
        return load_image(item.portrait)
    key = (item.reference, item.reference_frame)
    if key not in cache:
        frames = read_frames(item.reference, with_audio=False)[0]
        cache[key] = frames[min(item.reference_frame, len(frames) - 1)]
    return cache[key]


def _video_features(judges: RealJudges, frames: np.ndarray) -> dict:
    """FID rows (every FID_EVERY-th frame) and FVD rows (16-frame clips) of one video, where those judges exist."""
    out = {}
    if judges.fid is not None:
        from .frechet import fid_features

        out["fid"] = fid_features(judges.fid, frames[::FID_EVERY])
    if judges.fvd is not None:
        from .i3d import CLIP_LEN, fvd_features

        if len(frames) >= CLIP_LEN:
            out["fvd"] = fvd_features(judges.fvd, frames)
    return out


@dataclass
class _Source:
    mouths: np.ndarray
    boxes: np.ndarray
    features: dict


def _source(item: RealItem, judges: RealJudges, cache: dict, with_features: bool) -> _Source:
    from .faces import locate_faces
    from .score import read_frames

    if item.reference not in cache:
        frames = read_frames(item.reference, with_audio=False)[0]
        boxes = locate_faces(frames, every=5, name=str(item.reference))
        cache[item.reference] = _Source(judges.landmarks.mouth(frames, boxes), boxes, _video_features(judges, frames) if with_features else {})
    return cache[item.reference]


def score_items(items: list[RealItem], judges: RealJudges | None = None, ground_truth: bool = False, progress: bool = True, warnings: list[str] | None = None, resamples: int = 1000, seed: int = 0) -> dict:
    """Score every item, then the figures with intervals (module docstring); the report as a JSON-ready dict."""
    from tqdm import tqdm

    from ..stats import LEVEL, frechet_interval, mean_interval, resample_indices, weighted_frechet, with_interval
    from .landmarks import lmd
    from .score import score_real_video

    judges = judges or load_real_judges()
    warnings = list(warnings or [])
    started = time.perf_counter()
    rows, portraits, sources = [], {}, {}
    generated_features: dict[str, list[np.ndarray]] = {"fid": [], "fvd": []}
    generated_sources: dict[str, list[str]] = {"fid": [], "fvd": []}
    for item in tqdm(items, desc="evaluate (real judges)", unit="video", disable=not progress, dynamic_ncols=True):
        try:
            portrait = _portrait_of(item, portraits) if item.reference is not None or item.portrait is not None else None
            report = score_real_video(item.video, portrait, judges, keep_frames=True)
            row = {k: report[k] for k in ("fsim", "sync_c", "sync_d", "sync_offset", "emotion")}
            row.update({"name": item.name, "asked": item.emotion, "num_frames": report["num_frames"]})
            row["correct"] = None if (report["emotion"] is None or item.emotion not in AFFECTNET_EMOTIONS) else bool(report["emotion"] == item.emotion)
            row["lmd"] = None
            if item.reference is not None and not ground_truth:
                source = _source(item, judges, sources, with_features=True)
                row["lmd"] = float(lmd(report["_mouths"], source.mouths, report["_boxes"], source.boxes))
                for key, features in _video_features(judges, report["_frames"]).items():
                    if key in source.features:
                        generated_features[key].append(features)
                        generated_sources[key].append(str(item.reference))
            rows.append(row)
        except DiceTalkError as exc:
            warnings.append(f"skipping {item.name}: {exc}")
    if not rows:
        first = warnings[0].removeprefix("skipping ") if warnings else "nothing to score"
        raise InputError(f"no usable videos to evaluate ({first})")
    index = resample_indices(len(rows), resamples, seed)

    def correct_over(wanted) -> list:
        return [None if r["correct"] is None or r["asked"] not in wanted else float(r["correct"]) for r in rows]

    columns = {
        "emo_score": correct_over(PAPER_EMOTIONS),
        "emo_neutral": correct_over(("neutral",)),
        "emo_non_neutral": correct_over(tuple(e for e in AFFECTNET_EMOTIONS if e != "neutral")),
        **{k: [r[k] for r in rows] for k in MEAN_KEYS},
    }
    out: dict = {"judges": judges.describe()}
    for key, values in columns.items():
        finite = [v for v in values if v is not None]
        value = float(np.mean(finite)) if finite else None
        out[key] = value
        out[f"{key}_ci"] = with_interval(value, mean_interval(values, index) if resamples else None)
        out[f"{key}_n"] = len(finite)
    notes = []
    for key in ("fid", "fvd"):
        gen, names = generated_features[key], generated_sources[key]
        out[key] = out[f"{key}_ci"] = None
        if ground_truth:
            continue
        if getattr(judges, key) is None:
            notes.append(f"{key.upper()}: no {key} judge (dicetalk download --judges)")
            continue
        if not gen:
            continue
        reference = {name: sources[Path(name)].features[key] for name in set(names)}
        x, y = np.concatenate(gen), np.concatenate([reference[n] for n in sorted(reference)])
        value = weighted_frechet(x, np.ones(len(x)), y, np.ones(len(y)))
        out[key] = value
        out[f"{key}_ci"] = with_interval(value, frechet_interval(gen, names, reference, index[: min(resamples, 200)]) if resamples and value is not None else None)
        out[f"{key}_n"] = len(gen)
    out.update(
        {
            "notes": notes,
            "num_videos": len(rows),
            "videos": rows,
            "warnings": warnings + ([w] if (w := _missing(judges)) else []),
            "bootstrap": {"resamples": resamples, "seed": seed, "level": LEVEL, "method": "percentile bootstrap, videos resampled with replacement"},
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    return out


def _missing(judges: RealJudges) -> str | None:
    from .judges import missing_warning

    return missing_warning(judges)


def format_real_table(report: dict, per_video: bool = False) -> str:
    """The paper's Table 1 columns (real judges) as aligned lines."""

    def cell(key: str) -> str:
        v, ci = report.get(key), report.get(f"{key}_ci")
        if v is None:
            return "-"
        if ci and ci.get("low") is not None:
            return f"{v:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
        return f"{v:.3f}"

    lines = [f"real judges: {', '.join(report['judges']['judges'])}", f"videos: {report['num_videos']}"]
    labels = {
        "emo_score": "Emo-Score (neutral/happy/surprised/angry)",
        "emo_neutral": "Emo-Score, asked neutral",
        "emo_non_neutral": "Emo-Score, asked non-neutral",
        "sync_c": "Sync-C",
        "sync_d": "Sync-D",
        "fsim": "F-SIM",
        "lmd": "LMD (mouth)",
        "fid": "FID",
        "fvd": "FVD",
    }
    width = max(map(len, labels.values()))
    for key, label in labels.items():
        n = report.get(f"{key}_n")
        lines.append(f"{label:<{width}}  {cell(key)}" + (f"  (n={n})" if n is not None and report.get(key) is not None else ""))
    lines += [f"note: {n}" for n in report.get("notes", [])]
    if per_video:
        for r in report["videos"]:
            f = {k: "-" if r[k] is None else f"{r[k]:.3f}" for k in ("fsim", "sync_c", "lmd")}
            lines.append(f"  {r['name']}: asked {r['asked'] or '-'}, read {r['emotion'] or '-'}, F-SIM {f['fsim']}, Sync-C {f['sync_c']}, LMD {f['lmd']}")
    return "\n".join(lines)
