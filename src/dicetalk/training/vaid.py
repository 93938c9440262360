"""``dicetalk train-vaid``: V-AID's two audio streams, each matched to a visual representation, kept apart.

On frozen Whisper hidden states (the default model's audio encoder, or ``--weights``'), per clip
(:func:`~dicetalk.data.emotive.clip_batch`, whole clips up to ``max_frames``):

    L = L_lip + L_expression + L_adv + correlation_weight * L_corr

* ``L_lip``, ``L_expression``: mean squared error of each stream's read-out to its visual target
  (:mod:`dicetalk.data.emotive`: the mouth's syllable-rate motion; the slow whole-face expression),
  standardised by the training set's mean and spread;
* ``L_adv``: two adversaries, each a small MLP behind a gradient-reversal layer — one predicts the
  whole-face expression from the lip stream, the other the lip motion from the expression stream.
  The adversaries learn to predict; the streams, through the reversed gradient (weight
  ``adversary_weight``, ramped up over ``adversary_warmup`` steps), learn to leave nothing to
  predict. No emotion label is used anywhere: the face's expression carries the emotion;
* ``L_corr``: the mean squared cross-correlation of the two streams' standardised features over the
  batch's frames (decorrelation, the linear part of the same goal).

Every random draw of step ``t`` comes from ``(seed, t)`` (``--resume`` continues the same curve).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..data.emotive import SplitFeatures, clip_batch
from ..models.vaid import AudioDecoupler
from ..utils.atomic import atomic_dir
from .common import Run, fit, make_accelerator


@dataclass
class VaidOptions:
    dataset: str
    out: str
    weights: str | None = None  # frozen audio and expression encoders: a weights folder (None: the embedded default)
    steps: int = 3000
    batch: int = 16  # clips per step
    max_frames: int = 96
    lr: float = 1e-3
    warmup: int = 100
    hidden_dim: int = 256
    lip_dim: int = 32
    expression_dim: int = 32
    adversary_weight: float = 0.5
    adversary_warmup: int = 500
    correlation_weight: float = 0.1
    dropout: float = 0.0  # in the expression stream
    weight_decay: float = 0.0
    seed: int = 0
    mixed_precision: str = "no"
    save_every: int = 500
    log_every: int = 25
    cache_dir: str | None = None


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient multiplied by ``-scale`` backward."""
    return _GradientReversal.apply(x, scale)


class StreamAdversaries(ModelMixin, ConfigMixin):
    """Training only: whole-face expression from the lip stream, lip motion from the expression stream."""

    @register_to_config
    def __init__(self, lip_dim: int = 32, expression_dim: int = 32, lip_targets: int = 2, expression_targets: int = 12, hidden: int = 128):
        super().__init__()
        self.expression_from_lip = nn.Sequential(nn.Linear(lip_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, expression_targets))
        self.lip_from_expression = nn.Sequential(
            nn.Linear(expression_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, lip_targets)
        )


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[..., None].to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / (m.sum() * pred.shape[-1]).clamp_min(1)


def cross_correlation(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared correlation between every channel of ``a`` and of ``b`` over the real frames."""
    a, b = a[mask], b[mask]
    a = (a - a.mean(0)) / a.std(0).clamp_min(1e-4)
    b = (b - b.mean(0)) / b.std(0).clamp_min(1e-4)
    return ((a.T @ b) / max(1, a.shape[0] - 1)).pow(2).mean()


def target_statistics(features: SplitFeatures) -> dict[str, list[float]]:
    """Mean and spread of both targets over the split's frames (the read-outs' standardisation)."""
    lips, expression = zip(*(features.clip_targets(c) for c in range(features.num_clips)))
    lips, expression = np.concatenate(lips), np.concatenate(expression)
    spread = lambda x: np.maximum(x.std(0), 1e-3)  # noqa: E731
    return {
        "lip_mean": lips.mean(0).tolist(), "lip_scale": spread(lips).tolist(),
        "expression_mean": expression.mean(0).tolist(), "expression_scale": spread(expression).tolist(),
    }  # fmt: skip


def build_vaid(opts: VaidOptions, features: SplitFeatures) -> AudioDecoupler:
    _, window, blocks, channels = features.clip_windows(0).shape
    torch.manual_seed(opts.seed)
    return AudioDecoupler(
        window=window, blocks=blocks, channels=channels, hidden_dim=opts.hidden_dim, lip_dim=opts.lip_dim,
        expression_dim=opts.expression_dim, expression_targets=features.visual.shape[1], dropout=opts.dropout, **target_statistics(features),
    )  # fmt: skip


def vaid_loss(opts: VaidOptions, features: SplitFeatures):
    def loss_fn(step, modules, _batch, generator):
        vaid, adversaries = modules["vaid"], modules["adversaries"]
        rng = np.random.default_rng((opts.seed, 4243, step))
        clips = rng.integers(0, features.num_clips, opts.batch).tolist()
        dev = next(vaid.parameters()).device
        b = {k: v.to(dev) for k, v in clip_batch(features, clips, opts.max_frames, rng).items()}
        mask = b["mask"]
        out = vaid(b["windows"], mask)
        lips, expression = vaid.standardise(b["lips"], b["expression"])
        lip_loss = masked_mse(out.lip_readout, lips, mask)
        expression_loss = masked_mse(out.expression_readout, expression, mask)
        scale = opts.adversary_weight * min(1.0, step / max(1, opts.adversary_warmup))
        from_lip = adversaries.expression_from_lip(reverse_gradient(out.lip, scale))
        from_expression = adversaries.lip_from_expression(reverse_gradient(out.expression, scale))
        leak_expression = masked_mse(from_lip, expression, mask)  # 1: nothing to read, 0: all
        leak_lips = masked_mse(from_expression, lips, mask)
        corr = cross_correlation(out.lip, out.expression, mask)
        loss = lip_loss + expression_loss + leak_expression + leak_lips + opts.correlation_weight * corr
        logs = {"lip": lip_loss, "expression": expression_loss, "adv_expression_from_lip": leak_expression, "adv_lip_from_expression": leak_lips, "corr": corr}
        return loss, {k: v.detach() for k, v in logs.items()}

    return loss_fn


def train_vaid(opts: VaidOptions, features: SplitFeatures, resume: bool = False, dry_run: bool = False) -> AudioDecoupler:
    """Train; the newest weights are exported to ``OUT/vaid`` (save_pretrained). Returns the module."""
    vaid = build_vaid(opts, features)
    adversaries = StreamAdversaries(opts.lip_dim, opts.expression_dim, vaid.config.lip_targets, vaid.config.expression_targets)
    run = Run(Path(opts.out) / "run", opts, resume=resume)
    if dry_run:
        return vaid
    accelerator = make_accelerator(run.folder, opts.mixed_precision)
    modules = {"vaid": vaid, "adversaries": adversaries}
    fit(
        run, accelerator, modules, vaid_loss(opts, features), steps=opts.steps, lr=opts.lr, seed=opts.seed, warmup=opts.warmup,
        save_every=opts.save_every, log_every=opts.log_every, desc="train-vaid", cosine=True, weight_decay=opts.weight_decay,
    )  # fmt: skip
    vaid = accelerator.unwrap_model(modules["vaid"]).eval()
    if accelerator.is_main_process:
        with atomic_dir(Path(opts.out) / "vaid") as tmp:
            vaid.save_pretrained(tmp)
    return vaid
