"""Uncertainty of ``evaluate``'s figures: bootstrap intervals over clips and paired comparisons.

**Intervals.** Every aggregate of a report is a statistic of its videos (one video per clip).
The videos are resampled with replacement ``resamples`` times (``numpy.random.default_rng(seed)``,
the same draws for every figure), the figure is recomputed on each resample and the 95 %
interval is the 2.5th to 97.5th percentile of those values (the percentile bootstrap):

- means over videos (F-SIM, Sync-C, Sync-D, the mouth measures): the mean of the resampled
  videos that have a value;
- Emo-Score: the accuracy over the resampled videos that count for it;
- FID / FVD: the Fréchet distance of the resampled videos' features against their sources'
  features, each source weighted by how often its videos were drawn. Resampling repeats
  clips, which lowers the feature spread, so the Fréchet values of resamples are biased
  (upwards for a model, while ground truth against itself stays 0); read their interval as
  the spread due to the choice of clips, not as an unbiased confidence interval.

**Paired comparison** of two reports over the same clips (matched by source clip, target
emotion and level): for each metric, the mean difference B - A over the matched videos with
a paired-bootstrap 95 % interval (the pairs resampled), whether it excludes 0, and a test of
"no difference": Wilcoxon's signed-rank test for continuous measures, the exact sign test
(McNemar's) on the discordant pairs for Emo-Score. FID / FVD are distribution distances with
no per-video value and are not compared.

With few clips (the 16 of ``docs/results.md``) the percentile bootstrap runs narrow — it does
not know the data are discrete or few — so an interval can exclude 0 while the exact test
gives p > 0.05 (e.g. 5 of 16 clips turning right, none wrong: interval [0.125, 0.562],
sign test p = 0.0625). Read both; the test is the stricter.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) indices drawn with replacement; the same ``seed`` gives the same draws."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _interval(values: np.ndarray) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = np.percentile(values, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return float(low), float(high)


def mean_interval(values, index: np.ndarray) -> tuple[float, float] | None:
    """Percentile interval of the mean of ``values`` (None = no value) over the resamples ``index``."""
    v = np.array([np.nan if x is None else float(x) for x in values], np.float64)
    if not np.isfinite(v).any() or index.size == 0:
        return None
    drawn = v[index]
    counts = np.isfinite(drawn).sum(axis=1)
    sums = np.where(np.isfinite(drawn), drawn, 0.0).sum(axis=1)
    means = np.divide(sums, counts, out=np.full(len(counts), np.nan), where=counts > 0)
    return _interval(means)


def with_interval(value: float | None, interval: tuple[float, float] | None) -> dict | None:
    """``{"value", "low", "high"}`` (None when there is no value)."""
    if value is None:
        return None
    low, high = interval if interval is not None else (None, None)
    return {"value": value, "low": low, "high": high}


# ----------------------------------------------------------------------------- Fréchet


def _weighted_moments(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted mean, the weighted centred rows scaled by sqrt(w) (so A^T A / c is the covariance), and c."""
    keep = w > 0
    x, w = x[keep], w[keep]
    total = float(w.sum())
    mu = (w[:, None] * x).sum(axis=0) / total
    a = np.sqrt(w)[:, None] * (x - mu)
    return mu, a, total - 1.0


def weighted_frechet(x: np.ndarray, wx: np.ndarray, y: np.ndarray, wy: np.ndarray) -> float | None:
    """Fréchet distance of row-weighted feature sets (frequency weights; unbiased covariances).

    ``Tr((S_x S_y)^1/2)`` is the nuclear norm of ``A B^T`` over ``sqrt(c_x c_y)`` (``S_x = A^T A / c_x``):
    computed on whichever is smaller, the (n_x, n_y) cross product or the (d, d) covariances.
    """
    mu1, a, c1 = _weighted_moments(np.asarray(x, np.float64), np.asarray(wx, np.float64))
    mu2, b, c2 = _weighted_moments(np.asarray(y, np.float64), np.asarray(wy, np.float64))
    if c1 <= 0 or c2 <= 0:
        return None
    d = a.shape[1]
    if a.shape[0] * b.shape[0] <= d * d:
        trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(c1 * c2)
    else:
        s1, s2 = a.T @ a / c1, b.T @ b / c2
        lam, vec = np.linalg.eigh(s1)
        root = (vec * np.sqrt(np.clip(lam, 0.0, None))) @ vec.T
        trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + (a * a).sum() / c1 + (b * b).sum() / c2 - 2.0 * trace_sqrt
    return float(max(value, 0.0))


def frechet_interval(
    generated: list[np.ndarray], sources: list[str], reference: dict[str, np.ndarray], index: np.ndarray
) -> tuple[float, float] | None:
    """Percentile interval of the Fréchet distance over resampled videos (module docstring).

    ``generated[i]`` holds video ``i``'s feature rows, ``sources[i]`` names its source clip and
    ``reference`` maps every source to its feature rows.
    """
    if index.size == 0:
        return None
    names = sorted(set(sources))
    of_video = np.array([names.index(s) for s in sources])
    per_source = np.bincount(of_video, minlength=len(names)).astype(np.float64)
    x = np.concatenate(generated)
    x_video = np.concatenate([np.full(len(g), i) for i, g in enumerate(generated)])
    y = np.concatenate([reference[s] for s in names])
    y_source = np.concatenate([np.full(len(reference[s]), k) for k, s in enumerate(names)])
    values = []
    for draw in index:
        counts = np.bincount(draw, minlength=len(generated)).astype(np.float64)
        drawn_sources = np.bincount(of_video[draw], minlength=len(names)) / per_source
        values.append(weighted_frechet(x, counts[x_video], y, drawn_sources[y_source]))
    return _interval(np.array([np.nan if v is None else v for v in values], np.float64))


# ----------------------------------------------------------------------------- paired comparison

# metric -> (per-video key, higher is better)
PAIRED_METRICS = {
    "emo_score": ("correct", True),
    "emo_score_all8": ("correct", True),
    "fsim": ("fsim", True),
    "sync_c": ("sync_c", True),
    "sync_d": ("sync_d", False),
    "mouth_error": ("mouth_error", False),
    "mouth_open_error": ("mouth_open_error", False),
    "mouth_width_error": ("mouth_width_error", False),
    "mouth_open_corr": ("mouth_open_corr", True),
}


def _paired_values(metric: str, pairs: list[tuple[dict, dict]]) -> tuple[np.ndarray, np.ndarray]:
    from ..emotions import EASY_EMOTIONS

    key, _ = PAIRED_METRICS[metric]
    a, b = [], []
    for ra, rb in pairs:
        if metric == "emo_score" and ra.get("emotion") not in EASY_EMOTIONS:
            continue
        va, vb = ra.get(key), rb.get(key)
        if va is None or vb is None:
            continue
        a.append(float(va))
        b.append(float(vb))
    return np.array(a, np.float64), np.array(b, np.float64)


def _no_difference_p(metric: str, a: np.ndarray, b: np.ndarray) -> tuple[str, float]:
    from scipy import stats

    diff = b - a
    if metric.startswith("emo_score"):
        wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
        p = 1.0 if wins + losses == 0 else float(stats.binomtest(wins, wins + losses, 0.5).pvalue)
        return "sign test (McNemar, exact)", p
    if not np.any(diff != 0):
        return "Wilcoxon signed-rank", 1.0
    return "Wilcoxon signed-rank", float(stats.wilcoxon(b, a, zero_method="wilcox").pvalue)


def compare_metric(metric: str, pairs: list[tuple[dict, dict]], resamples: int, seed: int) -> dict | None:
    """One metric of :func:`compare_reports`; None when no pair has both values."""
    a, b = _paired_values(metric, pairs)
    if a.size == 0:
        return None
    diff = b - a
    interval = _interval(diff[resample_indices(len(diff), resamples, seed)].mean(axis=1)) if resamples else None
    test, p = _no_difference_p(metric, a, b)
    higher_better = PAIRED_METRICS[metric][1]
    excludes = interval is not None and (interval[0] > 0 or interval[1] < 0)
    better = None if not excludes else ("B" if (diff.mean() > 0) == higher_better else "A")
    return {
        "a": float(a.mean()), "b": float(b.mean()), "difference": float(diff.mean()),
        "low": None if interval is None else interval[0], "high": None if interval is None else interval[1],
        "excludes_zero": excludes, "better": better, "higher_is_better": higher_better,
        "test": test, "p_value": p, "pairs": int(a.size),
    }  # fmt: skip
