"""``dicetalk evaluate``: Emo-Score, F-SIM, Sync-C/D, FID/FVD of generated videos; clustering strength of embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .main import app


@app.command()
def evaluate(
    generated: Optional[Path] = typer.Argument(None, help="Folder of generated .mp4 videos, each with a sidecar .json naming its source clip."),
    reference: Optional[Path] = typer.Option(None, "--reference", "-r", help="The dataset folder ('dicetalk synth' layout) holding the source clips."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report here (written atomically)."),
    ground_truth: bool = typer.Option(False, "--ground-truth", help="Score the reference clips of --split as if generated, plus the judges' own checks."),
    split: str = typer.Option("test", help="With --ground-truth: which identities (train, val or test)."),
    shift_seconds: float = typer.Option(0.5, help="With --ground-truth: audio shift of the lip-sync check."),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", help="Instead: clustering strength of a safetensors file with 'embeddings' (N, d) and 'labels' (N,)."),
    normalize: bool = typer.Option(False, "--normalize", help="With --embeddings: L2-normalise the embeddings first."),
    judges: Optional[Path] = typer.Option(None, "--judges", help="Judges folder (default: those shipped with dicetalk)."),
    per_video: Optional[bool] = typer.Option(None, "--per-video/--summary-only", help="Print one line per video (default: when 30 videos or fewer)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score generated videos with the judges (or ground-truth clips, or embeddings) and print a table.

    \b
    dicetalk evaluate GENERATED_DIR --reference DATASET_DIR --json report.json
    dicetalk evaluate --ground-truth --reference DATASET_DIR --split test --json report.json
    dicetalk evaluate --embeddings emb.safetensors --json clusters.json
    """
    import sys

    from ..errors import InputError
    from ..utils.atomic import write_json

    modes = sum([generated is not None, ground_truth, embeddings is not None])
    if modes != 1:
        raise InputError("give exactly one of GENERATED_DIR, --ground-truth or --embeddings FILE")
    if embeddings is not None:
        from ..evaluation.evaluate import embedding_report, format_embedding_report

        result = embedding_report(embeddings, normalize=normalize)
        typer.echo(format_embedding_report(result))
        if json_out is not None:
            write_json(json_out, result)
            typer.echo(f"wrote {json_out}")
        return
    if reference is None:
        raise InputError("--reference DATASET_DIR is required (the folder holding the source clips)")
    if split not in ("train", "val", "test"):
        raise InputError(f"split must be train, val or test, got {split!r}")
    if not 0 < shift_seconds <= 10:
        raise InputError(f"shift-seconds must be in (0, 10], got {shift_seconds}")
    from ..evaluation.data import read_splits
    from ..evaluation.evaluate import collect_generated, collect_ground_truth, evaluate_items, format_report
    from ..evaluation.judges import load_judges

    read_splits(reference)  # a clear error before any work if the reference is not a dataset folder
    warnings: list[str] = []
    if ground_truth:
        items = collect_ground_truth(reference, split)
    else:
        items, warnings = collect_generated(generated, reference)
        if not items:
            more = f"; {len(warnings) - 1} more skipped" if len(warnings) > 1 else ""
            raise InputError(f"{generated}: no usable generated videos ({warnings[0].removeprefix('skipping ')}{more})")
    loaded = load_judges(judges)
    # Skipped videos are reported once scoring succeeded: when none is usable, the error line says it all.
    report = evaluate_items(items, loaded, ground_truth=ground_truth, shift_seconds=shift_seconds, progress=not quiet, warnings=warnings)
    for line in report["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    typer.echo(format_report(report, per_video=per_video if per_video is not None else report["num_videos"] <= 30))
    if json_out is not None:
        write_json(json_out, report)
        typer.echo(f"wrote {json_out}")
