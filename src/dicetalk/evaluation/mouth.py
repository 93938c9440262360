"""The mouth's true shape in the synthetic world, and lip sync measured against it.

The world's face model (:mod:`dicetalk.synthetic.face`) draws the mouth from four of the 12
expression coefficients and two traits of the person (``Appearance.mouth_width``, the mouth's
resting half-width in face units, and ``head_scale``, face units per frame side). Seen from the
front (head pose zero), with every coefficient clamped to its range as the renderer does:

- **opening** — the inner lips' gap at the centre of the mouth::

      (0.34 jaw_drop (1 - 0.7 lip_press) + 0.05 lip_round (1 - lip_press)) * head_scale

- **width** — corner to corner (the right corner moves out with ``corner_asym``)::

      mouth_width (1 + 0.22 lip_corner_pull + 0.05 lip_corner_depress - 0.35 lip_round
                   - 0.06 lip_press) (2 + 0.18 corner_asym) * head_scale

both in **percent of the frame side** (what an image shows: a landmark distance normalised by
the frame, as LMD measures it). The traits come from the dataset's ``world.json``.

:class:`~dicetalk.evaluation.judges.MouthJudge` regresses both from a colour lower-face crop.
Per generated video, against the true shape of the ground-truth clip it was made from (the
same speech), frame ``t`` against frame ``t``:

- ``mouth_error``: mean over frames and both measures of the absolute error (LMD-style);
- ``mouth_open_error`` / ``mouth_width_error``: the same per measure;
- ``mouth_open_corr``: Pearson correlation over time of the regressed opening with the true
  opening (None when either is constant).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

MEASURES = ("opening", "width")


def mouth_shape(expression: np.ndarray, head_scale: float, mouth_width: float) -> np.ndarray:
    """(T, 12) expression coefficients of a person -> (T, 2) true (opening, width), percent of the frame side."""
    from ..synthetic.expressions import EXPRESSION_INDEX, clip_expression  # (the world's package imports slowly)

    e = clip_expression(np.asarray(expression, np.float64).reshape(-1, len(EXPRESSION_INDEX))).astype(np.float64)
    c = {name: e[:, i] for name, i in EXPRESSION_INDEX.items()}
    jaw, round_, press = c["jaw_drop"], c["lip_round"], c["lip_press"]
    opening = 0.34 * jaw * (1 - 0.7 * press) + 0.05 * round_ * (1 - press)
    half = mouth_width * (1 + 0.22 * c["lip_corner_pull"] + 0.05 * c["lip_corner_depress"] - 0.35 * round_ - 0.06 * press)
    width = half * (2 + 0.18 * c["corner_asym"])
    return (np.stack([opening, width], axis=1) * head_scale * 100.0).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _traits(world_json: str, mtime: float) -> dict[str, tuple[float, float]]:
    try:
        identities = json.loads(Path(world_json).read_text())["identities"]
        return {name: (float(v["appearance"]["head_scale"]), float(v["appearance"]["mouth_width"])) for name, v in identities.items()}
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{world_json}: no identities with head_scale and mouth_width (a 'dicetalk synth' world.json)") from None


def mouth_traits(dataset_dir: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """Identity name -> (head_scale, mouth_width) from the dataset's ``world.json``."""
    path = Path(dataset_dir) / "world.json"
    if not path.is_file():
        raise InputError(f"{dataset_dir}: no world.json, so no true mouth shapes (a 'dicetalk synth' folder has one)")
    return _traits(str(path.resolve()), path.stat().st_mtime)


def dataset_root(clip) -> Path:
    """The dataset folder of a :class:`~dicetalk.evaluation.data.WorldClip`."""
    return clip.stem.parents[len(Path(clip.relative).parts) - 1]


def true_mouth_shape(clip, annotations: dict | None = None) -> np.ndarray:
    """(T, 2) true mouth shape of every frame of a world clip; :class:`InputError` if the world cannot say."""
    from .data import load_annotations

    traits = mouth_traits(dataset_root(clip)).get(clip.identity)
    if traits is None:
        raise InputError(f"{clip.relative}: identity {clip.identity} is not in the world's world.json")
    annotations = annotations if annotations is not None else load_annotations(clip)
    return mouth_shape(annotations["expression"], *traits)


@torch.no_grad()
def regress_mouths(judge, crops: np.ndarray, batch: int = 512) -> np.ndarray:
    """(T, 32, 48, 3) uint8 colour lower-face crops -> (T, 2) regressed shape (percent of the frame side)."""
    x = torch.from_numpy(np.ascontiguousarray(crops))
    if len(x) == 0:
        return np.zeros((0, len(judge.config.measures)), np.float32)
    return torch.cat([judge(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two series; None when either is (nearly) constant or shorter than 3."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-6 or b.std() < 1e-6:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def mouth_measures(predicted: np.ndarray, true: np.ndarray) -> dict:
    """Per-video mouth measures (module docstring) of frame-aligned (T, 2) arrays (the shorter length counts)."""
    n = min(len(predicted), len(true))
    if n == 0:
        return {"mouth_error": None, "mouth_open_error": None, "mouth_width_error": None, "mouth_open_corr": None, "mouth_frames": 0}
    err = np.abs(np.asarray(predicted[:n], np.float64) - np.asarray(true[:n], np.float64))
    return {
        "mouth_error": float(err.mean()),
        "mouth_open_error": float(err[:, 0].mean()),
        "mouth_width_error": float(err[:, 1].mean()),
        "mouth_open_corr": pearson(predicted[:n, 0], true[:n, 0]),
        "mouth_frames": n,
    }


def regression_checks(predicted: list[np.ndarray], true: list[np.ndarray]) -> dict:
    """The regressor's own accuracy over ground-truth clips: R^2 and MAE per measure, mean per-clip correlation of the opening."""
    p = np.concatenate([np.asarray(x, np.float64) for x in predicted])
    t = np.concatenate([np.asarray(x, np.float64) for x in true])
    out: dict = {"frames": int(len(p)), "clips": len(predicted)}
    for i, name in enumerate(MEASURES):
        sst = float(((t[:, i] - t[:, i].mean()) ** 2).sum())
        out[f"{name}_r2"] = None if sst == 0 else 1.0 - float(((p[:, i] - t[:, i]) ** 2).sum()) / sst
        out[f"{name}_mae"] = float(np.abs(p[:, i] - t[:, i]).mean())
        out[f"{name}_true_std"] = float(t[:, i].std())
    corrs = [c for c in (pearson(a[:, 0], b[:, 0]) for a, b in zip(predicted, true)) if c is not None]
    out["opening_corr"] = float(np.mean(corrs)) if corrs else None
    return out
