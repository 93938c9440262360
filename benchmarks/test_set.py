"""The held-out test set, scored once per shipped model: every test identity of each dataset, all 8
emotions, levels 1-3, every sentence (``--per-group``), whole clips, with 95 % bootstrap intervals over clips.

For each dataset: ``render-eval`` of its test split (each clip's speech and emotion label on the
person's neutral frame, the model's own recipe unless ``--recipe``), ``evaluate`` against the
dataset, and the ground-truth clips scored as if generated; then the per-clip rows of all datasets
pooled (Fréchet distances are per dataset: they compare distributions, not clips)::

    python benchmarks/test_set.py data/world data/world96 --out runs/test_set [--weights DIR] [--recipe SPEC] [--max-frames 250]

Videos and reports are kept under ``OUT/<dataset>/`` (re-running resumes); ``OUT/summary.json`` holds
every table. Choose recipes on ``--split val`` with ``benchmarks/quality.py``; run this once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dicetalk import EMOTIONS

KEYS = ("emo_score", "emo_score_all8", "fsim", "sync_c", "sync_d", "mouth_error", "mouth_open_corr", "fid", "fvd")


def score_dataset(dataset: str, out: Path, pipe, judges, args) -> tuple[dict, dict]:
    """(generated report, ground-truth report) of one dataset's test split."""
    from dicetalk.evaluation.evaluate import collect_generated, collect_ground_truth, evaluate_items
    from dicetalk.evaluation.render import RenderOptions, render_evaluation_set

    folder = out / Path(dataset).name
    opts = RenderOptions(
        dataset=dataset, out=str(folder / "generated"), weights=args.weights, split="test", levels=(1, 2, 3), emotions=EMOTIONS,
        reference_frame="neutral", recipe=args.recipe, max_frames=args.max_frames, seed=args.seed, per_group=args.per_group,
    )  # fmt: skip
    render_evaluation_set(opts, pipe=pipe, progress=True)
    items, warnings = collect_generated(folder / "generated", dataset, split="test")
    report = evaluate_items(items, judges=judges, progress=True, warnings=warnings)
    sources = {it.source.relative for it in items}
    truth = [it for it in collect_ground_truth(dataset, split="test", datasets=("mead",)) if it.source.relative in sources]
    truth_report = evaluate_items(truth, judges=judges, ground_truth=True, progress=True)
    for name, r in (("generated", report), ("ground_truth", truth_report)):
        (folder / f"{name}.json").write_text(json.dumps(r, indent=1))
    return report, truth_report


def pooled(reports: list[dict]) -> dict:
    """The clip-level figures over the rows of several reports, with bootstrap intervals."""
    from dicetalk.evaluation.evaluate import BootstrapOptions, _Scored, aggregate

    rows = [row for report in reports for row in report["videos"]]
    out = aggregate(_Scored(rows=rows), BootstrapOptions())
    out["num_videos"] = len(rows)
    return out


def cell(report: dict, key: str) -> str:
    ci = report.get(f"{key}_ci") or {}
    digits = 1 if key in ("fid", "fvd") else 3
    if report.get(key) is None:
        return "—"
    if ci.get("low") is None:
        return f"{report[key]:.{digits}f}"
    return f"{ci['value']:.{digits}f} [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--weights", default=None, help="weights folder (default: the embedded model)")
    parser.add_argument("--recipe", default=None, help="recipe spec (default: the model's own)")
    parser.add_argument("--max-frames", type=int, default=250, help="frames per clip (whole clips of the synthetic world are shorter)")
    parser.add_argument("--per-group", type=int, default=3, help="clips per identity, emotion and level (3: every sentence of data/world)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from dicetalk.evaluation.judges import load_judges
    from dicetalk.pipeline.loading import load_pipeline
    from dicetalk.pipeline.recipe import parse_recipe

    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.weights)
    judges = load_judges().eval()
    out = Path(args.out)
    tables = {}
    for dataset in args.datasets:
        report, truth = score_dataset(dataset, out, pipe, judges, args)
        tables[Path(dataset).name] = (report, truth)
    if len(args.datasets) > 1:
        tables["pooled"] = (pooled([r for r, _ in tables.values()]), pooled([t for _, t in tables.values()]))
    recipe = parse_recipe(args.recipe, pipe.recipe)
    summary = {"recipe": recipe.to_dict(), "tables": {k: {"generated": g, "ground_truth": t} for k, (g, t) in tables.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"test split, recipe: {recipe.describe()}; 95 % bootstrap intervals over clips")
    print("| set | clips | " + " | ".join(KEYS) + " |")
    print("| --- | ---: |" + " ---: |" * len(KEYS))
    for name, (gen, truth) in tables.items():
        for label, r in (("model", gen), ("ground truth", truth)):
            print(f"| {name}, {label} | {r['num_videos']} | " + " | ".join(cell(r, k) for k in KEYS) + " |")


if __name__ == "__main__":
    main()
