"""Training commands: ``pretrain`` (backbone stand-ins), ``train-embedder``, ``train-sync-expert``, ``train``, ``export``.

Every command takes the dataset folder (MEAD/HDTF layout), writes into its own output folder
(options beside the run, atomic checkpoints), resumes with ``--resume`` and checks everything
without training with ``--dry-run``. Multi-GPU: run the same command under ``accelerate launch``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .main import app, seed_option


def _cache(dataset: Path, size: int, cache_dir: Path | None, splits=("train",)):
    from ..data.cache import build_frame_cache
    from ..data.index import scan

    return build_frame_cache(scan(dataset, splits=splits), size, cache_dir)


def _threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


@app.command()
def pretrain(
    dataset: Path = typer.Argument(..., help="Dataset folder (mead/, hdtf/, splits.json)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: one subfolder per trained part."),
    config: str = typer.Option("synthetic", help="Model configuration."),
    parts: str = typer.Option(
        "vae,audio_encoder,image_encoder,expression_encoder", help="Comma-separated parts; `refiner` (with --decoder-of) learns on a trained VAE."
    ),
    steps_scale: float = typer.Option(1.0, help="Multiply every part's default number of steps."),
    seed: int = seed_option(),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    cache_dir: Path | None = typer.Option(None, help="Where decoded frames are cached (default ~/.cache/dicetalk)."),
    decoder_of: Path | None = typer.Option(
        None,
        help="A VAE (or weights) folder: with --parts vae fine-tune its decoder only, keeping its encoder and latent space; "
        "with --parts refiner, the VAE whose frames the refiner corrects.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check data and options, train nothing."),
) -> None:
    """Train stand-ins for the parts that come pretrained at full size (VAE, Whisper, CLIP, expression encoder)."""
    from ..configs import get_config
    from ..training.backbone import BackboneOptions, pretrain_backbone

    _threads(threads)
    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    opts = BackboneOptions(
        dataset=str(dataset), out=str(out), config=config, parts=chosen, seed=seed, cache_dir=str(cache_dir) if cache_dir else None,
        decoder_of=str(decoder_of) if decoder_of else None,
    )  # fmt: skip
    if decoder_of is not None:
        from ..training.backbone import load_vae_for_decoder

        load_vae_for_decoder(decoder_of, config)  # a clear error now, not after the frame cache is built
    opts.steps = {k: max(1, int(v * steps_scale)) for k, v in opts.steps.items()}
    cfg = get_config(config)
    cache = _cache(dataset, cfg.image_size, cache_dir)
    typer.echo(f"{len(cache.records)} training clips, {len(cache.frames)} frames at {cache.size} px; parts: {', '.join(chosen)}")
    if dry_run:
        return
    for part, folder in pretrain_backbone(opts, cache).items():
        typer.echo(f"{part}: {folder}")


@app.command("train-embedder")
def train_embedder_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder."),
    backbone: Path = typer.Option(..., help="Folder with the frozen audio_encoder/ (from pretrain or convert-official)."),
    out: Path = typer.Option(..., "--out", "-o"),
    config: str = typer.Option("synthetic"),
    steps: int = typer.Option(1500),
    groups: int = typer.Option(32, help="Positive pairs per batch."),
    window: int = typer.Option(64, help="Frames per clip window."),
    temperature: float = typer.Option(0.1),
    lr: float = typer.Option(5e-4),
    seed: int = seed_option(),
    resume: bool = typer.Option(False, "--resume"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    threads: int | None = typer.Option(None),
    cache_dir: Path | None = typer.Option(None),
) -> None:
    """Train the disentangled emotion embedder (InfoNCE) and save it with the per-emotion prompt priors."""
    from ..configs import get_config
    from ..data.features import audio_hidden_states
    from ..models.audio_encoder import whisper_feature_extractor
    from ..training.assemble import load_backbone
    from ..training.embedder import EmbedderOptions, train_embedder

    _threads(threads)
    opts = EmbedderOptions(str(dataset), str(out), str(backbone), config, steps, groups, window, temperature, lr, seed)
    cache = _cache(dataset, get_config(config).image_size, cache_dir)
    audio = load_backbone(backbone, ("audio_encoder",))["audio_encoder"]
    typer.echo(f"{len(cache.records)} training clips; options: {opts}")
    if dry_run:
        return
    hidden = audio_hidden_states(cache, audio, whisper_feature_extractor(audio.config))
    typer.echo(f"wrote {train_embedder(opts, cache, hidden, resume=resume)}")


@app.command("train-sync-expert")
def train_sync_expert_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder."),
    backbone: Path = typer.Option(..., help="Folder with the frozen vae/, image_encoder/, audio_encoder/ the denoiser will train on."),
    embedder: Path = typer.Option(..., help="Folder with emotion_embedder/ and priors/ (the features are cached with train's)."),
    out: Path = typer.Option(..., "--out", "-o"),
    config: str = typer.Option("synthetic"),
    steps: int = typer.Option(3000, min=1),
    batch: int = typer.Option(16, min=2, help="Windows per step (each window's other offsets and the other windows are the negatives)."),
    frames: int = typer.Option(16, min=6, help="Frames per window."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (cosine decay to 0 at --steps)."),
    mix: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of emotion-labelled windows."),
    seed: int = seed_option(),
    resume: bool = typer.Option(False, "--resume"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    threads: int | None = typer.Option(None),
    cache_dir: Path | None = typer.Option(None),
) -> None:
    """Train the latent lip-sync expert that `train --sync-expert` asks (Wav2Lip's expert, in latent space)."""
    from ..configs import get_config
    from ..training.assemble import load_backbone, load_embedder, prepare_features
    from ..training.sync_expert import SyncExpertOptions, build_sync_expert, train_sync_expert

    _threads(threads)
    opts = SyncExpertOptions(
        dataset=str(dataset), out=str(out), backbone=str(backbone), embedder=str(embedder), config=config, steps=steps,
        batch=batch, frames=frames, lr=lr, mix=mix, seed=seed, cache_dir=str(cache_dir) if cache_dir else None,
    )  # fmt: skip
    cache = _cache(dataset, get_config(config).image_size, cache_dir)
    typer.echo(f"{len(cache.records)} training clips, {len(cache.frames)} frames; {opts}")
    if dry_run:
        from ..models.registry import summarize

        typer.echo(summarize({"sync_expert": build_sync_expert(config)}))
        return
    emb, _ = load_embedder(embedder)
    features = prepare_features(cache, load_backbone(backbone), emb)
    folder, accuracy = train_sync_expert(opts, cache, features, resume=resume)
    typer.echo(f"wrote {folder}; on other windows each 5-frame chunk picks its own audio offset {accuracy:.1%} of the time")


@app.command()
def train(
    dataset: Path = typer.Argument(..., help="Dataset folder."),
    backbone: Path = typer.Option(..., help="Folder with frozen vae/, image_encoder/, audio_encoder/ [expression_encoder/]."),
    embedder: Path = typer.Option(..., help="Folder with emotion_embedder/ and priors/ (from train-embedder)."),
    out: Path = typer.Option(..., "--out", "-o"),
    config: str = typer.Option("synthetic"),
    init: Path | None = typer.Option(None, help="Weights folder to start the trained parts from."),
    steps: int = typer.Option(10000),
    batch: int = typer.Option(2),
    frames: int = typer.Option(16),
    lr: float = typer.Option(2e-4),
    warmup: int = typer.Option(300, min=0, help="Steps of linear learning-rate warm-up."),
    mix: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of emotion-labelled (MEAD-like) windows; the rest is talking (HDTF-like) data."),
    lambda_cls: float = typer.Option(0.1, help="Weight of the emotion discrimination loss (0: ablation)."),
    mouth_weight: float = typer.Option(1.0, min=0.0, help="Weight of the lower face (mouth, chin) in the denoising loss; 1: unweighted, as in the paper."),
    drop_audio_emotion: float = typer.Option(
        0.0, min=0.0, max=0.5, help="Share of windows with speech and emotion dropped, the image kept (guidance's image-only branch); 0: the paper's dropout."
    ),
    sync_expert: Path | None = typer.Option(None, help="A sync expert folder (from train-sync-expert) for the sync loss."),
    sync_weight: float = typer.Option(0.0, min=0.0, help="Weight of the sync expert's loss on the denoised estimate; 0: the paper's losses only."),
    emotion_bank: bool = typer.Option(True, "--emotion-bank/--no-emotion-bank", help="Ablation: train without the bank."),
    deterministic_prior: bool = typer.Option(False, help="Ablation: the embedder's mean instead of a sample."),
    neutral_reference: bool = typer.Option(
        True, "--neutral-reference/--same-video-reference",
        help="Emotion data take their reference frame from a neutral clip of the same person (else from the same video).",
    ),  # fmt: skip
    unet_trainable: str = typer.Option("all", help="'all', or 'cross-attention': only the UNet's condition paths (audio/emotion cross-attention, global emotion path)."),
    distill_from: Path | None = typer.Option(
        None, help="Guidance distillation: a trained weights folder or checkpoint (the teacher); its UNet learns to give the guided estimate in one pass.",
    ),
    distill_identity_scale: float = typer.Option(1.0, help="The teacher's identity guidance scale (with --distill-from)."),
    distill_emotion_scale: float = typer.Option(6.0, help="The teacher's audio + emotion guidance scale (with --distill-from)."),
    workers: int = typer.Option(0, help="Data loader worker processes (spawned); the trained weights do not depend on it."),
    mixed_precision: str = typer.Option("no", help="no, fp16 or bf16."),
    save_every: int = typer.Option(500),
    seed: int = seed_option(),
    resume: bool = typer.Option(False, "--resume"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    export_dtype: str = typer.Option("float32", help="dtype of the exported model folder (float16 halves it)."),
    threads: int | None = typer.Option(None),
    cache_dir: Path | None = typer.Option(None),
) -> None:
    """Train the DICE-Talk denoiser and conditioning (EDM + discrimination + VQ losses); export OUT/model."""
    from ..errors import InputError
    from ..pipeline.recipe import SamplingRecipe
    from ..training.diffusion import DiffusionOptions

    _threads(threads)
    if (sync_weight > 0) != (sync_expert is not None):
        raise InputError("--sync-expert and --sync-weight (> 0) go together")
    distill = {}
    if distill_from is not None:
        if init is not None:
            raise InputError("--distill-from starts the student from the teacher; leave --init out")
        SamplingRecipe(identity_scale=distill_identity_scale, emotion_scale=distill_emotion_scale).validated()  # scales in range
        distill = dict(distill_from=str(distill_from), distill_identity_scale=distill_identity_scale,
                       distill_emotion_scale=distill_emotion_scale, trainable=("unet",))  # fmt: skip
    opts = DiffusionOptions(
        dataset=str(dataset), out=str(out), backbone=str(backbone), embedder=str(embedder), config=config,
        init=str(init) if init else None, steps=steps, batch=batch, frames=frames, lr=lr, warmup=warmup, mix=mix, lambda_cls=lambda_cls, mouth_weight=mouth_weight,
        drop_audio_emotion=drop_audio_emotion, sync_expert=str(sync_expert) if sync_expert else None, sync_weight=sync_weight,
        emotion_bank=emotion_bank, deterministic_prior=deterministic_prior, neutral_reference=neutral_reference, unet_trainable=unet_trainable,
        workers=workers, mixed_precision=mixed_precision, save_every=save_every, seed=seed, **distill,
    )
    _train_and_export(opts, cache_dir, resume, dry_run, export_dtype)


def _train_and_export(opts, cache_dir: Path | None, resume: bool, dry_run: bool, export_dtype: str) -> None:
    """Cache the frozen features, train, and (main process only) write ``OUT/model``."""
    import torch
    from accelerate import PartialState

    from ..configs import get_config
    from ..training.assemble import assemble_pipeline, load_backbone, load_embedder, prepare_features, save_pipeline
    from ..training.diffusion import train_diffusion

    cache = _cache(Path(opts.dataset), get_config(opts.config).image_size, cache_dir)
    parts = load_backbone(opts.backbone)
    emb, _ = load_embedder(opts.embedder)
    typer.echo(f"{len(cache.records)} training clips, {len(cache.frames)} frames; {opts}")
    features = prepare_features(cache, parts, emb)
    trained = train_diffusion(opts, cache, features, parts["vae"].config.scaling_factor, resume=resume, dry_run=dry_run)
    if dry_run:
        from ..models.registry import summarize

        typer.echo(summarize(trained))
        return
    if not PartialState().is_main_process:  # under `accelerate launch` one process writes the model
        return
    pipe = assemble_pipeline(opts.backbone, opts.embedder, trained)
    _store_recipe(pipe, opts)
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[export_dtype]
    typer.echo(f"wrote {save_pipeline(pipe, Path(opts.out) / 'model', dtype)}")


def _store_recipe(pipe, opts, spec: str | None = None) -> None:
    """Store a sampling recipe with the model (``model_index.json``): ``spec`` on top of its current one.

    A distilled UNet gives its teacher's guided estimate in one pass: it samples with no guided step,
    at its teacher's scales, unless ``spec`` says otherwise.
    """
    from ..pipeline.recipe import parse_recipe

    base = pipe.recipe
    if opts.distill_from:
        base = base.replace(guidance_fraction=0.0, identity_scale=opts.distill_identity_scale, emotion_scale=opts.distill_emotion_scale)
    pipe.set_recipe(parse_recipe(spec, base))


@app.command()
def export(
    run: Path = typer.Argument(..., help="A `dicetalk train` output folder (its newest checkpoint is exported)."),
    out: Path = typer.Option(..., "--out", "-o", help="Weights folder to write."),
    dtype: str = typer.Option("float16", help="float32, float16 or bfloat16."),
    recipe: str | None = typer.Option(
        None, help="The sampling recipe stored with the model, as `generate --recipe` takes it (fields on the defaults), e.g. "
        "'steps=8,sampler=euler-churn,guidance_interval=0.05:5,overlap=0,identity_scale=1,emotion_scale=4'.",
    ),  # fmt: skip
    vae: Path | None = typer.Option(None, help="A VAE with a fine-tuned decoder (`pretrain --decoder-of`) to ship instead of the backbone's."),
    refiner: Path | None = typer.Option(None, help="A reference refiner (`pretrain --parts refiner`) to ship: decoded frames corrected from the portrait."),
    face_layout: str = typer.Option(
        "none", help="'synthetic': trained on the synthetic world's faces (generate then aligns a photo's face to them); 'none': real faces."
    ),
) -> None:
    """Assemble a complete weights folder from a training run's newest checkpoint."""
    import json

    import torch

    from ..errors import InputError
    from ..pipeline.recipe import SamplingRecipe, parse_recipe
    from ..training.assemble import assemble_pipeline, save_pipeline
    from ..training.common import Run, load_weights
    from ..training.diffusion import NEW_PATHS, DiffusionOptions, build_trainable

    if dtype not in ("float32", "float16", "bfloat16"):
        raise InputError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
    parse_recipe(recipe, SamplingRecipe())  # a malformed recipe fails before the weights are read
    if face_layout not in ("none", "synthetic"):
        raise InputError(f"face layout must be none or synthetic, got {face_layout!r}")
    options = run / "run" / "options.json"
    if not options.is_file():
        raise InputError(f"{run} is not a training output folder (no run/options.json)")
    saved = json.loads(options.read_text())
    opts = DiffusionOptions(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()})
    parts = build_trainable(opts)
    checkpoint = Run(run / "run", opts, resume=True, is_main=False, resumable_keys=tuple(vars(opts))).latest()  # reads only
    if checkpoint is None:
        raise InputError(f"{run} has no checkpoint yet")
    for name, module in parts.items():  # runs from before a configuration's new paths export with them at zero
        load_weights(module, checkpoint / name, new_paths=NEW_PATHS)
    step = json.loads((checkpoint / "state.json").read_text())["step"]
    pipe = assemble_pipeline(opts.backbone, opts.embedder, parts, vae_dir=vae, refiner_dir=refiner)
    _store_recipe(pipe, opts, recipe)
    if face_layout == "synthetic":
        from ..utils.faces import SYNTHETIC_LAYOUT

        pipe.register_to_config(face_layout=SYNTHETIC_LAYOUT.to_dict())
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    typer.echo(f"wrote {save_pipeline(pipe, out, torch_dtype)} (step {step})")
