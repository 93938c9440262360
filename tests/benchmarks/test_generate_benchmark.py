"""The benchmark's helpers on the tiny model: FLOPs per UNet call, UNet calls per video second, a row."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("generate")


@pytest.fixture(scope="module")
def pipe():
    from dicetalk.pipeline.loading import build_random_pipeline

    p = build_random_pipeline("tiny", seed=0)
    p.set_progress_bar_config(disable=True)
    return p


def test_flops_of_the_pipelines_unet_match_the_configuration_count(pipe):
    flops = _load("flops")
    per_frame = flops.unet_flops_per_frame(pipe)
    assert per_frame == pytest.approx(flops.per_frame_costs("tiny")[0], rel=1e-6)
    # Twice the side: about four times the work (convolutions and projections scale with the pixels;
    # the time embedding does not, spatial self-attention grows faster).
    assert 3.5 * per_frame < flops.unet_flops_per_frame(pipe, 64) < 8 * per_frame


def test_a_row_counts_every_frame_through_the_unet(bench, pipe):
    from dicetalk.pipeline.recipe import SamplingRecipe

    hooked = []
    handle = pipe.unet.register_forward_hook(lambda m, args, out: hooked.append(args[0].shape[0] * args[0].shape[1]))
    recipe = SamplingRecipe(steps=2, identity_scale=2.0, emotion_scale=3.0, guidance_fraction=0.5, overlap=0, decode_chunk=4)
    try:
        row = bench.run_once(pipe, recipe, 0.4, None, flops_per_frame=1e9)
    finally:
        handle.remove()
    # 10 frames, windows of 4 at overlap 0 moved by 1 per step: 3 then 4 windows; 3 branches on the guided step.
    assert row["unet_frames"] == sum(hooked) == (3 * 3 + 4 * 1) * 4
    assert row["video_s"] == pytest.approx(10 / 25)
    assert row["unet_calls_per_video_s"] == pytest.approx(13 / 0.4)
    assert row["unet_tflops"] == pytest.approx(row["unet_frames"] * 1e9 / row["unet_s"] / 1e12)
    assert 0 < row["first_frame_s"] <= row["wall_s"] and row["peak_gib"] > 0
    assert "_denoiser" not in pipe.__dict__  # the meter is taken off


def test_the_switch_table_times_every_switch(bench, pipe):
    from types import SimpleNamespace

    from dicetalk.pipeline.performance import PerformanceOptions

    args = SimpleNamespace(size=None, compile_backend="aot_eager", repeats=1)
    table = dict(bench.switch_table(pipe, args, PerformanceOptions(fuse_qkv=True, windows_per_batch=2)))
    assert "attention=flash" in table and "cuda_graphs" in table and "all: fuse_qkv, windows_per_batch=2" in table
    for name, r in table.items():
        assert "error" not in r, (name, r)
        assert r["ms_per_call"] > 0 and r["tflops"] > 0
    assert pipe.performance == PerformanceOptions()
