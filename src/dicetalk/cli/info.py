"""``dicetalk info``: versions and the components of a model configuration."""

from __future__ import annotations

import typer

from .main import app


@app.command()
def info(config: str = typer.Option("tiny", help="Model configuration: tiny, synthetic or svd-xt.")) -> None:
    """Print versions and a summary of the model components of CONFIG."""
    import torch

    from .. import __version__
    from ..models.registry import build_components, summarize

    typer.echo(f"dicetalk {__version__}, torch {torch.__version__}")
    components = build_components(config, device="meta")
    typer.echo(summarize(components))
