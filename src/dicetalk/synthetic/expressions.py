"""Expression coefficients, the eight MEAD emotions as targets, and each identity's habits.

The coefficients play the role of 3DMM expression coefficients: one vector per frame, saved
beside every clip and fed to the emotion embedder's visual stream. Zero is the resting face;
every coefficient lies in [0, 1] except ``eye_open``, which lies in [-1, 1] (-1 closed,
0 relaxed, 1 wide open).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import EMOTIONS

EXPRESSION_NAMES = (
    "brow_raise",
    "brow_lower",
    "eye_open",
    "lid_tension",
    "cheek_raise",
    "lip_corner_pull",
    "lip_corner_depress",
    "corner_asym",
    "lip_press",
    "nose_wrinkle",
    "jaw_drop",
    "lip_round",
)
"""The 12 expression coefficients, in the fixed order of every saved ``expression`` array."""

NUM_EXPRESSION = len(EXPRESSION_NAMES)
POSE_NAMES = ("yaw", "pitch", "roll")
"""Head pose angles in radians: yaw > 0 turns the face to the image right, pitch > 0 tilts the
chin down, roll > 0 tilts the head clockwise in the image."""

EXPRESSION_INDEX = {name: i for i, name in enumerate(EXPRESSION_NAMES)}
EXPRESSION_LOW = np.array([-1.0 if n == "eye_open" else 0.0 for n in EXPRESSION_NAMES], np.float32)
EXPRESSION_HIGH = np.ones(NUM_EXPRESSION, np.float32)

LEVEL_INTENSITY = {1: 0.4, 2: 0.7, 3: 1.0}
"""Fraction of an emotion's target shown at MEAD intensity levels 1..3."""


def expression_vector(**coefficients: float) -> np.ndarray:
    """A (12,) float32 vector from named coefficients; the rest are zero."""
    vector = np.zeros(NUM_EXPRESSION, np.float32)
    for name, value in coefficients.items():
        vector[EXPRESSION_INDEX[name]] = value
    return vector


# Targets follow the FACS descriptions of the prototypical expressions (AU1+2 brow raise,
# AU4 brow lower, AU6 cheek raise, AU12 corner pull, AU15 corner depress, AU9 nose wrinkle...),
# tuned so that no two emotions share their dominant coefficients.
EMOTION_TARGETS: dict[str, np.ndarray] = {
    "angry": expression_vector(brow_lower=1.0, lid_tension=0.85, eye_open=0.15, lip_press=0.85, nose_wrinkle=0.15),
    "contempt": expression_vector(corner_asym=1.0, lip_press=0.3, eye_open=-0.15, brow_lower=0.15),
    "disgusted": expression_vector(
        nose_wrinkle=1.0, brow_lower=0.55, lip_corner_depress=0.45, cheek_raise=0.35, eye_open=-0.35, lid_tension=0.3
    ),
    "fear": expression_vector(
        brow_raise=0.75, brow_lower=0.5, eye_open=0.85, lid_tension=0.55, lip_corner_pull=0.3, jaw_drop=0.25
    ),
    "happy": expression_vector(cheek_raise=0.9, lip_corner_pull=1.0, eye_open=-0.25, jaw_drop=0.15),
    "neutral": expression_vector(),
    "sad": expression_vector(
        brow_raise=0.45, brow_lower=0.4, lip_corner_depress=1.0, eye_open=-0.45, lip_press=0.25
    ),
    "surprised": expression_vector(brow_raise=1.0, eye_open=1.0, jaw_drop=0.45, lip_round=0.25),
}
"""Full-intensity (level 3) target of each MEAD emotion."""

assert tuple(sorted(EMOTION_TARGETS)) == tuple(sorted(EMOTIONS))


def emotion_levels(emotion: str) -> tuple[int, ...]:
    """Intensity levels recorded for an emotion: neutral only at level 1, the others at 1..3."""
    return (1,) if emotion == "neutral" else tuple(LEVEL_INTENSITY)


def clip_expression(expression: np.ndarray) -> np.ndarray:
    """Clamp coefficients (any leading shape) to their valid ranges, as float32."""
    return np.clip(expression, EXPRESSION_LOW, EXPRESSION_HIGH).astype(np.float32)


@dataclass(frozen=True)
class Habits:
    """An identity's personal way of moving its face: the volatility the emotion prior absorbs.

    ``gain`` scales each coefficient of an emotion target and ``offset`` is the resting face
    (added to every frame, neutral included). The rest shapes the motion around the expression.
    """

    gain: np.ndarray  # (12,) per-coefficient gain on emotion targets
    offset: np.ndarray  # (12,) per-coefficient resting offset
    articulation: float  # how wide the jaw opens with speech energy
    rounding: float  # how strongly the lips round on low, rounded vowels
    blink_interval: float  # mean seconds between blinks
    sway: float  # amplitude of the slow head sway, radians
    nod: float  # amplitude of the speech-onset nods, radians
    liveliness: float  # amplitude of the slow variation of a held expression

    def to_json(self) -> dict:
        return {
            "gain": [round(float(g), 4) for g in self.gain],
            "offset": [round(float(o), 4) for o in self.offset],
            "articulation": round(self.articulation, 4),
            "rounding": round(self.rounding, 4),
            "blink_interval": round(self.blink_interval, 4),
            "sway": round(self.sway, 4),
            "nod": round(self.nod, 4),
            "liveliness": round(self.liveliness, 4),
        }


def sample_habits(rng: np.random.Generator) -> Habits:
    """Draw an identity's habits: gains around 1 (x0.55..x1.6), small resting offsets."""
    gain = np.exp(rng.normal(0.0, 0.28, NUM_EXPRESSION)).clip(0.55, 1.6)
    offset = rng.normal(0.0, 0.06, NUM_EXPRESSION)
    # A resting face leans one way: a few coefficients carry a clearer personal offset.
    salient = rng.choice(NUM_EXPRESSION, size=3, replace=False)
    offset[salient] += rng.normal(0.0, 0.12, 3)
    offset[EXPRESSION_INDEX["jaw_drop"]] = abs(offset[EXPRESSION_INDEX["jaw_drop"]]) * 0.3  # mouths rest closed
    return Habits(
        gain=gain.astype(np.float32),
        offset=offset.astype(np.float32),
        articulation=float(rng.uniform(0.6, 1.0)),
        rounding=float(rng.uniform(0.5, 1.0)),
        blink_interval=float(rng.uniform(2.0, 5.0)),
        sway=float(rng.uniform(0.025, 0.07)),
        nod=float(rng.uniform(0.03, 0.07)),
        liveliness=float(rng.uniform(0.04, 0.1)),
    )


def emotion_expression(emotion: str, level: int, habits: Habits | None = None) -> np.ndarray:
    """The held (12,) expression of ``emotion`` at ``level`` (1..3), bent by an identity's habits."""
    if emotion not in EMOTION_TARGETS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}")
    if level not in LEVEL_INTENSITY:
        raise ValueError(f"level must be one of {sorted(LEVEL_INTENSITY)}, got {level}")
    target = EMOTION_TARGETS[emotion] * LEVEL_INTENSITY[level]
    if habits is not None:
        target = habits.offset + habits.gain * target
    return clip_expression(target)
