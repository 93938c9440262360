"""Identities of the synthetic world: appearance + voice + expression habits, drawn from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .expressions import Habits, sample_habits
from .face import Appearance, sample_appearance
from .speech import Voice, sample_voice

# Separate random streams, so that changing how one part is drawn leaves the others as they were.
_APPEARANCE, _VOICE, _HABITS = 1, 2, 3


@dataclass(frozen=True)
class Identity:
    name: str
    index: int
    appearance: Appearance
    voice: Voice
    habits: Habits

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "index": self.index,
            "appearance": self.appearance.to_json(),
            "voice": self.voice.to_json(),
            "habits": self.habits.to_json(),
        }


def identity_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 0, int(index), int(stream)])


def sample_identity(seed: int, index: int, name: str | None = None) -> Identity:
    """Identity number ``index`` of the world drawn from ``seed``; the same arguments give the same person."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed}, {index}")
    return Identity(
        name=name or f"identity_{index:05d}",
        index=int(index),
        appearance=sample_appearance(identity_rng(seed, index, _APPEARANCE)),
        voice=sample_voice(identity_rng(seed, index, _VOICE)),
        habits=sample_habits(identity_rng(seed, index, _HABITS)),
    )
