"""The denoiser: diffusers' SVD UNet with audio and emotion cross-attention and the mask encoder input.

:class:`DiceTalkUNet` *is* a ``UNetSpatioTemporalConditionModel`` (imported, not copied) with
:class:`~dicetalk.models.attention_processors.AudioEmotionAttnProcessor` on every ``attn2``,
so its state-dict names are exactly those of the released ``unet.pth``. What differs is fed
through one :class:`ConditionContext` per model:

* per-frame audio and emotion tokens, read by the processors;
* face-mask features, added to the output of ``conv_in`` by a forward hook;
* the mid-block feature map, captured by a forward hook for the emotion discriminator;
* optionally (``masked_condition_attention``, the released model's way), the face mask, which gates
  the audio and emotion attention of every spatial block;
* optionally (``emotion_time_embedding``, the small ``synthetic`` configuration only), the
  emotion tokens pooled over the window and projected onto the timestep embedding, the way
  SVD conditions on its motion bucket: a global path beside the per-frame cross-attention that
  a small model trained for a few thousand steps picks up (the released checkpoint has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (diffusers finds a component's loader by base-class names in its module)
from diffusers.utils import BaseOutput
from torch import nn

from .attention_processors import STREAMS, AudioEmotionAttnProcessor, ConditionContext


@dataclass
class DiceTalkUNetOutput(BaseOutput):
    sample: torch.Tensor  # (B, F, C_out, h, w)
    mid_features: torch.Tensor | None = None  # (B*F, C_mid, h', w')


class DiceTalkUNet(UNetSpatioTemporalConditionModel):
    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "DownBlockSpatioTemporal",
        ),
        up_block_types: tuple[str, ...] = (
            "UpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
        ),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | tuple[int, ...] = 2,
        cross_attention_dim: int | tuple[int, ...] = 1024,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20),
        num_frames: int = 25,
        condition_scales: tuple[float, float] = (1.0, 1.0),
        emotion_time_embedding: bool = False,
        masked_condition_attention: bool = False,
    ):
        super().__init__(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=tuple(down_block_types),
            up_block_types=tuple(up_block_types),
            block_out_channels=tuple(block_out_channels),
            addition_time_embed_dim=addition_time_embed_dim,
            projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
            layers_per_block=layers_per_block,
            cross_attention_dim=cross_attention_dim,
            transformer_layers_per_block=transformer_layers_per_block,
            num_attention_heads=num_attention_heads,
            num_frames=num_frames,
        )
        self._condition = ConditionContext()
        processors = {}
        for name, attn in self._attention_modules():
            if name.endswith("attn2"):
                processors[f"{name}.processor"] = AudioEmotionAttnProcessor(
                    hidden_size=attn.to_k.out_features,
                    cross_attention_dim=attn.to_k.in_features,
                    scales=tuple(condition_scales),
                    temporal="temporal_transformer_blocks" in name,
                    context=self._condition,
                    masked=masked_condition_attention,
                )
            else:
                processors[f"{name}.processor"] = AttnProcessor2_0()
        self.set_attn_processor(processors)
        self.emotion_scale = float(condition_scales[1])
        if emotion_time_embedding:
            if not isinstance(cross_attention_dim, int):
                raise ValueError("emotion_time_embedding needs one cross_attention_dim for every block")
            # Zero-initialised: a UNet trained without it starts out computing exactly the same.
            self.emotion_embedding = nn.Linear(cross_attention_dim, block_out_channels[0] * 4)
            nn.init.zeros_(self.emotion_embedding.weight)
            nn.init.zeros_(self.emotion_embedding.bias)
            self.add_embedding.register_forward_hook(self._add_emotion_embedding)
        self.conv_in.register_forward_hook(self._add_mask_features)
        self.mid_block.register_forward_hook(self._capture_mid_features)

    def _attention_modules(self):
        from diffusers.models.attention_processor import Attention

        return [(name, m) for name, m in self.named_modules() if isinstance(m, Attention)]

    def condition_processors(self) -> list[AudioEmotionAttnProcessor]:
        return [m for m in self.modules() if isinstance(m, AudioEmotionAttnProcessor)]

    def set_condition_scales(self, audio: float | None = None, emotion: float | None = None) -> None:
        """Scale of the audio and emotion cross-attention in every block (1.0 as trained)."""
        for proc in self.condition_processors():
            if audio is not None:
                proc.scales[0] = float(audio)
            if emotion is not None:
                proc.scales[1] = float(emotion)
        if emotion is not None:
            self.emotion_scale = float(emotion)

    @torch.no_grad()
    def init_condition_projections_from_image(self) -> None:
        """Start every stream's key/value projections as copies of the image cross-attention's.

        Used when the UNet starts from a pretrained SVD checkpoint, as in the released recipe.
        """
        for name, attn in self._attention_modules():
            if isinstance(attn.processor, AudioEmotionAttnProcessor):
                for k, v in zip(attn.processor.to_k_ip, attn.processor.to_v_ip):
                    k.weight.copy_(attn.to_k.weight)
                    v.weight.copy_(attn.to_v.weight)

    def _add_mask_features(self, module, inputs, output):
        features = self._condition.mask_features
        if features is None:
            return output
        return output + features.flatten(0, 1).to(output.dtype)

    def _add_emotion_embedding(self, module, inputs, output):
        tokens = self._condition.streams[1]
        if tokens is None or self.emotion_scale == 0.0:
            return output
        # (B, F, T, D) -> (B, D): one emotion per window, added to its timestep embedding (B, C_emb).
        return output + self.emotion_scale * self.emotion_embedding(tokens.mean(dim=(1, 2)).to(output.dtype))

    def _capture_mid_features(self, module, inputs, output):
        self._condition.mid_features = output

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        audio_tokens: torch.Tensor | None = None,
        emotion_tokens: torch.Tensor | None = None,
        mask_features: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DiceTalkUNetOutput | tuple:
        """Denoise ``sample`` (B, F, C, h, w).

        ``encoder_hidden_states`` (B, 1, D): CLIP image embedding. ``audio_tokens`` and
        ``emotion_tokens`` (B, F, T, D): per-frame condition tokens (None: stream off).
        ``mask_features`` (B, F, C0, h, w): face-mask encoder output. ``face_mask`` (1 or B, 1, H, W) in
        [0, 1]: the face region, gating audio and emotion where the configuration asks for it
        (``masked_condition_attention``); ignored otherwise.
        """
        batch, frames = sample.shape[:2]
        for name, tokens in zip(STREAMS, (audio_tokens, emotion_tokens)):
            if tokens is not None and (tokens.ndim != 4 or tuple(tokens.shape[:2]) != (batch, frames)):
                raise ValueError(f"{name}_tokens must be (B={batch}, F={frames}, T, D), got {tuple(tokens.shape)}")
        ctx = self._condition
        ctx.clear()
        ctx.streams = [audio_tokens, emotion_tokens]
        ctx.batch_size, ctx.num_frames = batch, frames
        ctx.mask_features = mask_features
        if face_mask is not None and face_mask.shape[0] not in (1, batch):
            raise ValueError(f"face_mask must be (1 or B={batch}, 1, H, W), got {tuple(face_mask.shape)}")
        ctx.face_mask = face_mask if self.config.masked_condition_attention else None
        try:
            out = super().forward(sample, timestep, encoder_hidden_states, added_time_ids, return_dict=False)[0]
            mid = ctx.mid_features
        finally:
            # Gradient checkpointing re-runs blocks during backward: keep the context while training.
            if not (torch.is_grad_enabled() and self.training):
                ctx.clear()
        if not return_dict:
            return (out, mid)
        return DiceTalkUNetOutput(sample=out, mid_features=mid)
