"""Emotion conditions: labels, strengths, mixes, prior files, reference videos and schedules.

Grammar of ``--emotion``:

* ``happy`` — the stored prompt prior of an emotion; ``happy:0.6`` — at strength 0.6 (a linear
  path from the neutral prior; above 1 exaggerates);
* ``happy*0.7+surprised*0.3`` — a weighted mix of priors (``happy+sad`` mixes equally);
* a path to a prior file (``.npy`` without pickle code, the release's ``{"mu": ...}`` ``.npy``,
  ``.safetensors`` or ``.json``) or to a reference video (embedded by the emotion embedder);
* a schedule ``"0:neutral,2.5:happy,5:sad:0.5"``: ``seconds:condition`` items, each segment held
  and blended smoothly into the next over ``transition`` seconds.

A parsed condition becomes one prior per output frame with :meth:`EmotionSchedule.per_frame`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import InputError

if TYPE_CHECKING:  # torch only where priors are blended: the grammar is checked before torch is imported
    import torch

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
PRIOR_SUFFIXES = {".npy", ".safetensors", ".json"}
_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
_TERM = re.compile(rf"^(?P<name>[A-Za-z_][A-Za-z0-9_-]*)(?:\*(?P<weight>{_NUMBER}))?$")

PriorResolver = Callable[[str, float], "torch.Tensor"]
"""(emotion name, strength) -> prior vector."""
FileResolver = Callable[[Path], "torch.Tensor"]
"""path of a prior file or a reference video -> prior vector."""


@dataclass
class EmotionSchedule:
    """Keyframes ``(time in seconds, prior)``, sorted by time; a single keyframe is a constant."""

    keyframes: list[tuple[float, torch.Tensor]]
    transition: float = 0.5

    def per_frame(self, num_frames: int, fps: float) -> torch.Tensor:
        """One prior per frame, (num_frames, prior_dim), crossfading over ``transition`` seconds."""
        import torch

        times = torch.arange(num_frames, dtype=torch.float64) / fps
        priors = torch.stack([p.float().reshape(-1) for _, p in self.keyframes])
        out = priors[0].expand(num_frames, -1).clone()
        half = max(self.transition, 1e-6) / 2
        for k in range(1, len(self.keyframes)):
            boundary = self.keyframes[k][0]
            x = ((times - (boundary - half)) / (2 * half)).clamp(0, 1)
            blend = (x * x * (3 - 2 * x)).float()[:, None]  # smoothstep
            out = out * (1 - blend) + priors[k] * blend
        return out


def _parse_single(text: str, named: PriorResolver, from_file: FileResolver) -> torch.Tensor:
    text = text.strip()
    if not text:
        raise InputError("empty emotion condition")
    path = Path(text)
    if path.suffix.lower() in VIDEO_SUFFIXES | PRIOR_SUFFIXES:
        if not path.is_file():
            raise InputError(f"emotion file {text}: no such file")
        return from_file(path)
    if "+" in text or "*" in text:
        terms = [t.strip() for t in text.split("+")]
        weights, priors = [], []
        for term in terms:
            m = _TERM.match(term)
            if not m:
                raise InputError(f"malformed emotion mix {text!r}: expected e.g. 'happy*0.7+surprised*0.3'")
            weights.append(float(m["weight"]) if m["weight"] else 1.0)
            priors.append(named(m["name"].lower(), 1.0))
        total = sum(weights)
        if not math.isfinite(total):  # also a weight of 1e999 (inf), which would make the prior nan
            raise InputError(f"emotion mix {text!r}: weights must be finite and add up to a finite number")
        if total <= 0:
            raise InputError(f"emotion mix {text!r}: weights must add up to more than 0")
        return sum(w / total * p for w, p in zip(weights, priors))
    name, _, strength = text.partition(":")
    if strength:
        try:
            value = float(strength)
        except ValueError:
            raise InputError(f"malformed emotion {text!r}: strength must be a number, as in 'happy:0.6'") from None
        if not math.isfinite(value) or not 0.0 <= value <= 3.0:
            raise InputError(f"emotion strength {value:g} out of range 0..3")
    else:
        value = 1.0
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", name):
        raise InputError(f"malformed emotion {text!r}: expected a label such as 'happy' or 'happy:0.6'")
    return named(name.lower(), value)


def parse_emotion(spec: str, named: PriorResolver, from_file: FileResolver, transition: float = 0.5) -> EmotionSchedule:
    """Parse an ``--emotion`` value into a schedule of priors (see the module docstring)."""
    spec = spec.strip()
    if not spec:
        raise InputError("empty emotion condition")
    items = [item.strip() for item in spec.split(",")]
    first_is_time = re.match(rf"^{_NUMBER}\s*:", items[0]) is not None
    if len(items) == 1 and not first_is_time:
        return EmotionSchedule([(0.0, _parse_single(items[0], named, from_file))], transition)
    keyframes: list[tuple[float, torch.Tensor]] = []
    for item in items:
        m = re.match(rf"^(?P<time>{_NUMBER})\s*:(?P<rest>.+)$", item)
        if not m:
            raise InputError(f"malformed emotion schedule item {item!r}: expected 'seconds:emotion', e.g. '2.5:happy'")
        t = float(m["time"])
        if not math.isfinite(t):
            raise InputError(f"emotion schedule time {m['time']!r} is not a finite number of seconds")
        if keyframes and t <= keyframes[-1][0]:
            raise InputError(f"emotion schedule times must increase: {t:g} after {keyframes[-1][0]:g}")
        keyframes.append((t, _parse_single(m["rest"], named, from_file)))
    if keyframes[0][0] != 0.0:
        # Before the first keyframe, hold the first condition.
        keyframes[0] = (0.0, keyframes[0][1])
    return EmotionSchedule(keyframes, transition)


def check_emotion_grammar(spec: str, transition: float = 0.5) -> None:
    """An :class:`InputError` if ``spec`` is not an ``--emotion`` value, checked without torch or a
    model: the grammar, strengths, weights, times and that named files exist (whether a label is one
    of the model's emotions is the model's to say)."""
    parse_emotion(spec, lambda name, strength: 0.0, lambda path: 0.0, transition=transition)
