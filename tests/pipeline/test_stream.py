"""Streaming: a video sampled in segments is deterministic, close to the whole-video run with no seam,
hands its first frames over early, and `generate --stream` writes a valid video."""

import numpy as np
import pytest
import torch

from dicetalk.errors import InputError
from dicetalk.pipeline.loading import build_random_pipeline
from dicetalk.pipeline.recipe import SamplingRecipe
from dicetalk.pipeline.streaming import StreamOptions, plan_segments, segment_windows
from dicetalk.pipeline.windows import plan_windows

FRAMES = 40


@pytest.fixture(scope="module")
def pipe():
    p = build_random_pipeline("tiny", seed=1)
    p.set_progress_bar_config(disable=True)
    return p


def _render(pipe, recipe, stream, frames=FRAMES, seed=4, **kw):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    audio = (rng.standard_normal(int(frames / 25 * 16000)) * 0.1).astype(np.float32)
    priors = pipe.priors.prior("angry")[None].expand(frames, -1)
    return pipe(image, audio, priors, recipe, stream=stream, generator=torch.Generator().manual_seed(seed), **kw).frames


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b) ** 2).mean()
    return 10 * np.log10(255**2 / max(mse, 1e-12))


# The embedded default model's recipe (a stochastic sampler: its per-step noise must be the whole run's)
# and the release's layout (circular windows moved by a shift, null-conditioned padding at the end).
RECIPES = {
    "churn, blend": SamplingRecipe(steps=4, sampler="euler-churn", identity_scale=1.0, emotion_scale=4.0, guidance_interval=(0.05, 5.0), overlap=0, decode_chunk=4),
    "euler, circular": SamplingRecipe(steps=4, identity_scale=3.0, emotion_scale=6.0, windows="circular", overlap=0, shift=1, decode_chunk=4),
}


def _no_seam(streamed: np.ndarray, whole: np.ndarray) -> None:
    """Frame-to-frame change along the streamed video (segment boundaries included) is the whole video's."""
    step = np.abs(np.diff(streamed.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))
    whole_step = np.abs(np.diff(whole.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))
    assert np.abs(step - whole_step).max() < 0.1 * whole_step.mean(), (step, whole_step)


def test_streamed_video_is_deterministic_and_converges_to_the_whole_video():
    """Measured on this tiny random model (windows of 4 frames): context and lookahead of 3 frames
    (the default, a window less one) 41 dB PSNR to the whole-video run, 8 frames 94 dB, 12 exact;
    another seed gives about 10 dB. The stochastic sampler's per-step noise is the whole run's."""
    pipe = build_random_pipeline("tiny", seed=1)
    pipe.set_progress_bar_config(disable=True)
    recipe = RECIPES["churn, blend"]
    whole = _render(pipe, recipe, None)
    streamed = _render(pipe, recipe, StreamOptions(first=4))
    assert streamed.shape == whole.shape
    assert np.array_equal(streamed, _render(pipe, recipe, StreamOptions(first=4)))
    assert _psnr(streamed, whole) > 38
    assert _psnr(_render(pipe, recipe, StreamOptions(first=4, context=8, lookahead=8)), whole) > 80
    assert _psnr(_render(pipe, recipe, None, seed=5), whole) < 20
    _no_seam(streamed, whole)


def test_circular_windows_stream_close_to_the_whole_video_but_at_the_wrap(pipe):
    """The release's layout wraps windows from the padding at the end to the first frames; a stream
    cannot (the end comes last), so the first window of frames and the padding's context of the last
    chunk differ (12 levels mean here); elsewhere 54 dB with two windows of context and lookahead."""
    recipe = RECIPES["euler, circular"]
    whole = _render(pipe, recipe, None)
    streamed = _render(pipe, recipe, StreamOptions(first=4, context=8, lookahead=8))
    assert np.array_equal(streamed, _render(pipe, recipe, StreamOptions(first=4, context=8, lookahead=8)))
    middle = slice(8, FRAMES - recipe.decode_chunk)
    assert _psnr(streamed[middle], whole[middle]) > 50
    assert _psnr(streamed, whole) > 30


def test_first_frames_come_after_the_first_segment(pipe):
    events = []
    progress = lambda stage, done, total: events.append(stage)  # noqa: E731
    _render(pipe, RECIPES["churn, blend"], StreamOptions(first=4), frame_sink=lambda f: events.append(len(f)), progress=progress)
    denoising = [i for i, e in enumerate(events) if e == "denoise"]
    first = next(i for i, e in enumerate(events) if isinstance(e, int))
    assert first < denoising[len(denoising) // 4]  # within the first quarter of the denoising work
    assert sum(e for e in events if isinstance(e, int)) == FRAMES


def test_a_whole_video_stream_is_the_whole_video(pipe):
    recipe = RECIPES["churn, blend"]
    whole = _render(pipe, recipe, None, frames=6)
    assert np.array_equal(_render(pipe, recipe, StreamOptions(first=8), frames=6), whole)  # one segment: the same windows


@pytest.mark.parametrize("frames, total, window, chunk", [(40, 40, 4, 4), (75, 75, 16, 8), (62, 87, 25, 10), (5, 9, 4, 8), (300, 325, 25, 10)])
def test_segments_cover_the_video_on_decode_chunks(frames, total, window, chunk):
    segments = plan_segments(frames, total, window, chunk, StreamOptions())
    assert segments[0].start == 0 and segments[-1].end == total
    for a, b in zip(segments, segments[1:]):
        assert a.end == b.start and b.start % chunk == 0
        assert b.lo >= a.lo and b.lo <= b.start  # held frames were denoised by the segment before
    for s in segments:
        assert s.lo <= s.start < s.end <= s.hi <= total and s.hi - s.lo >= min(window, total)
    sizes = [s.end - s.start for s in segments[:-1]]
    assert sizes == sorted(sizes)  # growing


@pytest.mark.parametrize("layout, overlap", [("blend", 1), ("circular", 0)])
def test_segment_windows_cover_every_frame_they_must(layout, overlap):
    total, window = 50, 8
    for seg in plan_segments(42, total, window, 4, StreamOptions(first=4)):
        for offset in range(window):
            plan = plan_windows(layout, total, window, overlap, offset)
            starts = segment_windows(plan.starts, window, seg, total)
            covered = np.zeros(total, bool)
            for s in starts:
                assert seg.lo <= s and s + window <= seg.hi
                covered[s : s + window] = True
            assert covered[seg.start : seg.hi].all()


def test_stream_refuses_a_step_callback_and_bad_options(pipe):
    with pytest.raises(InputError):
        _render(pipe, RECIPES["churn, blend"], True, callback_on_step_end=lambda *a: None)
    with pytest.raises(InputError):
        StreamOptions(growth=0.5).validated()


def test_generate_stream_writes_a_valid_video(portrait_png, speech_wav, tiny_weights, tmp_path):
    from dicetalk.pipeline.generate import GenerateOptions, generate_video
    from dicetalk.utils.media import probe

    first = []
    out = generate_video(
        GenerateOptions(image=portrait_png, audio=speech_wav, output=tmp_path / "s.mp4", weights=tiny_weights, steps=2, device="cpu", stream=True),
        on_first_frames=first.append,
    )
    info = probe(out)
    assert info.num_frames == 50 and info.has_audio  # 2 s of speech at 25 fps
    assert len(first) == 1 and first[0] > 0
