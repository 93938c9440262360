"""DiceTalkPipeline with tiny random weights: determinism, windows, round trips, memory bound."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dicetalk.pipeline.loading import build_random_pipeline, load_pipeline
from dicetalk.pipeline.windows import window_starts, window_weights


@pytest.fixture(scope="module")
def pipe():
    p = build_random_pipeline("tiny", seed=0)
    p.set_progress_bar_config(disable=True)
    return p


def _inputs(pipe, frames=12):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    audio = (rng.standard_normal(int(frames / 25 * 16000)) * 0.1).astype(np.float32)
    priors = pipe.priors.prior("happy")[None].expand(frames, -1)
    return image, audio, priors


def _run(pipe, seed, frames=12, recipe=None, **kw):
    image, audio, priors = _inputs(pipe, frames)
    return pipe(image, audio, priors, recipe, num_inference_steps=2, generator=torch.Generator().manual_seed(seed), **kw).frames


def test_same_seed_same_frames_and_different_seed_differs(pipe):
    a, b, c = _run(pipe, 1), _run(pipe, 1), _run(pipe, 2)
    assert a.shape == (12, pipe.native_size, pipe.native_size, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_windows_batched_give_the_same_video(pipe):
    one = _run(pipe, 3, windows_per_batch=1)
    many = _run(pipe, 3, windows_per_batch=4)
    assert np.abs(one.astype(int) - many.astype(int)).max() <= 1  # batching changes only float rounding


def test_guidance_branches_matter(pipe):
    base = _run(pipe, 4)
    assert not np.array_equal(base, _run(pipe, 4, recipe=pipe.recipe.replace(emotion_scale=0.0)))
    assert not np.array_equal(base, _run(pipe, 4, recipe=pipe.recipe.replace(identity_scale=0.0)))


def test_frame_sink_streams_every_frame(pipe):
    chunks = []
    image, audio, priors = _inputs(pipe, 10)
    out = pipe(image, audio, priors, pipe.recipe.replace(decode_chunk=3), num_inference_steps=1, frame_sink=chunks.append)
    assert out.frames is None
    assert [len(c) for c in chunks] == [3, 3, 3, 1]


def test_save_and_load_give_the_same_video(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "w")
    index = json.loads((tmp_path / "w" / "model_index.json").read_text())
    assert index["unet"] == ["dicetalk.models.unet", "DiceTalkUNet"]
    loaded = load_pipeline(tmp_path / "w")
    loaded.set_progress_bar_config(disable=True)
    assert np.array_equal(_run(pipe, 5), _run(loaded, 5))


@pytest.mark.parametrize("total, window, overlap", [(4, 4, 1), (5, 4, 1), (25, 4, 1), (100, 16, 4), (37, 8, 0)])
def test_windows_cover_every_frame_at_every_shift(total, window, overlap):
    for offset in range(window + 3):
        starts = window_starts(total, window, overlap, offset)
        covered = np.zeros(total, bool)
        for s in starts:
            assert 0 <= s <= max(0, total - window)
            covered[s : s + window] = True
        assert covered.all()
    if total > 2 * window:  # the grid really moves between steps
        assert window_starts(total, window, overlap, 0) != window_starts(total, window, overlap, 1)


def test_window_weights_fade_at_the_edges():
    w = window_weights(8, 3)
    assert w.shape == (8,) and (w > 0).all() and w.max() == 1.0
    assert w[0] < w[1] < w[2] and torch.equal(w, w.flip(0))


_PEAK_SCRIPT = """
import resource, sys, numpy as np, torch
torch.set_num_threads(1)
from dicetalk.pipeline.loading import load_pipeline
pipe = load_pipeline(sys.argv[1]); pipe.set_progress_bar_config(disable=True)
seconds = float(sys.argv[2]); frames = int(seconds * 25)
rng = np.random.default_rng(0)
audio = (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
priors = pipe.priors.prior("sad")[None].expand(frames, -1)
# Warm up (allocator pools, lazy imports) on a short clip, then measure the growth of the peak.
pipe(image, audio[:16000], priors[:25], num_inference_steps=1, frame_sink=lambda f: None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pipe(image, audio, priors, num_inference_steps=1, frame_sink=lambda f: None)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_long_audio_renders_with_window_bounded_memory(tiny_weights):
    """30 s of audio peaks at the same memory as 5 s: only the window's tensors are alive."""

    def growth(seconds):
        out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(tiny_weights), str(seconds)], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    short, long = growth(5), growth(30)
    assert long - short < 16.0, f"peak grew by {long:.1f} MB for 30 s vs {short:.1f} MB for 5 s"


def test_reference_refiner_corrects_the_decoded_frames_from_the_portrait(pipe):
    import copy

    plain = copy.deepcopy(pipe)
    plain.register_modules(refiner=None)  # a model without a refiner: decoded frames are final
    refined = copy.deepcopy(pipe)
    torch.nn.init.normal_(refined.refiner.conv_out.weight, std=0.2)
    base = _run(plain, 3)
    np.testing.assert_array_equal(base, _run(pipe, 3))  # the fresh (zero-output) refiner changes nothing
    out = _run(refined, 3)
    assert out.shape == base.shape and np.abs(out.astype(int) - base).mean() > 1
    np.testing.assert_array_equal(out, _run(refined, 3))
    image, audio, priors = _inputs(refined)
    other = refined(255 - image, audio, priors, num_inference_steps=2, generator=torch.Generator().manual_seed(3)).frames
    assert np.abs(other.astype(int) - out).mean() > 1
