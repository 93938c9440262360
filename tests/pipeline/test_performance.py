"""Every speed switch alone gives the frames of the default path; the CUDA-only ones fall back on CPU;
the window loop makes no host-side tensors and reads no device scalars per step."""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dicetalk.errors import InputError
from dicetalk.pipeline.loading import build_random_pipeline
from dicetalk.pipeline.performance import FAST, GraphedUNet, PerformanceOptions, compile_blocks
from dicetalk.pipeline.recipe import SamplingRecipe
from dicetalk.pipeline.windows import plan_windows


@pytest.fixture(scope="module")
def pipe():
    p = build_random_pipeline("tiny", seed=0)
    p.set_progress_bar_config(disable=True)
    yield p
    p.set_performance(None)


def _inputs(pipe, frames=18):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    audio = (rng.standard_normal(int(frames / 25 * 16000)) * 0.1).astype(np.float32)
    return image, audio, pipe.priors.prior("happy")[None].expand(frames, -1)


RECIPE = SamplingRecipe(steps=2, identity_scale=2.0, emotion_scale=3.0, overlap=1, decode_chunk=4)


def _run(pipe, options=None, output_type="np", recipe=RECIPE, **kw):
    pipe.set_performance(options)
    try:
        image, audio, priors = _inputs(pipe)
        return pipe(image, audio, priors, recipe, generator=torch.Generator().manual_seed(7), output_type=output_type, **kw).frames
    finally:
        pipe.set_performance(None)


@pytest.fixture(scope="module")
def reference(pipe):
    return _run(pipe, output_type="latent"), _run(pipe)


SWITCHES = {
    "attention=flash": PerformanceOptions(attention="flash"),
    "attention=math": PerformanceOptions(attention="math"),
    "attention=efficient (absent on CPU: falls back)": PerformanceOptions(attention="efficient"),
    "attention=cudnn (absent on CPU: falls back)": PerformanceOptions(attention="cudnn"),
    "fuse_qkv": PerformanceOptions(fuse_qkv=True),
    "channels_last": PerformanceOptions(channels_last=True),
    "cuda_graphs (eager on CPU)": PerformanceOptions(cuda_graphs=True),
    "windows_per_batch=3": PerformanceOptions(windows_per_batch=3),
}


@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_each_switch_alone_gives_the_same_latents_and_frames(pipe, reference, name):
    latents, frames = reference
    # float32 rounding only: other conv algorithms (channels-last) or sums in another order, amplified by guidance
    torch.testing.assert_close(_run(pipe, SWITCHES[name], output_type="latent"), latents, atol=1e-3, rtol=1e-3)
    diff = np.abs(_run(pipe, SWITCHES[name]).astype(int) - frames)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


@pytest.mark.parametrize("options", [PerformanceOptions(decode_batch=3), PerformanceOptions(overlap_decode=True), PerformanceOptions(decode_batch=2, overlap_decode=True)])
def test_decoding_switches_give_the_same_frames_in_the_same_chunks(pipe, reference, options):
    chunks = []
    _run(pipe, options, frame_sink=chunks.append)
    assert [len(c) for c in chunks] == [4, 4, 4, 4, 2]  # 18 frames in chunks of decode_chunk 4, in order
    assert np.array_equal(np.concatenate(chunks), reference[1])


def test_overlapped_decoding_hands_frames_over_before_the_last_windows(pipe):
    events = []
    progress = lambda stage, done, total: events.append((stage, done, total))  # noqa: E731
    _run(pipe, PerformanceOptions(overlap_decode=True), frame_sink=lambda f: events.append(("frames", len(f), 0)), progress=progress)
    first_frames = next(i for i, e in enumerate(events) if e[0] == "frames")
    last_window = max(i for i, e in enumerate(events) if e[0] == "denoise")
    assert first_frames < last_window
    events.clear()
    _run(pipe, None, frame_sink=lambda f: events.append(("frames", len(f), 0)), progress=progress)
    assert next(i for i, e in enumerate(events) if e[0] == "frames") > max(i for i, e in enumerate(events) if e[0] == "denoise")


def test_cuda_graphs_fall_back_to_the_eager_unet_off_cuda(pipe):
    pipe.set_performance(PerformanceOptions(cuda_graphs=True))
    try:
        runner = pipe._denoiser()
        assert isinstance(runner, GraphedUNet) and runner.dtype == pipe.unet.dtype
        image, audio, priors = _inputs(pipe, 6)
        pipe(image, audio, priors, RECIPE, generator=torch.Generator().manual_seed(0), output_type="latent")
        assert runner.eager_calls > 0 and runner.captures == 0 and runner.replays == 0
    finally:
        pipe.set_performance(None)
    assert pipe._denoiser() is pipe.unet


def test_regional_compilation_traces_every_block_without_changing_the_latents(pipe, reference):
    import torch._dynamo

    torch._dynamo.reset()
    options = PerformanceOptions(compile_blocks=True, compile_vae=True, compile_backend="aot_eager")  # dynamo's graphs, no codegen: quick
    torch._dynamo.utils.counters.clear()
    torch.testing.assert_close(_run(pipe, options, output_type="latent"), reference[0], atol=1e-5, rtol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    assert not torch._dynamo.utils.counters["graph_break"], dict(torch._dynamo.utils.counters["graph_break"])
    assert all(m._compiled_call_impl is None for m in pipe.unet.modules())  # switched back off


def test_inductor_compiles_a_repeated_block_to_the_same_function():
    from diffusers.models.resnet import SpatioTemporalResBlock

    torch.manual_seed(0)
    block = SpatioTemporalResBlock(32, 32, temb_channels=16).eval()
    x, temb, indicator = torch.randn(4, 32, 8, 8), torch.randn(4, 16), torch.zeros(1, 4)
    with torch.no_grad():
        eager = block(x, temb, image_only_indicator=indicator)
        assert compile_blocks(torch.nn.Sequential(block), "inductor") == 1
        compiled = block(x, temb, image_only_indicator=indicator)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)


class _HostSyncs(TorchDispatchMode):
    """Records what would stall a GPU sampler: device scalars read on the host, tensors made from host data."""

    SYNCS = ("aten._local_scalar_dense", "aten.lift_fresh", "aten.nonzero", "aten.item")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(self.SYNCS):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def test_a_denoising_step_makes_no_host_tensors_and_reads_no_device_scalars(pipe):
    image, audio, priors = _inputs(pipe, 12)
    recipe = SamplingRecipe(identity_scale=2.0, emotion_scale=3.0, audio_scale=5.0, overlap=1)
    cond = pipe.prepare_conditions(image, audio, priors, recipe, None, (32, 32), 0, torch.Generator().manual_seed(3))
    plan = plan_windows("blend", 12, 4, 1, 3)
    x, sigma = torch.randn(12, 4, 8, 8), torch.tensor(3.0)
    for guided in (True, False):
        first = pipe.denoise_step(x, sigma, plan, cond, recipe, guided, windows_per_batch=2)  # makes the per-video constants
        with _HostSyncs() as audit:
            again = pipe.denoise_step(x, sigma, plan, cond, recipe, guided, windows_per_batch=2, on_batch=lambda done, est: None)
        assert audit.seen == []
        torch.testing.assert_close(again, first, atol=0, rtol=0)


def test_options_parse_and_refuse_unknown_fields():
    assert PerformanceOptions.parse("attention=cudnn,compile_blocks,windows_per_batch=4") == PerformanceOptions(attention="cudnn", compile_blocks=True, windows_per_batch=4)
    assert PerformanceOptions.parse("fast,cuda_graphs=off") == FAST.replace(cuda_graphs=False)
    assert PerformanceOptions.parse(None) == PerformanceOptions()
    assert "cuda_graphs" in FAST.describe() and PerformanceOptions().describe() == "defaults"
    for bad in ("attention=xformers", "turbo", "windows_per_batch=0", "fuse_qkv=maybe"):
        with pytest.raises(InputError):
            PerformanceOptions.parse(bad)
