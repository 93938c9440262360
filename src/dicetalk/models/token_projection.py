"""Feature window -> a set of cross-attention tokens (the audio projection of the paper's backbone).

A window of ``seq_len`` feature frames x ``blocks`` hidden states x ``channels`` is flattened and
mapped by a three-layer MLP to ``context_tokens`` tokens of ``output_dim``, then layer-normed. At
full size this is the released ``audio_linear`` (10 Whisper frames x 5 hidden states x 384 ->
32 tokens x 1024); the emotion bank reuses it (``seq_len = blocks = 1``) to turn a 256-d emotion
prior or a 1024-d bank code into tokens. Parameter names match the released checkpoints.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class TokenProjection(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        seq_len: int = 10,
        blocks: int = 5,
        channels: int = 384,
        intermediate_dim: int = 1024,
        output_dim: int = 1024,
        context_tokens: int = 32,
    ):
        super().__init__()
        self.input_dim = seq_len * blocks * channels
        self.proj1 = nn.Linear(self.input_dim, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` (..., seq_len, blocks, channels) or (..., input_dim) -> (..., tokens, output_dim)."""
        cfg = self.config
        if features.shape[-1] != self.input_dim:
            features = features.flatten(-3)
        if features.shape[-1] != self.input_dim:
            raise ValueError(f"expected {self.input_dim} features per item, got {features.shape[-1]}")
        lead = features.shape[:-1]
        x = torch.relu(self.proj1(features))
        x = torch.relu(self.proj2(x))
        tokens = self.proj3(x).view(*lead, cfg.context_tokens, cfg.output_dim)
        return self.norm(tokens)
