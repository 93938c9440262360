"""EmotiveTalk's commands: ``train-vaid``, ``train-dicte``, ``train-edi``, ``probe-vaid``, ``export-emotivetalk``.

They train EmotiveTalk's small modules on features of the frozen default model (or ``--weights``),
with ``train``'s run conventions: options saved beside the run, atomic checkpoints, ``--resume``
with the same loss curve, ``--dry-run``, Accelerate, TensorBoard logs in ``RUN/run/logs``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .main import app, seed_option


def _threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def split_features(dataset: Path, weights: Path | None, split: str = "train", cache_dir: Path | None = None, progress: bool = True):
    """The cached V-AID features of one split of ``dataset`` with the frozen encoders of ``weights``."""
    from ..data.cache import build_frame_cache
    from ..data.emotive import split_features as features_of
    from ..data.index import scan
    from ..models.audio_encoder import whisper_feature_extractor
    from ..pipeline.loading import DEFAULT_MODEL_DIR
    from ..training.assemble import load_backbone

    parts = load_backbone(weights or DEFAULT_MODEL_DIR, ("audio_encoder", "expression_encoder"))
    audio, expression = parts["audio_encoder"].float(), parts["expression_encoder"].float()
    # Frames at the size the expression encoder reads (the model's frame size).
    cache = build_frame_cache(scan(dataset, splits=(split,)), int(expression.config.image_size), cache_dir, progress=progress)
    return features_of(cache, audio, whisper_feature_extractor(audio.config), expression, progress=progress)


def _require_vaid(folder: Path) -> None:
    from ..errors import InputError

    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: no trained V-AID here (train one with `dicetalk train-vaid`)")


def _report_trained(name: str, module, out: Path, dry_run: bool) -> None:
    """What a training command prints last: the module's summary on a dry run, else where it was written."""
    if dry_run:
        from ..models.registry import summarize

        typer.echo(summarize({name: module}))
        return
    typer.echo(f"wrote {out / name}")


@app.command("train-vaid")
def train_vaid_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder (mead/, hdtf/, splits.json); its train split is used."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: run/ (options, checkpoints, logs) and vaid/ (the trained module)."),
    weights: Path | None = typer.Option(None, help="Weights folder whose audio and expression encoders are read (default: the embedded model)."),
    steps: int = typer.Option(3000, min=1),
    batch: int = typer.Option(16, min=2, help="Clips per step."),
    max_frames: int = typer.Option(96, min=8, help="Frames per clip (a random span of longer clips)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (cosine decay to 0)."),
    adversary_weight: float = typer.Option(0.5, min=0.0, help="Weight of the reversed adversaries' gradient (0: no adversarial decoupling)."),
    correlation_weight: float = typer.Option(0.1, min=0.0, help="Weight of the cross-correlation penalty between the streams."),
    dropout: float = typer.Option(0.0, min=0.0, max=0.9, help="Dropout in the expression stream (against memorising the training speakers)."),
    weight_decay: float = typer.Option(0.0, min=0.0, help="AdamW weight decay."),
    seed: int = seed_option(),
    save_every: int = typer.Option(500, min=1),
    resume: bool = typer.Option(False, "--resume"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    threads: int | None = typer.Option(None),
    cache_dir: Path | None = typer.Option(None),
) -> None:
    """Train V-AID: a lip stream and an expression stream of speech, each matched to what the video shows."""
    from ..training.vaid import VaidOptions, train_vaid

    _threads(threads)
    opts = VaidOptions(
        dataset=str(dataset), out=str(out), weights=str(weights) if weights else None, steps=steps, batch=batch, max_frames=max_frames,
        lr=lr, adversary_weight=adversary_weight, correlation_weight=correlation_weight, dropout=dropout, weight_decay=weight_decay, seed=seed,
        save_every=save_every,
        cache_dir=str(cache_dir) if cache_dir else None,
    )  # fmt: skip
    features = split_features(dataset, weights, "train", cache_dir)
    typer.echo(f"{features.num_clips} training clips, {len(features.visual)} frames; {opts}")
    vaid = train_vaid(opts, features, resume=resume, dry_run=dry_run)
    _report_trained("vaid", vaid, out, dry_run)


@app.command("probe-vaid")
def probe_vaid_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder with train, val and test identities."),
    vaid: Path | None = typer.Option(None, help="A trained V-AID folder (RUN/vaid); default: the one shipped in the weights, if any."),
    weights: Path | None = typer.Option(None, help="Weights folder of the frozen encoders and the audio projection (default: the embedded model)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the table here (atomically)."),
    stride: int = typer.Option(3, min=1, help="Use every STRIDE-th frame of the train split."),
    baselines: bool = typer.Option(True, "--baselines/--streams-only", help="Also probe DICE-Talk's single audio stream (the Whisper window, the audio tokens)."),
    threads: int | None = typer.Option(None),
    cache_dir: Path | None = typer.Option(None),
) -> None:
    """The 2x2 decoupling table: linear probes of lip motion and emotion on each audio stream (train / val / test identities)."""
    from ..evaluation.probes import format_probe_table, probe_table, vaid_probe_data
    from ..models.token_projection import TokenProjection
    from ..models.vaid import AudioDecoupler
    from ..pipeline.loading import DEFAULT_MODEL_DIR
    from ..utils.atomic import write_json

    _threads(threads)
    folder = vaid or (weights or DEFAULT_MODEL_DIR) / "emotivetalk" / "vaid"
    _require_vaid(folder)
    decoupler = AudioDecoupler.from_pretrained(folder).float().eval()
    projection = TokenProjection.from_pretrained((weights or DEFAULT_MODEL_DIR) / "audio_projection").float().eval()
    data: dict = {}
    for split in ("train", "val", "test"):
        features = split_features(dataset, weights, split, cache_dir)
        rows = vaid_probe_data(features, decoupler, projection if baselines else None, stride if split == "train" else 1, baselines=baselines)
        for name, probe in rows.items():
            data.setdefault(name, {})[split] = probe
    table = probe_table(data)
    typer.echo(format_probe_table(table))
    if json_out is not None:
        write_json(json_out, {"vaid": str(folder), "table": table})
        typer.echo(f"wrote {json_out}")


@app.command("train-dicte")
def train_dicte_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder; its train split is used."),
    vaid: Path = typer.Option(..., help="The trained V-AID folder (train-vaid's OUT/vaid): its expression stream is the speech condition."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: run/ and dicte/ (the trained module)."),
    weights: Path | None = typer.Option(None, help="Weights folder whose audio and expression encoders are read (default: the embedded model)."),
    steps: int = typer.Option(4000, min=1),
    batch: int = typer.Option(32, min=2, help="Trajectories per step."),
    frames: int = typer.Option(64, min=8, help="Frames per trajectory."),
    lr: float = typer.Option(5e-4, help="Peak learning rate (cosine decay to 0)."),
    p_label: float = typer.Option(0.45, min=0.0, max=1.0, help="Share of samples conditioned on their label and strength."),
    p_reference: float = typer.Option(0.3, min=0.0, max=1.0, help="Share conditioned on another clip's expression (the rest: on the voice alone)."),
    seed: int = seed_option(),
    save_every: int = typer.Option(500, min=1),
    resume: bool = typer.Option(False, "--resume"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    threads: int | None = typer.Option(None),
    cache_dir: Path | None = typer.Option(None),
) -> None:
    """Train Di-CTE: expression trajectories from speech under a label, a reference video or no emotion condition."""
    from ..errors import InputError
    from ..training.dicte import DicteOptions, train_dicte

    _threads(threads)
    if p_label + p_reference > 1:
        raise InputError("--p-label + --p-reference must be at most 1 (the rest trains the voice-only condition)")
    _require_vaid(vaid)
    opts = DicteOptions(
        dataset=str(dataset), out=str(out), vaid=str(vaid), weights=str(weights) if weights else None, steps=steps, batch=batch, frames=frames,
        lr=lr, p_label=p_label, p_reference=p_reference, seed=seed, save_every=save_every, cache_dir=str(cache_dir) if cache_dir else None,
    )  # fmt: skip
    features = split_features(dataset, weights, "train", cache_dir)
    typer.echo(f"{features.num_clips} training clips, {len(features.visual)} frames; {opts}")
    model = train_dicte(opts, features, resume=resume, dry_run=dry_run)
    _report_trained("dicte", model, out, dry_run)


@app.command("train-voice-emotion")
def train_voice_emotion_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder; its train split is fitted, its val split scored (OUT/val.json)."),
    vaid: Path = typer.Option(..., help="The trained V-AID folder (train-vaid's OUT/vaid): the read-out pools its expression stream."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: run/, voice/ (the trained read-out) and val.json."),
    weights: Path | None = typer.Option(None, help="Weights folder whose audio and expression encoders are read (default: the embedded model)."),
    steps: int = typer.Option(1500, min=1),
    batch: int = typer.Option(64, min=2, help="Speech spans per step."),
    min_frames: int = typer.Option(25, min=1, help="Shortest span (frames) drawn from a training clip."),
    lr: float = typer.Option(1e-2, help="Peak learning rate (cosine decay to 0)."),
    weight_decay: float = typer.Option(1e-2, min=0.0, help="AdamW weight decay (choose it on val.json)."),
    seed: int = seed_option(),
    save_every: int = typer.Option(500, min=1),
    resume: bool = typer.Option(False, "--resume"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    threads: int | None = typer.Option(None),
    cache_dir: Path | None = typer.Option(None),
) -> None:
    """Train the voice's emotion read-out (EmotiveTalk's `--emotion speech`) on V-AID's expression stream."""
    from ..models.vaid import AudioDecoupler
    from ..training.voice_emotion import VoiceEmotionOptions, clip_streams, train_voice_emotion

    _threads(threads)
    _require_vaid(vaid)
    opts = VoiceEmotionOptions(
        dataset=str(dataset), vaid=str(vaid), out=str(out), weights=str(weights) if weights else None, steps=steps, batch=batch,
        min_frames=min_frames, lr=lr, weight_decay=weight_decay, seed=seed, save_every=save_every, cache_dir=str(cache_dir) if cache_dir else None,
    )  # fmt: skip
    decoupler = AudioDecoupler.from_pretrained(vaid).float().eval()
    train, val = (clip_streams(decoupler, split_features(dataset, weights, split, cache_dir)) for split in ("train", "val"))
    typer.echo(f"{len(train.streams)} training clips, {len(val.streams)} val clips; {opts}")
    reader = train_voice_emotion(opts, train, val, resume=resume, dry_run=dry_run)
    if not dry_run:
        typer.echo((out / "val.json").read_text().strip())
    _report_trained("voice", reader, out, dry_run)


@app.command("train-edi")
def train_edi_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder; its train split is used."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: run_prior/, run/ and edi/ (the trained module)."),
    weights: Path | None = typer.Option(None, help="The frozen DICE-Talk model EDI is trained on (default: the embedded model)."),
    prior_steps: int = typer.Option(3000, min=1, help="Stage 1: expression -> emotion prior regression steps."),
    steps: int = typer.Option(2000, min=0, help="Stage 2: token-offset steps through the frozen denoiser (0: stage 1 only)."),
    batch: int = typer.Option(2, min=1, help="Windows per stage-2 step."),
    frames: int = typer.Option(16, min=2, help="Frames per window (the denoiser's window)."),
    lr: float = typer.Option(3e-4, help="Stage-2 learning rate."),
    neutral_share: float = typer.Option(0.25, min=0.0, max=1.0, help="Share of windows whose reference frame is a neutral one (the rest: another emotion's)."),
    seed: int = seed_option(),
    save_every: int = typer.Option(250, min=1),
    resume: bool = typer.Option(False, "--resume"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    threads: int | None = typer.Option(None),
    cache_dir: Path | None = typer.Option(None),
) -> None:
    """Train EDI on a frozen DICE-Talk model: target expression -> emotion priors, and the portrait-decoupling token offsets."""
    import torch

    from ..pipeline.loading import load_pipeline
    from ..training.assemble import load_backbone, prepare_features
    from ..training.edi import EdiOptions, train_edi

    _threads(threads)
    opts = EdiOptions(
        dataset=str(dataset), out=str(out), weights=str(weights) if weights else None, prior_steps=prior_steps, steps=steps, batch=batch,
        frames=frames, lr=lr, neutral_share=neutral_share, seed=seed, save_every=save_every, cache_dir=str(cache_dir) if cache_dir else None,
    )  # fmt: skip
    pipe = load_pipeline(weights, dtype=torch.float32)
    features = split_features(dataset, weights, "train", cache_dir)
    typer.echo(f"{features.num_clips} training clips, {len(features.visual)} frames; {opts}")
    diffusion = None
    if steps > 0 and not dry_run:
        from ..pipeline.loading import DEFAULT_MODEL_DIR

        folder = weights or DEFAULT_MODEL_DIR
        backbone = {k: v.float() for k, v in load_backbone(folder, ("vae", "image_encoder", "audio_encoder")).items()}
        diffusion = prepare_features(features.cache, backbone, pipe.emotion_embedder.float())
    edi = train_edi(opts, features, pipe, diffusion, resume=resume, dry_run=dry_run)
    _report_trained("edi", edi, out, dry_run)


@app.command("train-decoupler")
def train_decoupler_cmd(
    dataset: Path = typer.Argument(..., help="A 'dicetalk synth' world: its train split is fitted, its val split scored (OUT/val.json)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: pairs_*.safetensors, run/, decoupler/ (the trained module) and val.json."),
    weights: Path | None = typer.Option(None, help="The model whose autoencoder makes the latents (default: the embedded model)."),
    steps: int = typer.Option(3000, min=1),
    batch: int = typer.Option(64, min=1, help="Latent pairs per step."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (cosine decay to 0)."),
    frames_per_clip: int = typer.Option(8, min=1, help="Frames taken from each clip (the first and random others)."),
    fresh_people: int = typer.Option(0, min=0, help="Extra people the world's generator draws outside every split, rendered at random expressions and poses (no clips needed)."),
    fresh_frames: int = typer.Option(4, min=1, help="Pairs per extra person."),
    rest_posture: bool = typer.Option(False, "--rest-posture", help="The target's head pose without the emotion's posture (a sad portrait's hung head lifted): the decoupled portrait shows no emotion in its pose either."),
    channels: int = typer.Option(64, min=8, help="Width of the decoupler's convolutions (a multiple of 8)."),
    seed: int = seed_option(),
    save_every: int = typer.Option(500, min=1),
    resume: bool = typer.Option(False, "--resume"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    threads: int | None = typer.Option(None),
) -> None:
    """Train EDI's reference decoupler: a portrait's latent -> the same face at its neutral expression."""
    import torch

    from ..errors import InputError
    from ..pipeline.loading import load_pipeline
    from ..training.decoupler import DecouplerOptions, train_decoupler

    _threads(threads)
    if channels % 8:
        raise InputError(f"--channels must be a multiple of 8 (its group norm), got {channels}")
    opts = DecouplerOptions(
        dataset=str(dataset), out=str(out), weights=str(weights) if weights else None, steps=steps, batch=batch, lr=lr,
        frames_per_clip=frames_per_clip, fresh_people=fresh_people, fresh_frames=fresh_frames, channels=channels, seed=seed,
        save_every=save_every, rest_posture=rest_posture,
    )  # fmt: skip
    pipe = load_pipeline(weights, dtype=torch.float32)
    typer.echo(f"{opts}")
    decoupler = train_decoupler(opts, pipe.vae.eval(), pipe.native_size, resume=resume, dry_run=dry_run)
    if not dry_run:
        typer.echo((out / "val.json").read_text().strip())
    _report_trained("decoupler", decoupler, out, dry_run)


@app.command("export-emotivetalk")
def export_emotivetalk_cmd(
    into: Path | None = typer.Option(None, help="Weights folder to add EmotiveTalk's parts to (its emotivetalk/; default: the embedded model)."),
    vaid: Path = typer.Option(..., help="train-vaid's OUT/vaid."),
    dicte: Path = typer.Option(..., help="train-dicte's OUT/dicte."),
    edi: Path = typer.Option(..., help="train-edi's OUT/edi."),
    dtype: str = typer.Option("float16", help="float32 or float16."),
    trajectory_steps: int = typer.Option(16, min=1, help="Di-CTE's sampling steps."),
    label_guidance: float = typer.Option(2.0, min=0.0, help="Di-CTE's guidance of a label or reference-video condition."),
    speech_guidance: float = typer.Option(1.0, min=0.0, help="Di-CTE's guidance of the speech (1: none)."),
    injection: bool = typer.Option(True, "--injection/--no-injection", help="EDI's token offsets (off: the trajectory's priors only)."),
    injection_scale: float = typer.Option(1.0, min=0.0, help="Scale of EDI's token offsets."),
    voice: Path | None = typer.Option(None, help="train-voice-emotion's OUT/voice: the voice's emotion read-out (needed by --speech-emotion read)."),
    speech_emotion: str = typer.Option("generate", help="`--emotion speech`: read (the voice read-out names the emotion) or generate (Di-CTE's null condition)."),
    speech_strength: float = typer.Option(1.0, min=0.0, max=3.0, help="Strength a read emotion is expanded and rendered at."),
    anchor: bool = typer.Option(False, "--anchor/--no-anchor", help="A label's clip-level prior is DICE-Talk's prompt prior; the trajectory only moves it."),
    motion_scale: float = typer.Option(1.0, min=0.0, help="With --anchor: how far the trajectory moves the prior from frame to frame."),
    decoupler: Path | None = typer.Option(None, help="train-decoupler's OUT/decoupler: EDI's reference decoupler (the portrait's expression out of the reference latent)."),
) -> None:
    """Store trained V-AID, Di-CTE, EDI (and the voice read-out, the reference decoupler) with a weights folder, for `generate --model emotivetalk`."""
    import torch

    from ..errors import InputError
    from ..models.dicte import TrajectoryDenoiser
    from ..models.edi import ExpressionInjector
    from ..models.reference_decoupler import ReferenceDecoupler
    from ..models.vaid import AudioDecoupler
    from ..models.voice_emotion import VoiceEmotionReader
    from ..pipeline.emotivetalk import check_parts, save_parts
    from ..pipeline.loading import DEFAULT_MODEL_DIR, load_pipeline
    from ..pipeline.pipeline_emotivetalk import EmotiveTalkSettings

    if dtype not in ("float32", "float16"):
        raise InputError(f"dtype must be float32 or float16, got {dtype!r}")
    for name, folder in (("vaid", vaid), ("dicte", dicte), ("edi", edi), ("voice", voice), ("decoupler", decoupler)):
        if folder is not None and not (folder / "config.json").is_file():
            raise InputError(f"--{name} {folder}: no trained module here")
    if speech_emotion == "read" and voice is None:
        raise InputError("--speech-emotion read needs --voice (train-voice-emotion's OUT/voice)")
    parts = {
        "vaid": AudioDecoupler.from_pretrained(vaid), "dicte": TrajectoryDenoiser.from_pretrained(dicte), "edi": ExpressionInjector.from_pretrained(edi),
        "voice": VoiceEmotionReader.from_pretrained(voice) if voice is not None else None,
        "decoupler": ReferenceDecoupler.from_pretrained(decoupler) if decoupler is not None else None,
    }  # fmt: skip
    check_parts(load_pipeline(into), **parts)
    settings = EmotiveTalkSettings(
        trajectory_steps=trajectory_steps, label_guidance=label_guidance, speech_guidance=speech_guidance, injection=injection,
        injection_scale=injection_scale, speech_emotion=speech_emotion, speech_strength=speech_strength, anchor=anchor, motion_scale=motion_scale,
    ).validated()  # fmt: skip
    target = save_parts(into or DEFAULT_MODEL_DIR, **parts, settings=settings, dtype=getattr(torch, dtype))
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    typer.echo(f"wrote {target} ({size / 1e6:.2f} MB)")


@app.command("render-emotive")
def render_emotive_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder: its held-out clips are rendered (one per identity and emotion, level 3)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder of videos + sidecars for `dicetalk evaluate OUT --reference DATASET`."),
    system: str = typer.Option("emotivetalk", help="emotivetalk or dicetalk (the same weights)."),
    request: str = typer.Option("speech", help="EmotiveTalk's emotion: speech (the voice alone) or label (the clip's)."),
    portrait: str = typer.Option("neutral", help="neutral (the person's neutral frame) or emotional (a frame of another emotion, level 3)."),
    weights: Path | None = typer.Option(None, help="Weights folder (default: the embedded model)."),
    split: str = typer.Option("test", help="val or test identities."),
    injection: bool | None = typer.Option(None, "--injection/--no-injection", help="EmotiveTalk: EDI's token offsets on or off (default: the model's)."),
    settings: str | None = typer.Option(None, help="EmotiveTalk: its settings overridden, 'name=value,...' (e.g. 'anchor=true,speech_emotion=read')."),
    max_frames: int = typer.Option(125, min=2, help="Frames of each clip's speech to render (125: 5 s at 25 fps)."),
    identities: int | None = typer.Option(None, min=1, help="Only the split's first N identities (by name; default: all)."),
    per_group: int = typer.Option(1, min=1, help="Clips per identity x emotion (level 3; neutral level 1), in path order."),
    seed: int = seed_option(),
    threads: int | None = typer.Option(None),
) -> None:
    """Render EmotiveTalk's (or DICE-Talk's) evaluation set of held-out clips."""
    from ..evaluation.emotivetalk import EmotiveRenderOptions, render_emotive_set
    from ..evaluation.evaluate import check_split

    _threads(threads)
    opts = EmotiveRenderOptions(
        dataset=str(dataset), out=str(out), system=system, request=request, portrait=portrait, weights=str(weights) if weights else None,
        split=check_split(split), seed=seed, injection=injection, settings=settings, max_frames=max_frames, identities=identities, per_group=per_group,
    )  # fmt: skip
    typer.echo(f"wrote {len(render_emotive_set(opts))} videos to {out}")


@app.command("trajectory-diversity")
def trajectory_diversity_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder: the held-out clips' speech."),
    weights: Path | None = typer.Option(None, help="Weights folder with EmotiveTalk's parts (default: the embedded model)."),
    split: str = typer.Option("test"),
    seeds: int = typer.Option(8, min=2),
    requests: str = typer.Option("speech,label", help="Which conditions: speech, label or both (comma-separated)."),
    speech_guidance: float | None = typer.Option(None, help="Override the model's speech guidance."),
    label_guidance: float | None = typer.Option(None, help="Override the model's label guidance."),
    json_out: Path | None = typer.Option(None, "--json"),
    threads: int | None = typer.Option(None),
) -> None:
    """Di-CTE's trajectories across seeds: spread, repeatability, against real clips' spread."""
    import json

    from ..evaluation.emotivetalk import trajectory_diversity
    from ..evaluation.evaluate import check_split
    from ..pipeline.emotivetalk import load_emotivetalk_pipeline
    from ..utils.atomic import write_json

    _threads(threads)
    from ..evaluation.emotivetalk import emotion_centroids

    pipe = load_emotivetalk_pipeline(weights)
    overrides = {k: v for k, v in (("speech_guidance", speech_guidance), ("label_guidance", label_guidance)) if v is not None}
    pipe.register_to_config(emotivetalk={**pipe.config.emotivetalk, **overrides})
    kinds = tuple(k.strip() for k in requests.split(",") if k.strip())
    report = trajectory_diversity(pipe, str(dataset), check_split(split), seeds, kinds, centroids=emotion_centroids(pipe, str(dataset), "train"))
    report["settings"] = pipe.config.emotivetalk
    typer.echo(json.dumps(report, indent=2))
    if json_out is not None:
        write_json(json_out, report)
