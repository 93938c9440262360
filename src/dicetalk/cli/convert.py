"""``dicetalk convert-official``: the authors' released checkpoints -> a dicetalk weights folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import InputError
from .main import app


@app.command("convert-official")
def convert_official(
    src: Path = typer.Argument(..., help="The release folder: DICE-Talk/*.pth, optionally RIFE/flownet.pkl, stable-video-diffusion-img2vid-xt/, whisper-tiny/ and <emotion>.npy priors."),
    dst: Optional[Path] = typer.Argument(None, help="Output folder in dicetalk's layout (must not exist unless --overwrite; not needed with --check)."),
    config: str = typer.Option("svd-xt", help="Model configuration the release must match: svd-xt (the release), synthetic or tiny."),
    check: bool = typer.Option(False, "--check", help="Verify every file, name and shape; write nothing."),
    dtype: Optional[str] = typer.Option(
        None, help="Output dtype of every component: float16, float32 or bfloat16 (default: float16 for unet, vae, image_encoder; float32 for the rest)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists."),
    svd: Optional[Path] = typer.Option(None, help="Stable Video Diffusion img2vid-xt folder (default SRC/stable-video-diffusion-img2vid-xt)."),
    whisper: Optional[Path] = typer.Option(None, help="whisper-tiny folder (default SRC/whisper-tiny)."),
    priors: Optional[Path] = typer.Option(None, help="Extra folder of <emotion>.npy/.safetensors/.json priors (e.g. the code repository's examples/emo)."),
) -> None:
    """Check the authors' DICE-Talk release in SRC and write it to DST in this project's layout."""
    from ..convert.official import convert_official as run

    if dst is None and not check:
        raise InputError("missing output folder DST (or pass --check to verify SRC only)")
    plan = run(src, dst, config=config, dtype=dtype, check=check, overwrite=overwrite, svd=svd, whisper=whisper, priors=priors)
    typer.echo(plan.summary())
    if check:
        typer.echo("check passed; nothing written")
    else:
        typer.echo(f"wrote {dst}")


@app.command()
def download(
    target: Path | None = typer.Argument(None, help="Folder to fill with the authors' release (their layout); with --judges, where the real judges go (default: the user cache)."),
    mirror: Path | None = typer.Option(None, help="Read the files from this local folder instead (release: MIRROR/<owner>/<name>/; judges: see docs/evaluation.md)."),
    revision: str | None = typer.Option(None, help="Hub revision (branch, tag or commit)."),
    judges: bool = typer.Option(False, "--judges", help="Instead: fetch the real-face judges (SyncNet, EMO-AffectNet, InceptionV3, I3D) and convert them to safetensors."),
) -> None:
    """Download the DICE-Talk release (with its RIFE frame interpolator), SVD-xt (fp16) and whisper-tiny with huggingface_hub; or, with --judges, the real-face judges."""
    from ..errors import InputError

    if judges:
        from ..evaluation.real.judges import download_real_judges

        folder = download_real_judges(target, mirror=mirror, progress=typer.echo)
        typer.echo(f"done: {folder} (dicetalk evaluate --judges real reads it; licences in {folder / 'judges.json'})")
        return
    if target is None:
        raise InputError("missing TARGET folder for the release (or pass --judges for the real-face judges)")
    from ..convert.download import download_release

    download_release(target, mirror=mirror, revision=revision, progress=typer.echo)
    typer.echo(f"done: {target} (emotion priors: the authors' examples/emo/*.npy, placed anywhere under it)")
