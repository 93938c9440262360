"""``dicetalk generate IMAGE AUDIO -o out.mp4``: the main job."""

from __future__ import annotations

from pathlib import Path

import typer

from .main import app


@app.command("generate")
def generate_command(
    image: Path = typer.Argument(..., help="Portrait photo (any common image format)."),
    audio: Path = typer.Argument(..., help="Speech recording (wav, mp3, flac, ogg, m4a, or a video's audio track)."),
    output: Path = typer.Option(Path("outputs/out.mp4"), "-o", "--output", help="Output .mp4 (written atomically)."),
    emotion: str | None = typer.Option(
        None,
        "-e",
        "--emotion",
        help="Label ('happy'), label:strength ('happy:0.6'), mix ('happy*0.7+surprised*0.3'), prior file "
        "(.npy/.safetensors/.json), reference video, or schedule ('0:neutral,2.5:happy,5:sad'); default neutral. "
        "With --model emotivetalk: 'speech' (the default: the voice decides), a label[:strength] or a reference video.",
    ),
    model: str = typer.Option("dicetalk", help="dicetalk, or emotivetalk (EmotiveTalk's parts on the same weights)."),
    weights: Path | None = typer.Option(None, help="Weights folder (project layout or convert-official output); default: the embedded model."),
    crop: bool = typer.Option(True, "--crop/--no-crop", help="Detect the face and crop a square around it."),
    frame: str = typer.Option(
        "full", help="full: the whole photo at its own size, the generated face pasted back; crop: only the model's crop. "
        "Without a crop (--no-crop) the video is the whole image either way.",
    ),
    max_side: int = typer.Option(1920, help="The full frame's longer side at most this many pixels (16..8192; the photo is scaled down to it)."),
    size: int | None = typer.Option(None, help="Resize the output so its short side has this many pixels, 16..4096 (default: as generated; the generation size is the recipe's `size`)."),
    recipe: str | None = typer.Option(
        None,
        help="Sampling recipe: a name (`release`, the authors' recipe; `model`, the model's own) and/or field=value pairs, comma-separated, "
        "on the model's own recipe, e.g. 'steps=12,overlap=4' or 'release,steps=10'. Fields: steps, sampler, identity_scale, emotion_scale, "
        "audio_scale, guidance_fraction, guidance_interval (lo:hi), windows (blend/circular), overlap, shift, noise_aug, fps, interpolation, "
        "time_ids (a:b:c), init_from_reference, size, decode_chunk.",
    ),
    steps: int | None = typer.Option(None, help="Shorthand for the recipe's steps (the model's: 8 for the default model, 25 for the release)."),
    sampler: str | None = typer.Option(None, help="Shorthand for the recipe's sampler: euler, euler-churn, heun or dpmpp-2m."),
    identity_scale: float | None = typer.Option(None, help="Shorthand for the recipe's identity_scale (guidance of the reference image)."),
    emotion_scale: float | None = typer.Option(None, help="Shorthand for the recipe's emotion_scale (guidance of audio + emotion)."),
    fps: float | None = typer.Option(None, help="Shorthand for the recipe's fps (frames per second of the output)."),
    seed: int = typer.Option(0, help="Random seed 0..2**63-1: the same seed gives the same video."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    max_seconds: float = typer.Option(600.0, help="Refuse audio longer than this many seconds (more than 0, at most 86400)."),
    transition: float = typer.Option(0.5, help="Seconds of crossfade between emotion schedule segments (0..60)."),
    stream: bool = typer.Option(
        False, "--stream", help="Sample the video in segments and write each as soon as it is done: the first frames come within "
        "seconds instead of after the whole video, for a little more work and frames very close to (not equal to) the whole-video run's.",
    ),
    performance: str | None = typer.Option(
        None, help="Speed switches that do not change the result beyond float rounding: 'fast' (all of them, for a GPU), or e.g. "
        "'attention=flash,compile_blocks,cuda_graphs' (see pipeline/performance.py).",
    ),
) -> None:
    """Render a talking-head video of IMAGE speaking AUDIO with an emotion."""
    from ..pipeline.options import GenerateOptions

    opts = GenerateOptions(
        image=image,
        audio=audio,
        output=output,
        emotion=emotion if emotion is not None else ("speech" if model == "emotivetalk" else "neutral"),
        model=model,
        weights=weights,
        crop=crop,
        frame=frame,
        max_side=max_side,
        size=size,
        recipe=recipe,
        steps=steps,
        sampler=sampler,
        identity_scale=identity_scale,
        emotion_scale=emotion_scale,
        fps=fps,
        seed=seed,
        device=device,
        max_seconds=max_seconds,
        transition=transition,
        stream=stream,
        performance=performance,
    )
    opts.check()  # every option and file, before torch and the model are imported
    from ..pipeline.generate import generate_video

    first = (lambda seconds: typer.echo(f"first frames written after {seconds:.1f} s", err=True)) if stream else None
    heard = lambda emotion, p: typer.echo(f"the voice reads as {emotion} (probability {p:.2f})", err=True)  # noqa: E731
    path = generate_video(opts, on_first_frames=first, on_voice_emotion=heard)
    typer.echo(f"wrote {path}")
    if weights is None:  # said after the video, so that a failed run says one line
        typer.echo("note: the embedded default model was trained on synthetic cartoon faces only; a photo comes out "
                   "cartoon-like (real faces: --weights with the authors' release, see `dicetalk download`)", err=True)  # fmt: skip
