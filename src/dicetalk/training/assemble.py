"""Glue between training stages: load frozen parts, cache their features, assemble a pipeline folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.cache import FrameCache
from ..data.datasets import DiffusionFeatures
from ..data.features import _cached, audio_hidden_states, audio_row_offsets, image_embeddings, vae_latents
from ..errors import InputError
from ..utils.pixels import clip_input
from .backbone import load_refiner, load_vae


def _need(folder: Path, what: str) -> Path:
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder} has no trained {what} (config.json missing)")
    return folder


def load_backbone(backbone: str | Path, parts=("vae", "image_encoder", "audio_encoder")) -> dict:
    """Frozen backbone components from a folder with vae/, image_encoder/, audio_encoder/, ..."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionModelWithProjection

    from ..models.audio_encoder import load_audio_encoder
    from ..models.expression_encoder import ExpressionEncoder

    root = Path(backbone)
    out = {}
    for part in parts:
        folder = _need(root / part, part)
        if part == "vae":
            out[part] = AutoencoderKLTemporalDecoder.from_pretrained(folder)
        elif part == "image_encoder":
            out[part] = CLIPVisionModelWithProjection.from_pretrained(folder)
        elif part == "audio_encoder":
            out[part] = load_audio_encoder(folder)
        elif part == "expression_encoder":
            out[part] = ExpressionEncoder.from_pretrained(folder)
        out[part].requires_grad_(False).eval()
    return out


def load_embedder(folder: str | Path):
    from ..models.emotion_embedder import DisentangledEmotionEmbedder
    from ..models.emotion_priors import EmotionPriors

    root = Path(folder)
    embedder = DisentangledEmotionEmbedder.from_pretrained(_need(root / "emotion_embedder", "emotion embedder"))
    priors = EmotionPriors.from_pretrained(_need(root / "priors", "priors"))
    return embedder.requires_grad_(False).eval(), priors


def prepare_features(cache: FrameCache, backbone: dict, embedder, progress: bool = True) -> DiffusionFeatures:
    """Every frozen feature the diffusion trainer reads (computed once, cached beside the frames)."""
    from ..models.audio_encoder import whisper_feature_extractor
    from .embedder import clip_gaussians

    vae, image_encoder, audio_encoder = backbone["vae"], backbone["image_encoder"], backbone["audio_encoder"]
    latents = vae_latents(cache, vae, progress=progress)
    size = image_encoder.config.image_size
    embeds = image_embeddings(cache, lambda frames: image_encoder(clip_input(frames, size)).image_embeds, image_encoder, progress=progress)
    hidden = audio_hidden_states(cache, audio_encoder, whisper_feature_extractor(audio_encoder.config), progress=progress)
    offsets = audio_row_offsets(cache)
    gauss = _cached(cache, "priors", embedder, lambda: np.stack(clip_gaussians(embedder, cache, hidden, offsets)))
    return DiffusionFeatures(latents=latents, image_embeds=embeds, hidden=hidden, offsets=offsets, prior_mu=gauss[0], prior_var=gauss[1])


def same_encoder(a, b) -> bool:
    """Whether two VAEs encode alike (bit for bit): a denoiser trained on one's latents fits the other."""
    if a.config.scaling_factor != b.config.scaling_factor:
        return False
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(("encoder.", "quant_conv."))]
    return all(k in sb and sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k].to(sa[k].dtype)) for k in keys) and len(keys) > 0


def assemble_pipeline(
    backbone_dir: str | Path,
    embedder_dir: str | Path,
    trained: dict[str, torch.nn.Module],
    vae_dir: str | Path | None = None,
    refiner_dir: str | Path | None = None,
):
    """A complete :class:`DiceTalkPipeline` from the stages' outputs.

    ``vae_dir``: a VAE whose decoder was fine-tuned (``pretrain --decoder-of``) from the backbone's,
    used in its place; its encoder must be the backbone's. ``refiner_dir``: a reference refiner
    (``pretrain --parts refiner``) to correct the decoded frames from the portrait.
    """
    from ..models.audio_encoder import whisper_feature_extractor
    from ..pipeline import DiceTalkPipeline
    from ..pipeline.loading import default_scheduler

    from ..pipeline.loading import quiet_loading

    with quiet_loading():
        parts = load_backbone(backbone_dir, ("vae", "image_encoder", "audio_encoder"))
        expression_encoder = None
        if (Path(backbone_dir) / "expression_encoder" / "config.json").is_file():
            expression_encoder = load_backbone(backbone_dir, ("expression_encoder",))["expression_encoder"]
        embedder, priors = load_embedder(embedder_dir)
        if vae_dir is not None:
            vae = load_vae(vae_dir)
            if not same_encoder(parts["vae"], vae):
                raise InputError(f"{vae_dir}: its encoder is not the one the denoiser was trained with ({Path(backbone_dir) / 'vae'})")
            parts["vae"] = vae
        refiner = load_refiner(refiner_dir) if refiner_dir is not None else None
    return DiceTalkPipeline(
        unet=trained["unet"].eval(),
        vae=parts["vae"],
        image_encoder=parts["image_encoder"],
        audio_encoder=parts["audio_encoder"],
        audio_feature_extractor=whisper_feature_extractor(parts["audio_encoder"].config),
        audio_projection=trained["audio_projection"].eval(),
        mask_encoder=trained["mask_encoder"].eval(),
        emotion_bank=trained["emotion_bank"].eval(),
        priors=priors,
        scheduler=default_scheduler(),
        emotion_embedder=embedder,
        expression_encoder=expression_encoder,
        discriminator=trained["discriminator"].eval(),
        refiner=refiner,
    )


def save_pipeline(pipe, folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Save atomically; ``dtype=float16`` halves the size (the shipped default model)."""
    import copy

    from ..utils.atomic import atomic_dir

    from ..pipeline.loading import quiet_loading

    with quiet_loading():
        if dtype != torch.float32:
            pipe = copy.deepcopy(pipe).to(dtype=dtype)
        with atomic_dir(folder) as tmp:
            pipe.save_pretrained(tmp)
    return Path(folder)
