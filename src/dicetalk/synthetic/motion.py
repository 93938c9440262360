"""Motion of the synthetic world, frame by frame at 25 fps.

The mouth follows the speech (short-time energy opens the jaw, a low-frequency-heavy
spectrum rounds the lips), on top of the emotion's held expression, which drifts slowly.
Eyes blink at random; the head sways slowly and nods on speech onsets. Every random draw
comes from the generator passed in, so a clip's motion depends only on its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..utils.media import SPEECH_SAMPLE_RATE
from .expressions import EMOTION_TARGETS, EXPRESSION_INDEX, LEVEL_INTENSITY, NUM_EXPRESSION, Habits, clip_expression

FPS = 25
JAW, ROUND, EYE_OPEN = EXPRESSION_INDEX["jaw_drop"], EXPRESSION_INDEX["lip_round"], EXPRESSION_INDEX["eye_open"]

# Loudness (dBFS of a frame) mapped onto the jaw: silence keeps it shut, loud vowels open it.
SILENT_DB = -45.0
LOUD_DB = -14.0
_BLINK_SHAPE = np.array([0.55, 1.0, 0.85, 0.45, 0.15])  # eyelid closure over 5 frames (200 ms)

# Emotions carry a posture too: sadness hangs the head, surprise lifts it, contempt tilts it.
EMOTION_POSTURE = {
    "angry": (0.0, 0.05, 0.0),
    "contempt": (0.05, -0.03, 0.05),
    "disgusted": (-0.04, -0.03, -0.02),
    "fear": (0.0, -0.04, 0.0),
    "happy": (0.0, -0.02, 0.03),
    "neutral": (0.0, 0.0, 0.0),
    "sad": (0.0, 0.1, -0.02),
    "surprised": (0.0, -0.07, 0.0),
}
"""Mean head pose (yaw, pitch, roll; radians) of each emotion at full intensity."""


def emotion_posture(emotion: str | None, level: int | None = 1) -> np.ndarray:
    """(3,) float64 the head pose ``emotion`` adds at MEAD ``level`` (none for unlabelled talk)."""
    if emotion not in EMOTION_POSTURE:
        return np.zeros(3)
    return np.asarray(EMOTION_POSTURE[emotion]) * LEVEL_INTENSITY[level or 1]


@dataclass
class AudioFrames:
    """Per-video-frame descriptors of a speech signal."""

    rms: np.ndarray  # (T,) root-mean-square amplitude
    loudness: np.ndarray  # (T,) 0 (silence) .. 1 (loud), from dBFS
    low_ratio: np.ndarray  # (T,) share of 100..4000 Hz energy below 900 Hz (rounded vowels are low)


def audio_frames(audio: np.ndarray, num_frames: int, fps: float = FPS, sample_rate: int = SPEECH_SAMPLE_RATE) -> AudioFrames:
    """Analyse a 64 ms Hann window centred on each video frame."""
    hop = sample_rate / fps
    window = 1024
    padded = np.pad(np.asarray(audio, np.float32), (window, window))
    centres = (np.arange(num_frames) * hop + hop / 2).astype(np.int64) + window
    index = centres[:, None] + np.arange(-window // 2, window // 2)[None, :]
    taper = np.hanning(window).astype(np.float32)
    segments = padded[index] * taper
    rms = np.sqrt((segments**2).mean(axis=1) / (taper**2).mean())
    power = np.abs(np.fft.rfft(segments, axis=1)) ** 2
    freqs = np.fft.rfftfreq(window, 1.0 / sample_rate)
    band = (freqs >= 100) & (freqs < 4000)
    low = (freqs >= 100) & (freqs < 900)
    low_ratio = power[:, low].sum(axis=1) / (power[:, band].sum(axis=1) + 1e-12)
    db = 20 * np.log10(rms + 1e-9)
    loudness = np.clip((db - SILENT_DB) / (LOUD_DB - SILENT_DB), 0.0, 1.0)
    return AudioFrames(rms.astype(np.float32), loudness.astype(np.float32), low_ratio.astype(np.float32))


def smooth_noise(rng: np.random.Generator, num_frames: int, channels: int, low_hz: float = 0.05, high_hz: float = 0.4, fps: float = FPS) -> np.ndarray:
    """(T, channels) slow random wandering in about [-1, 1]: a few sinusoids of random frequency and phase."""
    t = np.arange(num_frames) / fps
    waves = 3
    freq = rng.uniform(low_hz, high_hz, (channels, waves))
    phase = rng.uniform(0, 2 * np.pi, (channels, waves))
    weight = rng.uniform(0.5, 1.0, (channels, waves))
    weight /= weight.sum(axis=1, keepdims=True)
    return np.einsum("cw,tcw->tc", weight, np.sin(2 * np.pi * freq[None] * t[:, None, None] + phase[None]))


def held_expression(base: np.ndarray, num_frames: int, liveliness: float, rng: np.random.Generator) -> np.ndarray:
    """(T, 12) an expression held for the clip, drifting slowly (more on its active coefficients)."""
    noise = smooth_noise(rng, num_frames, NUM_EXPRESSION)
    return base[None] + liveliness * (0.3 + 0.6 * np.abs(base))[None] * noise


def conversational_expression(habits: Habits, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 12) an unlabelled talker's face: resting habits plus faint, slowly changing affect."""
    # Mild smiles, raised brows and frowns come and go; their weights never reach a clear emotion.
    moods = np.stack([EMOTION_TARGETS["happy"], EMOTION_TARGETS["surprised"] * np.float32(0.5), EMOTION_TARGETS["sad"] * np.float32(0.5)])
    weights = np.clip(smooth_noise(rng, num_frames, len(moods), 0.03, 0.15), 0.0, None) * np.array([0.35, 0.25, 0.2])
    base = habits.offset[None] + weights @ (moods * habits.gain[None])
    return base + habits.liveliness * 0.4 * smooth_noise(rng, num_frames, NUM_EXPRESSION)


def speech_mouth(frames: AudioFrames, habits: Habits) -> tuple[np.ndarray, np.ndarray]:
    """(jaw_drop, lip_round) tracks of the speech: energy opens the jaw, low spectra round the lips."""
    jaw = habits.articulation * frames.loudness**1.2
    voiced = np.clip(frames.loudness * 3.0, 0.0, 1.0)
    rounding = habits.rounding * voiced * np.clip((frames.low_ratio - 0.72) / 0.25, 0.0, 1.0)  # voiced speech sits near 0.65
    return jaw.astype(np.float32), rounding.astype(np.float32)


def blink_track(num_frames: int, mean_interval: float, rng: np.random.Generator, fps: float = FPS) -> np.ndarray:
    """(T,) eyelid closure 0..1: blinks at random, on average every ``mean_interval`` seconds."""
    closure = np.zeros(num_frames, np.float32)
    t = rng.uniform(0.2, 1.0) * mean_interval
    while True:
        start = int(t * fps)
        if start >= num_frames:
            return closure
        span = min(len(_BLINK_SHAPE), num_frames - start)
        closure[start : start + span] = np.maximum(closure[start : start + span], _BLINK_SHAPE[:span])
        t += max(0.4, rng.exponential(mean_interval))


def head_pose(frames: AudioFrames, habits: Habits, rng: np.random.Generator, posture=(0.0, 0.0, 0.0), fps: float = FPS) -> np.ndarray:
    """(T, 3) yaw, pitch, roll in radians: slow sway plus small downward nods on speech onsets."""
    num_frames = frames.loudness.size
    sway = smooth_noise(rng, num_frames, 3, 0.08, 0.5) * habits.sway * np.array([1.0, 0.5, 0.6])
    pose = np.asarray(posture, np.float64)[None] + sway
    envelope = np.convolve(frames.loudness, np.ones(3) / 3, mode="same")
    nod = np.sin(np.linspace(0, np.pi, int(0.4 * fps)))  # a 0.4 s dip of the chin
    last = -fps
    for t in range(1, num_frames):
        rise = envelope[t] - envelope[max(0, t - 5) : t].min()
        if rise > 0.35 and t - last >= fps // 2:  # a new phrase starts: nod, at most twice a second
            span = min(nod.size, num_frames - t)
            pose[t : t + span, 1] += habits.nod * min(1.0, rise * 1.5) * nod[:span]
            last = t
    return pose.astype(np.float32)


def animate(
    audio: np.ndarray,
    num_frames: int,
    habits: Habits,
    rng: np.random.Generator,
    emotion: str | None,
    level: int = 1,
    base_expression: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame ``expression`` (T, 12) and ``pose`` (T, 3) of a clip speaking ``audio``.

    ``emotion`` None is unlabelled conversational talk (HDTF-like); otherwise the clip holds
    ``base_expression`` (the identity's version of the emotion at ``level``).
    """
    frames = audio_frames(audio, num_frames)
    if emotion is None:
        expression = conversational_expression(habits, num_frames, rng)
    else:
        expression = held_expression(base_expression, num_frames, habits.liveliness, rng)
    posture = emotion_posture(emotion, level)
    expression = clip_expression(expression)
    # Speech moves the mouth on top of the expression, saturating instead of clipping, so an
    # already open mouth (surprise) still follows the syllables.
    jaw, rounding = speech_mouth(frames, habits)
    expression[:, JAW] += (1.0 - expression[:, JAW]) * jaw
    expression[:, ROUND] += (1.0 - expression[:, ROUND]) * rounding
    # A blink closes the eye whatever its openness: eye_open is pulled towards -1.
    closure = blink_track(num_frames, habits.blink_interval, rng)
    expression[:, EYE_OPEN] += (-1.0 - expression[:, EYE_OPEN]) * closure
    pose = head_pose(frames, habits, rng, posture)
    return expression.astype(np.float32), pose
