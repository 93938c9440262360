"""The GPU paths compute what the CPU tests check on CPU: run by benchmarks/gpu_check.sh before timing.

On the tiny model (float32, on the device given): each switch alone gives the default frames; CUDA
graphs really capture and replay; a denoising step after the first makes no host sync (CUDA's sync
debug mode set to error); streaming is deterministic and close to the whole video; overlapped
decoding hands over the same frames. Prints one line per check and exits non-zero on a failure.
Off CUDA the CUDA-only checks say so and pass (the CPU smoke run of gpu_check.sh).
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dicetalk.pipeline.loading import build_random_pipeline  # noqa: E402
from dicetalk.pipeline.performance import PerformanceOptions  # noqa: E402
from dicetalk.pipeline.recipe import SamplingRecipe  # noqa: E402
from dicetalk.pipeline.streaming import StreamOptions  # noqa: E402
from dicetalk.pipeline.windows import plan_windows  # noqa: E402

DEVICE = torch.device(sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu"))
CUDA = DEVICE.type == "cuda"
RECIPE = SamplingRecipe(steps=3, sampler="euler-churn", identity_scale=2.0, emotion_scale=3.0, guidance_interval=(0.05, 5.0), overlap=0, decode_chunk=4)


def render(pipe, options=None, frames=24, stream=None, output_type="np", seed=3):
    pipe.set_performance(options)
    try:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        audio = (rng.standard_normal(int(frames / 25 * 16000)) * 0.1).astype(np.float32)
        priors = pipe.priors.prior("happy")[None].expand(frames, -1)
        return pipe(image, audio, priors, RECIPE, stream=stream, output_type=output_type, generator=torch.Generator().manual_seed(seed)).frames
    finally:
        pipe.set_performance(None)


def psnr(a, b) -> float:
    mse = ((a.astype(np.float64) - b) ** 2).mean()
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def main() -> int:
    if not CUDA:
        torch.set_num_threads(1)  # tiny models gain nothing from threads on a shared CPU
    pipe = build_random_pipeline("tiny", seed=0, device=DEVICE)
    pipe.set_progress_bar_config(disable=True)
    reference = render(pipe)
    latents = render(pipe, output_type="latent")
    checks = []

    def check(name, fn):
        t = time.perf_counter()
        try:
            note = fn() or ""
            checks.append(True)
            print(f"ok    {name} ({time.perf_counter() - t:.1f} s) {note}", flush=True)
        except Exception:
            checks.append(False)
            print(f"FAIL  {name}\n{traceback.format_exc()}", flush=True)

    def same(options):
        def run():
            out = render(pipe, options, output_type="latent")
            err = ((out - latents).norm() / latents.norm()).item()
            assert err < 1e-3, f"relative error {err:.2e}"
            frames = render(pipe, options)
            diff = np.abs(frames.astype(int) - reference)
            assert diff.max() <= 2, f"max pixel difference {diff.max()}"
            return f"relative error {err:.1e}, max pixel difference {diff.max()}"

        return run

    def graphs_capture():
        if not CUDA:
            return "skipped: no CUDA (the eager fallback is tested on CPU)"
        pipe.set_performance(PerformanceOptions(cuda_graphs=True))
        try:
            runner = pipe._denoiser()
            rng = np.random.default_rng(0)
            pipe(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), np.zeros(8000, np.float32) + 0.01, pipe.priors.prior("sad")[None].expand(12, -1), RECIPE, output_type="latent")
            assert runner.captures > 0 and runner.replays > runner.captures and runner.eager_calls == 0, (runner.captures, runner.replays, runner.eager_calls)
            return f"{runner.captures} graphs, {runner.replays} replays"
        finally:
            pipe.set_performance(None)

    check("CUDA graphs capture and replay", graphs_capture)

    def no_sync():
        rng = np.random.default_rng(0)
        image, audio = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), (rng.standard_normal(8000) * 0.1).astype(np.float32)
        recipe = SamplingRecipe(identity_scale=2.0, emotion_scale=3.0, overlap=1)
        cond = pipe.prepare_conditions(image, audio, pipe.priors.prior("sad")[None].expand(12, -1), recipe, None, (32, 32), 0, torch.Generator().manual_seed(3))
        plan = plan_windows("blend", 12, 4, 1, 3)
        x, sigma = torch.randn(12, 4, 8, 8, device=DEVICE), torch.tensor(3.0, device=DEVICE)
        pipe.denoise_step(x, sigma, plan, cond, recipe, True, 2)  # makes the per-video constants
        if not CUDA:
            return "skipped: no CUDA (the CPU test audits host tensors and scalar reads)"
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            pipe.denoise_step(x, sigma, plan, cond, recipe, True, 2)
            pipe.denoise_step(x, sigma, plan, cond, recipe, False, 2)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return "no synchronising call"

    check("a denoising step makes no host sync", no_sync)

    def streaming():
        a = render(pipe, stream=StreamOptions(first=4))
        b = render(pipe, stream=StreamOptions(first=4))
        assert np.array_equal(a, b), "not deterministic"
        p = psnr(a, reference)
        assert p > 30, f"PSNR {p:.1f} dB"
        c = render(pipe, PerformanceOptions(cuda_graphs=True, overlap_decode=True), stream=StreamOptions(first=4))
        assert np.abs(c.astype(int) - a).max() <= 2
        return f"deterministic; PSNR to the whole video {p:.1f} dB"

    check("streaming", streaming)
    # The switches last, the compiled ones at the very end (a stage stopped at its limit keeps the rest).
    for spec in ("attention=flash", "attention=efficient", "attention=cudnn", "attention=math", "fuse_qkv", "channels_last", "windows_per_batch=3",
                 "decode_batch=2", "overlap_decode", "cuda_graphs", "compile_blocks", "fast"):  # fmt: skip
        options = PerformanceOptions.parse(spec)
        if not CUDA and options.compile_blocks:
            options = options.replace(compile_backend="aot_eager")  # inductor takes minutes per shape on a CPU
        check(f"same frames with {spec}", same(options))

    print(f"{sum(checks)} passed, {len(checks) - sum(checks)} failed")
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
