"""``dicetalk train-edi``: EDI's two parts on top of a frozen DICE-Talk model (the embedded default by default).

Stage 1 (``prior``, ``prior_steps``): regression, frame by frame, of the expression the train
split's frames show (the frozen expression encoder's slow whole-face reading,
:mod:`dicetalk.data.emotive`) onto the prompt prior of the clip's label at its level's strength
(``priors.prior(label, LEVEL_INTENSITY[level])``) — the emotion the denoiser already knows how to
draw. Cheap: a few thousand steps of a small MLP on cached features.

Stage 2 (``delta``, ``steps``): the zero-initialised token offsets, through the frozen denoiser. Each
sample is a window of an emotion clip (its latents, speech, face mask) whose *reference frame
comes from another clip of the same person* — a neutral one for ``neutral_share`` of the samples,
else one of any other emotion at any level: the portraits that make DICE-Talk copy their
expression. The emotion tokens are the bank's tokens of the stage-1 prior of the window's target
expression plus the offsets of (target, reference frame's expression); the loss is the denoiser's
EDM loss (:func:`dicetalk.models.denoiser.denoise`, the one UNet call of training and sampling).
Only the offsets learn; the UNet, audio projection, mask encoder, emotion bank and stage-1 prior
stay frozen. Both stages keep ``train``'s run conventions (``OUT/run_prior``, ``OUT/run``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import EMOTIONS, edm
from ..data.datasets import WindowDataset
from ..data.emotive import SplitFeatures, stream_targets
from ..models.denoiser import DenoiserConditions, denoise, time_ids
from ..models.edi import ExpressionInjector
from ..pipeline.recipe import svd_time_ids
from ..synthetic.expressions import LEVEL_INTENSITY
from ..utils.atomic import atomic_dir
from .common import Run, StepIndices, fit, make_accelerator, step_loader


@dataclass
class EdiOptions:
    dataset: str
    out: str
    weights: str | None = None  # the frozen DICE-Talk model (None: the embedded default)
    prior_steps: int = 3000
    prior_batch: int = 1024  # frames per stage-1 step
    prior_lr: float = 1e-3
    steps: int = 2000  # stage 2
    batch: int = 2
    frames: int = 16
    lr: float = 3e-4
    warmup: int = 100
    neutral_share: float = 0.25
    p_mean: float = 0.7
    p_std: float = 1.6
    hidden_dim: int = 256
    seed: int = 0
    mixed_precision: str = "no"
    save_every: int = 250
    log_every: int = 25
    cache_dir: str | None = None


def build_injector(opts: EdiOptions, features: SplitFeatures, prior_dim: int, num_tokens: int, token_dim: int) -> ExpressionInjector:
    expression = np.concatenate([features.clip_targets(c)[1] for c in range(features.num_clips)])
    torch.manual_seed(opts.seed)
    return ExpressionInjector(
        expression_dim=expression.shape[1], prior_dim=prior_dim, num_tokens=num_tokens, token_dim=token_dim, hidden_dim=opts.hidden_dim,
        expression_mean=expression.mean(0).tolist(), expression_scale=np.maximum(expression.std(0), 1e-3).tolist(),
    )  # fmt: skip


def clip_prior_targets(features: SplitFeatures, priors) -> np.ndarray:
    """(clips, prior_dim) the prompt prior of each labelled clip's label at its level's strength (NaN: unlabelled)."""
    out = np.full((features.num_clips, priors.config.prior_dim), np.nan, np.float32)
    for c, r in enumerate(features.cache.records):
        if r.labelled:
            strength = 1.0 if r.emotion == "neutral" else LEVEL_INTENSITY[r.level]
            out[c] = priors.prior(r.emotion, strength).detach().float().cpu().numpy()
    return out


def prior_loss(opts: EdiOptions, features: SplitFeatures, targets: np.ndarray):
    labelled = [c for c in range(features.num_clips) if not np.isnan(targets[c, 0])]
    expression = {c: features.clip_targets(c)[1] for c in labelled}

    def loss_fn(step, modules, _batch, generator):
        edi = modules["edi"]
        rng = np.random.default_rng((opts.seed, 2711, step))
        clips = [labelled[i] for i in rng.integers(0, len(labelled), opts.prior_batch)]
        x = np.stack([expression[c][rng.integers(0, len(expression[c]))] for c in clips])
        dev = next(edi.parameters()).device
        pred = edi.emotion_prior(torch.from_numpy(x).to(dev))
        target = torch.from_numpy(targets[clips]).to(dev)
        loss = ((pred - target) ** 2).mean()
        return loss, {"relative": (loss / target.var(0).mean().clamp_min(1e-8)).detach()}

    return loss_fn


class EmotionalReferenceWindows(WindowDataset):
    """:class:`WindowDataset` windows of emotion clips whose reference frame is another clip's of the same person."""

    def __init__(self, features: SplitFeatures, diffusion_features, frames: int, seed: int, neutral_share: float):
        super().__init__(features.cache, frames, seed=seed, mix=1.0, features=diffusion_features, with_pixels=False)
        self.visual = features.visual
        self.neutral_share = neutral_share
        self.targets = {}
        self.by_identity = defaultdict(lambda: ([], []))
        for c, r in enumerate(features.cache.records):
            if r.labelled:
                self.by_identity[r.identity][r.emotion != "neutral"].append(c)
        self.features_of = features

    def __getitem__(self, k: int) -> dict:
        item = super().__getitem__(k)
        rng = np.random.default_rng((self.seed, int(k), 31337))
        cache, c = self.cache, int(item["clip"])
        neutral, emotional = self.by_identity[cache.records[c].identity]
        pool = neutral if (rng.random() < self.neutral_share and neutral) or not emotional else emotional
        rc = int(pool[rng.integers(len(pool))])
        r0 = int(cache.starts[rc]) + int(rng.integers(0, int(cache.lengths[rc])))
        if c not in self.targets:
            self.targets[c] = stream_targets(self.features_of.clip_visual(c))[1]
        start = int(item["start"])
        item["reference_frame"] = r0
        item["reference_latents"] = torch.from_numpy(np.array(self.features.latents[r0], np.float32))
        item["image_embeds"] = torch.from_numpy(np.array(self.features.image_embeds[r0], np.float32))
        item["portrait_expression"] = torch.from_numpy(np.array(self.visual[r0], np.float32))
        item["target_expression"] = torch.from_numpy(self.targets[c][start : start + self.num_frames])
        item["reference_emotion"] = EMOTIONS.index(cache.records[rc].emotion)
        return item


def injected_tokens(edi: ExpressionInjector, bank, trajectory: torch.Tensor, portrait: torch.Tensor, bank_kv=None, offsets: bool = True) -> torch.Tensor:
    """Emotion tokens (B, F, T, D) of a target trajectory (B, F, 12) for a portrait expression (B, 12)."""
    prior = edi.emotion_prior(trajectory).to(bank.dtype)
    tokens = bank(prior, use_bank=True, bank=bank_kv).tokens
    if offsets:
        tokens = tokens + edi.token_offsets(trajectory, portrait).to(tokens.dtype)
    return tokens


def delta_loss(opts: EdiOptions, frozen: dict, fps: float, scaling_factor: float):
    def loss_fn(step, modules, batch, generator):
        edi = modules["edi"]
        dev = next(edi.parameters()).device
        batch = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in batch.items()}
        x0 = batch["latents"]
        b, f = x0.shape[:2]
        sigma = edm.sample_training_sigmas(b, opts.p_mean, opts.p_std, generator, dev)
        x = x0 + sigma.view(b, 1, 1, 1, 1) * torch.randn(x0.shape, generator=generator, device=dev)
        tokens = injected_tokens(edi, frozen["emotion_bank"], batch["target_expression"], batch["portrait_expression"])
        mask = batch["mask"][:, None].expand(b, 3, *batch["mask"].shape[-2:])
        cond = DenoiserConditions(
            image_latents=batch["reference_latents"] / scaling_factor,
            image_embeds=batch["image_embeds"][:, None],
            audio_tokens=frozen["audio_projection"](batch["audio_windows"]),
            emotion_tokens=tokens,
            mask_features=frozen["mask_encoder"](mask)[:, None].expand(b, f, -1, -1, -1),
            time_ids=time_ids(svd_time_ids(fps, noise_aug=0.0), b, dev),
            face_mask=batch["mask"][:, None],
        )
        denoised = denoise(frozen["unet"], x, sigma, cond)[0]
        loss = (edm.loss_weight(sigma.view(b, 1, 1, 1, 1)) * (denoised - x0) ** 2).mean()
        return loss, {"denoise": loss.detach()}

    return loss_fn


def _collate(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k]) else torch.tensor([it[k] for it in items]) for k in items[0]}


def train_edi(opts: EdiOptions, features: SplitFeatures, pipe, diffusion_features=None, resume: bool = False, dry_run: bool = False) -> ExpressionInjector:
    """Both stages (``diffusion_features`` for the second; None: the first only). Writes ``OUT/edi``."""
    bank = pipe.emotion_bank
    edi = build_injector(opts, features, bank.config.prior_dim, bank.config.num_tokens, bank.config.token_dim)
    out = Path(opts.out)
    if dry_run:
        Run(out / "run_prior", opts, resume=resume)
        return edi
    # Stage 1: the prior head (the offsets frozen at zero).
    run = Run(out / "run_prior", opts, resume=resume, resumable_keys=("prior_steps", "steps", "save_every", "log_every", "cache_dir"))
    edi.delta.requires_grad_(False)
    edi.delta_out.requires_grad_(False)
    accelerator = make_accelerator(run.folder, opts.mixed_precision)
    fit(
        run, accelerator, {"edi": edi}, prior_loss(opts, features, clip_prior_targets(features, pipe.priors)), steps=opts.prior_steps,
        lr=opts.prior_lr, seed=opts.seed, warmup=100, save_every=max(500, opts.prior_steps), log_every=opts.log_every, desc="train-edi prior", cosine=True,
    )  # fmt: skip
    edi = accelerator.unwrap_model(edi)
    if diffusion_features is not None and opts.steps > 0:
        edi = _train_delta(opts, features, pipe, diffusion_features, edi, resume)
    if accelerator.is_main_process:
        with atomic_dir(out / "edi") as tmp:
            edi.eval().save_pretrained(tmp)
    return edi


def _train_delta(opts: EdiOptions, features: SplitFeatures, pipe, diffusion_features, edi: ExpressionInjector, resume: bool) -> ExpressionInjector:
    edi.requires_grad_(False)
    edi.delta.requires_grad_(True)
    edi.delta_out.requires_grad_(True)
    run = Run(Path(opts.out) / "run", opts, resume=resume, resumable_keys=("steps", "save_every", "log_every", "cache_dir"))
    accelerator = make_accelerator(run.folder, opts.mixed_precision)
    frozen = {name: getattr(pipe, name).float().eval().requires_grad_(False).to(accelerator.device) for name in ("unet", "audio_projection", "mask_encoder", "emotion_bank")}
    dataset = EmotionalReferenceWindows(features, diffusion_features, opts.frames, opts.seed, opts.neutral_share)

    def batches(start: int):
        sampler = StepIndices(start, opts.steps, opts.batch, accelerator.process_index, accelerator.num_processes)
        return step_loader(dataset, sampler, opts.batch, _collate)

    fit(
        run, accelerator, {"edi": edi}, delta_loss(opts, frozen, features.cache.fps, pipe.vae.config.scaling_factor), steps=opts.steps,
        lr=opts.lr, seed=opts.seed, warmup=opts.warmup, save_every=opts.save_every, log_every=opts.log_every, batches=batches, desc="train-edi delta",
    )  # fmt: skip
    return accelerator.unwrap_model(edi)
