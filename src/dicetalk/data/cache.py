"""Decode a split once into memory-mappable arrays, so training reads frames at memory speed.

A cache folder holds ``frames.npy`` (N, S, S, 3) uint8 at the training size, ``audio.npy``
(16 kHz float32, clips end to end), ``expression.npy`` (N, E), ``face_box.npy`` (N, 4) in
[0, 1] units and ``clips.json`` (where each clip's frames and samples start). It is keyed by the
clip list and the size, built atomically, and reused by every training command.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..utils.atomic import atomic_dir
from ..utils.media import SPEECH_SAMPLE_RATE, read_video
from .index import ClipRecord
from .mapped import load_mapped

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("DICETALK_CACHE", Path.home() / ".cache" / "dicetalk"))


def _key(records: list[ClipRecord], size: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}:{size}".encode())
    for r in records:
        st = r.video.stat()
        h.update(f"{r.root.resolve()}/{r.rel}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    interp = cv2.INTER_AREA if frames.shape[1] > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])


@dataclass
class FrameCache:
    """Arrays of a cached split (memory-mapped) and where each clip lies in them."""

    folder: Path
    records: list[ClipRecord]
    frames: np.ndarray
    audio: np.ndarray
    expression: np.ndarray
    face_box: np.ndarray
    starts: np.ndarray  # (C,) first frame of each clip
    lengths: np.ndarray  # (C,) frames of each clip
    audio_starts: np.ndarray  # (C,) first sample of each clip
    has_expression: np.ndarray  # (C,) bool
    fps: float

    @property
    def size(self) -> int:
        return int(self.frames.shape[1])

    def clip_frames(self, c: int) -> slice:
        return slice(int(self.starts[c]), int(self.starts[c] + self.lengths[c]))

    def clip_audio(self, c: int, first_frame: int = 0, num_frames: int | None = None) -> np.ndarray:
        """Speech of clip ``c`` for frames ``[first_frame, first_frame + num_frames)``, zero-padded."""
        n = int(self.lengths[c]) - first_frame if num_frames is None else num_frames
        spf = SPEECH_SAMPLE_RATE / self.fps
        a0 = int(self.audio_starts[c])
        a1 = int(self.audio_starts[c + 1]) if c + 1 < len(self.audio_starts) else len(self.audio)
        lo, hi = a0 + int(round(first_frame * spf)), a0 + int(round((first_frame + n) * spf))
        out = np.zeros(hi - lo, np.float32)
        take = self.audio[lo : min(hi, a1)]
        out[: len(take)] = take
        return out


def build_frame_cache(records: list[ClipRecord], size: int, cache_dir: str | Path | None = None, progress: bool = True) -> FrameCache:
    """The cache of ``records`` at ``size`` pixels, built on first use."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = base / f"frames_{size}_{_key(records, size)}"
    if not (folder / "clips.json").is_file():
        _build(records, size, folder, progress)
    return open_frame_cache(folder, records)


def _build(records: list[ClipRecord], size: int, folder: Path, progress: bool) -> None:
    clips = []
    with atomic_dir(folder) as tmp:
        frame_parts, audio_parts, expr_parts, box_parts = [], [], [], []
        total, samples = 0, 0
        fps = None
        for rec in tqdm(records, desc=f"decoding clips to {size} px", disable=not progress, unit="clip"):
            clip = read_video(rec.video)
            fps = fps or clip.fps
            n = len(clip.frames)
            frames = _resize(clip.frames, size)
            expression, box = np.zeros((n, 0), np.float32), None
            if rec.coefficients.is_file():
                from safetensors.numpy import load_file

                coeffs = load_file(str(rec.coefficients))
                expression = coeffs["expression"][:n].astype(np.float32)
                box = coeffs["face_box"][:n].astype(np.float32) / np.float32(clip.frames.shape[2])
            if box is None:  # no boxes stored: the central region
                box = np.tile(np.array([[0.125, 0.125, 0.875, 0.875]], np.float32), (n, 1))
            audio = clip.audio if clip.audio is not None else np.zeros(int(n / clip.fps * SPEECH_SAMPLE_RATE), np.float32)
            clips.append({"rel": rec.rel, "start": total, "length": n, "audio_start": samples, "has_expression": bool(expression.shape[1])})
            frame_parts.append(frames)
            audio_parts.append(audio.astype(np.float32))
            expr_parts.append(expression)
            box_parts.append(box)
            total += n
            samples += len(audio)
        width = max(e.shape[1] for e in expr_parts)
        expr_parts = [e if e.shape[1] == width else np.zeros((len(e), width), np.float32) for e in expr_parts]
        np.save(tmp / "frames.npy", np.concatenate(frame_parts))
        np.save(tmp / "audio.npy", np.concatenate(audio_parts))
        np.save(tmp / "expression.npy", np.concatenate(expr_parts))
        np.save(tmp / "face_box.npy", np.concatenate(box_parts))
        (tmp / "clips.json").write_text(json.dumps({"version": CACHE_VERSION, "size": size, "fps": fps, "clips": clips}, indent=1))


def open_frame_cache(folder: str | Path, records: list[ClipRecord]) -> FrameCache:
    folder = Path(folder)
    meta = json.loads((folder / "clips.json").read_text())
    by_rel = {c["rel"]: c for c in meta["clips"]}
    order = [by_rel[r.rel] for r in records]
    if [c["rel"] for c in meta["clips"]] != [r.rel for r in records]:
        raise ValueError("frame cache does not hold these clips in this order")

    def load(name: str) -> np.ndarray:
        return load_mapped(folder / f"{name}.npy")

    return FrameCache(
        folder=folder,
        records=records,
        frames=load("frames"),
        audio=load("audio"),
        expression=load("expression"),
        face_box=load("face_box"),
        starts=np.array([c["start"] for c in order], np.int64),
        lengths=np.array([c["length"] for c in order], np.int64),
        audio_starts=np.array([c["audio_start"] for c in order], np.int64),
        has_expression=np.array([c["has_expression"] for c in order], bool),
        fps=float(meta["fps"]),
    )
