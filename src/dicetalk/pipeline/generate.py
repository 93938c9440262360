"""``generate``: files in, video file out — the work behind ``dicetalk generate`` and the web UI.

Validates every input first (image, face, audio, emotion, weights) so that bad input fails with
one clear line before any heavy work, then renders and streams frames into an mp4 carrying the
speech. The output appears only when complete (atomic rename).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import Cancelled, InputError
from ..utils.faces import FaceLayout, layout_face_mask
from ..utils.media import SPEECH_SAMPLE_RATE, VideoWriter, read_audio
from .emotion_condition import EmotionSchedule, parse_emotion
from .options import GenerateOptions  # noqa: F401 - GenerateOptions is imported from here too
from .portrait import Portrait, prepare_portrait

SILENCE_RMS = 1e-4


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda requested but no CUDA GPU is available")
    return dev


def load_speech(path: Path, max_seconds: float) -> np.ndarray:
    """Mono 16 kHz speech from any common audio/video format, checked for emptiness and silence."""
    audio = read_audio(path, SPEECH_SAMPLE_RATE, max_seconds=max_seconds)
    if audio.size < SPEECH_SAMPLE_RATE // 25:
        raise InputError(f"{path}: audio shorter than one video frame")
    if not np.isfinite(audio).all():
        raise InputError(f"{path}: audio contains invalid samples")
    if float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise InputError(f"{path}: audio is silent")
    return audio


def portrait_for(path: Path, crop: bool, layout: FaceLayout | None) -> Portrait:
    """The portrait and face mask a model expects: the release's crop and mask rule, or, for a model
    trained on another face layout (the embedded default model), a crop aligned to that layout and the
    mask its training used. ``crop`` False: the image as it is (a layout model then gets no mask)."""
    if layout is None:
        return prepare_portrait(path, "release" if crop else "none")
    portrait = prepare_portrait(path, "layout" if crop else "none", layout)
    if not crop:
        return Portrait(portrait.image, None, portrait.face)
    return dataclasses.replace(portrait, mask=layout_face_mask(layout, portrait.image.shape[0]))


def face_layout_of(weights: Path | None) -> FaceLayout | None:
    """The face layout stored with a weights folder (``model_index.json``), read without loading it."""
    import json

    from .loading import DEFAULT_MODEL_DIR

    index = Path(weights or DEFAULT_MODEL_DIR) / "model_index.json"
    if not index.is_file():
        return None  # the authors' release (converted when loaded) or a folder load_pipeline will refuse
    try:
        layout = json.loads(index.read_text()).get("face_layout")
    except (OSError, ValueError, AttributeError):
        return None
    return FaceLayout.from_dict(layout) if layout else None


def resize_short_side(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) frames resized (bicubic) so that their short side is ``size``."""
    from PIL import Image

    h, w = frames.shape[1:3]
    scale = size / min(h, w)
    height, width = round(h * scale), round(w * scale)
    if (height, width) == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in frames])


def output_frames(opts: GenerateOptions, portrait: Portrait) -> Callable[[np.ndarray], np.ndarray]:
    """Generated frames -> the frames written: pasted back into the whole photo (``frame="full"``, when
    a crop was taken), then resized to ``size``. The paste-back is set up once, on the first frames."""
    paste = None

    def convert(frames: np.ndarray) -> np.ndarray:
        nonlocal paste
        if opts.frame == "full" and portrait.box is not None:
            if paste is None:
                from .paste_back import PasteBack

                paste = PasteBack(portrait, frames.shape[1:3], opts.max_side)
            frames = paste.paste(frames)
        return frames if opts.size is None else resize_short_side(frames, opts.size)

    return convert


def emotion_resolvers(pipe, prior_dim: int):
    """(named, from_file) resolvers of emotion conditions for :func:`parse_emotion`."""
    from ..convert.priors import load_prior

    def named(name: str, strength: float) -> torch.Tensor:
        return pipe.priors.prior(name, strength).detach().cpu().float()

    def from_file(path: Path) -> torch.Tensor:
        from .emotion_condition import VIDEO_SUFFIXES

        if path.suffix.lower() in VIDEO_SUFFIXES:
            return pipe.embed_reference_video(path).cpu().float()
        return torch.from_numpy(load_prior(path, prior_dim))

    return named, from_file


# Shares of a job's time by stage, for ``progress`` (measured on the default model, CPU: denoising dominates).
STAGES = {"prepare": (0.0, 0.03), "encode": (0.03, 0.06), "denoise": (0.06, 0.9), "decode": (0.9, 0.98), "write": (0.98, 1.0)}
STAGE_NAMES = {"prepare": "reading the inputs", "encode": "encoding portrait and speech", "denoise": "denoising", "decode": "decoding frames", "write": "writing the video"}


def stage_reporter(opts: GenerateOptions, progress, cancel: threading.Event | None) -> Callable[..., None]:
    """``report(stage, done, total)``: stops a cancelled job and maps the stage's progress onto :data:`STAGES`."""

    def report(stage: str, done: int = 0, total: int = 1) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the job was cancelled")
        if opts.stream and stage == "decode" and done < total:
            return  # streamed segments are decoded between denoising steps: the denoising share keeps the pace
        if progress is not None:
            lo, hi = STAGES[stage]
            detail = f" ({done}/{total})" if total > 1 else ""
            progress(lo + (hi - lo) * min(1.0, done / max(1, total)), STAGE_NAMES[stage] + detail)

    return report


def check_options(opts: GenerateOptions):
    """The options' own errors, before any heavy work; returns the parsed speed switches (None: none)."""
    return opts.check()


def generate_video(
    opts: GenerateOptions,
    progress: Callable[[float, str], None] | None = None,
    pipeline=None,
    cancel: threading.Event | None = None,
    on_first_frames: Callable[[float], None] | None = None,
    on_voice_emotion: Callable[[str, float], None] | None = None,
) -> Path:
    """Render ``opts.output``; returns its path. Raises :class:`~dicetalk.errors.DiceTalkError` on bad input.

    ``pipeline``: an already loaded pipeline (the web UI keeps one); None loads ``opts.weights``.
    ``progress(fraction, description)``: called as the job advances through its stages (:data:`STAGES`),
    through every denoising window and decoded chunk. ``cancel``: when set, the job stops at the next
    window or chunk with :class:`~dicetalk.errors.Cancelled`, leaving no output file.
    ``on_first_frames(seconds)``: called once, when the first frames are written, with the seconds
    since the pipeline was called (with ``opts.stream``, after the first segment).
    ``on_voice_emotion(emotion, probability)``: EmotiveTalk's ``speech`` only, the emotion the voice was read as.
    """

    report = stage_reporter(opts, progress, cancel)
    if opts.model != "dicetalk":  # GenerateOptions checked it is one of MODELS
        from .emotivetalk import generate_emotivetalk

        return generate_emotivetalk(opts, progress, pipeline, cancel, on_voice_emotion)
    report("prepare")
    from .loading import load_pipeline

    check_options(opts)
    device = resolve_device(opts.device)
    layout = face_layout_of(opts.weights) if pipeline is None else pipeline.face_layout
    portrait = portrait_for(opts.image, opts.crop, layout)
    audio = load_speech(opts.audio, opts.max_seconds)

    if pipeline is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        pipeline = load_pipeline(opts.weights, device=device, dtype=dtype, performance=opts.performance)
    pipe = pipeline
    recipe = opts.resolve_recipe(pipe.recipe)
    num_frames = recipe.generated_frames(audio.size, SPEECH_SAMPLE_RATE)
    named, from_file = emotion_resolvers(pipe, pipe.priors.config.prior_dim)
    schedule: EmotionSchedule = parse_emotion(opts.emotion, named, from_file, transition=opts.transition)
    priors = schedule.per_frame(num_frames, recipe.generated_fps)

    generator = torch.Generator().manual_seed(opts.seed)
    convert = output_frames(opts, portrait)
    with VideoWriter(opts.output, recipe.fps, audio=audio) as writer:
        start = time.perf_counter()

        def sink(frames: np.ndarray) -> None:
            writer.write(convert(frames))
            if writer.num_frames == len(frames) and on_first_frames is not None:
                on_first_frames(time.perf_counter() - start)

        pipe(
            portrait.image, audio, priors, recipe=recipe, face_mask=portrait.mask, windows_per_batch=opts.windows_per_batch,
            generator=generator, frame_sink=sink, progress=report, stream=opts.stream or None,
        )  # fmt: skip
        report("write")
        writer.finish()
    if progress is not None:
        progress(1.0, "done")
    return opts.output
