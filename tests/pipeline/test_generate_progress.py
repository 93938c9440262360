"""`generate`'s progress reports cover the whole job, and a cancelled job leaves nothing behind."""

import os
import threading

import pytest

from dicetalk.errors import Cancelled
from dicetalk.pipeline.generate import GenerateOptions, generate_video


def _options(portrait_png, speech_wav, tiny_weights, out, **kw):
    return GenerateOptions(image=portrait_png, audio=speech_wav, output=out, weights=tiny_weights, steps=2, device="cpu", **kw)


def test_progress_moves_through_every_stage_and_denoising_window(portrait_png, speech_wav, tiny_weights, tmp_path):
    seen = []
    out = generate_video(_options(portrait_png, speech_wav, tiny_weights, tmp_path / "out.mp4"), progress=lambda f, d: seen.append((f, d)))
    assert out.is_file()
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions), "progress never goes back"
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    described = " | ".join(d for _, d in seen)
    for stage in ("reading the inputs", "encoding", "denoising", "decoding", "writing"):
        assert stage in described
    denoising = [f for f, d in seen if d.startswith("denoising")]
    # 2 s of speech at 25 fps in windows of 4 frames, 2 steps: many updates inside the denoising share.
    assert len(denoising) >= 10
    assert len(set(denoising)) == len(denoising)


def test_cancel_stops_the_job_and_leaves_no_file(portrait_png, speech_wav, tiny_weights, tmp_path):
    cancel = threading.Event()
    calls = []

    def progress(fraction, desc):
        calls.append(desc)
        if desc.startswith("denoising"):
            cancel.set()  # cancel once denoising has begun

    out = tmp_path / "out.mp4"
    with pytest.raises(Cancelled):
        generate_video(_options(portrait_png, speech_wav, tiny_weights, out), progress=progress, cancel=cancel)
    assert not any(d.startswith("decoding") for d in calls)
    assert os.listdir(tmp_path) == []
