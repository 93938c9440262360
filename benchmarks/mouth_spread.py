"""How far the mouths open over time: generated videos, the world's true shapes, and ground truth through
the mouth judge — the over-articulation Sync-C does not see (docs/results.md, the test set).

Reads the videos ``benchmarks/test_set.py`` rendered::

    python benchmarks/mouth_spread.py runs/test_set data/world [data/world96 ...]

For every clip: the standard deviation over time of the mouth opening, regressed from the generated
frames, from the ground-truth frames, and the world's true opening; their means over clips.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="test_set.py's --out folder")
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from dicetalk.evaluation.data import load_video_arrays
    from dicetalk.evaluation.evaluate import collect_generated
    from dicetalk.evaluation.judges import load_judges
    from dicetalk.evaluation.mouth import regress_mouths, true_mouth_shape

    judges = load_judges().eval()
    for dataset in args.datasets:
        items, _ = collect_generated(Path(args.runs) / Path(dataset).name / "generated", dataset, split="test")
        spreads = []  # (generated, true, ground truth regressed) per clip
        for item in items:
            true = true_mouth_shape(item.source)
            generated = regress_mouths(judges.mouth, load_video_arrays(item.video).lips)
            regressed = regress_mouths(judges.mouth, load_video_arrays(item.source.video).lips)
            n = min(len(true), len(generated), len(regressed))
            spreads.append((generated[:n, 0].std(), true[:n, 0].std(), regressed[:n, 0].std()))
        g, t, r = np.mean(spreads, axis=0)
        print(f"{dataset}: {len(items)} clips; opening std over time: generated {g:.2f}, true {t:.2f}, ground truth regressed {r:.2f}")


if __name__ == "__main__":
    main()
