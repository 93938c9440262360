"""EmotiveTalk's parts in a weights folder, loading its pipeline, and ``generate --model emotivetalk``.

A weights folder (the embedded default model included) carries EmotiveTalk as optional parts beside
DICE-Talk's components, in ``emotivetalk/``: ``vaid/``, ``dicte/``, ``edi/`` (diffusers
``save_pretrained`` folders, safetensors), optionally ``voice/`` (the voice's emotion read-out) and
``decoupler/`` (EDI's reference decoupler), and ``emotivetalk.json`` (the
:class:`~.pipeline_emotivetalk.EmotiveTalkSettings`). DICE-Talk loads the folder as before and never
reads them; :func:`load_emotivetalk_pipeline` builds an
:class:`~.pipeline_emotivetalk.EmotiveTalkPipeline` on the very same components.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import InputError, WeightsError

PARTS_DIR = "emotivetalk"
SETTINGS_FILE = "emotivetalk.json"
PART_CLASSES = {"vaid": ("dicetalk.models.vaid", "AudioDecoupler"), "dicte": ("dicetalk.models.dicte", "TrajectoryDenoiser"), "edi": ("dicetalk.models.edi", "ExpressionInjector")}
OPTIONAL_PARTS = {
    "voice": ("dicetalk.models.voice_emotion", "VoiceEmotionReader"),  # the voice's emotion read-out (`speech` read)
    "decoupler": ("dicetalk.models.reference_decoupler", "ReferenceDecoupler"),  # EDI's reference decoupler
}


def parts_folder(weights: str | os.PathLike | None) -> Path:
    from .loading import DEFAULT_MODEL_DIR

    return Path(weights or DEFAULT_MODEL_DIR) / PARTS_DIR


def has_emotivetalk(weights: str | os.PathLike | None) -> bool:
    folder = parts_folder(weights)
    return all((folder / name / "config.json").is_file() for name in PART_CLASSES)


def load_parts(weights: str | os.PathLike | None, dtype: torch.dtype = torch.float32) -> tuple[dict, dict]:
    """(``{"vaid", "dicte", "edi"[, "voice", "decoupler"]}`` modules in eval mode, settings dict) of a weights folder."""
    import importlib

    folder = parts_folder(weights)
    if not has_emotivetalk(weights):
        where = "the embedded default model" if weights is None else str(weights)
        raise WeightsError(f"{where} has no EmotiveTalk parts ({folder} needs vaid/, dicte/ and edi/: `dicetalk export-emotivetalk`)")
    parts = {}
    present = {**PART_CLASSES, **{k: v for k, v in OPTIONAL_PARTS.items() if (folder / k / "config.json").is_file()}}
    for name, (module, cls) in present.items():
        try:
            parts[name] = getattr(importlib.import_module(module), cls).from_pretrained(folder / name, torch_dtype=dtype).eval().requires_grad_(False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"cannot load EmotiveTalk's {name} from {folder / name}: {str(exc).strip().splitlines()[0]}") from None
    settings = {}
    if (folder / SETTINGS_FILE).is_file():
        try:
            settings = json.loads((folder / SETTINGS_FILE).read_text())
        except ValueError:
            raise WeightsError(f"{folder / SETTINGS_FILE}: not valid JSON") from None
    return parts, settings


def load_emotivetalk_pipeline(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The :class:`EmotiveTalkPipeline` of a weights folder (None: the embedded default model)."""
    from .loading import load_pipeline
    from .pipeline_emotivetalk import EmotiveTalkPipeline

    parts, settings = load_parts(weights, dtype)
    pipe = load_pipeline(weights, device=device, dtype=dtype)
    if pipe.expression_encoder is None:
        raise WeightsError(f"{weights or 'the embedded default model'}: EmotiveTalk needs the expression encoder, and this model has none")
    check_parts(pipe, **parts)
    return EmotiveTalkPipeline.from_dicetalk(pipe, **parts, settings=settings).to(device)


def save_parts(folder: str | os.PathLike, vaid, dicte, edi, voice=None, decoupler=None, settings=None, dtype: torch.dtype = torch.float16) -> Path:
    """Write ``FOLDER/emotivetalk/`` atomically (float16 by default: the embedded model's budget)."""
    import copy

    from ..utils.atomic import atomic_dir
    from .pipeline_emotivetalk import EmotiveTalkSettings

    target = Path(folder) / PARTS_DIR
    settings = settings if isinstance(settings, EmotiveTalkSettings) else EmotiveTalkSettings.from_dict(settings)
    with atomic_dir(target) as tmp:
        for name, module in (("vaid", vaid), ("dicte", dicte), ("edi", edi), ("voice", voice), ("decoupler", decoupler)):
            if module is not None:
                copy.deepcopy(module).to(dtype).save_pretrained(tmp / name, safe_serialization=True)
        (tmp / SETTINGS_FILE).write_text(json.dumps(dataclasses.asdict(settings), indent=2) + "\n")
    return target


def generate_emotivetalk(
    opts,
    progress: Callable[[float, str], None] | None = None,
    pipeline=None,
    cancel: threading.Event | None = None,
    on_voice_emotion: Callable[[str, float], None] | None = None,
) -> Path:
    """``generate_video`` for ``opts.model == "emotivetalk"``: the same checks, stages and atomic output.

    ``opts.emotion``: ``speech`` (the voice decides), ``LABEL[:STRENGTH]`` or a reference video.
    ``on_voice_emotion(emotion, probability)``: what the voice was read as (``speech`` with a read-out).
    """
    from ..utils.media import VideoWriter
    from .generate import check_options, face_layout_of, load_speech, output_frames, portrait_for, resolve_device, stage_reporter
    from .pipeline_emotivetalk import check_speech_request, parse_request

    report = stage_reporter(opts, progress, cancel)
    report("prepare")
    performance = check_options(opts)
    if opts.stream:
        raise InputError("--stream is not available with --model emotivetalk (its trajectory is sampled for the whole clip)")
    request = parse_request(opts.emotion)
    device = resolve_device(opts.device)
    if pipeline is None and not has_emotivetalk(opts.weights):
        load_parts(opts.weights)  # the one-line WeightsError, before any heavy work
    layout = face_layout_of(opts.weights) if pipeline is None else pipeline.face_layout
    portrait = portrait_for(opts.image, opts.crop, layout)
    audio = load_speech(opts.audio, opts.max_seconds)
    check_speech_request(request, audio, str(opts.audio))
    if pipeline is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        pipeline = load_emotivetalk_pipeline(opts.weights, device=device, dtype=dtype)
    if performance is not None:
        pipeline.set_performance(performance)
    recipe = opts.resolve_recipe(pipeline.recipe)
    generator = torch.Generator().manual_seed(opts.seed)
    convert = output_frames(opts, portrait)
    with VideoWriter(opts.output, recipe.fps, audio=audio) as writer:

        def sink(frames: np.ndarray) -> None:
            writer.write(convert(frames))

        out = pipeline(
            portrait.image, audio, request, recipe=recipe, face_mask=portrait.mask, windows_per_batch=opts.windows_per_batch,
            generator=generator, frame_sink=sink, progress=report,
        )  # fmt: skip
        if on_voice_emotion is not None and out.voice_emotion is not None:
            on_voice_emotion(out.voice_emotion, out.voice_probabilities[out.voice_emotion])
        report("write")
        writer.finish()
    if progress is not None:
        progress(1.0, "done")
    return opts.output


def random_parts(pipe, seed: int = 0) -> dict:
    """Freshly initialised V-AID, Di-CTE, EDI and voice read-out sized for ``pipe``'s components (tests, dry runs)."""
    from ..models.dicte import TrajectoryDenoiser
    from ..models.edi import ExpressionInjector
    from ..models.vaid import AudioDecoupler
    from ..models.voice_emotion import VoiceEmotionReader

    torch.manual_seed(seed)
    audio = pipe.audio_encoder.config
    bank = pipe.emotion_bank.config
    expression = int(pipe.expression_encoder.config.out_dim)
    vaid = AudioDecoupler(window=10, blocks=audio.encoder_layers + 1, channels=audio.d_model, hidden_dim=32, lip_dim=8,
                          expression_hidden=16, expression_dim=8, dilations=(1, 2, 4), expression_targets=expression)  # fmt: skip
    dicte = TrajectoryDenoiser(trajectory_dim=expression, speech_dim=8, channels=32, embed_dim=32, dilations=(1, 2, 4))
    edi = ExpressionInjector(expression_dim=expression, prior_dim=bank.prior_dim, num_tokens=bank.num_tokens, token_dim=bank.token_dim, hidden_dim=32)
    voice = VoiceEmotionReader(stream_dim=8)
    return {"vaid": vaid.eval(), "dicte": dicte.eval(), "edi": edi.eval(), "voice": voice.eval()}


def check_parts(pipe, vaid, dicte, edi, voice=None, decoupler=None) -> None:
    """:class:`WeightsError` unless the parts fit each other and ``pipe``'s components."""
    audio, bank = pipe.audio_encoder.config, pipe.emotion_bank.config
    problems = []
    if (vaid.config.blocks, vaid.config.channels) != (audio.encoder_layers + 1, audio.d_model):
        problems.append(f"V-AID reads {vaid.config.blocks} x {vaid.config.channels} hidden states, the audio encoder gives {audio.encoder_layers + 1} x {audio.d_model}")
    if dicte.config.speech_dim != vaid.config.expression_dim:
        problems.append(f"Di-CTE takes a {dicte.config.speech_dim}-d speech stream, V-AID gives {vaid.config.expression_dim}")
    if (edi.config.prior_dim, edi.config.num_tokens, edi.config.token_dim) != (bank.prior_dim, bank.num_tokens, bank.token_dim):
        problems.append("EDI's priors or tokens do not match the emotion bank")
    if edi.config.expression_dim != dicte.config.trajectory_dim:
        problems.append("EDI and Di-CTE disagree on the expression's size")
    if voice is not None and voice.config.stream_dim != vaid.config.expression_dim:
        problems.append(f"the voice read-out pools a {voice.config.stream_dim}-d stream, V-AID gives {vaid.config.expression_dim}")
    if decoupler is not None and decoupler.config.latent_channels != pipe.vae.config.latent_channels:
        problems.append(f"the reference decoupler maps {decoupler.config.latent_channels}-channel latents, the autoencoder makes {pipe.vae.config.latent_channels}")
    if problems:
        raise WeightsError("EmotiveTalk's parts do not fit this model: " + "; ".join(problems))
