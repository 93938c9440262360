"""The embedded default model: small, loaded when no weights are given, carrying its recipe."""

import torch

from dicetalk import EMOTIONS
from dicetalk.pipeline.loading import DEFAULT_MODEL_DIR, load_pipeline


def test_default_model_is_small_and_loads_without_weights():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 30 * 2**20
    pipe = load_pipeline()
    assert pipe.unet.dtype == torch.float32  # stored in float16, computed in float32 on CPU
    assert set(pipe.priors.emotions) == set(EMOTIONS)
    assert pipe.config.default_steps <= 12  # the recipe that keeps a 5 s clip under a minute on CPU
