"""The MEAD emotion vocabulary shared by the synthetic world, the loaders, the models and the judges.

Class indices of the emotion discriminator (paper Eq. 16): 0 is neutral, then for each of the
seven other emotions (in :data:`EMOTIONS` order) its levels 1, 2, 3 — 22 classes in all.
"""

from __future__ import annotations

from . import EMOTIONS

NON_NEUTRAL = tuple(e for e in EMOTIONS if e != "neutral")
NUM_LEVELS = 3
NUM_CLASSES = 1 + len(NON_NEUTRAL) * NUM_LEVELS  # 22
EASY_EMOTIONS = ("neutral", "happy", "surprised", "angry")
"""The four emotions of the paper's Emo-Score."""


def emotion_index(emotion: str) -> int:
    """Index of an emotion name in :data:`EMOTIONS` (raises ``ValueError`` for unknown names)."""
    try:
        return EMOTIONS.index(emotion)
    except ValueError:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}") from None


def class_index(emotion: str, level: int) -> int:
    """Discriminator class of (emotion, intensity level 1..3); neutral is class 0 whatever the level."""
    emotion_index(emotion)
    if emotion == "neutral":
        return 0
    if not 1 <= level <= NUM_LEVELS:
        raise ValueError(f"level must be 1..{NUM_LEVELS}, got {level}")
    return 1 + NON_NEUTRAL.index(emotion) * NUM_LEVELS + (level - 1)
