"""``dicetalk train``: the compositional diffusion adaptation (paper Sec. 3.2-3.3, Eq. 17).

SVD-style EDM training — v-prediction with EDM preconditioning, log-normal noise levels,
``lambda(sigma)`` loss weighting — of the denoiser and the DICE-Talk conditioning:

    L = L_denoise + lambda_cls * L_cls + L_vq

with the emotion prior sampled from the (frozen) embedder's Gaussian of an emotion reference
clip (same identity and emotion), the emotion bank retrieving its nearest code (VQ, straight
through), and the discriminator classifying the UNet mid-block features into the 22 MEAD
classes. Conditions are dropped for classifier-free guidance: 5 % audio, 5 % image, 5 %
emotion, 5 % all; ``drop_audio_emotion`` adds a share with speech and emotion dropped and the
image kept — the image-only branch that guidance at identity scale 1 extrapolates from, which the
paper's four disjoint cases never show the model (0 by default, as in the paper). Frozen
components (VAE, image encoder, audio encoder, embedder) only enter through features cached once
(:mod:`dicetalk.data.features`). ``mouth_weight`` > 1 counts the
lower face's errors that many times in ``L_denoise``
(:func:`~dicetalk.training.losses.lower_face_weights`, each frame's face box): lip-sync needs the
mouth right, and the mouth is a small part of the frame.
``sync_weight`` > 0 adds ``sync_weight * L_sync``: the contrastive loss of a frozen latent lip-sync
expert (:mod:`dicetalk.models.sync_expert`, ``dicetalk train-sync-expert``) on the denoised
estimate, for the windows whose speech is kept — Wav2Lip's expert discriminator, in latent space.

Guidance distillation (``distill_from``, issue 7): the UNet alone learns to give, in one pass with
every condition, what the frozen teacher gives with its guidance branches,

    D_student(x; sigma, c) -> D_image + s_ae (D_full - D_image) [+ (s_id - 1)(D_image - D_none)],

on the same windows and noise levels (conditioning modules shared with the teacher and frozen,
the emotion bank attended as at sampling). The distilled model samples with one branch
(``export --guidance-fraction 0``): a half or a third of the UNet work per step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import edm
from ..configs import get_config
from ..models.denoiser import DenoiserConditions, time_ids
from ..models.denoiser import denoise as denoise_x0
from ..pipeline.recipe import svd_time_ids
from ..errors import InputError
from ..data.cache import FrameCache
from ..data.datasets import DiffusionFeatures, WindowDataset
from ..models.registry import build_component
from .common import Run, StepIndices, fit, load_weights, make_accelerator, step_loader
from .losses import lower_face_weights

TRAINABLE = ("unet", "audio_projection", "emotion_bank", "mask_encoder", "discriminator")
# Zero-initialised parts a configuration may add to weights trained without them.
NEW_PATHS = ("emotion_embedding",)


@dataclass
class DiffusionOptions:
    dataset: str
    out: str
    backbone: str  # folder with vae/, image_encoder/, audio_encoder/ (frozen)
    embedder: str  # folder with emotion_embedder/ and priors/ (frozen)
    config: str = "synthetic"
    init: str | None = None  # a weights folder to start the trainable parts from (e.g. converted SVD)
    steps: int = 10000
    batch: int = 2
    frames: int = 16
    lr: float = 2e-4
    warmup: int = 300
    p_mean: float = 0.7
    p_std: float = 1.6
    lambda_cls: float = 0.1
    mouth_weight: float = 1.0  # weight of the lower face in the denoising loss (1: the paper's unweighted loss)
    sync_expert: str | None = None  # a trained LatentSyncExpert folder (train-sync-expert): the sync loss's judge
    sync_weight: float = 0.0  # weight of the sync loss on the denoised estimate (0: the paper's losses only)
    drop_audio: float = 0.05
    drop_image: float = 0.05
    drop_emotion: float = 0.05
    drop_all: float = 0.05
    drop_audio_emotion: float = 0.0  # speech and emotion dropped together, the image kept (guidance's image-only branch)
    trainable: tuple[str, ...] = TRAINABLE
    unet_trainable: str = "all"  # "all" or "cross-attention" (only the audio/emotion projections and the global emotion path)
    emotion_bank: bool = True  # ablation: False trains without the emotion bank
    deterministic_prior: bool = False  # ablation: the embedder's mean instead of a sample
    neutral_reference: bool = True  # emotion data take their reference frame from a neutral clip
    mix: float = 0.5
    workers: int = 0
    seed: int = 0
    mixed_precision: str = "no"
    save_every: int = 500
    log_every: int = 25
    cache_dir: str | None = None
    distill_from: str | None = None  # teacher weights: train the UNet to give its guided estimate in one pass
    distill_identity_scale: float | None = None  # the teacher's guidance scales (set when distilling)
    distill_emotion_scale: float | None = None


def build_trainable(opts: DiffusionOptions) -> dict[str, torch.nn.Module]:
    """The trained parts, fresh from the configuration or from ``opts.init``."""
    config = get_config(opts.config)
    if opts.init and not (Path(opts.init) / "unet").is_dir():  # a mistyped or pruned folder must not start fresh silently
        raise InputError(f"{opts.init}: no unet/ folder to start from (a weights folder or RUN/run/checkpoints/step_N)")
    torch.manual_seed(opts.seed)
    parts = {}
    for name in TRAINABLE:
        if name == "emotion_bank" and not opts.emotion_bank:
            from ..models.emotion_bank import EmotionBank

            module = EmotionBank(**{**config.emotion_bank, "use_bank": False})
        else:
            module = build_component(name, config)
        if opts.init and (Path(opts.init) / name).is_dir():
            load_weights(module, Path(opts.init) / name, new_paths=NEW_PATHS)
        parts[name] = module
    for name, module in parts.items():
        module.requires_grad_(name in opts.trainable)
    if opts.unet_trainable == "cross-attention":  # the UNet's condition paths only
        for pname, p in parts["unet"].named_parameters():
            p.requires_grad_(".processor." in pname or pname.split(".")[0] in NEW_PATHS)
    elif opts.unet_trainable != "all":
        raise ValueError(f"unet_trainable must be 'all' or 'cross-attention', got {opts.unet_trainable!r}")
    return parts


def _drops(u: torch.Tensor, opts: DiffusionOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Disjoint condition dropout: (audio, image, emotion) masks from one uniform draw per sample."""
    a = opts.drop_audio
    i = a + opts.drop_image
    e = i + opts.drop_emotion
    every = (u >= e) & (u < e + opts.drop_all)
    ae = e + opts.drop_all
    speech_and_emotion = (u >= ae) & (u < ae + opts.drop_audio_emotion)
    return (u < a) | every | speech_and_emotion, ((u >= a) & (u < i)) | every, ((u >= i) & (u < e)) | every | speech_and_emotion


def denoise(modules, batch: dict, x: torch.Tensor, sigma: torch.Tensor, prior: torch.Tensor, drops, fps: float, scaling_factor: float, use_bank: bool = False):
    """``D(x; sigma)`` with every condition of a training batch (:func:`~dicetalk.models.denoiser.denoise`).

    ``prior`` (B, prior_dim) is the emotion prior, ``drops`` the (audio, image, emotion) dropout
    masks; ``use_bank`` attends to the whole emotion bank as sampling does (training retrieves the
    nearest code). Returns (denoised x0 (B, F, C, h, w), the UNet's output, the bank's output).
    """
    b, f = x.shape[:2]
    drop_audio, drop_image, drop_emotion = drops
    windows = batch["audio_windows"] * (~drop_audio).view(b, 1, 1, 1, 1).to(x.dtype)
    emotion = modules["emotion_bank"](prior[:, None].expand(b, f, -1), use_bank=use_bank, drop=drop_emotion)
    keep_image = (~drop_image).to(x.dtype)
    mask = batch["mask"][:, None].expand(b, 3, *batch["mask"].shape[-2:])
    cond = DenoiserConditions(
        image_latents=(batch["reference_latents"] / scaling_factor) * keep_image.view(b, 1, 1, 1),
        image_embeds=batch["image_embeds"][:, None] * keep_image.view(b, 1, 1),
        audio_tokens=modules["audio_projection"](windows),
        emotion_tokens=emotion.tokens,
        mask_features=modules["mask_encoder"](mask)[:, None].expand(b, f, -1, -1, -1),
        time_ids=time_ids(svd_time_ids(fps, noise_aug=0.0), b, x.device),  # references are not noise-augmented in training
        face_mask=batch["mask"][:, None],
    )
    denoised, out = denoise_x0(modules["unet"], x, sigma, cond)
    return denoised, out, emotion


def diffusion_loss(opts: DiffusionOptions, fps: float, scaling_factor: float, sync_expert: torch.nn.Module | None = None):
    """The training objective; ``sync_expert`` (frozen) adds ``opts.sync_weight`` x its sync loss."""

    def loss_fn(step, modules, batch, generator):
        dev = next(modules["unet"].parameters()).device
        batch = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in batch.items()}
        x0 = batch["latents"]  # (B, F, C, h, w), scaled
        b = x0.shape[0]

        sigma = edm.sample_training_sigmas(b, opts.p_mean, opts.p_std, generator, dev)
        noise = torch.randn(x0.shape, generator=generator, device=dev)
        x = x0 + sigma.view(b, 1, 1, 1, 1) * noise
        drops = _drops(torch.rand(b, generator=generator, device=dev), opts)
        mu, var = batch["prior_mu"], batch["prior_var"]
        prior = mu if opts.deterministic_prior else mu + var.sqrt() * torch.randn(mu.shape, generator=generator, device=dev)

        denoised, out, emotion = denoise(modules, batch, x, sigma, prior, drops, fps, scaling_factor)
        weight = edm.loss_weight(sigma.view(b, 1, 1, 1, 1))
        if opts.mouth_weight != 1.0:
            weight = weight * lower_face_weights(batch["face_boxes"], x0.shape[-2], x0.shape[-1], opts.mouth_weight)
        denoise_loss = (weight * (denoised - x0) ** 2).mean()
        labelled = batch["labelled"].bool() & ~drops[2]
        cls = modules["discriminator"].loss(out.mid_features, batch["class_id"].clamp(min=0), weight=labelled.float())
        loss = denoise_loss + opts.lambda_cls * cls + emotion.vq_loss
        logs = {"denoise": denoise_loss.detach(), "cls": cls.detach(), "vq": emotion.vq_loss.detach()}
        if sync_expert is not None and opts.sync_weight > 0:
            # Windows whose speech was dropped have no audio to match.
            sync, hit = sync_expert.loss(denoised, batch["face_boxes"], batch["audio_windows"], weight=(~drops[0]).float())
            loss = loss + opts.sync_weight * sync
            logs.update(sync=sync.detach(), sync_accuracy=hit.detach())
        return loss, logs

    return loss_fn


def distillation_loss(opts: DiffusionOptions, teacher_unet: torch.nn.Module, fps: float, scaling_factor: float):
    """EDM-weighted distance of the student's single pass to the teacher's guided estimate."""
    s_id, s_ae = opts.distill_identity_scale, opts.distill_emotion_scale

    def loss_fn(step, modules, batch, generator):
        dev = next(modules["unet"].parameters()).device
        batch = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in batch.items()}
        x0 = batch["latents"]
        b = x0.shape[0]
        sigma = edm.sample_training_sigmas(b, opts.p_mean, opts.p_std, generator, dev)
        x = x0 + sigma.view(b, 1, 1, 1, 1) * torch.randn(x0.shape, generator=generator, device=dev)
        prior = batch["prior_mu"]
        keep, drop = torch.zeros(b, dtype=torch.bool, device=dev), torch.ones(b, dtype=torch.bool, device=dev)
        teacher = {**modules, "unet": teacher_unet}
        with torch.no_grad():
            full = denoise(teacher, batch, x, sigma, prior, (keep, keep, keep), fps, scaling_factor, use_bank=True)[0]
            image = denoise(teacher, batch, x, sigma, prior, (drop, keep, drop), fps, scaling_factor, use_bank=True)[0]
            none = denoise(teacher, batch, x, sigma, prior, (drop, drop, drop), fps, scaling_factor, use_bank=True)[0] if s_id != 1.0 else None
            target = edm.guided(image, full, s_ae, s_id, none)
        student = denoise(modules, batch, x, sigma, prior, (keep, keep, keep), fps, scaling_factor, use_bank=True)[0]
        loss = (edm.loss_weight(sigma.view(b, 1, 1, 1, 1)) * (student - target) ** 2).mean()
        return loss, {"distill": loss.detach()}

    return loss_fn


def load_sync_expert(opts: DiffusionOptions, features: DiffusionFeatures) -> torch.nn.Module:
    """The frozen sync expert of ``opts.sync_expert``, checked against the latents and audio it will read."""
    from ..models.sync_expert import LatentSyncExpert

    if opts.distill_from:
        raise InputError("the sync loss goes with the diffusion loss, not with distillation")
    folder = Path(opts.sync_expert) if opts.sync_expert else None
    if folder is None or not (folder / "config.json").is_file():
        raise InputError(f"--sync-weight needs --sync-expert, a folder from train-sync-expert (got {opts.sync_expert})")
    expert = LatentSyncExpert.from_pretrained(folder)
    want = get_config(opts.config).sync_expert
    have = {k: expert.config[k] for k in ("latent_channels", "audio_dim")}
    if have != {k: want[k] for k in have} or features.latents.shape[1] != have["latent_channels"]:
        raise InputError(f"{folder}: a sync expert for latents / audio of {have}, not this configuration's {want}")
    if opts.frames < expert.config.span:
        raise InputError(f"the sync expert reads {expert.config.span} consecutive frames: --frames must be at least that, got {opts.frames}")
    return expert.requires_grad_(False).eval()


def _collate(items: list[dict]) -> dict:
    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if torch.is_tensor(values[0]) else torch.tensor(values)
    return out


def train_diffusion(opts: DiffusionOptions, cache: FrameCache, features: DiffusionFeatures, scaling_factor: float, resume: bool = False, dry_run: bool = False):
    """Train; the trained parts are saved in every checkpoint of ``OUT/run``. Returns the parts."""
    if opts.distill_from:
        if opts.init and opts.init != opts.distill_from:
            raise InputError("distillation starts the student from its teacher: leave --init out")
        if opts.distill_identity_scale is None or opts.distill_emotion_scale is None:
            raise InputError("distillation needs the teacher's guidance scales")
        if tuple(opts.trainable) != ("unet",):
            raise InputError("distillation trains the UNet only (trainable = ('unet',))")
        opts = replace(opts, init=opts.distill_from)
    expert = load_sync_expert(opts, features) if opts.sync_weight > 0 else None
    parts = build_trainable(opts)
    dataset = WindowDataset(cache, opts.frames, seed=opts.seed, mix=opts.mix, features=features, with_pixels=False, neutral_reference=opts.neutral_reference)
    run = Run(Path(opts.out) / "run", opts, resume=resume)
    if dry_run:
        return parts
    accelerator = make_accelerator(run.folder, opts.mixed_precision)

    def batches(start: int):
        sampler = StepIndices(start, opts.steps, opts.batch, accelerator.process_index, accelerator.num_processes)
        return step_loader(dataset, sampler, opts.batch, _collate, opts.workers)

    modules = {name: parts[name] for name in TRAINABLE}
    if opts.distill_from:
        teacher = copy.deepcopy(parts["unet"]).requires_grad_(False).eval().to(accelerator.device)
        loss_fn = distillation_loss(opts, teacher, cache.fps, scaling_factor)
    else:
        loss_fn = diffusion_loss(opts, cache.fps, scaling_factor, expert.to(accelerator.device) if expert is not None else None)
    fit(
        run,
        accelerator,
        modules,
        loss_fn,
        steps=opts.steps,
        lr=opts.lr,
        seed=opts.seed,
        warmup=opts.warmup,
        save_every=opts.save_every,
        log_every=opts.log_every,
        batches=batches,
        desc="train",
    )
    return {name: accelerator.unwrap_model(m) for name, m in modules.items()}
