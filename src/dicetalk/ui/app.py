"""A Gradio page: upload a portrait and speech, pick an emotion (or a reference video), get a video.

Binds to 127.0.0.1 unless told otherwise, bounds upload sizes, and queues jobs (one runs at a
time; the pipeline is loaded once and shared). Bad input shows the same one-line message as the
command line.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from pathlib import Path

from ..errors import DiceTalkError

DEFAULT_EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "fear", "disgusted", "contempt")


class _PipelineCache:
    """Loads the weights once (lazily, on the first job) and validates them at start-up."""

    def __init__(self, weights: Path | None, device: str):
        self.weights, self.device = weights, device
        self._lock = threading.Lock()
        self._pipe = None

    def get(self):
        from ..pipeline.generate import resolve_device
        from ..pipeline.loading import load_pipeline

        with self._lock:
            if self._pipe is None:
                dev = resolve_device(self.device)
                import torch

                self._pipe = load_pipeline(self.weights, device=dev, dtype=torch.float16 if dev.type == "cuda" else torch.float32)
            return self._pipe


def build_app(weights: Path | None = None, device: str = "auto", output_dir: Path | None = None):
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    from ..pipeline.generate import GenerateOptions, generate

    cache = _PipelineCache(weights, device)
    pipe = cache.get()  # fail at start-up, not on the first request, if the weights are unusable
    emotions = [e for e in DEFAULT_EMOTIONS if e in pipe.priors.emotions] or list(pipe.priors.emotions)
    can_embed = pipe.emotion_embedder is not None and pipe.expression_encoder is not None
    out_dir = Path(output_dir or tempfile.mkdtemp(prefix="dicetalk-ui-"))

    def run(image, audio, emotion, strength, reference, identity_scale, emotion_scale, steps, seed, crop, progress=gr.Progress()):
        if not image:
            raise gr.Error("upload a portrait image")
        if not audio:
            raise gr.Error("upload or record speech")
        spec = str(reference) if reference else (emotion if strength == 1.0 else f"{emotion}:{strength:g}")
        out = out_dir / f"dicetalk_{uuid.uuid4().hex[:12]}.mp4"
        opts = GenerateOptions(
            image=Path(image), audio=Path(audio), output=out, emotion=spec, weights=weights, crop=bool(crop),
            steps=int(steps), identity_scale=float(identity_scale), emotion_scale=float(emotion_scale), seed=int(seed), device=device,
        )
        progress(0.0, desc="preparing")
        try:
            generate(opts, progress=lambda fraction, desc: progress(fraction, desc=desc), pipeline=cache.get())
        except DiceTalkError as exc:
            raise gr.Error(str(exc)) from None
        return str(out)

    with gr.Blocks(title="dicetalk") as app:
        gr.Markdown("# dicetalk\nA portrait, speech and an emotion in; a talking-head video out.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Portrait", type="filepath", elem_id="portrait")
                audio = gr.Audio(label="Speech", type="filepath", elem_id="speech")
                emotion = gr.Dropdown(emotions, value=emotions[0], label="Emotion", elem_id="emotion")
                strength = gr.Slider(0.0, 2.0, value=1.0, step=0.1, label="Strength", elem_id="strength")
                reference = gr.Video(label="Emotion reference video (optional; overrides the label)", elem_id="reference", visible=can_embed)
                with gr.Accordion("Settings", open=False):
                    identity_scale = gr.Slider(0.0, 10.0, value=pipe.recipe.identity_scale, step=0.5, label="Identity guidance")
                    emotion_scale = gr.Slider(0.0, 12.0, value=pipe.recipe.emotion_scale, step=0.5, label="Audio + emotion guidance")
                    steps = gr.Slider(1, 50, value=pipe.recipe.steps, step=1, label="Steps", elem_id="steps")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    crop = gr.Checkbox(value=True, label="Detect and crop the face")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="Result", elem_id="result", autoplay=False)
        button.click(run, [image, audio, emotion, strength, reference, identity_scale, emotion_scale, steps, seed, crop], video)
    return app.queue(default_concurrency_limit=1, max_size=16)


def launch(weights: Path | None = None, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: int = 50, device: str = "auto", block: bool = True):
    """Serve the app; ``block=False`` returns the running app (tests)."""
    app = build_app(weights, device)
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=f"{max_upload_mb}mb",
        prevent_thread_lock=not block,
        share=False,
        show_error=True,
        quiet=not block,
    )
    return app
