"""What the judges see: whole-frame face images, lower-face (mouth) crops and log-mel audio.

Frames. World frames are portrait crops with the face centred (and so are the frames the
generator makes from them), so the judges never detect a face: every frame is centre-cropped
to a square, then

- ``face_images``: the whole square resized to :data:`FACE_SIZE` (64) px, RGB in [0, 1] —
  the input of the emotion and identity judges;
- ``mouth_crops``: the fixed lower-face box :data:`MOUTH_BOX` (relative to the square, chin and
  mouth with a margin for head sway and jaw drop) resized to :data:`MOUTH_SIZE` (32 x 48),
  grey levels in [0, 1] — the input of the lip-sync judge's mouth tower;
- ``mouth_colour_crops``: the same box in colour (32 x 48 x 3) — the input of the mouth-shape
  regressor, which tells lips from skin by their colour.

The same code serves ground-truth clips of any preset size (64 to 256 px) and generated videos
of any resolution, since everything is relative to the frame.

Audio. 16 kHz mono, log-mel with 40 bands (60 Hz to 7.6 kHz, HTK mel scale, Hann window of 25 ms,
hop 10 ms), computed here with numpy. Mel frame ``m`` is centred on ``(m + 0.5) * 10`` ms, so
video frame ``t`` at 25 fps owns exactly mel frames ``4t .. 4t + 3``; :func:`frame_mels` returns
them grouped per video frame.
"""

from __future__ import annotations

import functools

import numpy as np

from ..utils.media import SPEECH_SAMPLE_RATE

FPS = 25
FACE_SIZE = 64
MOUTH_SIZE = (32, 48)  # (height, width)
MOUTH_BOX = (0.23, 0.54, 0.77, 0.90)  # x0, y0, x1, y1 as fractions of the square frame
SAMPLES_PER_FRAME = SPEECH_SAMPLE_RATE // FPS  # 640
MEL_HOP = 160  # 10 ms
MELS_PER_FRAME = SAMPLES_PER_FRAME // MEL_HOP  # 4
MEL_WINDOW = 400  # 25 ms
N_FFT = 512
N_MELS = 40
MEL_FMIN, MEL_FMAX = 60.0, 7600.0
LOG_FLOOR = 1e-6


def square(frames: np.ndarray) -> np.ndarray:
    """Centre-crop (T, H, W, 3) frames to (T, S, S, 3) with S = min(H, W)."""
    frames = np.asarray(frames)
    h, w = frames.shape[1:3]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return frames[:, y : y + s, x : x + s]


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    shrink = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def face_images(frames: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, size, size, 3) uint8: the whole (square) frame, resized."""
    frames = square(frames)
    if frames.shape[1] == size:
        return np.ascontiguousarray(frames, dtype=np.uint8)
    return np.stack([_resize(f, size, size) for f in frames]).astype(np.uint8)


def mouth_crops(frames: np.ndarray, size: tuple[int, int] = MOUTH_SIZE, box: tuple[float, ...] = MOUTH_BOX) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, h, w) uint8 grey lower-face crops (see :data:`MOUTH_BOX`)."""
    import cv2

    frames = square(frames)
    s = frames.shape[1]
    x0, y0, x1, y1 = (int(round(v * s)) for v in box)
    out = np.empty((len(frames), *size), np.uint8)
    for i, frame in enumerate(frames):
        grey = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
        out[i] = _resize(grey, size[1], size[0])
    return out


def mouth_colour_crops(frames: np.ndarray, size: tuple[int, int] = MOUTH_SIZE, box: tuple[float, ...] = MOUTH_BOX) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, h, w, 3) uint8 RGB lower-face crops (the box of :func:`mouth_crops`)."""
    frames = square(frames)
    s = frames.shape[1]
    x0, y0, x1, y1 = (int(round(v * s)) for v in box)
    out = np.empty((len(frames), *size, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = _resize(np.ascontiguousarray(frame[y0:y1, x0:x1]), size[1], size[0])
    return out


def resample_frames(frames: np.ndarray, fps: float, target_fps: float = FPS) -> np.ndarray:
    """Nearest-frame resampling of a video to ``target_fps`` (identity when the rates match)."""
    if abs(fps - target_fps) < 1e-3 or len(frames) == 0:
        return frames
    duration = len(frames) / fps
    count = max(1, int(round(duration * target_fps)))
    index = np.minimum(np.floor((np.arange(count) + 0.5) * fps / target_fps).astype(np.int64), len(frames) - 1)
    return frames[index]


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=4)
def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SPEECH_SAMPLE_RATE, fmin: float = MEL_FMIN, fmax: float = MEL_FMAX) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the HTK mel scale, unit peak."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (centre - lower)
    falling = (upper - freqs[None]) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(N,) float audio at 16 kHz -> (M, 40) natural-log mel energies, M = ceil(N / 160).

    Frame ``m`` is a 25 ms Hann window centred on sample ``m * 160 + 80``; outside the signal is silence.
    """
    audio = np.asarray(audio, np.float32).reshape(-1)
    count = -(-audio.size // MEL_HOP)
    left = MEL_WINDOW // 2 - MEL_HOP // 2  # 120: centres the first window on sample 80
    padded = np.pad(audio, (left, count * MEL_HOP - audio.size + MEL_WINDOW))
    index = np.arange(count)[:, None] * MEL_HOP + np.arange(MEL_WINDOW)[None, :]
    window = np.hanning(MEL_WINDOW + 2)[1:-1].astype(np.float32)  # periodic-like, no zero ends
    spectrum = np.fft.rfft(padded[index] * window, n=N_FFT, axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return np.log(power @ mel_filterbank().T + LOG_FLOOR).astype(np.float32)


def frame_mels(audio: np.ndarray, num_frames: int, pad_frames: int = 0) -> np.ndarray:
    """Log-mel grouped per 25 fps video frame: (num_frames + 2 * pad_frames, 4, 40) float32.

    The audio is cut or padded with silence to exactly ``num_frames`` video frames, then
    ``pad_frames`` frames of silence are added on both sides (room for offsets).
    """
    audio = np.asarray(audio, np.float32).reshape(-1)[: num_frames * SAMPLES_PER_FRAME]
    audio = np.pad(audio, (pad_frames * SAMPLES_PER_FRAME, (num_frames + pad_frames) * SAMPLES_PER_FRAME - audio.size))
    mel = log_mel(audio)[: (num_frames + 2 * pad_frames) * MELS_PER_FRAME]
    return mel.reshape(num_frames + 2 * pad_frames, MELS_PER_FRAME, N_MELS)


def shift_audio(audio: np.ndarray, seconds: float, sample_rate: int = SPEECH_SAMPLE_RATE) -> np.ndarray:
    """Delay (seconds > 0) or advance (< 0) a signal, keeping its length: silence fills the gap."""
    audio = np.asarray(audio, np.float32)
    n = int(round(abs(seconds) * sample_rate))
    if n == 0:
        return audio.copy()
    if n >= audio.size:
        return np.zeros_like(audio)
    if seconds > 0:
        return np.concatenate([np.zeros(n, np.float32), audio[:-n]])
    return np.concatenate([audio[n:], np.zeros(n, np.float32)])
