from pathlib import Path

import pytest
import torch

# Tiny models gain nothing from threads, and OpenMP spin-waits collapse when the other core is busy.
torch.set_num_threads(1)


@pytest.fixture
def tiny_config():
    from dicetalk.configs import get_config

    return get_config("tiny")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A weights folder of a freshly initialised tiny pipeline (project layout, model_index.json)."""
    from dicetalk.pipeline.loading import build_random_pipeline

    folder = tmp_path_factory.mktemp("weights") / "tiny"
    build_random_pipeline("tiny", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def portrait_png(tmp_path_factory):
    """A real frontal face photo (scikit-image's astronaut)."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("inputs") / "portrait.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory):
    """Two seconds of a voiced, speech-like signal at 22.05 kHz stereo (exercises resampling and downmix)."""
    import numpy as np

    from dicetalk.utils.media import write_audio

    sr = 22050
    t = np.arange(int(2.0 * sr)) / sr
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))  # syllable-rate loudness
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700), start=1))
    signal = (0.2 * envelope * voice).astype(np.float32)
    path = tmp_path_factory.mktemp("inputs") / "speech.wav"
    write_audio(path, np.stack([signal, 0.8 * signal], axis=1), sr)
    return path


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """The whole tiny preset of the synthetic world, generated once, by two worker processes."""
    from dicetalk.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("synth") / "tiny"
    summary = generate_dataset(out, preset="tiny", seed=0, workers=2, progress=False)
    assert summary.generated == summary.clips > 0
    return out
