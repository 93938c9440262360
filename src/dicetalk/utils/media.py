"""Video and audio I/O through PyAV (no system ffmpeg needed).

Every reader turns a failure into one clear :class:`InputError`; every writer is atomic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError
from .atomic import atomic_path

SPEECH_SAMPLE_RATE = 16000
"""Sample rate of every speech signal inside the project (Whisper's rate)."""
AAC_SAMPLE_RATE = 48000


def _open(path: str | os.PathLike):
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return av.open(str(path))
    except Exception as exc:  # PyAV raises many error types for unreadable containers
        raise InputError(f"{path}: cannot be read as audio or video ({type(exc).__name__})") from None


def read_audio(path: str | os.PathLike, sample_rate: int = SPEECH_SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream of any container PyAV reads, as mono float32 at ``sample_rate``.

    ``max_seconds`` bounds the work on huge inputs: longer audio raises :class:`InputError`.
    """
    import av

    container = _open(path)
    with container:
        if not container.streams.audio:
            raise InputError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        total = 0
        limit = None if max_seconds is None else int(max_seconds * sample_rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
                if limit is not None and total > limit:
                    raise InputError(f"{path}: audio longer than the limit of {max_seconds:g} s")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{path}: corrupt audio ({type(exc).__name__})") from None
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise InputError(f"{path}: audio is empty")
    return audio


@dataclass
class VideoClip:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    fps: float
    audio: np.ndarray | None  # mono float32 at SPEECH_SAMPLE_RATE, or None


def read_video(path: str | os.PathLike, max_frames: int | None = None, with_audio: bool = True) -> VideoClip:
    """Decode RGB frames (and the speech track, resampled to 16 kHz mono) of a video file."""
    container = _open(path)
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.base_rate or 25)
        frames = []
        try:
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except Exception as exc:
            raise InputError(f"{path}: corrupt video ({type(exc).__name__})") from None
        has_audio = bool(container.streams.audio)
    if not frames:
        raise InputError(f"{path}: video has no frames")
    audio = read_audio(path) if (with_audio and has_audio) else None
    return VideoClip(np.stack(frames), fps, audio)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = SPEECH_SAMPLE_RATE,
    crf: int = 18,
) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames as H.264 mp4, with an AAC track when ``audio`` is given.

    Odd frame sizes are padded by one pixel (yuv420p needs even sizes). Atomic: a failure leaves
    no file behind.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = frames.shape[1:3]
    rate = Fraction(fps).limit_denominator(1001)
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            vstream = out.add_stream("libx264", rate=rate)
            vstream.width, vstream.height = w, h
            vstream.pix_fmt = "yuv420p"
            vstream.options = {"crf": str(crf), "preset": "veryfast"}
            astream = None
            if audio is not None:
                # AAC at 48 kHz: its 1024-sample frames (21 ms) keep the padding under one video frame.
                astream = out.add_stream("aac", rate=AAC_SAMPLE_RATE)
                astream.layout = "mono"
            for i in range(t):
                vf = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
                for packet in vstream.encode(vf):
                    out.mux(packet)
            for packet in vstream.encode(None):
                out.mux(packet)
            if astream is not None:
                samples = np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0)
                resampler = av.AudioResampler(format="fltp", layout="mono", rate=AAC_SAMPLE_RATE, frame_size=1024)
                src = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
                src.sample_rate = sample_rate
                src.pts = 0
                src.time_base = Fraction(1, sample_rate)
                for af in resampler.resample(src) + resampler.resample(None):
                    for packet in astream.encode(af):
                        out.mux(packet)
                for packet in astream.encode(None):
                    out.mux(packet)
    return path


@dataclass
class MediaInfo:
    duration: float  # seconds of the video stream (or of the audio when there is no video)
    num_frames: int
    fps: float
    has_audio: bool
    audio_duration: float


def probe(path: str | os.PathLike) -> MediaInfo:
    """Durations and streams of a media file, measured by decoding (container headers can lie)."""
    container = _open(path)
    with container:
        has_video = bool(container.streams.video)
        has_audio = bool(container.streams.audio)
        n, fps = 0, 0.0
        if has_video:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 25)
            n = sum(1 for _ in container.decode(stream))
    audio_duration = read_audio(path).size / SPEECH_SAMPLE_RATE if has_audio else 0.0
    duration = n / fps if has_video and fps else audio_duration
    return MediaInfo(duration, n, fps, has_audio, audio_duration)
