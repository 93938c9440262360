"""``dicetalk render-eval`` and ``dicetalk embed``: what a trained model produces on held-out data, for ``evaluate``."""

from __future__ import annotations

from pathlib import Path

import typer

from .main import app, seed_option


@app.command("render-eval")
def render_eval(
    dataset: Path = typer.Argument(..., help="Dataset folder (the synthetic world or the same layout)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the videos and their sidecars."),
    weights: Path | None = typer.Option(None, help="Weights folder (default: the embedded model)."),
    split: str = typer.Option("test", help="Identities to render: val (choose recipes and settings there) or test (report once)."),
    mode: str = typer.Option("label", help="label (prompt priors), reference (another clip, same identity) or other-identity."),
    reference_frame: str = typer.Option("clip", help="clip (the clip's own first frame) or neutral (the person's neutral clip: the emotion must come from the condition)."),
    levels: str = typer.Option("3", help="Comma-separated intensity levels (neutral is always level 1)."),
    per_group: int = typer.Option(1, help="Clips per identity, emotion and level."),
    recipe: str | None = typer.Option(None, help="Sampling recipe as `generate --recipe` takes it (default: the model's own)."),
    max_frames: int = typer.Option(125, help="Frames per clip, from its start."),
    seed: int = seed_option(),
    threads: int | None = typer.Option(None),
) -> None:
    """Generate one video per held-out clip (its first frame, its speech, an emotion) with sidecars for `evaluate`."""
    import torch

    from ..evaluation.render import RenderOptions, render_evaluation_set

    if threads:
        torch.set_num_threads(threads)
    opts = RenderOptions(
        dataset=str(dataset), out=str(out), weights=str(weights) if weights else None, split=split, mode=mode, reference_frame=reference_frame,
        levels=tuple(int(x) for x in levels.split(",")), per_group=per_group, recipe=recipe, max_frames=max_frames, seed=seed,
    )  # fmt: skip
    videos = render_evaluation_set(opts)
    typer.echo(f"wrote {len(videos)} videos to {out}")


@app.command()
def embed(
    dataset: Path = typer.Argument(..., help="Dataset folder."),
    out: Path = typer.Option(..., "--out", "-o", help="safetensors with embeddings, labels, identities."),
    weights: Path | None = typer.Option(None),
    split: str = typer.Option("test"),
    modalities: str = typer.Option("both", help="both, video or audio (Table 5 ablation)."),
) -> None:
    """Emotion-embedder priors of a split's clips, for `dicetalk evaluate --embeddings`."""
    from ..evaluation.render import embed_clips, save_embeddings
    from ..pipeline.loading import load_pipeline

    arrays = embed_clips(str(dataset), load_pipeline(weights), split=split, modalities=modalities)
    typer.echo(f"wrote {save_embeddings(arrays, out)} ({len(arrays['labels'])} clips)")
