"""``dicetalk generate IMAGE AUDIO -o out.mp4``: the main job."""

from __future__ import annotations

from pathlib import Path

import typer

from .main import app


@app.command()
def generate(
    image: Path = typer.Argument(..., help="Portrait photo (any common image format)."),
    audio: Path = typer.Argument(..., help="Speech recording (wav, mp3, flac, ogg, m4a, or a video's audio track)."),
    output: Path = typer.Option(Path("outputs/out.mp4"), "-o", "--output", help="Output .mp4 (written atomically)."),
    emotion: str = typer.Option(
        "neutral",
        "-e",
        "--emotion",
        help="Label ('happy'), label:strength ('happy:0.6'), mix ('happy*0.7+surprised*0.3'), prior file "
        "(.npy/.safetensors/.json), reference video, or schedule ('0:neutral,2.5:happy,5:sad').",
    ),
    weights: Path | None = typer.Option(None, help="Weights folder (project layout or convert-official output); default: the embedded model."),
    crop: bool = typer.Option(True, "--crop/--no-crop", help="Detect the face and crop a square around it."),
    size: int | None = typer.Option(None, help="Output resolution in pixels (default: the model's)."),
    steps: int | None = typer.Option(None, help="Denoising steps (default: the model's recipe; 25 for the release)."),
    sampler: str | None = typer.Option(None, help="euler, euler-churn, heun or dpmpp-2m (default: the model's recipe)."),
    identity_scale: float | None = typer.Option(None, help="Guidance scale of the reference image (default: the model's recipe; 3 for the release)."),
    emotion_scale: float | None = typer.Option(None, help="Guidance scale of audio + emotion (default: the model's recipe; 4 for the default model)."),
    fps: float = typer.Option(25.0, help="Frames per second of the output."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same video."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    max_seconds: float = typer.Option(600.0, help="Refuse audio longer than this."),
    transition: float = typer.Option(0.5, help="Seconds of crossfade between emotion schedule segments."),
) -> None:
    """Render a talking-head video of IMAGE speaking AUDIO with an emotion."""
    from ..pipeline.generate import GenerateOptions, generate as run

    if size is not None and not 16 <= size <= 2048:
        from ..errors import InputError

        raise InputError(f"size must be 16..2048 pixels, got {size}")
    opts = GenerateOptions(
        image=image,
        audio=audio,
        output=output,
        emotion=emotion,
        weights=weights,
        crop=crop,
        size=size,
        steps=steps,
        sampler=sampler,
        identity_scale=identity_scale,
        emotion_scale=emotion_scale,
        fps=fps,
        seed=seed,
        device=device,
        max_seconds=max_seconds,
        transition=transition,
    )
    path = run(opts)
    typer.echo(f"wrote {path}")
