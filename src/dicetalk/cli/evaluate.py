"""``dicetalk evaluate``: Emo-Score, F-SIM, Sync-C/D, FID/FVD of generated videos; clustering strength of embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import typer

from .main import app, seed_option


@app.command()
def evaluate(
    generated: Optional[Path] = typer.Argument(
        None, help="Folder of generated .mp4 videos, each with a sidecar .json naming its source clip; or, with --portrait, one video."
    ),
    portrait: Optional[Path] = typer.Option(
        None, "--portrait", help="Score one VIDEO against the portrait it was made from, with no reference dataset: emotion, F-SIM, Sync-C/D."
    ),
    audio: Optional[Path] = typer.Option(None, "--audio", help="With --portrait: the speech for Sync-C/D (default: the video's own audio track)."),
    drift: Optional[float] = typer.Option(
        None, "--drift", metavar="SECONDS", help="With --portrait: score the first and last SECONDS of a long video alike, and the FVD between them."
    ),
    reference: Optional[Path] = typer.Option(None, "--reference", "-r", help="The dataset folder ('dicetalk synth' layout) holding the source clips."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report here (written atomically)."),
    ground_truth: bool = typer.Option(False, "--ground-truth", help="Score the reference clips of --split as if generated, plus the judges' own checks."),
    split: str = typer.Option("test", help="Identities whose clips are scored (--ground-truth) or may be sources of generated videos: val or test."),
    shift_seconds: float = typer.Option(0.5, help="With --ground-truth: audio shift of the lip-sync check."),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", help="Instead: clustering strength of a safetensors file with 'embeddings' (N, d) and 'labels' (N,)."),
    normalize: bool = typer.Option(False, "--normalize", help="With --embeddings: L2-normalise the embeddings first."),
    compare: Optional[Tuple[Path, Path]] = typer.Option(
        None, "--compare", metavar="A.json B.json", help="Instead: paired comparison of two reports over the same clips (B - A, with intervals and tests)."
    ),
    resamples: int = typer.Option(1000, min=0, help="Bootstrap resamples of the 95 % intervals (0: none)."),
    frechet_resamples: int = typer.Option(200, min=0, help="Bootstrap resamples of the FID / FVD intervals (at most --resamples; 0: none)."),
    seed: int = seed_option("Seed of the bootstrap resamples."),
    judges: Optional[str] = typer.Option(
        None, "--judges", help="real, synthetic, or a judges folder (default: synthetic for synthetic-world inputs, real otherwise)."
    ),
    identity: str = typer.Option("dlib", "--identity", help="With the real judges: the face recogniser of F-SIM, dlib or arcface (needs onnxruntime and the model file)."),
    report_page: Optional[Path] = typer.Option(None, "--report", help="With VIDEO --portrait IMG and the real judges: write a self-contained HTML page (frames and charts)."),
    per_video: Optional[bool] = typer.Option(None, "--per-video/--summary-only", help="Print one line per video (default: when 30 videos or fewer)."),
    threads: Optional[int] = typer.Option(
        None, min=1, help="torch CPU threads (default: 1 for the tiny synthetic judges, every core for the real ones)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score generated videos with the judges (or ground-truth clips, or embeddings; or compare two reports) and print a table.

    \b
    dicetalk evaluate VIDEO.mp4 --portrait IMG --json out.json --report report.html
    dicetalk evaluate GENERATED_DIR --reference DATASET_DIR --json report.json
    dicetalk evaluate --ground-truth --reference DATASET_DIR --split test --json report.json
    dicetalk evaluate --compare A.json B.json --json comparison.json
    dicetalk evaluate --embeddings emb.safetensors --json clusters.json
    """
    from ..errors import InputError

    modes = sum([generated is not None, ground_truth, embeddings is not None, compare is not None])
    if modes != 1:
        raise InputError("give exactly one of GENERATED_DIR, VIDEO --portrait IMG, --ground-truth, --embeddings FILE or --compare A.json B.json")
    if (audio is not None or drift is not None or report_page is not None) and portrait is None:
        raise InputError("--audio, --drift and --report go with VIDEO --portrait IMG")
    if identity not in ("dlib", "arcface"):
        raise InputError(f"--identity must be dlib or arcface, got {identity!r}")
    if portrait is not None:
        _score_one(generated, portrait, audio, reference, json_out, judges, threads, drift, identity, report_page, quiet)
        return
    if embeddings is not None:
        from ..evaluation.evaluate import embedding_report, format_embedding_report

        result = embedding_report(embeddings, normalize=normalize)
        _emit(format_embedding_report(result), result, json_out)
        return
    if compare is not None:
        from ..evaluation.evaluate import compare_reports, format_comparison

        result = compare_reports(*compare, resamples=resamples, seed=seed)
        _emit(format_comparison(result), result, json_out)
        return
    _score(generated, reference, json_out, ground_truth, split, shift_seconds, resamples, frechet_resamples, seed, judges, per_video, threads, quiet, identity)


def _judges_line(choice) -> str:
    """The first line of every printout: which judges, and why."""
    return f"judges: {choice.kind} ({choice.reason})"


def _score_one(video, portrait, audio, reference, json_out, judges, threads: int, drift=None, identity: str = "dlib", report_page=None, quiet: bool = False) -> None:
    import sys

    import torch

    from ..errors import InputError
    from ..evaluation.choose import choose_judges, synthetic_on_real_warning

    if video is None or not video.is_file():
        raise InputError(f"--portrait scores one video file: {video} is not one")
    if reference is not None:
        raise InputError("--portrait needs no --reference: the portrait is the reference")
    if not Path(portrait).is_file():
        raise InputError(f"--portrait: {portrait} is not an image file")
    choice = choose_judges(judges, [video, portrait])
    torch.set_num_threads(threads or (torch.get_num_threads() if choice.real else 1))
    if choice.real:
        if drift is not None:
            raise InputError("--drift compares with the synthetic judges: add --judges synthetic")
        _score_one_real(video, portrait, audio, json_out, choice, identity, report_page, quiet)
        return
    if report_page is not None:
        raise InputError("--report draws the real judges' time series: use --judges real")
    note = synthetic_on_real_warning(choice, [video, portrait])  # said once the inputs proved usable
    from ..evaluation.judges import load_judges
    from ..evaluation.single import format_single, score_video

    judges = choice.folder
    if drift is not None:
        import json

        from ..evaluation.emotivetalk import drift_report

        if not 0 < drift <= 600:
            raise InputError(f"--drift must be 0..600 seconds, got {drift:g}")
        report = drift_report(video, portrait, drift, load_judges(judges))
        if note is not None:
            print(f"warning: {note}", file=sys.stderr)
        _emit(json.dumps(report, indent=2), report, json_out)
        return
    report = score_video(video, portrait, load_judges(judges), audio=audio)
    report["judges"].update(kind="synthetic", reason=choice.reason)
    if note is not None:
        report["warnings"].insert(0, note)
    for line in report["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    _emit(_judges_line(choice) + "\n" + format_single(report), report, json_out)


def _score_one_real(video: Path, portrait: Path, audio, json_out, choice, identity: str, report_page, quiet: bool) -> None:
    import sys

    from ..evaluation.real.judges import load_real_judges
    from ..evaluation.real.score import format_real, score_real_video

    judges = load_real_judges(choice.folder, identity=identity)
    step = None if quiet else (lambda name: print(f"  {name}...", file=sys.stderr, flush=True))
    report = score_real_video(video, portrait, judges, audio=audio, progress=step, keep_frames=report_page is not None)
    frames, boxes = report.pop("_frames", None), report.pop("_boxes", None)
    report.pop("_mouths", None)
    report["judges"]["reason"] = choice.reason
    for line in report["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    _emit(_judges_line(choice) + "\n" + format_real(report), report, json_out)
    if report_page is not None:
        from ..evaluation.real.report import write_report

        write_report(report_page, report, frames, boxes)
        typer.echo(f"wrote {report_page}")


def _emit(text: str, result: dict, json_out: Optional[Path]) -> None:
    from ..utils.atomic import write_json

    typer.echo(text)
    if json_out is not None:
        write_json(json_out, result)
        typer.echo(f"wrote {json_out}")


def _score(generated, reference, json_out, ground_truth, split, shift_seconds, resamples, frechet_resamples, seed, judges, per_video, threads, quiet, identity="dlib") -> None:
    import sys

    import torch

    from ..errors import InputError

    if reference is None:
        raise InputError("--reference DATASET_DIR is required (the folder holding the source clips)")
    from ..evaluation.evaluate import BootstrapOptions, check_split, collect_generated, collect_ground_truth, evaluate_items, format_report

    check_split(split)
    if not 0 < shift_seconds <= 10:
        raise InputError(f"shift-seconds must be in (0, 10], got {shift_seconds}")
    from ..evaluation.choose import choose_judges, synthetic_on_real_warning

    choice = choose_judges(judges, [reference])
    if choice.real:
        _score_real(generated, reference, json_out, ground_truth, split, resamples, seed, choice, identity, per_video, threads, quiet)
        return
    judges = choice.folder
    from ..evaluation.data import read_splits
    from ..evaluation.judges import load_judges

    read_splits(reference)  # a clear error before any work if the reference is not a dataset folder
    if (note := synthetic_on_real_warning(choice, [reference])) is not None:
        print(f"warning: {note}", file=sys.stderr)
    torch.set_num_threads(threads or 1)
    warnings: list[str] = []
    if ground_truth:
        items = collect_ground_truth(reference, split)
    else:
        items, warnings = collect_generated(generated, reference, split)
        if not items:
            more = f"; {len(warnings) - 1} more skipped" if len(warnings) > 1 else ""
            raise InputError(f"{generated}: no usable generated videos ({warnings[0].removeprefix('skipping ')}{more})")
    loaded = load_judges(judges)
    bootstrap = BootstrapOptions(resamples, min(frechet_resamples, resamples), seed)
    # Skipped videos are reported once scoring succeeded: when none is usable, the error line says it all.
    report = evaluate_items(
        items, loaded, ground_truth=ground_truth, shift_seconds=shift_seconds, progress=not quiet, warnings=warnings, bootstrap=bootstrap, split=split
    )
    for line in report["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    report["judges"].update(kind="synthetic", reason=choice.reason)
    _emit(_judges_line(choice) + "\n" + format_report(report, per_video=per_video if per_video is not None else report["num_videos"] <= 30), report, json_out)


def _score_real(generated, reference, json_out, ground_truth, split, resamples, seed, choice, identity, per_video, threads, quiet) -> None:
    import sys

    import torch

    from ..errors import InputError
    from ..evaluation.real.dataset import collect_real, format_real_table, score_items
    from ..evaluation.real.judges import load_real_judges

    items, warnings = collect_real(generated, reference, ground_truth=ground_truth, split=split)
    if not items:
        more = f"; {len(warnings) - 1} more skipped" if len(warnings) > 1 else ""
        raise InputError(f"{generated}: no usable generated videos ({warnings[0].removeprefix('skipping ')}{more})")
    if threads:
        torch.set_num_threads(threads)
    report = score_items(items, load_real_judges(choice.folder, identity=identity), ground_truth=ground_truth, progress=not quiet, warnings=warnings, resamples=resamples, seed=seed)
    report["judges"]["reason"] = choice.reason
    for line in report["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    _emit(_judges_line(choice) + "\n" + format_real_table(report, per_video=per_video if per_video is not None else report["num_videos"] <= 30), report, json_out)
