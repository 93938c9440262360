"""Reading the authors' release: where its files are, and safe, lazy access to their tensors.

Nothing here unpickles code: ``.pth``/``.bin``/``.pkl`` checkpoints go through
``torch.load(weights_only=True)`` (:func:`load_checkpoint`), safetensors through ``safe_open``
(:class:`SafetensorsSource`). Both give the same small interface (``keys()``, ``shape(k)``,
``dtype(k)``, ``get(k)``), so the planner checks names, shapes and dtypes before any tensor is read.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from .. import EMOTIONS
from ..errors import InputError, UnsafeFileError, WeightsError
from ._common import first_line

RELEASE_DIR = "DICE-Talk"
SVD_DIR = "stable-video-diffusion-img2vid-xt"
WHISPER_DIR = "whisper-tiny"
RIFE_FILE = "RIFE/flownet.pkl"
"""The frame interpolator's weights, relative to the release folder (``checkpoints/RIFE/flownet.pkl``)."""

RELEASE_FILES = {
    "unet": "unet.pth",
    "pose_guider": "pose_guider.pth",
    "audio_linear": "audio_linear.pth",
    "emo_model": "emo_model.pth",
}
"""Release group -> file name inside ``SRC/DICE-Talk``."""

EMOTION_ALIASES = {
    "anger": "angry",
    "contemptuous": "contempt",
    "disgust": "disgusted",
    "fearful": "fear",
    "afraid": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprised",
}

SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""safetensors dtype name -> torch dtype (the ones the converter reads and writes)."""

_BASE_WEIGHT_STEMS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "image_encoder": "model"}
_BASE_BIN_STEMS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "image_encoder": "pytorch_model"}


# ----------------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A flat ``name -> tensor`` state dict from a ``.pth``/``.bin``/``.pkl``, memory-mapped, never unpickling code.

    Raises :class:`UnsafeFileError` for a pickle that names anything but tensors and containers,
    :class:`WeightsError` for a file that is unreadable or not a flat state dict.
    """
    try:
        with warnings.catch_warnings():  # errors here are one line; torch's notes on pickle protocols are not
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap can only be used" not in str(exc):
                    raise
                sd = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text:
            detail = next((line.strip() for line in text.splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
            detail = f": {detail}" if detail else ""
            raise UnsafeFileError(f"{path}: refusing to load, it holds objects other than tensors{detail}") from None
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({first_line(exc)})") from None
    except (RuntimeError, OSError, EOFError, ValueError, TypeError, AttributeError, MemoryError) as exc:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({first_line(exc)})") from None
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: holds a {type(sd).__name__}, expected a state dict (name -> tensor)")
    bad = [(k, v) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        key, value = bad[0]
        raise WeightsError(
            f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor ({len(bad)} non-tensor entries of {len(sd)}); "
            "expected a flat state dict"
        )
    return sd


class CheckpointSource:
    """The tensors of a torch checkpoint (read by :func:`load_checkpoint`), optionally renamed.

    ``rename`` maps each stored name to the name the source exposes (e.g. dropping ``module.``);
    two stored names that map to the same name are a :class:`WeightsError`.
    """

    def __init__(self, path: Path, rename: Callable[[str], str] | None = None):
        self.path = path
        self.state = load_checkpoint(path)
        if rename is not None:
            renamed: dict[str, torch.Tensor] = {}
            for key, value in self.state.items():
                name = rename(key)
                if name in renamed:
                    raise WeightsError(f"{path}: two entries are named {name!r} once renamed (one of them {key!r})")
                renamed[name] = value
            self.state = renamed

    def keys(self) -> list[str]:
        return list(self.state)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.state[key].shape)

    def dtype(self, key: str) -> torch.dtype:
        return self.state[key].dtype

    def get(self, key: str) -> torch.Tensor:
        return self.state[key]


class SafetensorsSource:
    """Lazily read tensors of one safetensors file or a sharded set (``*.safetensors.index.json``)."""

    def __init__(self, path: Path):
        self.path = path
        self._handles: dict[str, Any] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, torch.dtype] = {}
        for file in self._files(path):
            self._open(file)

    @staticmethod
    def _files(path: Path) -> list[Path]:
        if not path.name.endswith(".index.json"):
            return [path]
        try:
            weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
            return sorted({path.parent / name for name in weight_map.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WeightsError(f"{path}: not a valid safetensors index ({first_line(exc)})") from None

    def _open(self, file: Path) -> None:
        from safetensors import SafetensorError, safe_open

        try:
            handle = safe_open(str(file), framework="pt")
            for key in handle.keys():
                sl = handle.get_slice(key)
                dtype = SAFETENSORS_DTYPES.get(sl.get_dtype())
                if dtype is None:
                    raise WeightsError(f"{file}: tensor {key!r} has unsupported dtype {sl.get_dtype()}")
                self._handles[key] = handle
                self._shapes[key] = tuple(sl.get_shape())
                self._dtypes[key] = dtype
        except WeightsError:
            raise
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise WeightsError(f"{file}: not a readable safetensors file ({first_line(exc)})") from None

    def keys(self) -> list[str]:
        return list(self._shapes)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def dtype(self, key: str) -> torch.dtype:
        return self._dtypes[key]

    def get(self, key: str) -> torch.Tensor:
        return self._handles[key].get_tensor(key)


def open_weights(path: Path) -> CheckpointSource | SafetensorsSource:
    """A weights file of a diffusers/transformers folder: a torch ``.bin`` or safetensors (single or sharded)."""
    return CheckpointSource(path) if path.suffix == ".bin" else SafetensorsSource(path)


def find_weights(folder: Path, kind: str, dtype: torch.dtype) -> Path | None:
    """The weights file of a diffusers/transformers folder, preferring the variant closest to ``dtype``."""
    stem, bin_stem = _BASE_WEIGHT_STEMS[kind], _BASE_BIN_STEMS[kind]
    variants = ("fp16", None) if dtype in (torch.float16, torch.bfloat16) else (None, "fp16")
    suffixes = [f".{variant}" if variant else "" for variant in variants]
    candidates = [name for v in suffixes for name in (f"{stem}{v}.safetensors", f"{stem}.safetensors.index{v}.json", f"{stem}{v}.safetensors.index.json")]
    candidates += [f"{bin_stem}{v}.bin" for v in suffixes]
    return next((folder / name for name in candidates if (folder / name).is_file()), None)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`WeightsError` if it is missing, malformed or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not valid JSON ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    return data


# -------------------------------------------------------------------------------------- layout


def release_dir(src: Path) -> Path:
    """The folder holding the four ``.pth`` files: ``SRC/DICE-Talk`` or ``SRC`` itself."""
    for candidate in (src / RELEASE_DIR, src):
        if any((candidate / f).is_file() for f in RELEASE_FILES.values()):
            return candidate
    return src / RELEASE_DIR


def emotion_name(stem: str) -> str | None:
    """The emotion a prior file's stem names (aliases such as ``Surprise`` accepted), or None."""
    name = stem.strip().lower().replace("-", "_").replace(" ", "_")
    name = EMOTION_ALIASES.get(name, name)
    return name if name in EMOTIONS else None


def find_prior_files(roots: list[tuple[Path, tuple[str, ...]]], skip: Iterable[Path] = ()) -> tuple[dict[str, Path], list[str]]:
    """Emotion prior files under each root (with the suffixes allowed there), and notes on skipped files."""
    found: dict[str, Path] = {}
    notes: list[str] = []
    skip = [p.resolve() for p in skip]
    for root, suffixes in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in suffixes or not path.is_file():
                continue
            resolved = path.resolve()
            if any(resolved == s or s in resolved.parents for s in skip):
                continue
            emotion = emotion_name(path.stem)
            if emotion is None:
                notes.append(f"skipped {path}: {path.stem!r} is not an emotion name (expected one of {', '.join(EMOTIONS)})")
                continue
            if emotion in found:
                raise InputError(f"two priors for {emotion!r}: {found[emotion]} and {path}; keep one")
            found[emotion] = path
    return found, notes
