"""``dicetalk ui``: the web page."""

from __future__ import annotations

from pathlib import Path

import typer

from .main import app


@app.command()
def ui(
    weights: Path | None = typer.Option(None, help="Weights folder (default: the embedded model)."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; anything but loopback (e.g. 0.0.0.0) needs --auth/--auth-file or --insecure."),
    port: int = typer.Option(7860, min=0, max=65535, help="Port to serve on (0: any free port)."),
    device: str = typer.Option("auto"),
    auth: list[str] | None = typer.Option(
        None, help="Require a login, user:password (repeatable). Visible to other users of this machine in the process list: prefer --auth-file."
    ),
    auth_file: Path | None = typer.Option(None, help="Require a login: a file of user:password lines (# comments)."),
    insecure: bool = typer.Option(False, "--insecure", help="Serve a non-loopback --host without a login."),
    max_upload_mb: int = typer.Option(50, min=1, help="Largest accepted upload."),
    max_audio_seconds: float = typer.Option(60.0, min=1.0, help="Longest accepted speech (a CPU spends several seconds per second of speech)."),
    max_steps: int = typer.Option(
        50, min=1, help="Most denoising steps a job may ask for (the Steps slider and the recipe box alike; a heun step counts twice: it runs the model twice)."
    ),
    max_size: int | None = typer.Option(
        None, min=16, help="Largest frame size (short side, pixels) a job's recipe may ask for; default: the model's own size. Cost grows with its square."
    ),
    max_fps: float | None = typer.Option(
        None, min=1.0, help="Most output frames per second a job's recipe may ask for (its fps: every frame of the video, interpolated ones too; "
        "interpolation only generates fewer of them); default: the model's own fps.",
    ),
    max_decode_chunk: int | None = typer.Option(
        None, min=1, help="Most frames a job's recipe may decode at once (decode_chunk: memory); default: the model's own."
    ),
    jobs_per_session: int = typer.Option(1, min=0, help="Jobs one browser session may have waiting or running (0: no limit)."),
    queue_size: int = typer.Option(16, min=1, help="Jobs that may wait in the queue."),
    keep_minutes: float = typer.Option(60.0, min=1.0, help="Uploads and results are deleted this long after they were made (all of them at exit)."),
    grace_seconds: float = typer.Option(
        5.0, min=0.0, help="On SIGTERM/SIGINT, how long the running job may go on before it is cancelled (keep it below your service manager's kill timeout)."
    ),
) -> int:
    """Serve the web UI (Gradio) on http://HOST:PORT until SIGTERM or Ctrl-C.

    What one job may cost is bounded whichever field asks for it: speech length (--max-audio-seconds), steps
    (--max-steps), frame size (--max-size), output frames per second (--max-fps), frames decoded at once
    (--max-decode-chunk) and the windows' overlap (at most half a window, in either layout), all checked
    on the job's final recipe before it joins the queue; a refusal names the limit. Uploads are bounded by
    --max-upload-mb, waiting jobs by --queue-size and --jobs-per-session."""
    from ..ui.checks import check_exposure, parse_auth

    logins = parse_auth(auth, auth_file)
    check_exposure(host, logins, insecure)  # before loading anything
    from ..ui.app import UISettings, UIServer, configure_logging, serve

    settings = UISettings(
        max_upload_mb=max_upload_mb, max_audio_seconds=max_audio_seconds, max_steps=max_steps, max_size=max_size, max_fps=max_fps,
        max_decode_chunk=max_decode_chunk, jobs_per_session=jobs_per_session,
        queue_size=queue_size, keep_minutes=keep_minutes, grace_seconds=grace_seconds,
    )  # fmt: skip
    configure_logging()
    return serve(UIServer(weights, device, host, port, settings, auth=logins, insecure=insecure))
