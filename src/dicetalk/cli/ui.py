"""``dicetalk ui``: the web page."""

from __future__ import annotations

from pathlib import Path

import typer

from .main import app


@app.command()
def ui(
    weights: Path | None = typer.Option(None, help="Weights folder (default: the embedded model)."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the page to your network."),
    port: int = typer.Option(7860),
    max_upload_mb: int = typer.Option(50, help="Largest accepted upload."),
    device: str = typer.Option("auto"),
) -> None:
    """Serve the web UI (Gradio) on http://HOST:PORT."""
    from ..ui.app import launch

    launch(weights, host=host, port=port, max_upload_mb=max_upload_mb, device=device)
