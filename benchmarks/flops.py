"""FLOPs per second of video for every sampler setting the pipeline offers (no GPU, no weights).

The UNet and VAE are built under a fake-tensor mode (shapes only, no memory) and run once under
``torch.utils.flop_counter``; each setting is a :class:`~dicetalk.pipeline.recipe.SamplingRecipe`, and
its frame-evaluations of the UNet are counted as the pipeline plans them for a 5 s clip: every
window of every denoiser evaluation (the circular layout's padding window and overlapping frames
included) times the guidance branches of that step. Decoding counts the frames the VAE decodes
(the circular layout also decodes padding frames that share a chunk with the video) and the
reference refiner where a configuration has one. Frame interpolation (the release's RIFE, 12.5 to
25 fps) is not counted, which favours the release. Usage::

    python benchmarks/flops.py [--config svd-xt --size 512] [--config synthetic]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from dicetalk.configs import get_config
from dicetalk.models.registry import build_component
from dicetalk.pipeline.recipe import RELEASE, SamplingRecipe

CLIP_SECONDS = 5.0  # circular windows pad every clip with a window of frames: their cost depends on the length


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
    recipe: SamplingRecipe

    def per_video_second(self, unet: float, vae: float, window: int, seconds: float = CLIP_SECONDS) -> tuple[float, float, float]:
        """(UNet frame-evaluations, UNet FLOPs, decode FLOPs) per second of video for a clip of ``seconds``,
        counting the windows exactly as the pipeline plans them (padding frames of circular windows and
        frames shared by overlapping windows included, on every step and every guidance branch)."""
        from dicetalk.pipeline.schedulers import scheduler_for
        from dicetalk.pipeline.windows import plan_windows

        r = self.recipe
        frames = r.generated_frames(int(seconds * 16000))
        circular = r.windows == "circular"
        total, w = (frames + window, window) if circular else (frames, min(window, frames))
        overlap, shift = r.window_layout(w)
        scheduler = scheduler_for(r.sampler)
        scheduler.set_timesteps(r.steps)
        guided = r.guided_steps(scheduler.sigmas.tolist())
        branches = (2 if r.identity_scale == 1.0 else 3) + (r.audio_scale is not None and r.audio_scale != r.emotion_scale)
        evals = sum(plan_windows(r.windows, total, w, overlap, step * shift).index.numel() * (branches if guided[step] else 1)
                    for step in scheduler.evaluation_steps)  # fmt: skip
        decoded = min(total, -(-frames // r.decode_chunk) * r.decode_chunk) if circular else frames
        return evals / seconds, evals * unet / seconds, decoded * vae / seconds


def settings() -> list[Setting]:
    """The release's recipe (as its yaml), the embedded default model's own, and variants between them."""
    from dicetalk.pipeline.loading import DEFAULT_MODEL_DIR, _legacy_recipe

    index = json.loads((DEFAULT_MODEL_DIR / "model_index.json").read_text())
    default = SamplingRecipe.from_dict(index.get("recipe") or _legacy_recipe(DEFAULT_MODEL_DIR)["recipe"])
    return [
        Setting("release (its yaml): " + RELEASE.describe(), RELEASE),
        Setting("release, every frame generated: 25 fps", RELEASE.replace(fps=25.0, interpolation=1)),
        Setting("release steps and branches, blend windows overlap 6, 25 fps", SamplingRecipe(steps=25, overlap=6)),
        Setting("12 steps, 3 branches, 12.5 fps + interpolation", RELEASE.replace(steps=12)),
        Setting("10 steps, guidance on 60 % of steps, 12.5 fps + interpolation", RELEASE.replace(steps=10, guidance_fraction=0.6)),
        Setting("default model (its model_index.json): " + default.describe(), default),
        Setting("default model's recipe at 12.5 fps + interpolation", default.replace(fps=25.0, interpolation=2)),
        Setting("guidance-distilled: 10 steps, 1 pass, 25 fps", SamplingRecipe(steps=10, guidance_fraction=0.0, overlap=0)),
        Setting("4 steps, single pass (distilled guidance), 25 fps", SamplingRecipe(steps=4, guidance_fraction=0.0, overlap=0)),
    ]


def table(config: str, size: int | None) -> str:
    unet, vae, window = per_frame_costs(config, size)
    size = size or get_config(config).image_size
    scale, unit = (1e12, "TFLOP") if unet > 1e10 else (1e9, "GFLOP")
    lines = [
        f"## {config} at {size}x{size} px, window {window}, a {CLIP_SECONDS:g} s clip",
        f"UNet: {unet / scale:.3f} {unit} per frame per pass ({unet * window / scale:.1f} {unit} per {window}-frame forward); "
        f"VAE decode{' + refiner' if get_config(config).refiner else ''}: {vae / scale:.3f} {unit} per frame",
        "",
        f"| setting | UNet evals / video s | UNet {unit} / video s | decode {unit} / video s | total {unit} / video s | vs release |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [(s, *s.per_video_second(unet, vae, window)) for s in settings()]
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
