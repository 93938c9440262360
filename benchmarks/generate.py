"""Seconds of compute per second of video, and peak memory, for generation.

CPU (always): the embedded default model (or ``--weights``) renders ``--seconds`` of speech.
GPU (when one is present): the full-size ``svd-xt`` configuration with random weights in fp16
at 512x512. On each device, in one run: the release's recipe (25 Euler steps, three guidance
branches, identity scale 3) and the default model's own recipe (model_index.json), with the
ratio. Prints a table::

    python benchmarks/generate.py [--seconds 5] [--weights DIR] [--threads 2] [--gpu-only/--cpu-only]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from pathlib import Path

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


RELEASE = dict(steps=25, sampler="euler", guidance_fraction=1.0, guidance_interval=(0.0, float("inf")), identity_scale=3.0, audio_emotion_scale=6.0)


def recipes(pipe) -> list[tuple[str, dict]]:
    """The release's recipe and the model's own (model_index.json), as pipeline arguments."""
    c = pipe.config
    release = dict(RELEASE, overlap=pipe.window // 4)  # the pipeline's default without a recipe
    default = dict(steps=c.default_steps, sampler=c.default_sampler, guidance_fraction=c.default_guidance_fraction,
                   guidance_interval=tuple(c.default_guidance_interval or (0.0, float("inf"))),
                   identity_scale=c.default_identity_scale, audio_emotion_scale=c.default_emotion_scale,
                   overlap=pipe.window // 4 if c.default_overlap is None else c.default_overlap)  # fmt: skip
    return [("release", release), ("default", default)]


def describe(r: dict) -> str:
    branches = 2 if r["identity_scale"] == 1.0 else 3
    share = "" if r["guidance_fraction"] == 1.0 else f" on {r['guidance_fraction']:.0%} of steps"
    lo, hi = r["guidance_interval"]
    share += "" if (lo, hi) == (0.0, float("inf")) else f" at noise levels {lo:g}-{hi:g}"
    return f"{r['steps']} {r['sampler']} steps, {branches} branches{share}, s_id {r['identity_scale']:g}, window overlap {r['overlap']}"


def measure(pipe, label: str, seconds: float, fps: float, **kwargs) -> list[tuple]:
    rows = []
    for name, r in recipes(pipe):
        args = {k: v for k, v in r.items() if k != "steps"}
        wall, peak = run_once(pipe, seconds, r["steps"], fps, **args, **kwargs)
        rows.append((f"{label}, {name} recipe: {describe(r)}", seconds, wall, peak))
    return rows


def cpu_rows(args) -> list[tuple]:
    from dicetalk.pipeline.loading import load_pipeline

    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.weights)
    pipe.set_progress_bar_config(disable=True)
    run_once(pipe, 1.0, 1, 25.0)  # warm-up
    return measure(pipe, f"cpu x{args.threads}, {'default model' if args.weights is None else args.weights}, 25 fps", args.seconds, 25.0)


def gpu_rows(args) -> list[tuple]:
    from dicetalk.pipeline.loading import build_random_pipeline

    pipe = build_random_pipeline("svd-xt", device="cuda").to(dtype=torch.float16)
    # The full-size model with the embedded default model's recipe (random weights: speed only).
    shipped = json.loads((Path(__file__).parents[1] / "src/dicetalk/assets/default_model/model_index.json").read_text())
    pipe.register_to_config(**{k: v for k, v in shipped.items() if k.startswith("default_")})
    pipe.set_progress_bar_config(disable=True)
    run_once(pipe, 1.0, 1, 25.0)
    return measure(pipe, f"{torch.cuda.get_device_name()} fp16 svd-xt 512 px, 25 fps", args.seconds, 25.0, decode_chunk_size=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--weights", default=None, help="weights folder (default: the embedded model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    args = parser.parse_args()
    rows = []
    if not args.gpu_only:
        rows += cpu_rows(args)
    if torch.cuda.is_available() and not args.cpu_only:
        rows += gpu_rows(args)
    print("| setting | video s | wall s | s per video s | peak memory GiB | speed-up over the release's recipe |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for i, (name, seconds, wall, peak) in enumerate(rows):
        release_wall = rows[i - i % 2][2]  # rows come in (release, default) pairs per device
        print(f"| {name} | {seconds:g} | {wall:.1f} | {wall / seconds:.2f} | {peak:.2f} | {release_wall / wall:.2f}x |")


if __name__ == "__main__":
    main()
