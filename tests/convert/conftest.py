"""A fake DICE-Talk release at the ``tiny`` size, laid out exactly like the authors' download."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dicetalk import EMOTIONS

DICE_PARTS = ("unet", "mask_encoder", "audio_projection", "emotion_bank", "discriminator")


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Distinct random values everywhere, so a tensor written under the wrong name cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.state_dict().values():
            if p.is_floating_point():
                p.copy_(torch.randn(p.shape, generator=g))
    return module


def base_unet_state(unet_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The UNet weights a stock SVD UNet has (everything but the audio/emotion processors)."""
    return {k: v for k, v in unet_state.items() if ".processor." not in k}


def build_release(root: Path) -> None:
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, WhisperConfig, WhisperModel

    from dicetalk.configs import get_config
    from dicetalk.models.audio_encoder import whisper_feature_extractor
    from dicetalk.models.registry import build_components

    cfg = get_config("tiny")
    parts = build_components(cfg, components=DICE_PARTS)
    for i, name in enumerate(DICE_PARTS):
        _randomize(parts[name], seed=i)

    release = root / "DICE-Talk"
    release.mkdir(parents=True)
    torch.save(parts["unet"].state_dict(), release / "unet.pth")
    torch.save(parts["mask_encoder"].state_dict(), release / "pose_guider.pth")
    torch.save(parts["audio_projection"].state_dict(), release / "audio_linear.pth")
    emo = dict(parts["emotion_bank"].state_dict())
    emo.update({f"classifier.{k}": v for k, v in parts["discriminator"].state_dict().items()})
    torch.save(emo, release / "emo_model.pth")

    # Emotion priors exactly as the release stores them: np.save of a dict (a pickled object array).
    rng = np.random.default_rng(0)
    emo_dir = root / "examples" / "emo"
    emo_dir.mkdir(parents=True)
    for emotion in EMOTIONS:
        np.save(emo_dir / f"{emotion}.npy", {"mu": rng.random((1, cfg.prior_dim)).astype(np.float32)})

    # stable-video-diffusion-img2vid-xt, diffusers layout (the UNet as the fp16 variant, like the hub).
    svd = root / "stable-video-diffusion-img2vid-xt"
    unet_kwargs = {k: v for k, v in cfg.unet.items() if k != "condition_scales"}
    base = UNetSpatioTemporalConditionModel(**unet_kwargs)
    base.load_state_dict(base_unet_state(parts["unet"].state_dict()), strict=True)
    base.half().save_pretrained(svd / "unet", variant="fp16")
    _randomize(AutoencoderKLTemporalDecoder(**cfg.vae), 10).save_pretrained(svd / "vae")
    _randomize(CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg.image_encoder)), 11).save_pretrained(svd / "image_encoder")
    (svd / "feature_extractor").mkdir()
    (svd / "feature_extractor" / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "CLIPImageProcessor", "crop_size": {"height": 224, "width": 224}, "do_normalize": True})
    )
    EulerDiscreteScheduler(prediction_type="v_prediction", use_karras_sigmas=True).save_config(svd / "scheduler")

    # whisper-tiny, transformers layout (a full WhisperModel, like openai/whisper-tiny).
    whisper = WhisperModel(WhisperConfig(**cfg.audio_encoder))
    _randomize(whisper, 12).save_pretrained(root / "whisper-tiny")
    whisper_feature_extractor(whisper.config).save_pretrained(root / "whisper-tiny")


@pytest.fixture(scope="session")
def pristine_release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("release") / "checkpoints"
    build_release(root)
    return root


@pytest.fixture
def release(pristine_release, tmp_path) -> Path:
    """A fresh copy of the fake release that a test may modify."""
    dst = tmp_path / "checkpoints"
    shutil.copytree(pristine_release, dst)
    return dst
