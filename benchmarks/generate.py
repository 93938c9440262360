"""Seconds of compute per second of video, and peak memory, for generation.

CPU (always): the embedded default model (or ``--weights``) renders ``--seconds`` of speech.
GPU (when one is present): the full-size ``svd-xt`` configuration with random weights in fp16
at 512x512, the release's recipe (25 steps, three branches, 12.5 generated fps) and the
project's default recipe, side by side. Prints a table::

    python benchmarks/generate.py [--seconds 5] [--weights DIR] [--steps N] [--gpu-only/--cpu-only]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    """A syllable-modulated voiced signal (any audio works; its length sets the video's)."""
    t = np.arange(int(seconds * 16000)) / 16000
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((130, 260, 390, 650), 1))
    return (0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 3.5 * t)) * voice).astype(np.float32)


def run_once(pipe, seconds: float, steps: int, fps: float, **kwargs) -> tuple[float, float]:
    """(wall seconds, peak memory in GiB) of one generation, frames discarded as they stream out."""
    from PIL import Image

    size = pipe.image_size
    image = np.asarray(Image.open("examples/portrait.png").convert("RGB").resize((size, size)))
    frames = int(round(seconds * fps))
    priors = pipe.priors.prior(pipe.priors.emotions[0])[None].expand(frames, -1)
    cuda = pipe.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    pipe(image, _speech(seconds), priors, fps=fps, num_inference_steps=steps, frame_sink=lambda f: None,
         generator=torch.Generator().manual_seed(0), **kwargs)  # fmt: skip
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return wall, peak


def cpu_rows(args) -> list[tuple]:
    from dicetalk.pipeline.loading import load_pipeline

    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.weights)
    pipe.set_progress_bar_config(disable=True)
    run_once(pipe, 1.0, 1, 25.0)  # warm-up
    rows = []
    for steps in args.steps:
        wall, peak = run_once(pipe, args.seconds, steps, 25.0)
        recipe = f"{steps} steps {pipe.config.default_sampler}, 3 branches on {pipe.config.default_guidance_fraction:.0%} of steps"
        rows.append((f"cpu x{args.threads}, {'default model' if args.weights is None else args.weights}, {recipe}, 25 fps", args.seconds, wall, peak))
    return rows


def gpu_rows(args) -> list[tuple]:
    from dicetalk.pipeline.loading import build_random_pipeline

    pipe = build_random_pipeline("svd-xt", device="cuda").to(dtype=torch.float16)
    pipe.set_progress_bar_config(disable=True)
    run_once(pipe, 1.0, 1, 12.5)
    rows = []
    for name, steps, fps in (("release: 25 steps, 3 branches, 12.5 fps", 25, 12.5), ("25 steps, 3 branches, 25 fps", 25, 25.0)):
        wall, peak = run_once(pipe, args.seconds, steps, fps, decode_chunk_size=8)
        rows.append((f"H100 fp16 svd-xt 512 px, {name}", args.seconds, wall, peak))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--weights", default=None, help="weights folder (default: the embedded model)")
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 10])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    args = parser.parse_args()
    rows = []
    if not args.gpu_only:
        rows += cpu_rows(args)
    if torch.cuda.is_available() and not args.cpu_only:
        rows += gpu_rows(args)
    print("| setting | video s | wall s | s per video s | peak memory GiB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds, wall, peak in rows:
        print(f"| {name} | {seconds:g} | {wall:.1f} | {wall / seconds:.2f} | {peak:.2f} |")


if __name__ == "__main__":
    main()
