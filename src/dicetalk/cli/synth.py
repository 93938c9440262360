"""``dicetalk synth``: generate the synthetic talking-face world (MEAD-like and HDTF-like clips)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .main import app, seed_option


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Output folder (new, empty, or an unfinished run of the same world to resume)."),
    preset: str = typer.Option("tiny", help="How much to generate: tiny (tests, seconds) or default (training, minutes)."),
    seed: int = seed_option("World seed: the same seed gives the same identities, clips and coefficients."),
    size: Optional[int] = typer.Option(None, help="Frame size in pixels, 64..256 (default: the preset's)."),
    identities: Optional[int] = typer.Option(None, help="Number of MEAD-like identities (default: the preset's)."),
    hdtf_identities: Optional[int] = typer.Option(None, help="Number of HDTF-like identities (default: the preset's)."),
    sentences: Optional[int] = typer.Option(None, help="Clips per identity, emotion and level (default: the preset's)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: all cores); the output does not depend on it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate the synthetic world into OUT: mp4 clips with speech, per-frame coefficients, splits.

    Re-running over the same OUT with the same options skips finished clips (resumes a killed
    run); OUT holding a different world is refused.
    """
    from ..synthetic import generate_dataset

    summary = generate_dataset(
        out,
        preset=preset,
        seed=seed,
        workers=workers,
        progress=not quiet,
        size=size,
        identities=identities,
        hdtf_identities=hdtf_identities,
        sentences=sentences,
    )
    typer.echo(
        f"{summary.out_dir}: {summary.clips} clips ({summary.generated} written, {summary.skipped} already there), "
        f"{summary.frames} frames in {summary.seconds:.1f} s"
    )
