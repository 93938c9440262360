"""The synthetic talking-face world: parametric faces that speak with espeak-ng and show emotions.

It stands in for MEAD and HDTF (which cannot be fetched here): ``generate_dataset`` writes
MEAD-like emotional clips and HDTF-like neutral talk, with per-frame expression
coefficients, head pose and face boxes beside every video. Modules, one per concern:

- ``expressions``: the 12 coefficients (:data:`EXPRESSION_NAMES`), emotion targets, habits;
- ``face``: identity appearance and the anti-aliased renderer (:func:`render_face`);
- ``speech``: espeak-ng voices, emotional prosody, the sentence list;
- ``motion``: audio-driven mouth, blinks, sway and nods;
- ``identity``: appearance + voice + habits drawn from a seed (:func:`sample_identity`);
- ``dataset``: presets, splits and the parallel, deterministic, resumable writer;
- ``examples``: a portrait PNG and a speech WAV of one identity.
"""

from .dataset import PRESETS, Preset, SynthesisSummary, generate_dataset
from .expressions import (
    EMOTION_TARGETS,
    EXPRESSION_NAMES,
    LEVEL_INTENSITY,
    POSE_NAMES,
    Habits,
    emotion_expression,
    emotion_levels,
)
from .face import Appearance, FaceRenderer, face_box, render_face
from .identity import Identity, sample_identity
from .examples import write_identity_example
from .motion import FPS, animate, audio_frames
from .speech import SENTENCES, Voice, emotion_prosody, synthesize

__all__ = [
    "EMOTION_TARGETS",
    "EXPRESSION_NAMES",
    "FPS",
    "LEVEL_INTENSITY",
    "POSE_NAMES",
    "PRESETS",
    "SENTENCES",
    "Appearance",
    "FaceRenderer",
    "Habits",
    "Identity",
    "Preset",
    "SynthesisSummary",
    "Voice",
    "animate",
    "audio_frames",
    "emotion_expression",
    "emotion_levels",
    "emotion_prosody",
    "face_box",
    "generate_dataset",
    "render_face",
    "sample_identity",
    "synthesize",
    "write_identity_example",
]
