"""Example inputs from the synthetic world: a portrait image and a speech recording of one identity."""

from __future__ import annotations

import os
from pathlib import Path

import cv2

from ..utils.atomic import write_bytes
from .expressions import emotion_expression
from .face import render_face
from .identity import Identity
from .speech import SENTENCES, emotion_prosody, synthesize, write_wav


def write_identity_example(
    identity: Identity,
    portrait_path: str | os.PathLike,
    speech_path: str | os.PathLike,
    text: str | None = None,
    emotion: str = "neutral",
    level: int = 1,
    size: int = 256,
) -> tuple[Path, Path]:
    """Write ``identity``'s frontal portrait (PNG, ``size`` px, its resting face) and it speaking ``text`` (16 kHz WAV).

    ``emotion``/``level`` colour the voice's prosody only; the portrait keeps a neutral face, as
    a reference image for generation should. Both files are written atomically.
    """
    face = render_face(identity, emotion_expression("neutral", 1, identity.habits), (0.0, 0.0, 0.0), size)
    ok, png = cv2.imencode(".png", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB image
        raise RuntimeError("PNG encoding failed")
    write_bytes(portrait_path, png.tobytes())
    audio = synthesize(text or SENTENCES[identity.index % len(SENTENCES)], identity.voice, emotion_prosody(emotion, level))
    write_wav(speech_path, audio)
    return Path(portrait_path), Path(speech_path)


__all__ = ["write_identity_example"]
