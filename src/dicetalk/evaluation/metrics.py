"""Distribution and embedding metrics: Fréchet distances (FID / FVD analogues), clustering strength.

Fréchet distance between two feature sets ``X`` (N, d) and ``Y`` (M, d), each modelled as a
Gaussian (mean ``mu``, covariance ``S``, unbiased)::

    FD = ||mu_X - mu_Y||^2 + Tr(S_X + S_Y - 2 (S_X S_Y)^(1/2))

``fid`` applies it to per-frame judge features: the concatenation of the emotion judge's and
the identity judge's 128-d penultimate features (256-d per frame), over every frame of the
generated videos against every frame of their source clips. ``fvd`` applies it to clip-level
features of 16-frame segments (stride 8): for per-frame features ``f_1 .. f_16`` of a segment,
``[mean_t f_t, mean_t |f_{t+1} - f_t|]`` (512-d): appearance plus how much each feature moves
from frame to frame. Videos shorter than 16 frames give one segment of all their frames.

Clustering strength (the paper's Table 5): for embeddings ``x_i`` with class labels ``y_i``,
class centroids ``c_k = mean_{y_i = k} x_i`` (K classes, Euclidean distances)::

    d_intra = (1 / K) sum_k mean_{y_i = k} ||x_i - c_k||     (each class weighs the same)
    d_inter = mean over pairs k < l of ||c_k - c_l||
    strength = d_inter / d_intra                             (higher: tighter, further apart)
"""

from __future__ import annotations

import warnings

import numpy as np

SEGMENT_FRAMES = 16
SEGMENT_STRIDE = 8


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of (N, d) features, N >= 2."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N >= 2, d) features, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance of two Gaussians (the formula of the module docstring)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: {mu1.shape}, {mu2.shape}, {sigma1.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular covariances (fewer samples than dimensions) are expected
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():  # regularise both (as pytorch-fid does)
            offset = np.eye(mu1.size) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between two (N, d) and (M, d) feature sets."""
    return frechet_from_stats(*gaussian_stats(x), *gaussian_stats(y))


def segment_features(per_frame: np.ndarray, length: int = SEGMENT_FRAMES, stride: int = SEGMENT_STRIDE) -> np.ndarray:
    """(T, d) per-frame features -> (S, 2d) clip-level features of ``length``-frame segments."""
    f = np.asarray(per_frame, np.float64)
    if f.ndim != 2 or len(f) == 0:
        raise ValueError(f"need (T >= 1, d) features, got shape {f.shape}")
    starts = range(0, len(f) - length + 1, stride) if len(f) >= length else [0]
    out = []
    for s in starts:
        seg = f[s : s + length]
        motion = np.abs(np.diff(seg, axis=0)).mean(axis=0) if len(seg) > 1 else np.zeros(f.shape[1])
        out.append(np.concatenate([seg.mean(axis=0), motion]))
    return np.stack(out)


def clustering_strength(embeddings: np.ndarray, labels: np.ndarray) -> dict:
    """``d_inter``, ``d_intra``, ``strength`` and per-class intra distances (module docstring)."""
    x = np.asarray(embeddings, np.float64)
    y = np.asarray(labels).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"embeddings (N, d) and labels (N,) must match, got {x.shape} and {y.shape}")
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError("clustering strength needs at least two classes")
    centroids = np.stack([x[y == k].mean(axis=0) for k in classes])
    intra = np.array([np.linalg.norm(x[y == k] - c, axis=1).mean() for k, c in zip(classes, centroids)])
    i, j = np.triu_indices(classes.size, k=1)
    d_inter = float(np.linalg.norm(centroids[i] - centroids[j], axis=1).mean())
    d_intra = float(intra.mean())
    return {
        "d_inter": d_inter,
        "d_intra": d_intra,
        "strength": d_inter / d_intra if d_intra > 0 else float("inf"),
        "num_classes": int(classes.size),
        "num_samples": int(x.shape[0]),
        "classes": [c.item() for c in classes],
        "per_class_intra": [float(v) for v in intra],
        "per_class_count": [int((y == k).sum()) for k in classes],
    }


def _auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(a positive score > a negative score), ties counted half."""
    neg = np.sort(negatives)
    below = np.searchsorted(neg, positives, side="left")
    equal = np.searchsorted(neg, positives, side="right") - below
    return float((below + 0.5 * equal).sum() / (positives.size * neg.size))


def same_vs_different(embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None) -> dict:
    """How well cosine similarity separates same-label from different-label pairs.

    ``triplet``: over anchors ``i``, the share of (positive ``j``, negative ``k``) with
    ``cos(i, j) > cos(i, k)``, where positives share ``i``'s label (and, when ``groups`` is given,
    come from another group, e.g. another clip) and negatives carry another label; averaged over
    anchors. ``pairs``: the same comparison over all pairs at once (ROC AUC of pair similarity).
    """
    x = np.asarray(embeddings, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    y = np.asarray(labels).reshape(-1)
    g = np.arange(len(y)) if groups is None else np.asarray(groups).reshape(-1)
    sim = x @ x.T
    same = (y[:, None] == y[None]) & (g[:, None] != g[None])
    diff = y[:, None] != y[None]
    scores = [_auc(sim[i, same[i]], sim[i, diff[i]]) for i in range(len(y)) if same[i].any() and diff[i].any()]
    if not scores:
        raise ValueError("need at least two labels and two groups per label")
    iu = np.triu_indices(len(y), k=1)
    pairs = _auc(sim[iu][same[iu]], sim[iu][diff[iu]])
    return {"triplet": float(np.mean(scores)), "pairs": pairs, "anchors": len(scores)}
