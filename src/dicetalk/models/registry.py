"""Build every component of a named configuration (on any device, ``meta`` included)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..configs import ModelConfig, get_config

COMPONENTS = (
    "unet",
    "vae",
    "image_encoder",
    "audio_encoder",
    "audio_projection",
    "mask_encoder",
    "emotion_bank",
    "discriminator",
    "emotion_embedder",
    "expression_encoder",
    "refiner",
)


def build_component(name: str, config: ModelConfig) -> nn.Module:
    """One freshly initialised component of ``config``."""
    if name == "unet":
        from .unet import DiceTalkUNet

        return DiceTalkUNet(**config.unet)
    if name == "vae":
        from diffusers import AutoencoderKLTemporalDecoder

        return AutoencoderKLTemporalDecoder(**config.vae)
    if name == "image_encoder":
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        return CLIPVisionModelWithProjection(CLIPVisionConfig(**config.image_encoder))
    if name == "audio_encoder":
        from .audio_encoder import build_audio_encoder

        return build_audio_encoder(config.audio_encoder)
    if name == "audio_projection":
        from .token_projection import TokenProjection

        return TokenProjection(**config.audio_projection)
    if name == "mask_encoder":
        from .mask_encoder import FaceMaskEncoder

        return FaceMaskEncoder(**config.mask_encoder)
    if name == "emotion_bank":
        from .emotion_bank import EmotionBank

        return EmotionBank(**config.emotion_bank)
    if name == "discriminator":
        from .discriminator import EmotionDiscriminator

        return EmotionDiscriminator(**config.discriminator)
    if name == "emotion_embedder":
        from .emotion_embedder import DisentangledEmotionEmbedder

        return DisentangledEmotionEmbedder(**config.emotion_embedder)
    if name == "expression_encoder":
        from .expression_encoder import ExpressionEncoder

        if config.expression_encoder is None:
            raise ValueError(f"configuration {config.name!r} has no expression encoder")
        return ExpressionEncoder(**config.expression_encoder)
    if name == "refiner":
        from .reference_refiner import ReferenceRefiner

        if config.refiner is None:
            raise ValueError(f"configuration {config.name!r} has no reference refiner")
        return ReferenceRefiner(**config.refiner)
    raise ValueError(f"unknown component {name!r}; expected one of {', '.join(COMPONENTS)}")


def build_components(
    config: str | ModelConfig,
    device: str | torch.device = "cpu",
    components: tuple[str, ...] | None = None,
) -> dict[str, nn.Module]:
    """Fresh components of a configuration. ``device="meta"`` builds full size without memory."""
    config = get_config(config)
    device = torch.device(device)
    ctx = torch.device(device) if device.type == "meta" else contextlib.nullcontext()
    if components is None:  # every component this configuration has
        components = tuple(n for n in COMPONENTS if getattr(config, n, True) is not None)
    with ctx:
        built = {name: build_component(name, config) for name in components}
    if device.type != "meta":
        built = {name: module.to(device) for name, module in built.items()}
    return built


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def summarize(components: dict[str, nn.Module]) -> str:
    """A table of component, class and parameter count."""
    rows = [("component", "class", "parameters")]
    total = 0
    for name, module in components.items():
        n = count_parameters(module)
        total += n
        rows.append((name, type(module).__name__, f"{n:,}"))
    rows.append(("total", "", f"{total:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows)
