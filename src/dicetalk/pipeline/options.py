"""What ``generate`` takes (:class:`GenerateOptions`) and the one place where each option is checked.

The CLI, the web UI and the Python API build the same :class:`GenerateOptions`; it checks itself
when made, and :meth:`GenerateOptions.check` adds the checks that read the recipe grammar, the speed
switches and the file system. None of it imports torch or a model: a bad option is refused in well
under a second, before any heavy work. The ranges:

========================  ===========================================================
seed                      a whole number 0..2**63-1 (:data:`SEED_MAX`), everywhere
size                      None, or a whole number of pixels 16..4096 (output short side)
steps                     None, or a whole number 1..1000 (the recipe's rule, as the next two)
identity/emotion_scale    None, or a number in [0, 50]
fps, sampler              None, or fps in [1, 60]; a sampler of the recipe's SAMPLERS
max_seconds               a finite number of seconds in (0, 86400]
transition                a finite number of seconds in [0, 60]
windows_per_batch         a whole number 1..64
device                    auto, cpu, mps, cuda or cuda:N
model                     one of :data:`MODELS`
frame                     full (the whole photo, the face pasted back) or crop (the model's crop)
max_side                  a whole number of pixels 16..8192: the full frame's longer side at most
output                    an .mp4 path that is not a folder
========================  ===========================================================
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .recipe import SamplingRecipe, parse_recipe

SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes any uint64; the top half would read as negative elsewhere
MODELS = ("dicetalk", "emotivetalk")  # generate's systems: DICE-Talk, or EmotiveTalk on the same weights (pipeline/emotivetalk.py)
FRAMES = ("full", "crop")  # what generate writes: the whole photo with the face pasted back, or the model's crop
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")


def whole_number(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``, or an :class:`InputError` naming ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if not (isinstance(value, float) and value.is_integer()):
            raise InputError(f"{name} must be a whole number {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise InputError(f"{name} must be a whole number {lo}..{hi}, got {value:g}" if isinstance(value, float) else f"{name} must be a whole number {lo}..{hi}, got {value}")
    return int(value)


def finite_number(name: str, value: Any, lo: float, hi: float, *, above_lo: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``above_lo``: ``(lo, hi]``), or an :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}")
    x = float(value)
    low_ok = x > lo if above_lo else x >= lo
    if not (math.isfinite(x) and low_ok and x <= hi):
        raise InputError(f"{name} must be a finite number in {'(' if above_lo else '['}{lo:g}, {hi:g}], got {x:g}")
    return x


def check_seed(value: Any) -> int:
    return whole_number("seed", value, 0, SEED_MAX)


@dataclass
class GenerateOptions:
    """Everything ``dicetalk generate`` takes (a typed config behind the CLI); checked when made."""

    image: Path
    audio: Path
    output: Path
    emotion: str = "neutral"
    weights: Path | None = None  # None: the embedded default model
    crop: bool = True
    size: int | None = None  # output frames resized to this short side; None: as generated
    recipe: str | None = None  # "[NAME][,field=value...]" on the model's own sampling recipe (see pipeline/recipe.py)
    steps: int | None = None  # shorthands for recipe fields (None: the recipe's)
    sampler: str | None = None
    identity_scale: float | None = None  # guidance of the reference image
    emotion_scale: float | None = None  # guidance of audio + emotion
    fps: float | None = None  # output frames per second
    seed: int = 0
    device: str = "auto"
    max_seconds: float = 600.0
    transition: float = 0.5  # seconds of crossfade between emotion schedule segments
    windows_per_batch: int = 1
    stream: bool = False  # sample in segments and write each as soon as it is done (see pipeline/streaming.py)
    performance: str | None = None  # speed switches, e.g. "fast" (see pipeline/performance.py); None: none
    model: str = "dicetalk"  # one of MODELS
    frame: str = "full"  # one of FRAMES; "full" needs a crop (without one the video is the whole image already)
    max_side: int = 1920  # the full frame's longer side at most (the photo scaled down to it)

    def __post_init__(self) -> None:
        self.image, self.audio, self.output = Path(self.image), Path(self.audio), Path(self.output)
        self.weights = None if self.weights is None else Path(self.weights)
        if not isinstance(self.emotion, str) or not self.emotion.strip():
            raise InputError("emotion must be a non-empty text, e.g. 'happy'")
        if self.model not in MODELS:
            raise InputError(f"unknown model {self.model!r}; expected one of {', '.join(MODELS)}")
        if self.size is not None:
            self.size = whole_number("size", self.size, 16, 4096)
        if self.frame not in FRAMES:
            raise InputError(f"unknown frame {self.frame!r}; expected one of {', '.join(FRAMES)}")
        self.max_side = whole_number("max_side", self.max_side, 16, 8192)
        self.seed = check_seed(self.seed)
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise InputError(f"unknown device {self.device!r}; use cpu, cuda, cuda:N or auto")
        self.max_seconds = finite_number("max_seconds", self.max_seconds, 0.0, 86400.0, above_lo=True)
        self.transition = finite_number("transition", self.transition, 0.0, 60.0)
        self.windows_per_batch = whole_number("windows_per_batch", self.windows_per_batch, 1, 64)
        if self.steps is not None:
            self.steps = whole_number("steps", self.steps, 1, 1000)
        for name in ("identity_scale", "emotion_scale", "fps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise InputError(f"{name.replace('_', ' ')} must be a number, got {value!r}")
        SamplingRecipe().replace(**self._shorthand())  # the shorthands' ranges are the recipe's own (one definition)
        if self.output.suffix.lower() != ".mp4":
            raise InputError(f"output {self.output} must be an .mp4 file")

    def resolve_recipe(self, base: SamplingRecipe) -> SamplingRecipe:
        """The recipe this job samples with: ``recipe`` on top of ``base``, then the shorthand fields."""
        return parse_recipe(self.recipe, base).replace(**self._shorthand())

    def _shorthand(self) -> dict[str, Any]:
        shorthand = {"steps": self.steps, "sampler": self.sampler, "identity_scale": self.identity_scale, "emotion_scale": self.emotion_scale, "fps": self.fps}
        return {k: v for k, v in shorthand.items() if v is not None}

    def check(self):
        """Every check that needs no model: the recipe, the speed switches, the emotion's grammar and
        the files. Returns the parsed speed switches (None: none)."""
        from .emotion_condition import check_emotion_grammar
        from .performance_options import PerformanceOptions

        self.resolve_recipe(SamplingRecipe())  # a malformed recipe or shorthand out of range
        performance = None if self.performance is None else PerformanceOptions.parse(self.performance)
        if self.model == "dicetalk":  # EmotiveTalk's emotion grammar is its own (pipeline/emotivetalk.py)
            check_emotion_grammar(self.emotion, transition=self.transition)
        for what, path in (("image", self.image), ("audio", self.audio)):
            if path.is_dir():
                raise InputError(f"{what} {path} is a folder, not a file")
            if not path.is_file():
                raise InputError(f"{path}: no such file")
        if self.weights is not None and not self.weights.is_dir():
            raise InputError(f"weights folder {self.weights} does not exist" if not self.weights.exists() else f"weights {self.weights} must be a folder")
        if self.output.is_dir():
            raise InputError(f"output {self.output} is a directory")
        for parent in self.output.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise InputError(f"output {self.output}: {parent} is a file, not a folder")
                break
        return performance
