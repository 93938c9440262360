"""``dicetalk batch JOBS --out DIR``: many videos, one model load, resumable (see :mod:`dicetalk.batch`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .main import app


@app.command("batch")
def batch_command(
    jobs: Path = typer.Argument(..., help="Jobs file: JSON Lines (.jsonl) or CSV (.csv), one job a line; fields image, audio (required, "
                                          "relative to the file), output, emotion, model, recipe, seed, crop, size, steps, sampler, "
                                          "identity_scale, emotion_scale, fps, transition, stream."),  # fmt: skip
    out: Path = typer.Option(..., "--out", help="Folder of the videos, batch.jsonl (each job's state) and summary.json."),
    weights: Path | None = typer.Option(None, help="Weights folder for every job (default: the embedded model)."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto (under accelerate launch: each process's own GPU)."),
    max_seconds: float = typer.Option(600.0, help="Refuse speech longer than this many seconds."),
    performance: str | None = typer.Option(None, help="Speed switches for every job, as generate's --performance."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="One progress bar over the jobs."),
) -> int:
    """Render every job of JOBS into --out, skipping those already done; exit 1 if any job failed."""
    import os

    from ..batch import run_batch

    if device == "auto" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if _has_cuda() else "cpu"
    summary = run_batch(jobs, out, weights=weights, device=device, max_seconds=max_seconds, performance=performance,
                        progress=progress, log=lambda line: typer.echo(line, err=True))  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"{summary.done} done, {summary.failed} failed, {summary.skipped} skipped ({summary.seconds:.0f} s); records in {out / 'batch.jsonl'}")
    return 0 if summary.ok else 1


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
