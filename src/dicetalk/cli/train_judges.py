"""``dicetalk train-judges DATASET --out DIR``: (re)train the evaluation judges on a synthetic world."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from .main import app, seed_option


@app.command("train-judges")
def train_judges(
    dataset: Path = typer.Argument(..., help="Dataset folder written by 'dicetalk synth' (train identities are used; val ones are scored)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the judges (replaced atomically when done)."),
    seed: int = seed_option("Random seed: the same data, seed and options give identical weights."),
    epochs: Optional[int] = typer.Option(None, help="Epochs of every judge (overrides the per-judge defaults)."),
    emotion_epochs: int = typer.Option(10, help="Epochs of the emotion judge."),
    identity_epochs: int = typer.Option(6, help="Epochs of the identity judge."),
    sync_epochs: int = typer.Option(8, help="Epochs of the lip-sync judge."),
    mouth_epochs: int = typer.Option(8, help="Epochs of the mouth-shape judge."),
    batch_size: int = typer.Option(64, help="Frames per step of the emotion and identity judges."),
    frame_stride: int = typer.Option(3, help="Every n-th frame of a clip trains the emotion and identity judges."),
    max_steps: Optional[int] = typer.Option(None, help="Stop each judge after this many steps (quick runs)."),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Score the val identities at the end (stored in judges.json)."),
    only: Optional[str] = typer.Option(
        None, "--only", help="Comma-separated judges to train (emotion, identity, sync, mouth; default all); when --out holds judges, the others are kept."
    ),
    threads: int = typer.Option(1, min=1, help="torch CPU threads (1: the tiny models gain nothing from more, and weights are reproducible at a fixed count)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train the emotion, identity, lip-sync and mouth-shape judges on ground-truth clips of training identities."""
    import torch

    from ..evaluation.judges import JUDGE_NAMES
    from ..evaluation.training import TrainOptions, train_judges as run

    torch.set_num_threads(threads)
    if epochs is not None:
        emotion_epochs = identity_epochs = sync_epochs = mouth_epochs = epochs
    if max_steps is not None and max_steps < 1:
        from ..errors import InputError

        raise InputError(f"max-steps must be at least 1, got {max_steps}")
    options = TrainOptions(
        seed=seed,
        emotion_epochs=emotion_epochs,
        identity_epochs=identity_epochs,
        sync_epochs=sync_epochs,
        mouth_epochs=mouth_epochs,
        batch_size=batch_size,
        frame_stride=frame_stride,
        max_steps=max_steps,
        validate=validate,
        judges=JUDGE_NAMES if only is None else tuple(n.strip() for n in only.split(",") if n.strip()),
    )
    command = "dicetalk " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv and "train-judges" in sys.argv else None
    manifest = run(dataset, out, options, progress=not quiet, command=command)
    sizes = sum(manifest["files"].values())
    latest = manifest["added"][-1] if manifest.get("added") else manifest
    judges = sorted({p.split("/")[0] for p in manifest["files"] if "/" in p})
    typer.echo(f"wrote {out}: {len(judges)} judges ({', '.join(judges)}), {sizes / 1e6:.1f} MB, trained in {latest['seconds']['total']:.0f} s")
    val = latest.get("validation")
    if val:
        parts = []
        if val.get("emotion", {}).get("all8") is not None:
            parts.append(f"emotion accuracy {val['emotion']['all8']:.3f}")
        if "identity" in val:
            parts.append(f"identity triplets {val['identity']['triplet']:.3f}")
        if "sync" in val:
            parts.append(f"Sync-C true > delayed {val['sync']['true_beats_delayed']:.3f}")
        if "mouth" in val:
            m = val["mouth"]
            r2 = {k: "-" if m[k] is None else f"{m[k]:.3f}" for k in ("opening_r2", "width_r2")}
            parts.append(f"mouth opening R^2 {r2['opening_r2']} (MAE {m['opening_mae']:.2f} % of the frame), width R^2 {r2['width_r2']} (MAE {m['width_mae']:.2f} %)")
        typer.echo("validation identities: " + ", ".join(parts))
