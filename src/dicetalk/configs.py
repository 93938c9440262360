"""Named model configurations: ``tiny`` (tests), ``synthetic`` (the shipped default), ``svd-xt`` (full size).

Each entry gives the constructor arguments of every component; :func:`dicetalk.models.registry.build_components`
turns a configuration into modules. ``svd-xt`` matches the authors' release
(``../shared/reference/official_state_dict_manifest.json``): Stable Video Diffusion img2vid-xt,
whisper-tiny, 32 audio + 32 emotion tokens of 1024, a 64-code emotion bank, 22 emotion classes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .errors import InputError

SVD_UNET = dict(
    sample_size=96,
    in_channels=8,
    out_channels=4,
    down_block_types=(
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "DownBlockSpatioTemporal",
    ),
    up_block_types=(
        "UpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
    ),
    block_out_channels=(320, 640, 1280, 1280),
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=768,
    layers_per_block=2,
    cross_attention_dim=1024,
    transformer_layers_per_block=1,
    num_attention_heads=(5, 10, 20, 20),
    num_frames=25,
    condition_scales=(1.0, 1.0),
    masked_condition_attention=True,  # the release gates audio and emotion by the face mask (spatial attn2)
)


def _small_whisper(d_model: int, heads: int, ffn: int, chunk_seconds: int) -> dict[str, Any]:
    """A two-layer Whisper trained from scratch; its token ids must fit its small vocabulary."""
    return dict(
        d_model=d_model,
        encoder_layers=2,
        encoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_layers=1,
        decoder_attention_heads=heads,
        decoder_ffn_dim=ffn,
        num_mel_bins=80,
        max_source_positions=50 * chunk_seconds,  # Whisper's encoder runs at 50 Hz on fixed chunks
        vocab_size=64,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=2,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )


@dataclass(frozen=True)
class ModelConfig:
    """Constructor arguments of every component, plus the video geometry they imply."""

    name: str
    image_size: int  # square frames, pixels
    num_frames: int  # frames per denoising window
    fps: float  # frames per second the model was trained on
    unet: dict[str, Any]
    vae: dict[str, Any]  # AutoencoderKLTemporalDecoder
    image_encoder: dict[str, Any]  # transformers CLIPVisionConfig
    audio_encoder: dict[str, Any]  # transformers WhisperConfig (encoder part used)
    audio_projection: dict[str, Any]  # TokenProjection
    mask_encoder: dict[str, Any]  # FaceMaskEncoder
    emotion_bank: dict[str, Any]  # EmotionBank
    discriminator: dict[str, Any]  # EmotionDiscriminator
    emotion_embedder: dict[str, Any]  # DisentangledEmotionEmbedder
    expression_encoder: dict[str, Any] | None = None  # ExpressionEncoder; None: no reference-video input
    refiner: dict[str, Any] | None = None  # ReferenceRefiner; None: decoded frames are final (a full-size VAE keeps detail)

    @property
    def prior_dim(self) -> int:
        return self.emotion_bank["prior_dim"]

    @property
    def sync_expert(self) -> dict[str, Any]:
        """LatentSyncExpert arguments (a training-time component): sized from the latents and audio windows."""
        latent = self.image_size // 2 ** (len(self.vae["down_block_types"]) - 1)
        p = self.audio_projection
        return dict(
            latent_channels=self.vae.get("latent_channels", 4),
            audio_dim=p["seq_len"] * p["blocks"] * p["channels"],
            crop=max(4, min(16, latent // 2) // 4 * 4),  # the lower face covers about half the latent's side
        )


def _svd_xt() -> ModelConfig:
    return ModelConfig(
        name="svd-xt",
        image_size=512,
        num_frames=25,
        fps=25.0,
        unet=dict(SVD_UNET),
        vae=dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            sample_size=768,
            scaling_factor=0.18215,
            force_upcast=True,
        ),
        image_encoder=dict(
            hidden_size=1280,
            intermediate_size=5120,
            num_hidden_layers=32,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
            projection_dim=1024,
            hidden_act="gelu",
        ),
        audio_encoder=dict(  # whisper-tiny
            d_model=384,
            encoder_layers=4,
            encoder_attention_heads=6,
            encoder_ffn_dim=1536,
            decoder_layers=4,
            decoder_attention_heads=6,
            decoder_ffn_dim=1536,
            num_mel_bins=80,
            max_source_positions=1500,
        ),
        audio_projection=dict(seq_len=10, blocks=5, channels=384, intermediate_dim=1024, output_dim=1024, context_tokens=32),
        mask_encoder=dict(conditioning_embedding_channels=320, conditioning_channels=3, block_out_channels=(16, 32, 96, 256)),
        emotion_bank=dict(prior_dim=256, code_dim=1024, num_codes=64, num_tokens=32, token_dim=1024, hidden_dim=1024, num_heads=8, beta=0.25),
        discriminator=dict(in_channels=1280, hidden_dims=(512, 256), num_classes=22, dropout=0.1),
        emotion_embedder=dict(
            expression_dim=64,
            audio_dim=384,
            model_dim=256,
            num_layers=4,
            num_heads=8,
            ffn_dim=1024,
            fusion_lambda=1.0,
            max_frames=512,
            dropout=0.1,
            modality_dropout=0.2,
        ),
    )


def _tiny() -> ModelConfig:
    return ModelConfig(
        name="tiny",
        image_size=32,
        num_frames=4,
        fps=25.0,
        unet=dict(
            sample_size=8,
            in_channels=8,
            out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            block_out_channels=(32, 64),
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=24,
            layers_per_block=1,
            cross_attention_dim=32,
            transformer_layers_per_block=1,
            num_attention_heads=(2, 4),
            num_frames=4,
            condition_scales=(1.0, 1.0),
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            block_out_channels=(32, 32, 32),
            layers_per_block=1,
            latent_channels=4,
            sample_size=32,
            scaling_factor=1.0,
            force_upcast=False,
        ),
        image_encoder=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=32,
            hidden_act="gelu",
        ),
        audio_encoder=_small_whisper(d_model=32, heads=2, ffn=64, chunk_seconds=2),
        audio_projection=dict(seq_len=10, blocks=3, channels=32, intermediate_dim=64, output_dim=32, context_tokens=4),
        mask_encoder=dict(conditioning_embedding_channels=32, conditioning_channels=3, block_out_channels=(8, 16, 16)),
        emotion_bank=dict(prior_dim=16, code_dim=32, num_codes=8, num_tokens=4, token_dim=32, hidden_dim=32, num_heads=2, beta=0.25),
        discriminator=dict(in_channels=64, hidden_dims=(32, 16), num_classes=22, dropout=0.1),
        emotion_embedder=dict(
            expression_dim=12,
            audio_dim=32,
            model_dim=16,
            num_layers=2,
            num_heads=2,
            ffn_dim=32,
            fusion_lambda=1.0,
            max_frames=128,
            dropout=0.0,
            modality_dropout=0.2,
        ),
        expression_encoder=dict(image_size=32, channels=(8, 16), out_dim=12),
        refiner=dict(channels=3, block_out_channels=(8, 16), norm_groups=4),
    )


def _synthetic() -> ModelConfig:
    # The shipped default: sized so that CPU training is hours, not days, and a 5-second clip
    # renders in under a minute on 2 cores (64 px, 16x16x4 latents, a 5.7 M-parameter UNet).
    return ModelConfig(
        name="synthetic",
        image_size=64,
        num_frames=16,
        fps=25.0,
        unet=dict(
            sample_size=16,
            in_channels=8,
            out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            block_out_channels=(32, 64, 128),
            addition_time_embed_dim=32,
            projection_class_embeddings_input_dim=96,
            layers_per_block=1,
            cross_attention_dim=128,
            transformer_layers_per_block=1,
            num_attention_heads=(1, 2, 4),
            num_frames=16,
            condition_scales=(1.0, 1.0),
            emotion_time_embedding=True,
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            block_out_channels=(32, 32, 64),
            layers_per_block=1,
            latent_channels=4,
            sample_size=64,
            scaling_factor=1.0,
            force_upcast=False,
        ),
        image_encoder=dict(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=64,
            patch_size=8,
            projection_dim=128,
            hidden_act="gelu",
        ),
        audio_encoder=_small_whisper(d_model=64, heads=4, ffn=128, chunk_seconds=5),
        audio_projection=dict(seq_len=10, blocks=3, channels=64, intermediate_dim=256, output_dim=128, context_tokens=8),
        mask_encoder=dict(conditioning_embedding_channels=32, conditioning_channels=3, block_out_channels=(16, 32, 64)),
        emotion_bank=dict(prior_dim=64, code_dim=128, num_codes=32, num_tokens=8, token_dim=128, hidden_dim=256, num_heads=4, beta=0.25),
        discriminator=dict(in_channels=128, hidden_dims=(128, 64), num_classes=22, dropout=0.1),
        emotion_embedder=dict(
            expression_dim=12,
            audio_dim=64,
            model_dim=64,
            num_layers=2,
            num_heads=4,
            ffn_dim=128,
            fusion_lambda=1.0,
            max_frames=256,
            dropout=0.1,
            modality_dropout=0.2,
        ),
        expression_encoder=dict(image_size=64, channels=(32, 64, 128, 128), out_dim=12),
        refiner=dict(channels=3, block_out_channels=(32, 64, 96), norm_groups=8),
    )


_CONFIGS = {"tiny": _tiny, "synthetic": _synthetic, "svd-xt": _svd_xt}
CONFIG_NAMES = tuple(_CONFIGS)


def get_config(name: str | ModelConfig) -> ModelConfig:
    """The named configuration (a fresh copy: callers may not mutate the registry)."""
    if isinstance(name, ModelConfig):
        return name
    try:
        return copy.deepcopy(_CONFIGS[name]())
    except KeyError:
        raise InputError(f"unknown model configuration {name!r}; expected one of {', '.join(CONFIG_NAMES)}") from None
