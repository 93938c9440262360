"""Clips of a synthetic-world dataset folder (``dicetalk synth`` output) as the judges read them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import EMOTIONS
from ..errors import InputError
from ..utils.media import read_video
from .features import FPS, face_images, mouth_colour_crops, mouth_crops, resample_frames

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class WorldClip:
    """One clip of a dataset folder: ``stem`` + ``.mp4`` / ``.json`` / ``.safetensors``."""

    stem: Path
    relative: str  # e.g. "mead/mead_020/happy/level_3/001"
    dataset: str  # "mead" or "hdtf"
    identity: str
    emotion: str | None
    level: int | None
    split: str

    @property
    def video(self) -> Path:
        return self.stem.with_suffix(".mp4")


def read_splits(dataset_dir: str | os.PathLike) -> dict[str, list[str]]:
    """``splits.json`` of a dataset folder: identity names per split."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / "splits.json"
    if not dataset_dir.is_dir():
        raise InputError(f"{dataset_dir}: no such dataset folder")
    if not path.is_file():
        raise InputError(f"{dataset_dir}: not a dataset folder (no splits.json); make one with 'dicetalk synth'")
    try:
        splits = json.loads(path.read_text())
        return {s: list(splits.get(s, [])) for s in SPLITS}
    except (ValueError, AttributeError, TypeError):
        raise InputError(f"{path}: not a valid splits file") from None


def clip_from_json(dataset_dir: Path, json_path: Path, split_of: dict[str, str] | None = None) -> WorldClip:
    try:
        meta = json.loads(json_path.read_text())
        identity = str(meta["identity"])
        emotion = meta.get("emotion")
        level = meta.get("level")
        dataset = str(meta.get("dataset") or json_path.relative_to(dataset_dir).parts[0])
    except (ValueError, KeyError, TypeError, OSError):
        raise InputError(f"{json_path}: not a clip description of a synthetic-world dataset") from None
    if emotion is not None and emotion not in EMOTIONS:
        raise InputError(f"{json_path}: unknown emotion {emotion!r}")
    split = (split_of or {}).get(identity) or str(meta.get("split", ""))
    stem = json_path.with_suffix("")
    return WorldClip(stem, stem.relative_to(dataset_dir).as_posix(), dataset, identity, emotion, None if level is None else int(level), split)


def list_clips(
    dataset_dir: str | os.PathLike,
    splits: tuple[str, ...] | None = ("train",),
    datasets: tuple[str, ...] = ("mead", "hdtf"),
) -> list[WorldClip]:
    """Complete clips (json + mp4) of the identities in ``splits`` (all when None), in path order."""
    dataset_dir = Path(dataset_dir)
    by_split = read_splits(dataset_dir)
    split_of = {name: s for s, names in by_split.items() for name in names}
    patterns = {"mead": "mead/*/*/level_*/*.json", "hdtf": "hdtf/*/*.json"}
    clips = []
    for dataset in datasets:
        for json_path in sorted(dataset_dir.glob(patterns[dataset])):
            if json_path.name.startswith(".") or not json_path.with_suffix(".mp4").is_file():
                continue
            clip = clip_from_json(dataset_dir, json_path, split_of)
            if splits is None or clip.split in splits:
                clips.append(clip)
    return clips


def find_clip(dataset_dir: str | os.PathLike, relative: str) -> WorldClip:
    """The clip named by a path relative to the dataset folder (suffix optional)."""
    dataset_dir = Path(dataset_dir)
    relative = str(relative).strip().removesuffix(".mp4").removesuffix(".json").strip("/")
    stem = (dataset_dir / relative).resolve()
    if dataset_dir.resolve() not in stem.parents:
        raise InputError(f"source {relative!r} is outside the reference folder {dataset_dir}")
    json_path = stem.with_suffix(".json")
    if not json_path.is_file() or not stem.with_suffix(".mp4").is_file():
        raise InputError(f"source clip {relative!r} not found in {dataset_dir} (needs {relative}.mp4 and {relative}.json)")
    split_of = {}
    if (dataset_dir / "splits.json").is_file():
        split_of = {name: s for s, names in read_splits(dataset_dir).items() for name in names}
    return clip_from_json(dataset_dir.resolve(), json_path, split_of)


@dataclass
class ClipArrays:
    """What the judges need from one video: 64 px faces, mouth crops (grey and colour) and the speech."""

    faces: np.ndarray  # (T, 64, 64, 3) uint8
    mouths: np.ndarray  # (T, 32, 48) uint8
    audio: np.ndarray | None  # 16 kHz mono float32
    fps: float
    source_size: tuple[int, int]  # (height, width) of the decoded frames
    lips: np.ndarray | None = None  # (T, 32, 48, 3) uint8 colour lower-face crops (the mouth judge's input)

    @property
    def num_frames(self) -> int:
        return len(self.faces)


def load_video_arrays(path: str | os.PathLike, with_audio: bool = True, max_frames: int | None = None) -> ClipArrays:
    """Decode a video (any resolution, resampled to 25 fps) into judge inputs."""
    clip = read_video(path, max_frames=max_frames, with_audio=with_audio)
    frames = resample_frames(clip.frames, clip.fps, FPS)
    return ClipArrays(face_images(frames), mouth_crops(frames), clip.audio, clip.fps, tuple(clip.frames.shape[1:3]), mouth_colour_crops(frames))


def load_annotations(clip: WorldClip) -> dict[str, np.ndarray]:
    """Per-frame ``expression`` (T, 12), ``pose`` (T, 3) and ``face_box`` (T, 4) of a world clip."""
    from safetensors.numpy import load_file

    path = clip.stem.with_suffix(".safetensors")
    try:
        return load_file(str(path))
    except Exception:
        raise InputError(f"{path}: missing or unreadable annotations") from None
