"""Why a mouth error is what it is: each measure's per-clip level, its gain over time, and the rest.

Reads folders of rendered clips (``benchmarks/quality.py``'s ``OUT/<split>/<recipe>/``, sidecars
naming their source clip) and splits each video's mouth error (``evaluation/mouth.py``, the mouth
judge's regressed opening and width against the world's true shape, frame by frame) into:

* ``level``: the absolute per-clip mean difference (the mouth held too open, too wide, all clip long);
* ``gain``: the slope of the regressed measure on the true one over the clip's frames (1: the right
  amplitude; above 1, the mouth moves more than the speech asks);
* ``spread``: the standard deviation over time, generated and true;
* ``rest``: the mean absolute error left once the clip's level is taken out;

means over clips, for each folder and for the same clips' ground truth (``GT``)::

    python benchmarks/mouth_gain.py data/world runs/mouth_guidance/val/model runs/mouth_guidance/val/autoencoder --split val
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def decompose(generated: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(T, 2) frame-aligned shapes -> [level x2, gain x2, spread x2, true spread x2, rest x2, error x2]."""
    d = generated - true
    level = d.mean(0)
    gain = [np.polyfit(true[:, i], generated[:, i], 1)[0] if true[:, i].std() > 1e-6 else np.nan for i in range(2)]
    return np.concatenate([np.abs(level), gain, generated.std(0), true.std(0), np.abs(d - level).mean(0), np.abs(d).mean(0)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from dicetalk.evaluation.data import load_video_arrays
    from dicetalk.evaluation.evaluate import collect_generated
    from dicetalk.evaluation.judges import load_judges
    from dicetalk.evaluation.mouth import regress_mouths, true_mouth_shape

    judge = load_judges().eval().mouth
    rows: dict[str, list[np.ndarray]] = {}
    sources = {}
    for folder in args.folders:
        items, _ = collect_generated(folder, args.dataset, split=args.split)
        for item in items:
            true = true_mouth_shape(item.source)
            regressed = regress_mouths(judge, load_video_arrays(item.video).lips)
            n = min(len(true), len(regressed))
            rows.setdefault(folder, []).append(decompose(regressed[:n], true[:n]))
            sources.setdefault(item.source.relative, (item.source, n))
    for source, n in sources.values():
        true = true_mouth_shape(source)[:n]
        rows.setdefault("GT", []).append(decompose(regress_mouths(judge, load_video_arrays(source.video).lips)[:n], true))
    print(f"split {args.split}; means over clips (percent of the frame side); opening / width")
    print("| videos | clips | mouth error | level | gain | spread (true) | rest |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        m = np.nanmean(np.array(r), axis=0)
        print(
            f"| {name} | {len(r)} | {m[10:12].mean():.2f} ({m[10]:.2f} / {m[11]:.2f}) | {m[0]:.2f} / {m[1]:.2f} | {m[2]:.2f} / {m[3]:.2f} "
            f"| {m[4]:.2f} ({m[6]:.2f}) / {m[5]:.2f} ({m[7]:.2f}) | {m[8]:.2f} / {m[9]:.2f} |"
        )


if __name__ == "__main__":
    main()
