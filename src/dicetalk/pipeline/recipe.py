"""The sampling recipe: every choice that turns a trained model into a video, in one typed place.

A :class:`SamplingRecipe` is stored with a model (``model_index.json``, key ``recipe``), accepted by
:class:`~dicetalk.pipeline.DiceTalkPipeline`, and set from the command line as one spec string::

    --recipe release                      # the authors' recipe (config/inference/dice_talk.yaml)
    --recipe steps=10,sampler=dpmpp-2m    # the model's own recipe with two fields changed
    --recipe release,steps=12             # a named recipe with a field changed
    --recipe "guidance_interval=0.05:5,audio_scale=none"

Fields (defaults: what a model without a stored recipe gets):

``steps``, ``sampler``
    denoising steps and the scheduler that takes them (:mod:`.schedulers`).
``identity_scale``, ``emotion_scale``, ``audio_scale``
    classifier-free guidance: ``s_id`` on the reference image, ``s_ae`` on audio + emotion and,
    when set and different from ``s_ae``, ``s_a`` on the speech alone (one more branch).
``guidance_fraction``, ``guidance_interval``
    which steps run the guidance branches: the first ``fraction`` of the steps, and of those only
    the ones whose noise level lies in ``[lo, hi]``; other steps run the fully conditioned branch.
``windows``, ``overlap``, ``shift``
    long videos are denoised in windows of the UNet's frame count, moved by ``shift`` frames every
    step. ``blend``: windows inside the video, overlapping by ``overlap`` frames (None: a quarter
    window), averaged with weights that ramp over the overlap. ``circular`` (the release's): the
    video plus one window of null-conditioned padding frames is covered circularly by windows
    ``window - overlap`` apart, averaged uniformly.
``noise_aug``
    Gaussian noise added to the reference pixels before the VAE (SVD's noise augmentation).
``fps``, ``interpolation``
    output frames per second and how many output frames each generated frame becomes: the release
    generates 12.5 fps and doubles it with its frame interpolator (RIFE).
``time_ids``
    the UNet's three added time ids; None: SVD's ``(generated fps - 1, 127, noise_aug)``, as this
    project trains; the release's weights use ``(12.5, 8, 16)`` (fps, motion bucket, expression bucket).
``init_from_reference``
    start from the reference latent plus noise (the release's ``i2i_noise_strength`` 1.0) instead of
    pure noise.
``size``
    pixels on the short side (a multiple of the UNet's stride; any aspect ratio); None: the model's
    native size, square.
``decode_chunk``
    frames the temporal VAE decoder sees at once (it mixes frames within a chunk).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

WINDOW_MODES = ("blend", "circular")
SAMPLERS = ("euler", "euler-churn", "heun", "dpmpp-2m")  # the keys of schedulers.SCHEDULERS, here without torch
RECIPE_KEY = "recipe"


@dataclass(frozen=True)
class SamplingRecipe:
    steps: int = 25
    sampler: str = "euler"
    identity_scale: float = 3.0
    emotion_scale: float = 6.0
    audio_scale: float | None = None
    guidance_fraction: float = 1.0
    guidance_interval: tuple[float, float] | None = None
    windows: str = "blend"
    overlap: int | None = None
    shift: int | None = None
    noise_aug: float = 0.0
    fps: float = 25.0
    interpolation: int = 1
    time_ids: tuple[float, float, float] | None = None
    init_from_reference: bool = False
    size: int | None = None
    decode_chunk: int = 8

    # --------------------------------------------------------------------------- derived values
    @property
    def generated_fps(self) -> float:
        return self.fps / self.interpolation

    def guided_steps(self, sigmas: list[float]) -> list[bool]:
        """Which of the steps (noise levels ``sigmas``, high to low) run the guidance branches."""
        steps = len(sigmas) - 1
        count = int(round(self.guidance_fraction * steps))
        lo, hi = self.guidance_interval or (0.0, math.inf)
        return [i < count and lo <= sigmas[i] <= hi for i in range(steps)]

    def window_layout(self, window: int) -> tuple[int, int]:
        """(overlap, shift) in frames for windows of ``window`` frames."""
        if self.windows == "circular":
            overlap = 0 if self.overlap is None else min(window - 1, self.overlap)
            return overlap, (7 if self.shift is None else self.shift)
        overlap = window // 4 if self.overlap is None else self.overlap
        overlap = max(0, min(window - 1, overlap))
        return overlap, (max(1, (window - overlap) // 3) if self.shift is None else self.shift)

    def unet_time_ids(self) -> tuple[float, float, float]:
        if self.time_ids is not None:
            return tuple(float(v) for v in self.time_ids)
        return svd_time_ids(self.generated_fps, self.noise_aug)

    def generated_frames(self, num_samples: int, sample_rate: int = 16000) -> int:
        """Frames to generate for speech of ``num_samples``: whole output frames, then every
        ``interpolation``-th (the release's rule: ``(samples // 640) // 2`` at 25 fps, step 2)."""
        output = int(num_samples * self.fps // sample_rate)
        return max(1, output // self.interpolation)

    def output_frames(self, generated: int) -> int:
        return (generated - 1) * self.interpolation + 1

    # ----------------------------------------------------------------------------- conversion
    def replace(self, **changes: Any) -> "SamplingRecipe":
        return dataclasses.replace(self, **changes).validated()

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "recipe") -> "SamplingRecipe":
        unknown = sorted(set(values) - FIELD_NAMES)
        if unknown:
            raise InputError(f"{source}: unknown recipe field {unknown[0]!r}; fields: {', '.join(sorted(FIELD_NAMES))}")
        return cls(**{k: _coerce(k, v, source) for k, v in values.items()}).validated(source)

    def validated(self, source: str = "recipe") -> "SamplingRecipe":
        """Self, or an :class:`InputError` naming the first field out of range."""
        problems = [
            (not 1 <= self.steps <= 1000, f"steps must be 1..1000, got {self.steps}"),
            (self.sampler not in SAMPLERS, f"unknown sampler {self.sampler!r}; expected one of {', '.join(SAMPLERS)}"),
            (not _scale_ok(self.identity_scale), f"identity scale must be in [0, 50], got {self.identity_scale:g}"),
            (not _scale_ok(self.emotion_scale), f"emotion scale must be in [0, 50], got {self.emotion_scale:g}"),
            (self.audio_scale is not None and not _scale_ok(self.audio_scale), f"audio scale must be in [0, 50], got {self.audio_scale}"),
            (not 0.0 <= self.guidance_fraction <= 1.0, f"guidance fraction must be in [0, 1], got {self.guidance_fraction:g}"),
            (self.guidance_interval is not None and not 0.0 <= self.guidance_interval[0] <= self.guidance_interval[1],
             f"the guidance interval needs 0 <= lo <= hi, got {self.guidance_interval}"),
            (self.windows not in WINDOW_MODES, f"windows must be one of {', '.join(WINDOW_MODES)}, got {self.windows!r}"),
            (self.overlap is not None and self.overlap < 0, f"overlap must be 0 or more frames, got {self.overlap}"),
            (self.shift is not None and self.shift < 0, f"shift must be 0 or more frames, got {self.shift}"),
            (not 0.0 <= self.noise_aug <= 1.0, f"noise_aug must be in [0, 1], got {self.noise_aug:g}"),
            (not 1.0 <= self.fps <= 60.0, f"fps must be 1..60, got {self.fps:g}"),
            (self.interpolation not in (1, 2), f"interpolation must be 1 or 2, got {self.interpolation}"),
            (self.time_ids is not None and (len(self.time_ids) != 3 or not all(map(math.isfinite, self.time_ids))),
             f"time_ids must be three finite numbers, got {self.time_ids}"),
            (self.size is not None and not 16 <= self.size <= 4096, f"size must be 16..4096 pixels, got {self.size}"),
            (self.decode_chunk < 1, f"decode_chunk must be at least 1, got {self.decode_chunk}"),
        ]  # fmt: skip
        for bad, message in problems:
            if bad:
                raise InputError(f"{source}: {message}" if source != "recipe" else message)
        return self

    def describe(self) -> str:
        """One line for logs and tables."""
        branches = 2 if self.identity_scale == 1.0 else 3
        branches += self.audio_scale is not None and self.audio_scale != self.emotion_scale
        parts = [f"{self.steps} {self.sampler} steps", f"{branches} branches", f"s_id {self.identity_scale:g}", f"s_ae {self.emotion_scale:g}"]
        if self.audio_scale is not None:
            parts.append(f"s_a {self.audio_scale:g}")
        if self.guidance_fraction != 1.0:
            parts.append(f"guided on {self.guidance_fraction:.0%} of steps")
        if self.guidance_interval is not None:
            parts.append(f"guided at noise levels {self.guidance_interval[0]:g}-{self.guidance_interval[1]:g}")
        parts.append(f"{self.windows} windows, overlap {'1/4' if self.overlap is None else self.overlap}")
        parts.append(f"{self.generated_fps:g} fps" + (f" x{self.interpolation} interpolated" if self.interpolation > 1 else ""))
        if self.size is not None:
            parts.append(f"{self.size} px")
        return ", ".join(parts)


FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(SamplingRecipe))

RELEASE = SamplingRecipe(
    steps=25,
    sampler="euler",
    identity_scale=3.0,
    emotion_scale=6.0,
    windows="circular",
    overlap=0,
    shift=7,
    noise_aug=0.0,
    fps=25.0,
    interpolation=2,
    time_ids=(12.5, 8.0, 16.0),
    init_from_reference=True,
    size=512,
    decode_chunk=10,
)
"""The authors' recipe, as their ``config/inference/dice_talk.yaml`` and ``dice_talk.py`` run it."""

NAMED = {"release": RELEASE}


def svd_time_ids(fps: float, noise_aug: float, motion_bucket_id: float = 127.0) -> tuple[float, float, float]:
    """Stable Video Diffusion's added time ids, as this project trains: ``(fps - 1, motion bucket, noise aug)``."""
    return (float(fps) - 1.0, float(motion_bucket_id), float(noise_aug))


def parse_recipe(spec: str | None, base: SamplingRecipe) -> SamplingRecipe:
    """``[NAME][,field=value...]`` on top of ``base`` (a named recipe replaces the base first)."""
    if spec is None or not spec.strip():
        return base
    recipe = base
    changes: dict[str, Any] = {}
    for i, item in enumerate(part.strip() for part in spec.split(",")):
        if not item:
            continue
        if "=" not in item:
            if i != 0 or item not in (*NAMED, "model"):
                raise InputError(f"recipe {spec!r}: {item!r} is neither a named recipe ({', '.join((*NAMED, 'model'))}) nor field=value")
            recipe = base if item == "model" else NAMED[item]
            continue
        key, value = (s.strip() for s in item.split("=", 1))
        key = key.replace("-", "_")
        if key not in FIELD_NAMES:
            raise InputError(f"recipe {spec!r}: unknown field {key!r}; fields: {', '.join(sorted(FIELD_NAMES))}")
        # finite=False: validated() names the range a nan or inf scale misses; tuples are checked here.
        changes[key] = parse_field_value(str(_TYPES[key]), key, value, f"recipe {spec!r}", finite=False)
        count = str(_TYPES[key]).count("float")  # a tuple field's length: guidance_interval 2, time_ids 3
        if isinstance(changes[key], tuple) and (len(changes[key]) != count or not all(map(math.isfinite, changes[key]))):
            raise InputError(f"recipe {spec!r}: {key} must be {({2: 'two', 3: 'three'}).get(count, count)} finite numbers separated by ':', got {value!r}")
    return SamplingRecipe.from_dict({**recipe.to_dict(), **changes}, source=f"recipe {spec!r}")


def legacy_recipe(config: dict[str, Any]) -> SamplingRecipe | None:
    """The recipe of a model folder written before recipes existed (``default_*`` keys), else None.

    Such pipelines added noise augmentation 0.02 to the reference (and time id), so that stays.
    """
    keys = {
        "default_steps": "steps",
        "default_sampler": "sampler",
        "default_guidance_fraction": "guidance_fraction",
        "default_identity_scale": "identity_scale",
        "default_emotion_scale": "emotion_scale",
        "default_audio_scale": "audio_scale",
        "default_guidance_interval": "guidance_interval",
        "default_overlap": "overlap",
    }
    if not any(k in config for k in keys):
        return None
    values = {field: config[k] for k, field in keys.items() if k in config}
    return SamplingRecipe.from_dict({"noise_aug": 0.02, **values}, source="model_index.json")


# ---------------------------------------------------------------------------------- parsing


def _scale_ok(value: float) -> bool:
    return 0.0 <= value <= 50.0  # also refuses nan


_TYPES = {f.name: f.type for f in dataclasses.fields(SamplingRecipe)}


def _coerce(key: str, value: Any, source: str) -> Any:
    """A JSON/CLI value converted to the field's type (lists to tuples, ints to floats)."""
    kind = str(_TYPES[key])
    try:
        if value is None:
            if "None" not in kind:
                raise ValueError("may not be none")
            return None
        if "tuple" in kind:
            return tuple(float(v) for v in value)
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("must be a whole number")
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("bool"):
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
            return value
        return str(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: {key} {value!r} {exc if 'must' in str(exc) else 'is not a ' + kind}") from None


def parse_field_value(kind: str, key: str, text: str, source: str, *, finite: bool = True) -> Any:
    """The text of a ``key=value`` item as a dataclass field of type ``kind`` (its annotation, e.g.
    ``"float | None"``); an :class:`InputError` naming ``source`` when it is not one (with ``finite``,
    also for nan or an infinity: ``1e309``)."""
    low = text.lower()
    if low in ("none", "null", "") and "None" in kind:
        return None
    try:
        if "tuple" in kind:
            numbers = tuple(float(v) for v in text.replace(" ", ":").split(":") if v)
            if finite and not all(map(math.isfinite, numbers)):
                raise InputError(f"{source}: {key}={text!r}: every number must be finite")
            return numbers
        if "bool" in kind:
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            number = float(text)
            if finite and not math.isfinite(number):
                raise InputError(f"{source}: {key}={text!r} must be a finite number")
            return number
    except ValueError:
        raise InputError(f"{source}: {key}={text!r} is not a valid {kind.replace(' | None', '')}") from None
    return text
