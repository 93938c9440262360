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


SMALL_FRAME = 256  # frames up to this size (the larger side, px) are encoded at SMALL_FRAME_CRF
SMALL_FRAME_CRF = 10
DEFAULT_CRF = 18


def default_crf(height: int, width: int) -> int:
    """H.264 quality for a frame size: 18 (visually lossless) in general, 10 for small frames.

    In a 64-px face the mouth is a few pixels wide, and at crf 18 x264 smears exactly those
    pixels (the lip-sync judge's confidence on ground-truth clips drops from 0.88 to 0.85); at
    these sizes the higher quality costs a few kilobytes.
    """
    return SMALL_FRAME_CRF if max(height, width) <= SMALL_FRAME else DEFAULT_CRF


class VideoWriter:
    """Stream RGB frames into an H.264 mp4 (AAC speech track optional), atomically.

    Use as a context manager: frames are encoded as they arrive (memory stays bounded), the
    audio is muxed at the end, and the file appears under its name only if everything succeeded.
    ``crf``: the H.264 quality (None: :func:`default_crf` of the frame size).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        audio: np.ndarray | None = None,
        sample_rate: int = SPEECH_SAMPLE_RATE,
        crf: int | None = None,
    ):
        self.path = Path(path)
        self.fps = fps
        self.audio = audio
        self.sample_rate = sample_rate
        self.crf = crf
        self._atomic = None
        self._container = None
        self._vstream = None
        self._astream = None
        self._finished = False
        self.num_frames = 0

    def __enter__(self) -> "VideoWriter":
        import av

        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._container = av.open(str(tmp), mode="w", format="mp4")
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)  # removes the temporary file
            raise
        return self

    def write(self, frames: np.ndarray) -> None:
        """Append (T, H, W, 3) or (H, W, 3) uint8 RGB frames."""
        import av

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        h, w = frames.shape[1:3]
        if h % 2 or w % 2:  # yuv420p needs even sizes
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self._vstream is None:
            self._vstream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._vstream.width, self._vstream.height = frames.shape[2], frames.shape[1]
            self._vstream.pix_fmt = "yuv420p"
            crf = default_crf(*frames.shape[1:3]) if self.crf is None else self.crf
            self._vstream.options = {"crf": str(crf), "preset": "veryfast"}
            if self.audio is not None:  # every stream must exist before the first packet is muxed
                self._astream = self._container.add_stream("aac", rate=AAC_SAMPLE_RATE)
                self._astream.layout = "mono"
                self._astream.options = {"aac_coder": "fast"}  # ~3.5x faster than the default coder for speech
        for frame in frames:
            for packet in self._vstream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)
        self.num_frames += len(frames)

    def finish(self) -> None:
        """Flush the video and mux the audio (mono float32) as AAC at 48 kHz."""
        import av

        if self._vstream is None:
            raise ValueError("no frames were written")
        for packet in self._vstream.encode(None):
            self._container.mux(packet)
        if self._astream is not None:
            # AAC at 48 kHz: its 1024-sample frames (21 ms) keep the padding under one video frame.
            astream = self._astream
            samples = np.clip(np.asarray(self.audio, np.float32).reshape(-1), -1.0, 1.0)
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=AAC_SAMPLE_RATE, frame_size=1024)
            src = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
            src.sample_rate = self.sample_rate
            src.pts = 0
            src.time_base = Fraction(1, self.sample_rate)
            for af in resampler.resample(src) + resampler.resample(None):
                for packet in astream.encode(af):
                    self._container.mux(packet)
            for packet in astream.encode(None):
                self._container.mux(packet)
        self._finished = True

    def __exit__(self, exc_type, exc, tb) -> None:
        # The file is renamed into place only if finish() ran and closing the container (which writes
        # the index and flushes the last bytes) succeeded too: a failed close, e.g. a full disk, must
        # leave the earlier file, never a truncated one.
        error = exc
        try:
            self._container.close()
        except BaseException as close_error:  # noqa: BLE001 - re-raised below through the atomic block
            error = error or close_error
        if error is None and not self._finished:
            error = RuntimeError("VideoWriter closed before finish(): no file written")
        if error is None:
            self._atomic.__exit__(None, None, None)
            return
        # Removes the temporary file; a full disk comes back as one line (DiskFullError) instead.
        self._atomic.__exit__(type(error), error, error.__traceback__)
        if exc is None:
            raise error  # the block's own exception propagates by itself


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = SPEECH_SAMPLE_RATE,
    crf: int | None = None,
) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames as H.264 mp4, with an AAC track when ``audio`` is given.

    Odd frame sizes are padded by one pixel (yuv420p needs even sizes). Atomic: a failure leaves
    no file behind.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    with VideoWriter(path, fps, audio, sample_rate, crf) as writer:
        writer.write(frames)
        writer.finish()
    return Path(path)


def write_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SPEECH_SAMPLE_RATE) -> Path:
    """Write float samples, (N,) mono or (N, C), as 16-bit PCM WAV, atomically."""
    import av

    samples = np.asarray(samples, np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    channels = samples.shape[1]
    layout = {1: "mono", 2: "stereo"}.get(channels)
    if layout is None:
        raise ValueError(f"only mono or stereo audio can be written, got {channels} channels")
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype(np.int16)
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="wav") as out:
            stream = out.add_stream("pcm_s16le", rate=sample_rate)
            stream.layout = layout
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = 0
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
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
