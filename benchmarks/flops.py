"""FLOPs per second of video for every sampler setting the pipeline offers (no GPU, no weights).

The UNet and VAE are built under a fake-tensor mode (shapes only, no memory) and run once under
``torch.utils.flop_counter``; the table then multiplies per-frame costs by each setting:

    UNet FLOPs / video s = steps_eff x generated_fps x window_factor x unet_flops_per_frame
        steps_eff     = steps x (branches on guided steps x guided_fraction + 1 x (1 - guided_fraction))
                        (guided_fraction: the share of steps that run guidance, by count or by noise level)
        window_factor = window / (window - overlap)        (frames denoised more than once)
    VAE  FLOPs / video s = generated_fps x (vae_decode_flops_per_frame + refiner_flops_per_frame)

(only generated frames are decoded; the reference refiner, where a configuration has one, runs on
every decoded frame.) Frame interpolation (the release's RIFE, from 12.5 to 25 fps) is not counted,
which favours the release. Usage::

    python benchmarks/flops.py [--config svd-xt --size 512] [--config synthetic]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from dicetalk.configs import get_config
from dicetalk.models.registry import build_component


def per_frame_costs(config: str, size: int | None = None) -> tuple[float, float, int]:
    """(UNet FLOPs per frame of one forward, VAE-decode (+ refiner) FLOPs per frame, window) at ``size`` pixels."""
    cfg = get_config(config)
    size = size or cfg.image_size
    with FakeTensorMode(allow_non_fake_inputs=True):
        unet, vae = build_component("unet", cfg), build_component("vae", cfg)
        f = cfg.num_frames
        h = size // 2 ** (len(cfg.vae["block_out_channels"]) - 1)
        d = cfg.unet["cross_attention_dim"]
        inputs = (
            torch.randn(1, f, cfg.unet["in_channels"], h, h),
            torch.tensor(0.3),
            torch.randn(1, 1, d),
            torch.randn(1, 3),
            torch.randn(1, f, cfg.audio_projection["context_tokens"], d),
            torch.randn(1, f, cfg.emotion_bank["num_tokens"], d),
            torch.randn(1, f, cfg.unet["block_out_channels"][0], h, h),
        )
        with FlopCounterMode(display=False) as counter:
            unet(*inputs)
        unet_flops = counter.get_total_flops() / f
        with FlopCounterMode(display=False) as counter:
            vae.decode(torch.randn(1, cfg.vae["latent_channels"], h, h), num_frames=1)
        vae_flops = counter.get_total_flops()
        if cfg.refiner is not None:
            refiner = build_component("refiner", cfg)
            with FlopCounterMode(display=False) as counter:
                refiner(torch.randn(1, 3, size, size), torch.randn(1, 3, size, size))
            vae_flops += counter.get_total_flops()
    return unet_flops, vae_flops, f


def unet_flops_per_frame(pipe, size: int | None = None) -> float:
    """FLOPs per frame of one forward of ``pipe``'s own UNet (one window, batch 1) at ``size`` pixels
    square (None: its native size), counted under a fake-tensor mode: no arithmetic, any device."""
    unet = pipe.unet
    c, f = unet.config, pipe.window
    h = (size or pipe.native_size) // pipe.vae_scale_factor
    tokens = pipe.audio_projection.config.context_tokens, pipe.emotion_bank.config.num_tokens
    dev, dt = unet.device, unet.dtype
    with FakeTensorMode(allow_non_fake_inputs=True):
        rand = lambda *shape: torch.randn(*shape, device=dev, dtype=dt)  # noqa: E731
        inputs = (rand(1, f, c.in_channels, h, h), torch.tensor(0.3, device=dev, dtype=dt), rand(1, 1, c.cross_attention_dim), rand(1, 3))
        kwargs = dict(
            audio_tokens=rand(1, f, tokens[0], c.cross_attention_dim),
            emotion_tokens=rand(1, f, tokens[1], c.cross_attention_dim),
            mask_features=rand(1, f, c.block_out_channels[0], h, h),
            face_mask=torch.ones(1, 1, h * pipe.vae_scale_factor, h * pipe.vae_scale_factor, device=dev),
        )
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            unet(*inputs, **kwargs)
    return counter.get_total_flops() / f


@dataclass
class Setting:
    name: str
    steps: int
    branches: int = 3  # UNet passes per guided step (3: none / image / image+audio+emotion; 2 at identity scale 1)
    guided_fraction: float = 1.0  # share of the steps that run every branch; the others run one
    generated_fps: float = 25.0
    overlap: int = 0

    def per_video_second(self, unet: float, vae: float, window: int) -> tuple[float, float, float]:
        steps_eff = self.steps * (self.branches * self.guided_fraction + (1 - self.guided_fraction))
        window_factor = window / (window - self.overlap) if self.overlap < window else float("inf")
        evals = steps_eff * self.generated_fps * window_factor
        return evals, evals * unet, self.generated_fps * vae


def guided_share(steps: int, lo: float, hi: float, fraction: float = 1.0) -> float:
    """Share of ``steps`` Karras steps (the pipeline's schedule) that run guidance: among the first
    ``fraction`` of the steps, those whose noise level lies in [lo, hi] (as the pipeline decides)."""
    from dicetalk.pipeline.loading import default_scheduler

    scheduler = default_scheduler()
    scheduler.set_timesteps(steps)
    first = int(round(fraction * steps))
    return sum(k < first and lo <= s <= hi for k, s in enumerate(scheduler.sigmas[:steps].tolist())) / steps


def default_model_setting(window: int) -> Setting:
    """The embedded default model's own recipe, read from its ``model_index.json``."""
    import json

    from dicetalk.pipeline.loading import DEFAULT_MODEL_DIR

    c = json.loads((DEFAULT_MODEL_DIR / "model_index.json").read_text())
    steps, lo_hi = c["default_steps"], c.get("default_guidance_interval") or (0.0, float("inf"))
    share = guided_share(steps, *lo_hi, c.get("default_guidance_fraction", 1.0))
    overlap = window // 4 if c.get("default_overlap") is None else c["default_overlap"]
    branches = 2 if c.get("default_identity_scale") == 1.0 and c.get("default_audio_scale") is None else 3
    name = (f"default model: {steps} {c['default_sampler']} steps, {branches} branches at noise levels {lo_hi[0]:g}-{lo_hi[1]:g} "
            f"({share * steps:.0f} steps), 25 fps, overlap {overlap}")  # fmt: skip
    return Setting(name, steps, branches=branches, guided_fraction=share, overlap=overlap)


def settings(window: int) -> list[Setting]:
    o = window // 4
    return [
        Setting("release: 25 steps, 3 branches, 12.5 fps + interpolation", 25, generated_fps=12.5),
        Setting("25 steps, 3 branches, 25 fps", 25),
        Setting(f"25 steps, 3 branches, 25 fps, overlap {o}", 25, overlap=o),
        Setting("12 steps, 3 branches, 12.5 fps + interpolation", 12, generated_fps=12.5),
        Setting("10 steps, guidance on 60 % of steps, 12.5 fps", 10, guided_fraction=0.6, generated_fps=12.5),
        Setting("10 euler-churn steps, 2 branches (identity scale 1), 25 fps", 10, branches=2, overlap=o),
        default_model_setting(window),
        Setting(f"10 euler-churn steps, 2 branches at noise levels 0.2-5, 25 fps, overlap {o} (the default before)", 10, branches=2,
                guided_fraction=guided_share(10, 0.2, 5.0), overlap=o),  # fmt: skip
        Setting("10 steps, 2 branches, 12.5 fps + interpolation", 10, branches=2, generated_fps=12.5),
        Setting("guidance-distilled: 10 steps, 1 pass, 25 fps", 10, branches=1, overlap=o),
        Setting("8 steps, 3 branches, 25 fps", 8),
        Setting("8 steps, guidance on half the steps, 25 fps", 8, guided_fraction=0.5),
        Setting("4 steps, single pass (distilled guidance), 25 fps", 4, branches=1),
        Setting("1 step, single pass (consistency), 25 fps", 1, branches=1),
    ]


def table(config: str, size: int | None) -> str:
    unet, vae, window = per_frame_costs(config, size)
    size = size or get_config(config).image_size
    scale, unit = (1e12, "TFLOP") if unet > 1e10 else (1e9, "GFLOP")
    lines = [
        f"## {config} at {size}x{size} px, window {window}",
        f"UNet: {unet / scale:.3f} {unit} per frame per pass ({unet * window / scale:.1f} {unit} per {window}-frame forward); "
        f"VAE decode{' + refiner' if get_config(config).refiner else ''}: {vae / scale:.3f} {unit} per frame",
        "",
        f"| setting | UNet evals / video s | UNet {unit} / video s | decode {unit} / video s | total {unit} / video s | vs release |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [(s, *s.per_video_second(unet, vae, window)) for s in settings(window)]
    base = rows[0][2] + rows[0][3]
    for s, evals, u, v in rows:
        lines.append(f"| {s.name} | {evals:.0f} | {u / scale:.1f} | {v / scale:.1f} | {(u + v) / scale:.1f} | {(u + v) / base:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="configuration(s): svd-xt, synthetic, tiny")
    parser.add_argument("--size", type=int, default=None, help="frame size in pixels (default: the configuration's)")
    args = parser.parse_args()
    for config in args.config or ["svd-xt", "synthetic"]:
        print(table(config, args.size if config == "svd-xt" or args.size else None))
        print()


if __name__ == "__main__":
    main()
