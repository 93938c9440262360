"""EmotiveTalkPipeline: portrait + speech [+ emotion label, reference video, or nothing] -> frames.

EmotiveTalk's path on top of DICE-Talk's components (the same VAE, image and audio encoders, UNet
and its attention processors, emotion bank, recipe and schedulers — nothing copied):

1. the speech's Whisper hidden states (once), per-frame windows -> **V-AID**
   (:class:`~dicetalk.models.vaid.AudioDecoupler`): a lip stream and an expression stream;
2. **Di-CTE** (:class:`~dicetalk.models.dicte.TrajectoryDenoiser`) samples the expression trajectory
   of every frame from the expression stream under the emotion condition — a label with a
   strength, a reference video's expression, or none (``speech``: the voice decides); classifier-free
   guided, one trajectory per seed;
3. **EDI** (:class:`~dicetalk.models.edi.ExpressionInjector`): the trajectory becomes each frame's
   emotion prior (for DICE-Talk's bank) plus token offsets that decouple the portrait's own
   expression (read by the expression encoder) from the target;
4. DICE-Talk's sampling, unchanged (:class:`~.pipeline_dicetalk.DiceTalkPipeline`): the recipe's
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
from ..utils.pixels import resize, to_pixels
from .emotion_condition import VIDEO_SUFFIXES
from .pipeline_dicetalk import DiceTalkPipeline, DiceTalkPipelineOutput, _rgb
from .recipe import SamplingRecipe

SPEECH = "speech"


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

    @classmethod
    def from_dict(cls, values: dict | None) -> "EmotiveTalkSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})


@dataclass
class EmotiveTalkOutput(DiceTalkPipelineOutput):
    trajectory: torch.Tensor | None = None  # (F, 12) the expression trajectory Di-CTE drew
    lip_motion: torch.Tensor | None = None  # (F, 2) V-AID's lip read-out (jaw, rounding)
    portrait_expression: torch.Tensor | None = None  # (12,) the portrait's expression, as the encoder reads it


class EmotiveTalkPipeline(DiceTalkPipeline):
    _optional_components = DiceTalkPipeline._optional_components + ["vaid", "dicte", "edi"]

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
        recipe: dict | None = None,
        face_layout: dict | None = None,
        emotivetalk: dict | None = None,
    ):
        super().__init__(
            unet, vae, image_encoder, audio_encoder, audio_feature_extractor, audio_projection, mask_encoder, emotion_bank, priors, scheduler,
            emotion_embedder=emotion_embedder, expression_encoder=expression_encoder, discriminator=discriminator, refiner=refiner,
            frame_interpolator=frame_interpolator, recipe=recipe, face_layout=face_layout,
        )  # fmt: skip
        self.register_modules(vaid=vaid, dicte=dicte, edi=edi)
        self.register_to_config(emotivetalk=dataclasses.asdict(EmotiveTalkSettings.from_dict(emotivetalk)))
        self._call_state: dict | None = None

    @classmethod
    def from_dicetalk(cls, pipe: DiceTalkPipeline, vaid, dicte, edi, settings: EmotiveTalkSettings | dict | None = None) -> "EmotiveTalkPipeline":
        """DICE-Talk's components (shared, not copied) with EmotiveTalk's three parts."""
        settings = dataclasses.asdict(settings) if isinstance(settings, EmotiveTalkSettings) else settings
        components = {k: v for k, v in pipe.components.items() if k not in ("vaid", "dicte", "edi")}
        out = cls(**components, vaid=vaid, dicte=dicte, edi=edi, emotivetalk=settings, recipe=pipe.config.recipe, face_layout=pipe.config.face_layout)
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
        """V-AID's two streams of the whole speech, (1, F, ...) each."""
        windows = frame_windows(hidden, num_frames, fps)
        return self.vaid(windows[None].to(self.vaid.device, self.vaid.dtype))

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

    def prepare_conditions(self, image, audio, priors, recipe, face_mask, size, padding, generator):
        cond = super().prepare_conditions(image, audio, priors, recipe, face_mask, size, padding, generator)
        state = self._call_state
        if state is not None and state.get("offsets") is not None:
            offsets = state["offsets"].to(cond.emotion_tokens.device, cond.emotion_tokens.dtype)
            tokens = cond.emotion_tokens.clone()
            tokens[: offsets.shape[0]] += offsets  # the conditioned branch only: guidance's null tokens stay as trained
            cond.emotion_tokens = tokens
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
        trajectory = self.expression_trajectory(request, streams.expression, torch.Generator().manual_seed(trajectory_seed))
        portrait = self.read_expression(_rgb(image)[None])
        priors, offsets = self.edi(trajectory[None].to(self.device), portrait)
        settings = self.settings
        offsets = offsets[0] * settings.injection_scale if settings.injection else None
        self._call_state = {"hidden": hidden, "offsets": offsets}
        try:
            out = super().__call__(image, audio, priors[0].float(), recipe=recipe, generator=generator, progress=progress, **kwargs)
        finally:
            self._call_state = None
        frames = out[0] if isinstance(out, tuple) else out.frames
        lip = self.vaid.lip_motion(streams.lip_readout)[0].float().cpu()
        result = EmotiveTalkOutput(
            frames=frames, fps=recipe.fps, num_frames=recipe.output_frames(n), trajectory=trajectory.float().cpu(), lip_motion=lip,
            portrait_expression=portrait[0].cpu(),
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

