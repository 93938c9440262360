"""The web UI (``dicetalk ui``): a Gradio page over :func:`dicetalk.pipeline.generate.generate`."""
