"""A Gradio page: upload a portrait and speech, pick an emotion (or a reference video), get a video.

- Two systems on the same weights: DICE-Talk, and, when the weights carry its parts, EmotiveTalk,
  whose emotion comes from the speech itself, a label[:strength] or a reference video (as
  ``generate --model emotivetalk --emotion speech|LABEL[:s]|VIDEO``).

- Binds to 127.0.0.1 unless told otherwise; beyond this machine only with a login (``auth``).
- Uploads are bounded (``max_upload_mb``), and so is what a job costs, whichever field asks for it
  (:class:`CostLimits`: speech length, steps, frame size, frames per second, decode chunk, overlap,
  checked on the final recipe); each browser session may have ``jobs_per_session`` jobs waiting or
  running.
- Inputs are checked when a job is submitted, before it waits in the queue, by the same code as
  :func:`~dicetalk.pipeline.generate.generate`; every problem is one line of our own, without
  server paths. Gradio never decodes the inputs itself.
- One job runs at a time (the pipeline is loaded once); waiting clients see their place and the
  expected wait, estimated from the recent jobs' seconds per (second of speech x step); the
  running job reports every stage, window and decoded chunk.
- Everything the server writes (uploads, results) lives in one folder of its own, removed at
  exit; results are written straight into gradio's cache (kept once), rejected uploads are
  deleted at once, the rest after ``keep_minutes``.
- :meth:`UIServer.shutdown` (SIGTERM / SIGINT under :func:`serve`) stops taking jobs, tells the
  waiting clients, lets the running job finish for ``grace_seconds`` and then cancels it through
  the normal path (no partial file), and exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import Cancelled, DiceTalkError, InputError
from ..pipeline.options import FRAMES, SEED_MAX
from .checks import check_exposure, page_text, public_message
from .jobs import JobBoard, QueueView
from .workspace import Workspace

log = logging.getLogger("dicetalk.ui")

DEFAULT_EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "fear", "disgusted", "contempt")
INPUTS = ("image", "audio", "emotion", "strength", "reference", "identity_scale", "emotion_scale", "steps", "seed", "crop", "recipe", "model", "source", "frame")
MODELS = {"DICE-Talk": "dicetalk", "EmotiveTalk": "emotivetalk"}  # the page's choice -> generate's --model
SOURCES = ("speech", "label", "video")  # EmotiveTalk's emotion: the voice, the label above, or the reference video
LABELS = {"image": "portrait", "audio": "speech", "reference": "reference video"}
IDENTITY_RANGE, EMOTION_RANGE, STRENGTH_RANGE = (0.0, 10.0), (0.0, 12.0), (0.0, 2.0)

CLOSING_NOT_STARTED = "the server is shutting down: this job was not started; submit it again once the server is back"
CLOSING_STOPPED = "the server is shutting down: this job was stopped before it finished; submit it again once the server is back"
CLOSING_REFUSED = "the server is shutting down and takes no new jobs"


@dataclass
class UISettings:
    """The operator's limits (``dicetalk ui`` options)."""

    max_upload_mb: int = 50
    max_audio_seconds: float = 60.0
    max_steps: int = 50
    max_size: int | None = None  # frame size (short side, pixels) a recipe may ask for; None: the model's own
    max_fps: float | None = None  # output frames per second; None: the model's own
    max_decode_chunk: int | None = None  # frames decoded at once (memory); None: the model's own
    jobs_per_session: int = 1
    queue_size: int = 16
    keep_minutes: float = 60.0  # uploads and results are deleted this long after they were made
    grace_seconds: float = 5.0  # at shutdown, how long the running job may go on before it is cancelled


class Rejected(Exception):
    """An input the page refuses: ``message`` (ours, one line, no path) about input ``field``."""

    def __init__(self, message: str, field: str | None = None, discard: tuple[str, ...] = ()):
        super().__init__(message)
        self.message, self.field, self.discard = message, field, discard


@dataclass
class Checked:
    image: Path
    audio: Path
    audio_seconds: float | None
    emotion: str
    reference: Path | None
    identity_scale: float
    emotion_scale: float
    steps: int
    seed: int
    crop: bool
    recipe: str | None = None  # a sampling recipe spec on the model's own (the sliders above override its fields)
    model: str = "dicetalk"  # generate's --model
    frame: str = "full"  # generate's --frame: the whole photo, or the model's crop


def _path_of(payload: Any) -> str | None:
    if isinstance(payload, dict):
        payload = payload.get("path")
    return payload if isinstance(payload, str) and payload else None


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise Rejected(f"{name} must be a number", name) from None
    if not (lo <= x <= hi):  # also refuses nan
        raise Rejected(f"{name} must be in [{lo:g}, {hi:g}], got {x:g}", name)
    return x


@dataclass(frozen=True)
class CostLimits:
    """What one job may cost, whichever field asks for it: checked on the final recipe (the recipe box
    merged on the model's own recipe, then the sliders) before the job joins the queue."""

    steps: int
    size: int  # short side of the generated frames, pixels
    native_size: int  # the model's, what a recipe without a size generates
    fps: float  # output frames per second (interpolated frames count: each is decoded and encoded)
    decode_chunk: int
    window: int  # the model's window: overlap may be at most half of it, so windows at most double

    @classmethod
    def of(cls, settings: UISettings, pipe) -> "CostLimits":
        own = pipe.recipe
        return cls(
            steps=settings.max_steps, size=settings.max_size or own.size or pipe.native_size, native_size=pipe.native_size, fps=settings.max_fps or own.fps,
            decode_chunk=settings.max_decode_chunk or own.decode_chunk, window=int(pipe.window),
        )  # fmt: skip

    def problem(self, recipe) -> str | None:
        """One line naming the first limit ``recipe`` is over, or None."""
        # Either layout: circular windows start window - overlap apart, so overlap window - 1 would mean
        # a window per frame (window times the work); at most half a window, windows at most double.
        overlap, _ = recipe.window_layout(self.window)
        checks = [
            (denoiser_evaluations(recipe) > self.steps, _steps_problem(recipe, self.steps)),
            ((recipe.size or self.native_size) > self.size, f"size {recipe.size or self.native_size} is over this server's limit of {self.size} pixels (--max-size)"),
            (recipe.fps > self.fps, f"fps {recipe.fps:g} is over this server's limit of {self.fps:g} frames per second (--max-fps)"),
            (recipe.decode_chunk > self.decode_chunk, f"decode_chunk {recipe.decode_chunk} is over this server's limit of {self.decode_chunk} frames (--max-decode-chunk)"),
            (overlap > self.window // 2, f"overlap {overlap} is over this server's limit of {self.window // 2} frames (half a window)"),
        ]  # fmt: skip
        return next((message for bad, message in checks if bad), None)

    def describe(self) -> str:
        return (f"at most {self.steps} steps (heun's count twice), {self.size} px frames, {self.fps:g} frames per second, "
                f"decoding {self.decode_chunk} frames at a time, windows overlapping by {self.window // 2} frames")  # fmt: skip


def denoiser_evaluations(recipe) -> int:
    """UNet passes (each over every window and branch): heun corrects every step but the last (to noise 0)."""
    return 2 * recipe.steps - 1 if recipe.sampler == "heun" else recipe.steps


def _steps_problem(recipe, limit: int) -> str:
    if recipe.sampler != "heun":
        return f"steps {recipe.steps} is over this server's limit of {limit} (--max-steps)"
    passes = denoiser_evaluations(recipe)
    return f"{recipe.steps} heun steps are {passes} denoiser passes, over this server's limit of {limit} (--max-steps; heun's steps count twice)"


class DiceTalkUI:
    """The page and its job function over one loaded pipeline (not launched; see :class:`UIServer`)."""

    def __init__(self, weights: Path | None, device: str, settings: UISettings, workspace: Workspace):
        from ..pipeline.generate import resolve_device
        from ..pipeline.loading import load_pipeline

        import torch

        self.weights, self.device, self.settings, self.workspace = weights, device, settings, workspace
        dev = resolve_device(device)
        # Loaded at start-up: unusable weights fail here, not on the first request.
        self.pipe = load_pipeline(weights, device=dev, dtype=torch.float16 if dev.type == "cuda" else torch.float32)
        self.pipe.set_progress_bar_config(disable=True)  # the page shows the progress; the log gets one line per job
        self.emotions = [e for e in DEFAULT_EMOTIONS if e in self.pipe.priors.emotions] or list(self.pipe.priors.emotions)
        self.can_embed = self.pipe.emotion_embedder is not None and self.pipe.expression_encoder is not None
        self.default_steps = int(self.pipe.recipe.steps)
        self.limits = CostLimits.of(settings, self.pipe)
        self.emotive = self._emotive_pipeline(weights)
        self.board = JobBoard()
        self._pipe_lock = threading.Lock()
        # Submissions are checked outside the queue, in gradio's threads: decode two at a time at most
        # (a 64-Mpx portrait takes about 200 MB while it is checked).
        self._checking = threading.BoundedSemaphore(2)
        self.blocks, self.queue_view = self._build()

    def _emotive_pipeline(self, weights: Path | None):
        """EmotiveTalk on the very components of the loaded DICE-Talk pipeline; None without its parts."""
        from ..pipeline.emotivetalk import check_parts, has_emotivetalk, load_parts
        from ..pipeline.pipeline_emotivetalk import EmotiveTalkPipeline

        if not has_emotivetalk(weights) or self.pipe.expression_encoder is None:
            return None
        parts, settings = load_parts(weights, self.pipe.dtype)
        check_parts(self.pipe, **parts)
        return EmotiveTalkPipeline.from_dicetalk(self.pipe, **parts, settings=settings).to(self.pipe.device)

    # ------------------------------------------------------------------ inputs
    def _upload(self, payload: Any, field: str, required: bool) -> Path | None:
        label = LABELS[field]
        path = _path_of(payload)
        if path is None:
            if required:
                raise Rejected({"image": "upload a portrait image", "audio": "upload or record speech"}[field], field)
            return None
        if not self.workspace.owns(path):
            raise Rejected(f"{label}: not an upload of this page; upload it again", field)
        if not os.path.isfile(path):
            raise Rejected(f"{label}: the upload has expired; upload it again", field)
        return Path(path)

    def _labels(self, *paths: Path | None) -> dict[str, str]:
        return {str(p): label for p, label in zip(paths, ("portrait", "speech", "reference video")) if p is not None}

    def check(self, values: dict[str, Any], decode: bool) -> Checked:
        """Validate the raw inputs; ``decode`` also reads the image (size limit, face) and the
        speech (length limit, silence) with the same functions as ``generate``."""
        s = self.settings
        image = self._upload(values["image"], "image", True)
        audio = self._upload(values["audio"], "audio", True)
        reference = self._upload(values["reference"], "reference", False) if self.can_embed else None
        emotion = values["emotion"]
        if emotion not in self.emotions:
            raise Rejected(f"unknown emotion; choose one of {', '.join(self.emotions)}", "emotion")
        strength = _number(values["strength"], "strength", *STRENGTH_RANGE)
        identity_scale = _number(values["identity_scale"], "identity guidance", *IDENTITY_RANGE)
        emotion_scale = _number(values["emotion_scale"], "audio + emotion guidance", *EMOTION_RANGE)
        steps_value = _number(values["steps"], "steps", 1, s.max_steps)
        if steps_value != int(steps_value):
            raise Rejected("steps must be a whole number", "steps")
        seed_value = _number(values["seed"], "seed", 0, SEED_MAX)
        if seed_value != int(seed_value):
            raise Rejected("seed must be a whole number", "seed")
        crop = values["crop"]
        if not isinstance(crop, bool):
            raise Rejected("crop must be true or false", "crop")
        frame = values.get("frame", "full")
        if frame not in FRAMES:
            raise Rejected(f"frame must be one of {', '.join(FRAMES)}", "frame")
        recipe = self._check_recipe(values.get("recipe"), int(steps_value))
        audio_seconds = self.board.audio_length(str(audio))
        if reference is not None:
            self._check_reference(reference, decode)
        label = emotion if strength == 1.0 else f"{emotion}:{strength:g}"
        model, spec = self._check_model(values.get("model", "DICE-Talk"), values.get("source", "speech"), label, reference)
        if decode:
            self._check_portrait(image, crop)
            audio_seconds = self._check_speech(audio, spec == "speech" and model == "emotivetalk")
        return Checked(image, audio, audio_seconds, spec, reference, identity_scale, emotion_scale, int(steps_value), int(seed_value), crop, recipe, model, frame)

    def _check_model(self, model: Any, source: Any, label: str, reference: Path | None) -> tuple[str, str]:
        """(generate's --model, its --emotion) of the page's system and emotion source."""
        if model not in MODELS:
            raise Rejected(f"unknown model; choose one of {', '.join(MODELS)}", "model")
        if MODELS[model] == "dicetalk":
            return "dicetalk", str(reference) if reference else label  # the reference video overrides the label
        if self.emotive is None:
            raise Rejected("this server's model has no EmotiveTalk parts; choose DICE-Talk", "model")
        if source not in SOURCES:
            raise Rejected(f"unknown emotion source; choose one of {', '.join(SOURCES)}", "source")
        if source == "video" and reference is None:
            raise Rejected("emotion source video: upload a reference video", "reference")
        return "emotivetalk", {"speech": "speech", "label": label, "video": str(reference)}[source]

    def _check_recipe(self, spec: Any, steps: int) -> str | None:
        """The advanced recipe spec, checked as `generate --recipe` checks it, then against the
        server's limits on the recipe the job will run (the box on the model's own, then the slider's steps)."""
        from ..pipeline.recipe import parse_recipe

        spec = (spec or "").strip() if isinstance(spec, str) or spec is None else None
        if spec is None:
            raise Rejected("recipe must be text", "recipe")
        if len(spec) > 500:
            raise Rejected("recipe: at most 500 characters", "recipe")
        own = self.pipe.recipe
        try:
            asked = parse_recipe(spec or None, own)
            final = asked.replace(steps=steps)  # every field merged, as the job will run
        except InputError as exc:
            raise Rejected(page_text(str(exc)), "recipe") from None
        # Steps the box asks for are refused too, though the slider's run: a visitor who typed steps=500
        # learns the limit instead of silently getting the slider's.
        problem = self.limits.problem(final) or (asked.steps != own.steps and self.limits.problem(asked))
        if problem:
            raise Rejected(f"recipe: {problem}", "recipe")
        if final.interpolation > 1 and getattr(self.pipe, "frame_interpolator", None) is None:  # else the job fails after its wait
            message = f"recipe: interpolation {final.interpolation} needs a frame interpolator, and this server's model has none (use interpolation=1)"
            raise Rejected(message, "recipe")
        return spec or None

    def _check_portrait(self, image: Path, crop: bool) -> None:
        import warnings

        from PIL import Image

        from ..utils.faces import detect_face
        from ..utils.image import MAX_IMAGE_PIXELS, load_image

        try:  # PIL refuses to open huge images outright; name the problem instead of "unreadable"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(image):
                    pass
        except Image.DecompressionBombError:
            raise Rejected(f"portrait: image too large (the limit is {MAX_IMAGE_PIXELS:,} pixels)", "image", (str(image),)) from None
        except Exception:
            pass  # load_image says what is wrong
        try:
            pixels = load_image(image)
        except InputError as exc:
            raise Rejected(public_message(exc, self._labels(image)), "image", (str(image),)) from None
        if crop and detect_face(pixels) is None:  # the upload stays: the user may untick the option and retry
            raise Rejected('portrait: no face found (untick "Detect and crop the face" to animate the whole image)', "image")

    def _check_speech(self, audio: Path, voiced: bool = False) -> float:
        """Its length in seconds; ``voiced``: EmotiveTalk reads the emotion from it, so refuse silence."""
        from ..pipeline.generate import load_speech
        from ..pipeline.pipeline_emotivetalk import EmotionRequest, check_speech_request
        from ..utils.media import SPEECH_SAMPLE_RATE

        try:
            samples = load_speech(audio, self.settings.max_audio_seconds)
            if voiced:
                check_speech_request(EmotionRequest("speech"), samples, "speech")
        except InputError as exc:
            raise Rejected(public_message(exc, self._labels(None, audio)), "audio", (str(audio),)) from None
        seconds = samples.size / SPEECH_SAMPLE_RATE
        self.board.remember_audio(str(audio), seconds)
        return seconds

    def _check_reference(self, reference: Path, decode: bool) -> None:
        from ..pipeline.emotion_condition import VIDEO_SUFFIXES
        from ..utils.media import read_video

        # Anything else would be read as an emotion prior file (or a label) by generate.
        if reference.suffix.lower() not in VIDEO_SUFFIXES:
            raise Rejected(f"reference video: use one of {', '.join(sorted(VIDEO_SUFFIXES))}", "reference", (str(reference),))
        if not decode:
            return
        try:
            read_video(reference, max_frames=1, with_audio=False)
        except InputError as exc:
            raise Rejected(public_message(exc, self._labels(None, None, reference)), "reference", (str(reference),)) from None

    def _describe(self, data: list) -> tuple[str | None, int]:
        """(speech upload path, steps) of a queued request's raw inputs, for the queue estimate."""
        values = dict(zip(INPUTS, data))
        try:
            steps = int(values.get("steps"))
        except (TypeError, ValueError):
            steps = self.default_steps
        return _path_of(values.get("audio")), steps

    def _discard(self, rejected: Rejected) -> None:
        for path in rejected.discard:
            self.workspace.discard_upload(path)

    # ------------------------------------------------------------------ events
    def validate(self, *args):
        """Runs when a job is submitted, before it joins the queue (gradio's ``validator``)."""
        *inputs, request = args
        session = getattr(request, "session_hash", None)
        if self.board.closing.is_set():
            raise gr.Error(CLOSING_REFUSED, print_exception=False)
        limit = self.settings.jobs_per_session
        if limit and self.queue_view.jobs_of_session(session) >= limit:
            many = "a job" if limit == 1 else f"{limit} jobs"
            raise gr.Error(page_text(f"you already have {many} in the queue; wait for the result before submitting another"), print_exception=False)
        verdict = [gr.validate(True, "") for _ in INPUTS]
        try:
            with self._checking:
                self.check(dict(zip(INPUTS, inputs)), decode=True)
        except Rejected as rejected:
            self._discard(rejected)
            log.info("rejected a job: %s", rejected.message)
            verdict[INPUTS.index(rejected.field or "image")] = gr.validate(False, page_text(rejected.message))
        except Exception:  # gradio would show the exception's own text, paths and all
            log.exception("checking a job's inputs failed")
            raise gr.Error("internal error while checking the inputs (the server log has the details)", print_exception=False) from None
        return verdict

    def run(self, *args):
        """The queued job: render the video into gradio's cache folder and return its path."""
        *inputs, request, progress = args
        if self.board.closing.is_set():
            raise gr.Error(CLOSING_NOT_STARTED, print_exception=False)
        try:
            checked = self.check(dict(zip(INPUTS, inputs)), decode=False)  # generate reads and checks the files
        except Rejected as rejected:
            self._discard(rejected)
            raise gr.Error(page_text(rejected.message), print_exception=False) from None
        if checked.audio_seconds is None:
            checked.audio_seconds = self._check_speech_quietly(checked.audio)
        with self._pipe_lock:
            return self._render(checked, getattr(request, "session_hash", None), progress)

    def _check_speech_quietly(self, audio: Path) -> float:
        try:
            return self._check_speech(audio)
        except Rejected:
            return 1.0  # generate reports the problem

    def _render(self, checked: Checked, session: str | None, progress) -> str:
        from ..pipeline.generate import GenerateOptions, generate_video

        job = self.board.start(session, checked.audio_seconds, checked.steps)
        out = self.workspace.results / f"dicetalk_{uuid.uuid4().hex[:12]}.mp4"
        opts = GenerateOptions(
            image=checked.image, audio=checked.audio, output=out, emotion=checked.emotion, weights=self.weights, crop=checked.crop,
            recipe=checked.recipe, steps=checked.steps, identity_scale=checked.identity_scale, emotion_scale=checked.emotion_scale, seed=checked.seed,
            device=self.device, max_seconds=self.settings.max_audio_seconds, model=checked.model, frame=checked.frame,
        )  # fmt: skip
        pipe = self.emotive if checked.model == "emotivetalk" else self.pipe

        def report(fraction: float, description: str) -> None:
            job.fraction = fraction
            left = job.left() if fraction < 1.0 else None
            if left is not None and left >= 1.0:
                description = f"{description}, about {left:.0f} s left"
            progress(fraction, desc=description)

        succeeded = False
        try:
            heard = lambda emotion, p: gr.Info(f"The voice reads as {emotion} (probability {p:.2f}).")  # noqa: E731
            generate_video(opts, progress=report, pipeline=pipe, cancel=job.cancel, on_voice_emotion=heard)
            succeeded = True
        except Cancelled:
            log.info("job stopped (the server is shutting down)")
            raise gr.Error(CLOSING_STOPPED, print_exception=False) from None
        except DiceTalkError as exc:
            message = public_message(exc, self._labels(checked.image, checked.audio, checked.reference))
            log.info("job failed: %s", message)
            raise gr.Error(page_text(message), print_exception=False) from None
        except Exception:
            log.exception("job failed with an internal error")
            raise gr.Error("internal error while generating the video (the server log has the details)", print_exception=False) from None
        finally:
            self.board.finish(job, succeeded)
            if not succeeded:
                out.unlink(missing_ok=True)
        log.info("job done: %.1f s of speech, %d steps, %.1f s", checked.audio_seconds, checked.steps, time.monotonic() - job.started)
        return str(out)

    # ------------------------------------------------------------------ page
    def _build(self):
        s = self.settings
        age = max(60.0, s.keep_minutes * 60.0)
        with gr.Blocks(title="dicetalk", analytics_enabled=False, delete_cache=(int(min(600.0, age / 4)), int(age))) as blocks:
            gr.Markdown(
                "# dicetalk\nA portrait, speech and an emotion in; a talking-head video out. "
                f"Speech up to {s.max_audio_seconds:g} s; {self.limits.describe()}; one job runs at a time."
            )
            with gr.Row():
                with gr.Column():
                    image = gr.Image(label="Portrait", type="filepath", elem_id="portrait")
                    audio = gr.Audio(label="Speech", type="filepath", elem_id="speech")
                    emotion = gr.Dropdown(self.emotions, value=self.emotions[0], label="Emotion", elem_id="emotion")
                    strength = gr.Slider(*STRENGTH_RANGE, value=1.0, step=0.1, label="Strength", elem_id="strength")
                    reference = gr.Video(label="Emotion reference video (optional; overrides the label)", elem_id="reference", visible=self.can_embed)
                    emotive = self.emotive is not None
                    model = gr.Radio(list(MODELS), value="DICE-Talk", label="Model", elem_id="model", visible=emotive)
                    source = gr.Radio(
                        list(SOURCES), value="speech", label="EmotiveTalk's emotion: from the speech, the label or the reference video",
                        elem_id="source", visible=emotive,
                    )  # fmt: skip
                    with gr.Accordion("Settings", open=False):
                        identity_scale = gr.Slider(*IDENTITY_RANGE, value=self.pipe.recipe.identity_scale, step=0.5, label="Identity guidance")
                        emotion_scale = gr.Slider(*EMOTION_RANGE, value=self.pipe.recipe.emotion_scale, step=0.5, label="Audio + emotion guidance")
                        steps = gr.Slider(
                            1, max(2, s.max_steps), value=min(self.default_steps, s.max_steps), step=1, label="Steps", elem_id="steps", interactive=s.max_steps > 1
                        )  # a slider needs two ends
                        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        crop = gr.Checkbox(value=True, label="Detect and crop the face")
                        frame = gr.Radio(list(FRAMES), value="full", label="Video: the whole photo (full) or the face's crop", elem_id="frame")
                        recipe = gr.Textbox(
                            value="", label="Sampling recipe (advanced)", elem_id="recipe", max_lines=1,
                            placeholder="e.g. release, or sampler=dpmpp-2m,guidance_interval=0.05:5 (fields of `dicetalk generate --recipe`)",
                            info="On the model's own recipe; the sliders above set steps and guidance; the limits above apply to the result.",
                        )  # fmt: skip
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column():
                    video = gr.Video(label="Result", elem_id="result", autoplay=False)
            inputs = [image, audio, emotion, strength, reference, identity_scale, emotion_scale, steps, seed, crop, recipe, model, source, frame]

            def validate(
                image, audio, emotion, strength, reference, identity_scale, emotion_scale, steps, seed, crop, recipe, model, source, frame, request: gr.Request
            ):
                args = (image, audio, emotion, strength, reference, identity_scale, emotion_scale, steps, seed, crop, recipe, model, source, frame)
                return self.validate(*args, request)

            def run_job(
                image, audio, emotion, strength, reference, identity_scale, emotion_scale, steps, seed, crop, recipe, model, source, frame,
                request: gr.Request, progress=gr.Progress(),
            ):  # fmt: skip
                args = (image, audio, emotion, strength, reference, identity_scale, emotion_scale, steps, seed, crop, recipe, model, source, frame)
                return self.run(*args, request, progress)

            # preprocess=False: the function gets the uploads' paths; gradio decodes nothing (its
            # messages about undecodable files name its internals and server paths).
            button.click(run_job, inputs, video, api_name="generate", preprocess=False, validator=validate, concurrency_limit=1)
        # Estimates go to the waiting clients when they join and every 2 s (ours follow the running job's pace).
        blocks.queue(default_concurrency_limit=1, max_size=s.queue_size, api_open=False, status_update_rate=2)
        view = QueueView(blocks, run_job, self.board, self._describe)
        return blocks, view


class UIServer:
    """The page served on ``host:port`` (non-blocking ``start``); see :func:`serve` for the command."""

    def __init__(
        self,
        weights: Path | None = None,
        device: str = "auto",
        host: str = "127.0.0.1",
        port: int = 7860,
        settings: UISettings | None = None,
        auth: list[tuple[str, str]] | None = None,
        insecure: bool = False,
        temp_base: Path | None = None,
    ):
        check_exposure(host, auth or [], insecure)
        self.weights, self.device, self.host, self.port = weights, device, host, port
        self.settings = settings or UISettings()
        self.auth = auth or None
        self.temp_base = temp_base
        self.workspace: Workspace | None = None
        self.ui: DiceTalkUI | None = None
        self._saved_env: str | None = None
        self._closed = False

    @property
    def blocks(self):
        return self.ui.blocks

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> "UIServer":
        self.workspace = Workspace(self.temp_base)
        self._point_gradio_at(str(self.workspace.gradio))
        try:
            self.ui = DiceTalkUI(self.weights, self.device, self.settings, self.workspace)
            self._launch()
            self.port = self.ui.blocks.server_port
            self.ui.queue_view.install_estimates()
        except BaseException:
            self.close()
            raise
        return self

    def _launch(self) -> None:
        try:
            self.ui.blocks.launch(
                server_name=self.host,
                server_port=self.port,
                max_file_size=f"{self.settings.max_upload_mb}mb",
                prevent_thread_lock=True,
                share=False,
                show_error=True,
                quiet=True,
                auth=self.auth,
                auth_message="dicetalk: log in" if self.auth else None,
                # Gradio's run history keeps the inputs and results in the browser, and offers to
                # upload them to a Hugging Face bucket: portraits and voices stay on this machine.
                run_history=False,
            )
        except OSError as exc:  # gradio: "Cannot find empty port in range ..."
            raise InputError(f"cannot serve on {self.host}:{self.port} ({exc.strerror or 'the port is in use'}); pick another --port") from None

    def shutdown(self, grace: float | None = None, force: threading.Event | None = None) -> None:
        """Stop taking jobs, tell the waiting clients, give the running job ``grace`` seconds
        (default: the settings'), then cancel it; close the server and remove its folder.
        Setting ``force`` cancels the running job at once."""
        if self.ui is None or self._closed:
            self.close()
            return
        grace = self.settings.grace_seconds if grace is None else grace
        board, view = self.ui.board, self.ui.queue_view
        board.closing.set()
        deadline = time.monotonic() + grace
        while board.running() and time.monotonic() < deadline and not (force and force.is_set()):
            view.release_waiting()
            board.wait_idle(0.1)
        if board.cancel_all():
            log.info("cancelling the running job")
        board.wait_idle(120.0)  # a cancel lands at the next denoising window or decoded chunk
        # Jobs still waiting start now and end at once with our message; let the clients receive it.
        until = time.monotonic() + 10.0
        while (not view.idle() or view.undelivered()) and time.monotonic() < until:
            view.release_waiting()
            time.sleep(0.05)
        time.sleep(0.2)  # the last message leaves its queue before it reaches the socket
        self.close()

    def close(self) -> None:
        """Stop at once (no grace) and remove the server's folder."""
        if self._closed:
            return
        self._closed = True
        if self.ui is not None:
            self.ui.board.closing.set()
            self.ui.board.cancel_all()
            self.ui.board.wait_idle(120.0)
            self.ui.blocks.close(verbose=False)
        if self.workspace is not None:
            self.workspace.close()
            self._point_gradio_at(None)

    # Gradio reads its upload/cache folder from GRADIO_TEMP_DIR whenever it needs it, except for
    # a few module constants read once at import (e.g. the empty "vibe_edit_history" folder it
    # makes at every launch); all of them point into the workspace while the server runs.
    _GRADIO_CONSTANTS = ("gradio.route_utils", "gradio.routes", "gradio.mcp", "gradio.screen_recording_utils")

    def _point_gradio_at(self, folder: str | None) -> None:
        import sys

        if folder is not None:
            self._saved_env = os.environ.get("GRADIO_TEMP_DIR")
            self._saved_constants = {m: sys.modules[m].DEFAULT_TEMP_DIR for m in self._GRADIO_CONSTANTS if hasattr(sys.modules.get(m), "DEFAULT_TEMP_DIR")}
            os.environ["GRADIO_TEMP_DIR"] = folder
            for module in self._GRADIO_CONSTANTS:
                if hasattr(sys.modules.get(module), "DEFAULT_TEMP_DIR"):
                    sys.modules[module].DEFAULT_TEMP_DIR = folder
            return
        if self._saved_env is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = self._saved_env
        for module, value in getattr(self, "_saved_constants", {}).items():
            sys.modules[module].DEFAULT_TEMP_DIR = value


def launch(weights: Path | None = None, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: int = 50, device: str = "auto", block: bool = True, **options):
    """Serve the app; ``block=False`` returns the running :class:`UIServer` (tests), otherwise
    serves until SIGTERM / SIGINT and returns the exit status. ``options``: :class:`UISettings`
    fields, ``auth``, ``insecure``, ``temp_base``."""
    fields = set(UISettings.__dataclass_fields__)
    settings = UISettings(max_upload_mb=max_upload_mb, **{k: v for k, v in options.items() if k in fields})
    rest = {k: v for k, v in options.items() if k not in fields}
    server = UIServer(weights, device, host, port, settings, **rest)
    if not block:
        return server.start()
    return serve(server)


def serve(server: UIServer) -> int:
    """Run ``server`` until SIGTERM or SIGINT, then shut it down gracefully; returns 0.

    A second signal cancels the running job at once.
    """
    stop, force = threading.Event(), threading.Event()

    def on_signal(signum, frame) -> None:
        if stop.is_set():
            force.set()
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not stop.is_set():
            server.start()
            _say(f"dicetalk ui: serving on {server.url} (Ctrl-C or SIGTERM to stop)")
        while not stop.wait(0.2):
            pass
        if server.ui is not None:
            running = len(server.ui.board.running())
            _say(f"dicetalk ui: stopping ({running} job running, {server.settings.grace_seconds:g} s grace)")
        server.shutdown(force=force)
    finally:
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say("dicetalk ui: stopped")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def configure_logging() -> None:
    """One line per job on stderr (the command's log); quiet for libraries."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
