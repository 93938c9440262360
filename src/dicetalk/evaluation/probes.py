"""Linear probes: what a per-frame representation lets a linear read-out predict (V-AID's 2x2 table).

For each representation of the speech (one vector per video frame), two probes, trained on the
train split's identities, their regularisation chosen on the val split, measured once on test:

* **lips**: ridge regression of the world's *true* mouth motion — ``jaw_drop`` and ``lip_round``
  minus their 0.6 s moving average (:func:`~dicetalk.data.emotive.stream_targets`) — scored by
  R^2 (mean of the two); also the raw opening (``jaw_drop``) as ``opening_r2``;
* **emotion**: multinomial logistic regression of the clip's emotion label from each frame of the
  labelled clips, scored by accuracy (chance: the share of the largest class, ``chance``).

Features are standardised with the train split's mean and spread. Frames are subsampled every
``stride`` frames for the emotion probe's training set (neighbouring frames are near copies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

RIDGE_LAMBDAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
LOGISTIC_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclass
class ProbeData:
    """Per-frame features of one split and the probes' targets."""

    x: np.ndarray  # (N, D) float32
    lips: np.ndarray  # (N, 2) true mouth motion
    opening: np.ndarray  # (N,) true jaw_drop
    label: np.ndarray  # (N,) emotion index of the frame's clip, -1 unlabelled


def r2(pred: np.ndarray, target: np.ndarray) -> float:
    """Coefficient of determination, averaged over target columns."""
    pred, target = np.atleast_2d(pred.T).T, np.atleast_2d(target.T).T
    res = ((pred - target) ** 2).sum(0)
    tot = ((target - target.mean(0)) ** 2).sum(0).clip(1e-12)
    return float(np.mean(1 - res / tot))


def _standardiser(x: np.ndarray):
    mean, std = x.mean(0), x.std(0).clip(1e-6)
    return lambda z: ((z - mean) / std).astype(np.float32)


def ridge_probe(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict:
    """Ridge regression with the lambda best on ``val``; its R^2 on val and test."""
    std = _standardiser(train[0])
    xs = [torch.from_numpy(std(x)).double() for x in (train[0], val[0], test[0])]
    ys = [torch.from_numpy(np.asarray(y, np.float64).reshape(len(y), -1)) for y in (train[1], val[1], test[1])]
    y_mean = ys[0].mean(0)
    gram, cross = xs[0].T @ xs[0], xs[0].T @ (ys[0] - y_mean)
    best = None
    for lam in RIDGE_LAMBDAS:
        w = torch.linalg.solve(gram + lam * len(xs[0]) * 1e-3 * torch.eye(gram.shape[0], dtype=gram.dtype), cross)
        score = r2((xs[1] @ w + y_mean).numpy(), ys[1].numpy())
        if best is None or score > best[0]:
            best = (score, lam, w)
    score, lam, w = best
    return {"val": score, "test": r2((xs[2] @ w + y_mean).numpy(), ys[2].numpy()), "lambda": lam}


def logistic_probe(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], classes: int, seed: int = 0) -> dict:
    """Multinomial logistic regression (L-BFGS) with the weight decay best on ``val``; accuracies."""
    std = _standardiser(train[0])
    xs = [torch.from_numpy(std(x)) for x in (train[0], val[0], test[0])]
    ys = [torch.from_numpy(np.asarray(y, np.int64)) for y in (train[1], val[1], test[1])]
    best = None
    for decay in LOGISTIC_DECAYS:
        torch.manual_seed(seed)
        layer = torch.nn.Linear(xs[0].shape[1], classes)
        opt = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(layer(xs[0]), ys[0]) + decay * layer.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            accuracy = [float((layer(x).argmax(1) == y).float().mean()) for x, y in zip(xs[1:], ys[1:])]
        if best is None or accuracy[0] > best[0]:
            best = (accuracy[0], accuracy[1], decay)
    return {"val": best[0], "test": best[1], "weight_decay": best[2]}


def probe_table(data: dict[str, dict[str, ProbeData]], classes: int = 8, stride: int = 3) -> dict:
    """Both probes for every representation: ``data[name][split]`` with splits train / val / test."""
    table = {}
    for name, splits in data.items():
        tr, va, te = splits["train"], splits["val"], splits["test"]
        lips = ridge_probe((tr.x, tr.lips), (va.x, va.lips), (te.x, te.lips))
        opening = ridge_probe((tr.x, tr.opening), (va.x, va.opening), (te.x, te.opening))
        labelled = [np.flatnonzero(s.label >= 0) for s in (tr, va, te)]
        labelled[0] = labelled[0][::stride]
        emotion = logistic_probe(*[(s.x[i], s.label[i]) for s, i in zip((tr, va, te), labelled)], classes=classes)
        counts = np.bincount(te.label[te.label >= 0], minlength=classes)
        table[name] = {
            "dim": int(tr.x.shape[1]), "lips_r2": lips, "opening_r2": opening, "emotion_accuracy": emotion,
            "chance": float(counts.max() / counts.sum()),
        }  # fmt: skip
    return table


def format_probe_table(table: dict) -> str:
    header = f"{'representation':<44} {'dim':>5} {'lip motion R^2':>15} {'opening R^2':>12} {'emotion acc.':>13} {'chance':>7}"
    lines = [header, "-" * len(header)]
    for name, row in table.items():
        lines.append(
            f"{name:<44} {row['dim']:>5} {row['lips_r2']['test']:>15.3f} {row['opening_r2']['test']:>12.3f}"
            f" {row['emotion_accuracy']['test']:>13.3f} {row['chance']:>7.3f}"
        )
    lines.append("(test split; regularisation chosen on val)")
    return "\n".join(lines)


@torch.no_grad()
def vaid_probe_data(features, vaid=None, audio_projection=None, stride: int = 1, baselines: bool = True) -> dict[str, ProbeData]:
    """The representations of one split (:class:`~dicetalk.data.emotive.SplitFeatures`), every ``stride``-th frame.

    ``Whisper window``: the per-frame window of hidden states DICE-Talk's audio projection reads (its
    single audio stream); ``audio tokens``: that projection's output (with ``audio_projection``);
    ``V-AID lip`` / ``V-AID expression``: the two streams (with ``vaid``).
    """
    from ..data.emotive import MOUTH, stream_targets

    rows: dict[str, list[np.ndarray]] = {}
    lips, opening, labels = [], [], []
    for c in range(features.num_clips):
        windows = features.clip_windows(c)
        keep = slice(0, len(windows), stride)
        reps = {"Whisper window (DICE-Talk's audio input)": windows.flatten(1)} if baselines else {}
        if audio_projection is not None:
            reps["DICE-Talk audio tokens"] = audio_projection(windows.to(audio_projection.dtype)).flatten(1).float()
        if vaid is not None:
            out = vaid(windows[None].to(vaid.dtype))
            reps["V-AID lip stream"] = out.lip[0].float()
            reps["V-AID expression stream"] = out.expression[0].float()
        for name, rep in reps.items():
            rows.setdefault(name, []).append(rep[keep].numpy())
        truth = np.asarray(features.cache.expression[features.cache.clip_frames(c)], np.float32)
        motion, _ = stream_targets(truth)
        if baselines:  # how much emotion the mouth's true motion itself carries (louder emotions open it wider)
            rows.setdefault("true mouth motion (the world's, the lip target)", []).append(motion[keep])
        lips.append(motion[keep])
        opening.append(truth[keep, MOUTH[0]])
        labels.append(np.full(len(motion[keep]), features.cache.records[c].emotion_id))
    targets = (np.concatenate(lips), np.concatenate(opening), np.concatenate(labels))
    return {name: ProbeData(np.concatenate(parts), *targets) for name, parts in rows.items()}
