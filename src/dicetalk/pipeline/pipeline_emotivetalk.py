"""EmotiveTalkPipeline: portrait + speech [+ emotion label, reference video, or nothing] -> frames.

EmotiveTalk's path on top of DICE-Talk's components (the same VAE, image and audio encoders, UNet
and its attention processors, emotion bank, recipe and schedulers — nothing copied):

1. the speech's Whisper hidden states (once), per-frame windows -> **V-AID**
   (:class:`~dicetalk.models.vaid.AudioDecoupler`): a lip stream and an expression stream;
2. ``speech``: the voice read-out (:class:`~dicetalk.models.voice_emotion.VoiceEmotionReader`,
   settings ``speech_emotion="read"``) names the voice's emotion, which is then expanded as a label;
3. **Di-CTE** (:class:`~dicetalk.models.dicte.TrajectoryDenoiser`) samples the expression trajectory
   of every frame from the expression stream under the emotion condition — a label with a
   strength, a reference video's expression, or none (``speech_emotion="generate"``: Di-CTE's
   voice-only condition); classifier-free guided, one trajectory per seed;
4. **EDI** (:class:`~dicetalk.models.edi.ExpressionInjector`): the trajectory becomes each frame's
   emotion prior (for DICE-Talk's bank; with ``anchor``, the label's prompt prior moved by the
   trajectory) plus token offsets that decouple the portrait's own expression (read by the
   expression encoder) from the target. With the optional **reference decoupler**
   (:class:`~dicetalk.models.reference_decoupler.ReferenceDecoupler`, settings ``decouple``) the
   portrait's expression is first taken out of the reference latent — where DICE-Talk's denoiser
   copies it from — and the offsets then see the decoupled portrait's expression;
5. DICE-Talk's sampling, unchanged (:class:`~.pipeline_dicetalk.DiceTalkPipeline`): the recipe's
   windows and guidance, :func:`~dicetalk.models.denoiser.denoise`, decoding, refiner — with
   those per-frame priors and the offsets added to the emotion tokens of the conditioned branch.

The lips still come from DICE-Talk's audio tokens (the denoiser was trained on them); the lip
stream gives the trajectory its syllable-rate mouth motion (``EmotiveTalkOutput.lip_motion``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import EMOTIONS
from ..errors import InputError
from ..models.audio_encoder import frame_windows
from ..models.dicte import sample_trajectory
from ..utils.pixels import resize, to_pixels, to_uint8
from .emotion_condition import VIDEO_SUFFIXES
from .pipeline_dicetalk import TOKEN_CHUNK, DiceTalkPipeline, DiceTalkPipelineOutput, _rgb
from .recipe import SamplingRecipe, parse_field_value

SPEECH = "speech"
SPEECH_EMOTION_MODES = ("read", "generate")


@dataclass(frozen=True)
class EmotionRequest:
    """What EmotiveTalk is asked: ``kind`` ``label`` (with ``strength``), ``video`` or ``speech`` (none: the voice decides)."""

    kind: str
    label: str | None = None
    strength: float = 1.0
    video: Path | None = None

    def describe(self) -> str:
        if self.kind == "label":
            return f"{self.label}:{self.strength:g}"
        return str(self.video) if self.kind == "video" else SPEECH


def parse_request(spec: str | None) -> EmotionRequest:
    """``speech`` (also None/empty), ``LABEL``, ``LABEL:STRENGTH`` or a reference video's path."""
    text = (spec or SPEECH).strip()
    if text.lower() == SPEECH or not text:
        return EmotionRequest(SPEECH)
    path = Path(text)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if not path.is_file():
            raise InputError(f"emotion reference video {text}: no such file")
        return EmotionRequest("video", video=path)
    name, _, strength = text.partition(":")
    name = name.strip().lower()
    if name not in EMOTIONS:
        raise InputError(
            f"emotion {text!r}: EmotiveTalk takes 'speech' (the voice decides), a label ({', '.join(EMOTIONS)}) "
            "with an optional strength ('happy:0.6'), or a reference video"
        )
    value = 1.0
    if strength:
        try:
            value = float(strength)
        except ValueError:
            raise InputError(f"malformed emotion {text!r}: strength must be a number, as in 'happy:0.6'") from None
        if not math.isfinite(value) or not 0.0 <= value <= 3.0:
            raise InputError(f"emotion strength {value:g} out of range 0..3")
    return EmotionRequest("label", label=name, strength=value)


@dataclass
class EmotiveTalkSettings:
    """EmotiveTalk's own sampling choices (stored with its parts in ``emotivetalk/emotivetalk.json``)."""

    trajectory_steps: int = 16  # Di-CTE's Heun steps
    label_guidance: float = 2.0  # classifier-free guidance of a label or reference-video condition
    speech_guidance: float = 1.0  # classifier-free guidance of the speech (how strongly the voice moves the face)
    injection: bool = True  # EDI's token offsets (False: the trajectory's priors only)
    injection_scale: float = 1.0
    speech_emotion: str = "generate"  # `speech`: "read" (the voice read-out names the emotion, Di-CTE expands it) or "generate" (Di-CTE's null condition)
    speech_strength: float = 1.0  # the strength a read emotion is expanded and rendered at
    anchor: bool = False  # a label's (or read emotion's) clip-level prior is DICE-Talk's prompt prior; the trajectory only moves it
    motion_scale: float = 1.0  # with `anchor`: how far the trajectory moves the prior from frame to frame
    decouple: bool = True  # EDI's reference decoupler (if the model has one) takes the portrait's expression out of the reference latent
    decouple_pixels: bool = False  # with `decouple`: the refiner sees the decoded decoupled portrait, not the photo
    decouple_embedding: bool = False  # with `decouple`: the CLIP embedding is the decoded decoupled portrait's
    transfer_pixels: bool = False  # with `decouple`: the refiner's photo gets the decoupler's change, photo + decoded(decoupled) - decoded(portrait)

    @classmethod
    def from_dict(cls, values: dict | None) -> "EmotiveTalkSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known}).validated()

    def overridden(self, text: str | None) -> "EmotiveTalkSettings":
        """These settings with ``"name=value[,name=value...]"`` applied (``anchor=true,motion_scale=0.5``)."""
        kinds = {f.name: str(f.type) for f in dataclasses.fields(self)}
        values = dataclasses.asdict(self)
        for item in filter(None, (t.strip() for t in (text or "").split(","))):
            name, _, raw = (t.strip() for t in item.partition("="))
            if name not in kinds or not raw:
                raise InputError(f"EmotiveTalk setting {item!r}: use name=value with a name from {', '.join(kinds)}")
            values[name] = parse_field_value(kinds[name], name, raw, "EmotiveTalk settings")
        return EmotiveTalkSettings(**values).validated()

    def validated(self) -> "EmotiveTalkSettings":
        if self.speech_emotion not in SPEECH_EMOTION_MODES:
            raise InputError(f"speech_emotion must be one of {', '.join(SPEECH_EMOTION_MODES)}, got {self.speech_emotion!r}")
        if not 0.0 <= self.speech_strength <= 3.0 or self.motion_scale < 0.0:
            raise InputError("speech_strength must be in 0..3 and motion_scale at least 0")
        return self


@dataclass
class EmotiveTalkOutput(DiceTalkPipelineOutput):
    trajectory: torch.Tensor | None = None  # (F, 12) the expression trajectory Di-CTE drew
    voice_emotion: str | None = None  # `speech` read by the voice read-out: the emotion it named ...
    voice_probabilities: dict[str, float] | None = None  # ... and every emotion's probability
    lip_motion: torch.Tensor | None = None  # (F, 2) V-AID's lip read-out (jaw, rounding)
    portrait_expression: torch.Tensor | None = None  # (12,) the portrait's expression, as the encoder reads it


class EmotiveTalkPipeline(DiceTalkPipeline):
    _optional_components = DiceTalkPipeline._optional_components + ["vaid", "dicte", "edi", "voice", "decoupler"]

    def __init__(
        self,
        unet,
        vae,
        image_encoder,
        audio_encoder,
        audio_feature_extractor,
        audio_projection,
        mask_encoder,
        emotion_bank,
        priors,
        scheduler,
        emotion_embedder=None,
        expression_encoder=None,
        discriminator=None,
        refiner=None,
        frame_interpolator=None,
        vaid=None,
        dicte=None,
        edi=None,
        voice=None,
        decoupler=None,
        recipe: dict | None = None,
        face_layout: dict | None = None,
        emotivetalk: dict | None = None,
    ):
        super().__init__(
            unet, vae, image_encoder, audio_encoder, audio_feature_extractor, audio_projection, mask_encoder, emotion_bank, priors, scheduler,
            emotion_embedder=emotion_embedder, expression_encoder=expression_encoder, discriminator=discriminator, refiner=refiner,
            frame_interpolator=frame_interpolator, recipe=recipe, face_layout=face_layout,
        )  # fmt: skip
        self.register_modules(vaid=vaid, dicte=dicte, edi=edi, voice=voice, decoupler=decoupler)
        self.register_to_config(emotivetalk=dataclasses.asdict(EmotiveTalkSettings.from_dict(emotivetalk)))
        self._call_state: dict | None = None

    @classmethod
    def from_dicetalk(
        cls, pipe: DiceTalkPipeline, vaid, dicte, edi, voice=None, decoupler=None, settings: EmotiveTalkSettings | dict | None = None
    ) -> "EmotiveTalkPipeline":
        """DICE-Talk's components (shared, not copied) with EmotiveTalk's parts (``voice``: the optional voice
        read-out; ``decoupler``: EDI's optional reference decoupler)."""
        settings = dataclasses.asdict(settings) if isinstance(settings, EmotiveTalkSettings) else settings
        components = {k: v for k, v in pipe.components.items() if k not in ("vaid", "dicte", "edi", "voice", "decoupler")}
        out = cls(
            **components, vaid=vaid, dicte=dicte, edi=edi, voice=voice, decoupler=decoupler, emotivetalk=settings, recipe=pipe.config.recipe,
            face_layout=pipe.config.face_layout,
        )  # fmt: skip
        out.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
        return out

    @property
    def settings(self) -> EmotiveTalkSettings:
        return EmotiveTalkSettings.from_dict(self.config.emotivetalk)

    # ------------------------------------------------------------------ EmotiveTalk's own steps
    def _require_parts(self) -> None:
        missing = [n for n in ("vaid", "dicte", "edi", "expression_encoder") if getattr(self, n, None) is None]
        if missing:
            raise InputError(f"this model has no EmotiveTalk parts ({', '.join(missing)} missing); use --model dicetalk or weights with emotivetalk/")

    @torch.no_grad()
    def decouple(self, hidden: torch.Tensor, num_frames: int, fps: float):
        """V-AID's two streams of the whole speech, (1, F, ...) each (per-frame layers in chunks of frames:
        the Whisper windows of a long speech are never all in memory at once)."""
        vaid = self.vaid
        chunks = [
            vaid.frame_features(frame_windows(hidden, num_frames, fps, frames=slice(s, s + TOKEN_CHUNK))[None].to(vaid.device, vaid.dtype))
            for s in range(0, num_frames, TOKEN_CHUNK)
        ]
        return vaid.streams(torch.cat([c[0] for c in chunks], 1), torch.cat([c[1] for c in chunks], 1))

    @torch.no_grad()
    def read_expression(self, frames: np.ndarray) -> torch.Tensor:
        """The expression encoder's coefficients of uint8 (N, H, W, 3) frames, (N, 12) float32."""
        enc = self.expression_encoder
        size = int(enc.config.image_size)
        frames = np.stack([resize(f, size, size) for f in np.asarray(frames)])
        out = [enc(to_pixels(frames[s : s + 256]).to(self.device, enc.dtype)).float() for s in range(0, len(frames), 256)]
        return torch.cat(out)

    @torch.no_grad()
    def reference_trajectory(self, path: str | Path) -> torch.Tensor:
        """A reference video's slow whole-face expression (F, 12), as Di-CTE's training read its references."""
        from ..data.emotive import stream_targets
        from ..utils.media import read_video

        clip = read_video(path, max_frames=int(self.emotion_embedder.config.max_frames) if self.emotion_embedder is not None else 256, with_audio=False)
        return torch.from_numpy(stream_targets(self.read_expression(clip.frames).cpu().numpy())[1])

    def emotion_condition(self, request: EmotionRequest) -> torch.Tensor:
        """Di-CTE's emotion condition (1, embed_dim) of a request."""
        dicte = self.dicte
        if request.kind == "label":
            index = torch.tensor([EMOTIONS.index(request.label)], device=self.device)
            return dicte.label_condition(index, torch.tensor([request.strength], device=self.device))
        if request.kind == "video":
            return dicte.reference_condition(self.reference_trajectory(request.video)[None].to(self.device))
        return dicte.null_condition(1)

    def resolve_speech(self, request: EmotionRequest, speech_stream: torch.Tensor) -> tuple[EmotionRequest, dict[str, float] | None]:
        """``speech`` read by the voice read-out (settings ``speech_emotion="read"``): the label it names at
        ``speech_strength``, and every emotion's probability. Other requests, or no read-out: unchanged."""
        settings = self.settings
        if request.kind != SPEECH or settings.speech_emotion != "read":
            return request, None
        if self.voice is None:
            raise InputError("this model's EmotiveTalk settings read the voice's emotion, but it has no voice read-out (emotivetalk/voice/)")
        label, probs = self.voice.read(speech_stream.to(self.voice.device))
        return EmotionRequest("label", label=label, strength=settings.speech_strength), dict(zip(self.voice.emotions, probs.tolist()))

    def frame_priors(self, request: EmotionRequest, trajectory: torch.Tensor) -> torch.Tensor:
        """One emotion prior per frame (F, prior_dim) for the trajectory (F, 12).

        EDI's prior head follows the trajectory frame by frame. With ``anchor`` (a label), the clip's
        level is the label's prompt prior at its strength — what DICE-Talk's bank was trained to
        render — and the trajectory only moves it: its priors minus their mean over the clip,
        times ``motion_scale``."""
        priors = self.edi.emotion_prior(trajectory[None].to(self.device))[0].float()
        settings = self.settings
        if not settings.anchor or request.kind != "label":
            return priors
        level = self.priors.prior(request.label, request.strength).to(priors)
        return level + settings.motion_scale * (priors - priors.mean(0, keepdim=True))

    @torch.no_grad()
    def expression_trajectory(self, request: EmotionRequest, speech_stream: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Di-CTE's trajectory (F, 12) for V-AID's expression stream (1, F, d)."""
        settings = self.settings
        guidance = 1.0 if request.kind == SPEECH else settings.label_guidance
        condition = self.emotion_condition(request).to(self.dicte.dtype)
        trajectory = sample_trajectory(
            self.dicte, speech_stream.to(self.dicte.dtype), condition, generator, settings.trajectory_steps, guidance, settings.speech_guidance
        )
        return trajectory[0]

    # ------------------------------------------------------------------ hooks into DICE-Talk's call
    def audio_hidden(self, audio: np.ndarray, num_frames: int, recipe: SamplingRecipe) -> torch.Tensor:
        state = self._call_state
        if state is not None and state.get("hidden") is not None:
            return state["hidden"]  # computed once for V-AID and the audio tokens alike
        return super().audio_hidden(audio, num_frames, recipe)

    @property
    def decoupling(self) -> bool:
        """Whether this call's reference latent goes through EDI's reference decoupler."""
        return getattr(self, "decoupler", None) is not None and self.settings.decouple

    @torch.no_grad()
    def decouple_reference(self, cond) -> torch.Tensor:
        """The reference latents (and the clean ones, ``init_from_reference``) of ``cond`` at the portrait's
        neutral expression, in place; returns the expression (1, 12) the decoupled portrait shows."""
        dec = self.decoupler
        given = cond.image_latents
        cond.image_latents = dec(given.to(dec.device))
        if cond.reference_latents is not None:
            scale = self.vae.config.scaling_factor
            cond.reference_latents = dec(cond.reference_latents / scale) * scale
        decoded = self.vae.decode(cond.image_latents.to(self.vae.dtype), num_frames=1).sample
        frame = to_uint8(decoded).cpu().numpy()
        # The portrait's other two carriers: the refiner's pixels (it copies details such as the
        # brows back into every frame) and the CLIP embedding.
        if self.settings.decouple_pixels:
            cond.pixels = to_pixels(frame).to(cond.pixels.device, cond.pixels.dtype)
        if self.settings.decouple_embedding:
            cond.image_embeds = self.image_embeds(frame[0])
        if self.settings.transfer_pixels:
            # The expression change only: what the autoencoder loses of the photo cancels out.
            before = self.vae.decode(given.to(self.vae.device, self.vae.dtype), num_frames=1).sample
            change = (decoded.float() - before.float()).to(cond.pixels.device)
            cond.pixels = (cond.pixels.float() + change).clamp(-1, 1).to(cond.pixels.dtype)
        return self.read_expression(frame)

    def prepare_conditions(self, image, audio, priors, recipe, face_mask, size, padding, generator):
        cond = super().prepare_conditions(image, audio, priors, recipe, face_mask, size, padding, generator)
        state = self._call_state
        if state is not None and self.decoupling:
            # EDI's offsets cancel what the reference shows: after decoupling, the decoupled portrait.
            state["portrait"] = self.decouple_reference(cond)
        if state is not None and state.get("trajectory") is not None:
            settings = self.settings
            trajectory = state.pop("trajectory")
            offsets = self.edi.token_offsets(trajectory[None].to(self.device), state["portrait"])[0] * settings.injection_scale
            # In place: these tokens were made for this call. The video's frames only: the padding's
            # null tokens stay as trained.
            cond.emotion_tokens[: offsets.shape[0]] += offsets.to(cond.emotion_tokens.device, cond.emotion_tokens.dtype)
        return cond

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(
        self,
        image,
        audio: np.ndarray,
        emotion: EmotionRequest | str | None = None,
        recipe: SamplingRecipe | None = None,
        generator: torch.Generator | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        **kwargs,
    ) -> EmotiveTalkOutput:
        """Generate the video of ``image`` speaking ``audio`` (mono 16 kHz) under ``emotion``
        (an :class:`EmotionRequest` or its text: ``speech``, ``happy``, ``happy:0.6``, a video path).

        Other keyword arguments are :class:`DiceTalkPipeline`'s (``output_type``, ``frame_sink``,
        ``face_mask``, ``height``/``width``, ``callback_on_step_end``...). ``generator`` draws
        Di-CTE's trajectory first, then DICE-Talk's noise: the same seed, the same video.
        """
        self._require_parts()
        request = emotion if isinstance(emotion, EmotionRequest) else parse_request(emotion)
        recipe = (recipe or self.recipe).validated()
        report = progress or (lambda stage, done, total: None)
        n = recipe.generated_frames(len(audio))
        report("encode", 0, 1)
        hidden = super().audio_hidden(audio, n, recipe)
        streams = self.decouple(hidden, n, recipe.generated_fps)
        trajectory_seed = int(torch.randint(0, 2**62, (1,), generator=generator).item()) if generator is not None else 0
        request, voice = self.resolve_speech(request, streams.expression)
        trajectory = self.expression_trajectory(request, streams.expression, torch.Generator().manual_seed(trajectory_seed))
        portrait = self.read_expression(_rgb(image)[None])
        priors = self.frame_priors(request, trajectory)
        settings = self.settings
        state = {"hidden": hidden, "trajectory": trajectory if settings.injection else None, "portrait": portrait}
        self._call_state = state
        try:
            out = super().__call__(image, audio, priors, recipe=recipe, generator=generator, progress=progress, **kwargs)
        finally:
            self._call_state = None
        portrait = state["portrait"]  # the decoupled portrait's, when decoupling
        frames = out[0] if isinstance(out, tuple) else out.frames
        lip = self.vaid.lip_motion(streams.lip_readout)[0].float().cpu()
        result = EmotiveTalkOutput(
            frames=frames, fps=recipe.fps, num_frames=recipe.output_frames(n), trajectory=trajectory.float().cpu(), lip_motion=lip,
            portrait_expression=portrait[0].cpu(), voice_emotion=request.label if voice else None, voice_probabilities=voice,
        )  # fmt: skip
        return (frames,) if kwargs.get("return_dict") is False else result


# ---------------------------------------------------------------------------------------- input checks
VOICED_DB = -40.0
MIN_VOICED_SHARE = 0.1


def voiced_share(audio: np.ndarray, sample_rate: int = 16000, frame_seconds: float = 0.04) -> float:
    """Share of 40 ms frames louder than :data:`VOICED_DB` dBFS."""
    hop = int(sample_rate * frame_seconds)
    count = len(audio) // hop
    if count == 0:
        return 0.0
    frames = np.asarray(audio[: count * hop], np.float64).reshape(count, hop)
    db = 20 * np.log10(np.sqrt((frames**2).mean(1)) + 1e-12)
    return float((db > VOICED_DB).mean())


def check_speech_request(request: EmotionRequest, audio: np.ndarray, name: str) -> None:
    """``speech`` takes the emotion from the voice: refuse audio with (almost) no voice in it."""
    if request.kind != SPEECH:
        return
    share = voiced_share(audio)
    if share < MIN_VOICED_SHARE:
        raise InputError(
            f"{name}: --emotion speech takes the emotion from the voice, but only {share:.0%} of the audio is louder than "
            f"{VOICED_DB:g} dBFS (silence or noise); give an emotion label or a reference video"
        )

