"""Seconds of compute per second of video, peak memory, time to first frame and UNet rate, for generation.

Rows, side by side at one frame size (the output says which model, size and device it ran):

* ``release``   — the authors' recipe exactly as their yaml (``recipe.RELEASE``: 25 Euler steps, 3 branches,
  circular windows of 25 shifted by 7, 12.5 fps + 2x frame interpolation, interpolation counted);
* ``default``   — the embedded default model's own recipe (its ``model_index.json``);
* ``optimised`` — the default recipe with the performance switches (``--performance``, default ``fast``);
* ``streamed``  — the optimised path sampling in segments (``stream=True``): time to first frame.

Columns: s per video s, peak GiB (GPU: allocated; CPU: the process's max RSS), time to first frame,
UNet TFLOP/s (UNet FLOPs, counted by ``benchmarks/flops.py``'s counter on the real UNet at the run's
shape, over the time spent in UNet calls) and UNet calls per video second (frames through the UNet,
counted by a wrapper as ``benchmarks/quality.py`` counts them, over the window: single-branch
single-window passes).

``--switches``: one UNet call of the default recipe's guided shape (2 branches x 1 window) with each
switch alone and all together: ms per call, TFLOP/s, first-call seconds (compilation, capture);
and the VAE decode per frame with each decoding switch.

    python benchmarks/generate.py                                   # CPU: the embedded default model
    python benchmarks/generate.py --model svd-xt --size 512 --device cuda --dtype float16 --switches
    python benchmarks/generate.py --model tiny --seconds 1 --compile-backend aot_eager --switches   # smoke
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from flops import unet_flops_per_frame  # noqa: E402


def speech(seconds: float) -> np.ndarray:
    """A syllable-modulated voiced signal (any audio works; its length sets the video's)."""
    t = np.arange(int(seconds * 16000)) / 16000
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((130, 260, 390, 650), 1))
    return (0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 3.5 * t)) * voice).astype(np.float32)


class UNetMeter:
    """Wraps the pipeline's denoiser: frames through the UNet and time spent in it (CUDA events on GPU,
    so nothing waits; works through CUDA graphs and compiled blocks alike)."""

    def __init__(self, pipe):
        self.pipe, self.frames, self.calls = pipe, 0, 0
        self.events: list = []
        self.seconds = 0.0
        inner = type(pipe)._denoiser

        def denoiser():
            runner = inner(pipe)
            return _Metered(runner, self)

        object.__setattr__(pipe, "_denoiser", denoiser)

    def remove(self) -> None:
        self.pipe.__dict__.pop("_denoiser", None)

    def unet_seconds(self) -> float:
        if self.events:
            torch.cuda.synchronize()
            self.seconds += sum(a.elapsed_time(b) for a, b in self.events) / 1e3
            self.events.clear()
        return self.seconds


class _Metered:
    def __init__(self, runner, meter: UNetMeter):
        self.runner, self.meter = runner, meter

    @property
    def dtype(self):
        return self.runner.dtype

    def __call__(self, sample, *args, **kwargs):
        m = self.meter
        m.frames += sample.shape[0] * sample.shape[1]
        m.calls += 1
        if sample.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = self.runner(sample, *args, **kwargs)
            end.record()
            m.events.append((start, end))
            return out
        t = time.perf_counter()
        out = self.runner(sample, *args, **kwargs)
        m.seconds += time.perf_counter() - t
        return out


def run_once(pipe, recipe, seconds: float, size: int | None, stream: bool = False, flops_per_frame: float | None = None) -> dict:
    """One generation, frames discarded as they stream out: wall, time to first frame, peak, UNet figures."""
    from PIL import Image

    side = size or pipe.native_size
    image = np.asarray(Image.open(ROOT / "examples" / "portrait.png").convert("RGB").resize((side, side)))
    audio = speech(seconds)
    n = recipe.generated_frames(audio.size)
    priors = pipe.priors.prior(pipe.priors.emotions[0])[None].expand(n, -1)
    cuda = pipe.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    meter = UNetMeter(pipe)
    first: list[float] = []
    start = time.perf_counter()

    def sink(frames) -> None:
        if not first:
            first.append(time.perf_counter() - start)

    try:
        pipe(image, audio, priors, recipe, height=size, width=size, frame_sink=sink, stream=stream or None, generator=torch.Generator().manual_seed(0))
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        unet_s = meter.unet_seconds()
    finally:
        meter.remove()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    video_s = recipe.output_frames(n) / recipe.fps
    window = pipe.window
    return {
        "video_s": video_s,
        "wall_s": wall,
        "s_per_video_s": wall / video_s,
        "peak_gib": peak,
        "first_frame_s": first[0] if first else None,
        "unet_s": unet_s,
        "unet_frames": meter.frames,
        "unet_calls_per_video_s": meter.frames / window / video_s,
        "unet_tflops": meter.frames * flops_per_frame / unet_s / 1e12 if flops_per_frame and unet_s else None,
    }


def default_recipe():
    """The embedded default model's recipe, read from its model_index.json (without loading the model)."""
    from dicetalk.pipeline.loading import DEFAULT_MODEL_DIR
    from dicetalk.pipeline.recipe import RECIPE_KEY, SamplingRecipe, legacy_recipe

    index = json.loads((DEFAULT_MODEL_DIR / "model_index.json").read_text())
    return SamplingRecipe.from_dict(index[RECIPE_KEY]) if RECIPE_KEY in index else (legacy_recipe(index) or SamplingRecipe())


def load(args):
    from dicetalk.pipeline.loading import build_random_pipeline, load_pipeline

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    if args.model in ("svd-xt", "synthetic", "tiny"):
        pipe = build_random_pipeline(args.model, device=device)
        pipe = pipe.to(dtype=dtype) if dtype != torch.float32 else pipe
        label = f"{args.model} (random weights)"
    else:
        pipe = load_pipeline(None if args.model == "default" else args.model, device=device, dtype=dtype)
        label = "the embedded default model" if args.model == "default" else args.model
    if pipe.frame_interpolator is None and "release" in args.rows:
        from dicetalk.models.frame_interpolator import FrameInterpolator

        # The release's recipe interpolates (RIFE): a random interpolator of the release's kind, counted in the time.
        pipe.register_modules(frame_interpolator=FrameInterpolator().to(device, dtype))
        label += " + a random frame interpolator"
    pipe.set_progress_bar_config(disable=True)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    return pipe, f"{label}, {where}, {args.dtype}"


def rows(pipe, args, performance, names: list[str]) -> list[tuple[str, dict]]:
    from dicetalk.pipeline.recipe import RELEASE

    size = args.size or pipe.native_size  # the release's recipe says 512: every row at one size
    flops = unet_flops_per_frame(pipe, size)  # eager, before any switch
    default = default_recipe()
    out = []
    for name in names:
        stream = name == "streamed"
        recipe = RELEASE if name == "release" else default
        seconds = args.release_seconds if name == "release" else args.seconds
        pipe.set_performance(performance if name in ("optimised", "streamed") else None)
        if args.warmup and name in ("optimised", "streamed"):
            run_once(pipe, recipe, seconds, size, stream)  # compile and capture at this run's shapes first
        elif args.warmup:
            run_once(pipe, recipe.replace(steps=1), 1.0, size)
        result = run_once(pipe, recipe, seconds, size, stream, flops)
        pipe.set_performance(None)
        label = {"release": "release (RELEASE, as its yaml)", "default": "default model's recipe", "optimised": f"optimised: default recipe + {performance.describe()}",
                 "streamed": "optimised, streamed (segments)"}[name]  # fmt: skip
        out.append((f"{label}: {recipe.replace(size=None).describe()}", result))
    return out


def switch_table(pipe, args, performance) -> list[tuple[str, dict]]:
    """ms per UNet call (the default recipe's guided batch) with each switch alone, and all of them."""
    from dicetalk.pipeline.performance import PerformanceOptions

    size = args.size or pipe.native_size
    flops = unet_flops_per_frame(pipe, size)
    inputs = unet_inputs(pipe, size, batch=2)
    changes = [("none (eager, PyTorch's SDPA choice)", PerformanceOptions())]
    changes += [(f"attention={b}", PerformanceOptions(attention=b)) for b in ("flash", "efficient", "cudnn", "math")]
    changes += [("fuse_qkv", PerformanceOptions(fuse_qkv=True)), ("channels_last", PerformanceOptions(channels_last=True))]
    changes += [("compile_blocks", PerformanceOptions(compile_blocks=True, compile_backend=args.compile_backend)), ("cuda_graphs", PerformanceOptions(cuda_graphs=True))]
    changes += [(f"all: {performance.describe()}", performance)]
    changes += [(f"all, twice the batch (windows_per_batch=2: {2 * len(inputs[0])} x {pipe.window} frames)", performance)]
    out = []
    for name, options in changes:
        pipe.set_performance(options)
        try:
            batch = unet_inputs(pipe, size, batch=4) if "twice the batch" in name else inputs
            first, ms = time_calls(pipe, batch, args.repeats)
            out.append((name, {"ms_per_call": ms, "tflops": batch[0].shape[0] * batch[0].shape[1] * flops / (ms / 1e3) / 1e12, "first_call_s": first}))
        except Exception as exc:  # a backend the device lacks: say so, measure the rest
            out.append((name, {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"}))
        finally:
            pipe.set_performance(None)
    return out


def unet_inputs(pipe, size: int, batch: int) -> tuple:
    """Random inputs of one UNet call: ``batch`` windows of the model's frames at ``size`` pixels."""
    from dicetalk.models.denoiser import DenoiserConditions, time_ids

    unet, dev, dt = pipe.unet, pipe.device, pipe.unet.dtype
    c, f, h = unet.config, pipe.window, size // pipe.vae_scale_factor
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(dev, dt)  # noqa: E731
    tokens = pipe.audio_projection.config.context_tokens, pipe.emotion_bank.config.num_tokens
    cond = DenoiserConditions(
        image_latents=rand(batch, c.out_channels, h, h),
        image_embeds=rand(batch, 1, c.cross_attention_dim),
        audio_tokens=rand(batch, f, tokens[0], c.cross_attention_dim),
        emotion_tokens=rand(batch, f, tokens[1], c.cross_attention_dim),
        mask_features=rand(batch, f, c.block_out_channels[0], h, h),
        time_ids=time_ids((24.0, 127.0, 0.0), batch, dev, dt),
        face_mask=torch.ones(1, 1, size, size, device=dev),
    )
    return torch.randn(batch, f, c.out_channels, h, h, generator=g).to(dev), torch.tensor(2.0, device=dev), cond


def time_calls(pipe, inputs, repeats: int) -> tuple[float, float]:
    """(seconds of the first call, median ms of the next ``repeats``) of the denoiser call."""
    from dicetalk.models.denoiser import denoise
    from dicetalk.pipeline.performance import attention_context

    x, sigma, cond = inputs
    cuda = x.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def call():
        with torch.no_grad(), attention_context(pipe.performance.attention):
            return denoise(pipe._denoiser(), x, sigma, cond)[0]

    sync()
    t = time.perf_counter()
    call()
    sync()
    first = time.perf_counter() - t
    call()  # a second warm-up (CUDA graphs capture on the first, replay from here)
    times = []
    for _ in range(repeats):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            call()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            call()
            times.append((time.perf_counter() - t) * 1e3)
    return first, float(np.median(times))


def decode_table(pipe, args) -> list[tuple[str, dict]]:
    """VAE decode ms per frame: chunks of the default recipe's decode_chunk, by decoding switch."""
    from dicetalk.pipeline.performance import PerformanceOptions

    size = args.size or pipe.native_size
    chunk = default_recipe().decode_chunk
    h = size // pipe.vae_scale_factor
    latents = torch.randn(4 * chunk, pipe.vae.config.latent_channels, h, h).to(pipe.device)
    cuda = latents.device.type == "cuda"
    out = []
    for name, options in [("decode_batch=1", PerformanceOptions()), ("decode_batch=2", PerformanceOptions(decode_batch=2)), ("decode_batch=4", PerformanceOptions(decode_batch=4)),
                          ("decode_batch=2, channels_last", PerformanceOptions(decode_batch=2, channels_last=True)),
                          ("decode_batch=2, compile_vae", PerformanceOptions(decode_batch=2, compile_vae=True, compile_backend=args.compile_backend))]:  # fmt: skip
        pipe.set_performance(options)
        try:
            run = lambda: pipe.decode(latents, chunk, lambda px: None, batch=options.decode_batch)  # noqa: E731
            with torch.no_grad():
                run()
                if cuda:
                    torch.cuda.synchronize()
                t = time.perf_counter()
                run()
                if cuda:
                    torch.cuda.synchronize()
            out.append((name, {"ms_per_frame": (time.perf_counter() - t) * 1e3 / len(latents)}))
        except Exception as exc:
            out.append((name, {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"}))
        finally:
            pipe.set_performance(None)
    return out


def fmt_rate(v) -> str:
    return "—" if v is None else f"{v:.1f}" if v >= 1 else f"{v:.3g}"


def fmt(v, digits=2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def print_tables(title: str, main: list, switches: list, decoding: list) -> str:
    lines = [f"## {title}", ""]
    if main:
        lines += ["| setting | video s | s per video s | peak GiB | first frame s | UNet TFLOP/s | UNet calls / video s |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in main:
            lines.append(f"| {name} | {r['video_s']:.2f} | {r['s_per_video_s']:.2f} | {r['peak_gib']:.2f} | {fmt(r['first_frame_s'])} | {fmt_rate(r['unet_tflops'])} | {r['unet_calls_per_video_s']:.1f} |")
        lines.append("")
    if switches:
        lines += ["| change (one UNet call, 2 branches x 1 window) | ms per UNet call | TFLOP/s | first call s |", "| --- | ---: | ---: | ---: |"]
        for name, r in switches:
            lines.append(f"| {name} | {r['error']} | | |" if "error" in r else f"| {name} | {r['ms_per_call']:.1f} | {fmt_rate(r['tflops'])} | {r['first_call_s']:.1f} |")
        lines.append("")
    if decoding:
        lines += ["| VAE decoding | ms per frame |", "| --- | ---: |"]
        for name, r in decoding:
            lines.append(f"| {name} | {r.get('error') or fmt(r['ms_per_frame'], 1)} |")
        lines.append("")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def main() -> None:
    from dicetalk.pipeline.performance import PerformanceOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="default (the embedded model), svd-xt / synthetic / tiny (random weights), or a weights folder")
    parser.add_argument("--size", type=int, default=None, help="frame side in pixels, square (default: the model's native size)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--seconds", type=float, default=5.0, help="speech seconds of the default/optimised rows")
    parser.add_argument("--release-seconds", type=float, default=None, help="speech seconds of the release row (default: --seconds)")
    parser.add_argument("--rows", default="release,default,optimised,streamed", help="comma-separated rows, or none")
    parser.add_argument("--performance", default="fast", help="switches of the optimised rows (PerformanceOptions.parse)")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--switches", action="store_true", help="also the table of each switch on/off (and VAE decoding)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write every figure here")
    parser.add_argument("--markdown", default=None, help="append the tables here")
    args = parser.parse_args()
    args.rows = [r for r in args.rows.split(",") if r and r != "none"]
    args.release_seconds = args.release_seconds or args.seconds
    torch.set_num_threads(args.threads)
    performance = PerformanceOptions.parse(args.performance).replace(compile_backend=args.compile_backend)

    pipe, label = load(args)
    size = args.size or pipe.native_size
    title = f"{label}, {size}x{size} px"
    print(f"# running: {title}", flush=True)
    figures: dict = {"title": title, "rows": [], "switches": [], "decoding": []}

    def emit(heading: str, main: list = (), switches: list = (), decoding: list = ()) -> None:
        """Print a finished table (and append it to --markdown, write --json) at once: a run stopped later keeps it."""
        text = print_tables(heading, list(main), list(switches), list(decoding))
        if args.markdown:
            with open(args.markdown, "a") as f:
                f.write(text + "\n")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1))

    if args.switches:
        figures["switches"] = switch_table(pipe, args, performance)
        emit(f"{title}: each switch", switches=figures["switches"])
    for name in args.rows:
        figures["rows"] += rows(pipe, args, performance, [name])
        emit(f"{title}: generation", main=figures["rows"])
    if args.switches:
        figures["decoding"] = decode_table(pipe, args)
        emit(f"{title}: VAE decoding", decoding=figures["decoding"])


if __name__ == "__main__":
    main()
