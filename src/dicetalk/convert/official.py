"""Convert the authors' released DICE-Talk checkpoints into a dicetalk weights folder.

The release (``huggingface-cli download EEEELY/DICE-Talk --local-dir checkpoints``, plus SVD-xt and
whisper-tiny beside it) looks like::

    SRC/DICE-Talk/{unet,pose_guider,audio_linear,emo_model}.pth
    SRC/stable-video-diffusion-img2vid-xt/{unet,vae,image_encoder,feature_extractor,scheduler}/   (optional)
    SRC/whisper-tiny/                                                                          (optional)
    SRC/**/<emotion>.npy                                  emotion priors, np.save of {"mu": (1, 256)}

Every ``.pth`` is opened with ``torch.load(weights_only=True, mmap=True)`` and every name and shape is
checked against this project's modules of the chosen configuration, built on the meta device:

=================  =======================================================
release file       dicetalk component
=================  =======================================================
``unet.pth``       ``unet`` (:class:`~dicetalk.models.unet.DiceTalkUNet`)
``pose_guider``    ``mask_encoder``
``audio_linear``   ``audio_projection``
``emo_model``      ``emotion_bank`` (+ ``classifier.*`` -> ``discriminator``)
=================  =======================================================

The authors load ``unet.pth`` with ``strict=False`` on top of the SVD-xt UNet; a partial ``unet.pth``
is therefore completed from ``SRC/stable-video-diffusion-img2vid-xt/unet`` (same checks), and it is an
error if weights are still missing. Nothing is written until everything has been checked; the output
folder is built beside ``DST`` and renamed into place at the end. Tensors are streamed one at a time
from the memory-mapped checkpoints into safetensors files (see :func:`write_safetensors`), so the
1.6 B-parameter UNet is never held in memory twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .. import EMOTIONS
from ..configs import ModelConfig, get_config
from ..errors import InputError, UnsafeFileError, WeightsError
from .priors import PRIOR_SUFFIXES, Prior, read_prior

RELEASE_DIR = "DICE-Talk"
SVD_DIR = "stable-video-diffusion-img2vid-xt"
WHISPER_DIR = "whisper-tiny"

RELEASE_FILES = {
    "unet": "unet.pth",
    "pose_guider": "pose_guider.pth",
    "audio_linear": "audio_linear.pth",
    "emo_model": "emo_model.pth",
}
"""Release group -> file name inside ``SRC/DICE-Talk``."""

COMPONENT_SOURCES = {
    "unet": ("unet", ""),
    "mask_encoder": ("pose_guider", ""),
    "audio_projection": ("audio_linear", ""),
    "emotion_bank": ("emo_model", ""),
    "discriminator": ("emo_model", "classifier."),
}
"""dicetalk component -> (release group, prefix of its names in that group's file)."""

DICE_COMPONENTS = tuple(COMPONENT_SOURCES)
BASE_MODELS = ("vae", "image_encoder")  # weights from the SVD folder, checked and cast
BASE_COPIES = ("feature_extractor", "scheduler")  # JSON files copied from the SVD folder

DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_DTYPES = {
    # What the authors run: the SVD parts in half precision, their own small modules in float32.
    "unet": torch.float16,
    "vae": torch.float16,
    "image_encoder": torch.float16,
    "mask_encoder": torch.float32,
    "audio_projection": torch.float32,
    "emotion_bank": torch.float32,
    "discriminator": torch.float32,
    "audio_encoder": torch.float32,
}

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # diffusers
TRANSFORMERS_WEIGHTS_NAME = "model.safetensors"  # transformers (image encoder)

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

# Fields of a base model's config.json that must equal this project's configuration.
_UNET_FIELDS = (
    "in_channels",
    "out_channels",
    "down_block_types",
    "up_block_types",
    "block_out_channels",
    "addition_time_embed_dim",
    "projection_class_embeddings_input_dim",
    "layers_per_block",
    "cross_attention_dim",
    "transformer_layers_per_block",
    "num_attention_heads",
)
_BASE_FIELDS = {
    "vae": ("in_channels", "out_channels", "block_out_channels", "latent_channels", "layers_per_block"),
    "image_encoder": ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size", "projection_dim"),
}
_BASE_WEIGHT_STEMS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "image_encoder": "model"}
_BASE_BIN_STEMS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "image_encoder": "pytorch_model"}

_SAFETENSORS_DTYPES = {
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
_DTYPE_NAMES = {v: k for k, v in _SAFETENSORS_DTYPES.items()}


# ------------------------------------------------------------------------------------------- plan


@dataclass
class TensorEntry:
    """One tensor to write: its name in the output, shape, output dtype and how to read it."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    load: Callable[[], torch.Tensor]
    origin: str  # where it comes from, for the summary

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * torch.empty((), dtype=self.dtype).element_size()


@dataclass
class ComponentPlan:
    """A component folder: a config and one safetensors file."""

    name: str
    entries: list[TensorEntry]
    dtype: torch.dtype
    weights_name: str = WEIGHTS_NAME
    module: nn.Module | None = None  # on meta; its config is saved ...
    config_file: Path | None = None  # ... or this config.json is copied

    @property
    def num_parameters(self) -> int:
        return sum(e.numel for e in self.entries)

    def origins(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.entries:
            counts[e.origin] = counts.get(e.origin, 0) + 1
        return counts


@dataclass
class ConversionPlan:
    """Everything :func:`write_components` writes, all checked already."""

    src: Path
    config: ModelConfig
    components: dict[str, ComponentPlan] = field(default_factory=dict)  # DICE-Talk modules + vae, image_encoder
    copies: dict[str, list[Path]] = field(default_factory=dict)  # folder -> files copied as they are
    audio_encoder: nn.Module | None = None
    audio_encoder_source: Path | None = None
    audio_preprocessor: Path | None = None  # preprocessor_config.json to copy (None: built from the encoder)
    priors: dict[str, Prior] = field(default_factory=dict)
    prior_files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def num_tensors(self) -> int:
        return sum(len(c.entries) for c in self.components.values())

    @property
    def nbytes(self) -> int:
        total = sum(e.nbytes for c in self.components.values() for e in c.entries)
        if self.audio_encoder is not None:
            total += sum(p.numel() * p.element_size() for p in self.audio_encoder.state_dict().values())
        return total

    def summary(self) -> str:
        rows = []
        for name, comp in self.components.items():
            origins = ", ".join(f"{n} from {o}" for o, n in comp.origins().items())
            rows.append((name, f"{comp.num_parameters:,}", str(comp.dtype).replace("torch.", ""), origins))
        for name, files in self.copies.items():
            rows.append((name, "", "", f"{len(files)} file(s) copied from {_rel(files[0].parent, self.src)}"))
        if self.audio_encoder is not None:
            n = sum(p.numel() for p in self.audio_encoder.parameters())
            dtype = str(next(self.audio_encoder.parameters()).dtype).replace("torch.", "")
            rows.append(("audio_encoder", f"{n:,}", dtype, f"Whisper encoder from {_rel(self.audio_encoder_source, self.src)}"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"DICE-Talk release {self.src} (configuration {self.config.name}):"]
        lines += [f"  {a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in rows]
        if self.priors:
            lines.append(f"  priors: {len(self.priors)} ({', '.join(sorted(self.priors))})")
        else:
            lines.append("  priors: none found")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _rel(path: Path | None, root: Path) -> str:
    if path is None:
        return "?"
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- expected state dicts


def expected_components(config: str | ModelConfig, components: Iterable[str] = DICE_COMPONENTS) -> dict[str, nn.Module]:
    """This project's modules of ``config``, built on the meta device (no memory)."""
    from ..models.registry import build_components

    return build_components(get_config(config), device="meta", components=tuple(components))


def expected_release_shapes(config: str | ModelConfig, modules: dict[str, nn.Module] | None = None) -> dict[str, dict[str, tuple[int, ...]]]:
    """Release group (``unet``, ``pose_guider``, ``audio_linear``, ``emo_model``) -> name -> shape.

    What the authors' four ``.pth`` files hold for ``config``, derived from this project's modules;
    for ``svd-xt`` it equals the release manifest exactly.
    """
    modules = modules or expected_components(config)
    out: dict[str, dict[str, tuple[int, ...]]] = {group: {} for group in RELEASE_FILES}
    for component, (group, prefix) in COMPONENT_SOURCES.items():
        for key, value in modules[component].state_dict().items():
            out[group][prefix + key] = tuple(value.shape)
    return out


# -------------------------------------------------------------------------------------- sources


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A flat ``name -> tensor`` state dict from a ``.pth``/``.bin``, memory-mapped, never unpickling code."""
    try:
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
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None
    except (RuntimeError, OSError, EOFError, ValueError, TypeError, AttributeError, MemoryError) as exc:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None
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


class SafetensorsSource:
    """Lazily read tensors of one safetensors file or a sharded set (``*.safetensors.index.json``)."""

    def __init__(self, path: Path):
        from safetensors import SafetensorError, safe_open

        self.path = path
        files = [path]
        if path.name.endswith(".index.json"):
            try:
                weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
                files = sorted({path.parent / name for name in weight_map.values()})
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise WeightsError(f"{path}: not a valid safetensors index ({_first_line(exc)})") from None
        self._handles: dict[str, Any] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, torch.dtype] = {}
        for file in files:
            try:
                handle = safe_open(str(file), framework="pt")
                for key in handle.keys():
                    sl = handle.get_slice(key)
                    dtype = _SAFETENSORS_DTYPES.get(sl.get_dtype())
                    if dtype is None:
                        raise WeightsError(f"{file}: tensor {key!r} has unsupported dtype {sl.get_dtype()}")
                    self._handles[key] = handle
                    self._shapes[key] = tuple(sl.get_shape())
                    self._dtypes[key] = dtype
            except WeightsError:
                raise
            except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
                raise WeightsError(f"{file}: not a readable safetensors file ({_first_line(exc)})") from None

    def keys(self) -> list[str]:
        return list(self._shapes)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def dtype(self, key: str) -> torch.dtype:
        return self._dtypes[key]

    def get(self, key: str) -> torch.Tensor:
        return self._handles[key].get_tensor(key)


def _find_weights(folder: Path, kind: str, dtype: torch.dtype) -> Path | None:
    """The weights file of a diffusers/transformers folder, preferring the variant closest to ``dtype``."""
    stem, bin_stem = _BASE_WEIGHT_STEMS[kind], _BASE_BIN_STEMS[kind]
    variants = ("fp16", None) if dtype in (torch.float16, torch.bfloat16) else (None, "fp16")
    candidates = []
    for variant in variants:
        v = f".{variant}" if variant else ""
        candidates += [f"{stem}{v}.safetensors", f"{stem}.safetensors.index{v}.json", f"{stem}{v}.safetensors.index.json"]
    for variant in variants:
        v = f".{variant}" if variant else ""
        candidates += [f"{bin_stem}{v}.bin"]
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    return None


class _Source:
    """Uniform access to a state dict file (safetensors or torch pickle)."""

    def __init__(self, path: Path):
        self.path = path
        if path.suffix == ".bin":
            sd = load_checkpoint(path)
            self.keys = list(sd)
            self.shape = lambda k: tuple(sd[k].shape)
            self.dtype = lambda k: sd[k].dtype
            self.get = lambda k: sd[k]
        else:
            st = SafetensorsSource(path)
            self.keys = st.keys()
            self.shape, self.dtype, self.get = st.shape, st.dtype, st.get


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not valid JSON ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    return data


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def _check_config_fields(path: Path, found: dict[str, Any], expected: dict[str, Any], fields: Iterable[str], config_name: str) -> None:
    for name in fields:
        if name not in expected:
            continue
        want = expected[name]
        got = found.get(name)
        if isinstance(want, (list, tuple)) and not isinstance(got, (list, tuple)) and got is not None:
            got = [got] * len(want)  # e.g. transformer_layers_per_block: 1 == (1, 1, 1, 1)
        if isinstance(got, (list, tuple)) and not isinstance(want, (list, tuple)):
            want = [want] * len(got)
        if _norm(got) != _norm(want):
            raise WeightsError(f"{path}: {name} is {got!r}, but the {config_name} configuration needs {_norm(want)!r}")


# --------------------------------------------------------------------------------------- checks


def _mismatch_message(path: Path, what: str, extra: list[str], missing: list[str], wrong: list[tuple[str, tuple, tuple]], bad_dtype: list[tuple[str, torch.dtype]], total: int) -> str | None:
    if extra:
        first = f"unexpected key {extra[0]!r}"
    elif wrong:
        k, got, want = wrong[0]
        first = f"{k!r} has shape {tuple(got)}, expected {tuple(want)}"
    elif bad_dtype:
        k, dt = bad_dtype[0]
        first = f"{k!r} has dtype {str(dt).replace('torch.', '')}, expected floating point"
    elif missing:
        first = f"missing key {missing[0]!r}"
    else:
        return None
    counts = f"{len(extra)} unexpected, {len(missing)} missing, {len(wrong)} wrong shape, {len(bad_dtype)} wrong dtype; {total} expected"
    return f"{path} does not match the {what}: {first} ({counts})"


def _compare(
    keys: Iterable[str],
    shape_of: Callable[[str], tuple[int, ...]],
    dtype_of: Callable[[str], torch.dtype],
    expected: dict[str, tuple[int, ...]],
) -> tuple[list[str], list[str], list[tuple[str, tuple, tuple]], list[tuple[str, torch.dtype]]]:
    keys = list(keys)
    present = set(keys)
    extra = [k for k in keys if k not in expected]
    missing = [k for k in expected if k not in present]
    wrong = [(k, shape_of(k), expected[k]) for k in keys if k in expected and tuple(shape_of(k)) != tuple(expected[k])]
    bad_dtype = [(k, dtype_of(k)) for k in keys if k in expected and not dtype_of(k).is_floating_point]
    return extra, missing, wrong, bad_dtype


def _release_dir(src: Path) -> Path:
    for candidate in (src / RELEASE_DIR, src):
        if any((candidate / f).is_file() for f in RELEASE_FILES.values()):
            return candidate
    return src / RELEASE_DIR


def _emotion_name(stem: str) -> str | None:
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
            emotion = _emotion_name(path.stem)
            if emotion is None:
                notes.append(f"skipped {path}: {path.stem!r} is not an emotion name (expected one of {', '.join(EMOTIONS)})")
                continue
            if emotion in found:
                raise InputError(f"two priors for {emotion!r}: {found[emotion]} and {path}; keep one")
            found[emotion] = path
    return found, notes


def plan_conversion(
    src: str | os.PathLike,
    config: str | ModelConfig = "svd-xt",
    dtype: str | torch.dtype | None = None,
    svd: str | os.PathLike | None = None,
    whisper: str | os.PathLike | None = None,
    priors: str | os.PathLike | None = None,
    skip: Iterable[Path] = (),
) -> ConversionPlan:
    """Open and check every file of the release; raise a one-line error for the first problem.

    ``dtype`` overrides the output dtype of every component (default: float16 for unet, vae and
    image encoder, float32 for the rest). ``svd``/``whisper`` default to ``SRC/stable-video-diffusion-img2vid-xt``
    and ``SRC/whisper-tiny``; ``priors`` is an extra folder searched for prior files
    (``.npy``/``.safetensors``/``.json``) besides the ``.npy`` files anywhere under ``SRC``.
    """
    src = Path(src)
    cfg = get_config(config)
    if not src.is_dir():
        raise InputError(f"release folder {src} does not exist")
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise InputError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    dtypes = {name: dtype or default for name, default in DEFAULT_DTYPES.items()}
    for option, value in (("--svd", svd), ("--whisper", whisper)):
        if value is not None and not Path(value).is_dir():
            raise InputError(f"{option} folder {value} does not exist")
    plan = ConversionPlan(src=src, config=cfg)

    # 1. The four release files must exist.
    release = _release_dir(src)
    paths = {group: release / name for group, name in RELEASE_FILES.items()}
    for group, path in paths.items():
        if not path.is_file():
            raise WeightsError(f"{path} is missing (expected the DICE-Talk release files {', '.join(RELEASE_FILES.values())} in {release})")

    # 2. Emotion priors (cheap; an unsafe file stops everything before any heavy work).
    roots: list[tuple[Path, tuple[str, ...]]] = [(src, (".npy",))]
    if priors is not None:
        priors = Path(priors)
        if not priors.is_dir():
            raise InputError(f"priors folder {priors} does not exist")
        roots.append((priors, PRIOR_SUFFIXES))
    files, notes = find_prior_files(roots, skip=skip)
    plan.notes += notes
    for emotion, path in sorted(files.items()):
        plan.priors[emotion] = read_prior(path, cfg.prior_dim)
        plan.prior_files[emotion] = path
    absent = [e for e in EMOTIONS if e not in plan.priors]
    if absent and plan.priors:
        plan.notes.append(f"no prior for {', '.join(absent)}")
    if not plan.priors:
        plan.notes.append(f"no emotion priors (<emotion>.npy) found under {src}; generation will need --emotion FILE")

    # 3. Every name and shape of the four checkpoints.
    modules = expected_components(cfg, DICE_COMPONENTS)
    expected = expected_release_shapes(cfg, modules)
    checkpoints = {group: load_checkpoint(path) for group, path in paths.items()}

    what = {
        "unet": f"{cfg.name} UNet",
        "pose_guider": f"{cfg.name} face-mask encoder (pose_guider)",
        "audio_linear": f"{cfg.name} audio projection (audio_linear)",
        "emo_model": f"{cfg.name} emotion bank + classifier (emo_model)",
    }
    for group, sd in checkpoints.items():
        extra, missing, wrong, bad_dtype = _compare(sd, lambda k: tuple(sd[k].shape), lambda k: sd[k].dtype, expected[group])
        if group == "unet":
            missing = []  # completed from the base UNet below
        message = _mismatch_message(paths[group], what[group], extra, missing, wrong, bad_dtype, len(expected[group]))
        if message:
            raise WeightsError(message)

    # 4. The UNet: weights missing from unet.pth come from the base SVD UNet.
    svd_dir = Path(svd) if svd is not None else src / SVD_DIR
    unet_sd = checkpoints["unet"]
    unet_missing = [k for k in expected["unet"] if k not in unet_sd]
    base_unet: _Source | None = None
    if unet_missing:
        base_file = _find_weights(svd_dir / "unet", "unet", dtypes["unet"])
        if base_file is None:
            raise WeightsError(
                f"{paths['unet']} holds {len(unet_sd)} of the {len(expected['unet'])} UNet weights "
                f"({len(unet_missing)} missing, e.g. {unet_missing[0]!r}) and no base SVD UNet was found in {svd_dir / 'unet'} "
                f"(diffusion_pytorch_model[.fp16].safetensors); put stable-video-diffusion-img2vid-xt there or pass --svd DIR"
            )
        base_config = svd_dir / "unet" / "config.json"
        _check_config_fields(base_config, _read_json(base_config), cfg.unet, _UNET_FIELDS, cfg.name)
        base_unet = _Source(base_file)
        extra, _, wrong, bad_dtype = _compare(base_unet.keys, base_unet.shape, base_unet.dtype, expected["unet"])
        message = _mismatch_message(base_file, f"{cfg.name} UNet", extra, [], wrong, bad_dtype, len(expected["unet"]))
        if message:
            raise WeightsError(message)
        base_keys = set(base_unet.keys)
        still = [k for k in unet_missing if k not in base_keys]
        if still:
            raise WeightsError(
                f"{len(still)} UNet weights are in neither {paths['unet']} nor {base_file} (first: {still[0]!r}; "
                f"{len(unet_sd)} from unet.pth, {len(unet_missing) - len(still)} from the base)"
            )

    # 5. The five DICE-Talk components.
    for component, (group, prefix) in COMPONENT_SOURCES.items():
        module = modules[component]
        sd = checkpoints[group]
        origin = f"{RELEASE_DIR}/{RELEASE_FILES[group]}" if release == src / RELEASE_DIR else RELEASE_FILES[group]
        entries = []
        for key, meta in module.state_dict().items():
            full = prefix + key
            if full in sd:
                tensor = sd[full]
                out_dtype = dtypes[component] if tensor.is_floating_point() else tensor.dtype
                entries.append(TensorEntry(key, tuple(meta.shape), out_dtype, _getter(sd, full), origin))
            else:  # only the UNet may get here, checked above
                assert base_unet is not None
                out_dtype = dtypes[component] if base_unet.dtype(full).is_floating_point else base_unet.dtype(full)
                entries.append(TensorEntry(key, tuple(meta.shape), out_dtype, _getter_fn(base_unet.get, full), _rel(base_unet.path, src)))
        plan.components[component] = ComponentPlan(name=component, entries=entries, dtype=dtypes[component], module=module)

    # 6. Base components from the SVD folder.
    if svd_dir.is_dir():
        for kind in BASE_MODELS:
            folder = svd_dir / kind
            weights = _find_weights(folder, kind, dtypes[kind]) if folder.is_dir() else None
            if weights is None:
                plan.notes.append(f"no {kind} weights in {folder}; {kind}/ not written")
                continue
            config_file = folder / "config.json"
            found = _read_json(config_file)
            expected_cfg = getattr(cfg, kind)
            _check_config_fields(config_file, found, expected_cfg, _BASE_FIELDS[kind], cfg.name)
            source = _Source(weights)
            want = {k: tuple(v.shape) for k, v in expected_components(cfg, (kind,))[kind].state_dict().items()}
            extra, missing, wrong, bad_dtype = _compare(source.keys, source.shape, source.dtype, want)
            message = _mismatch_message(weights, f"{cfg.name} {kind}", [], missing, wrong, [], len(want))
            if message:
                raise WeightsError(message)
            if extra:
                plan.notes.append(f"{kind}: dropped {len(extra)} tensor(s) the model does not use (e.g. {extra[0]!r})")
            entries = [
                TensorEntry(k, want[k], dtypes[kind] if source.dtype(k).is_floating_point else source.dtype(k), _getter_fn(source.get, k), _rel(weights, src))
                for k in want
            ]
            plan.components[kind] = ComponentPlan(
                name=kind,
                entries=entries,
                dtype=dtypes[kind],
                weights_name=WEIGHTS_NAME if kind == "vae" else TRANSFORMERS_WEIGHTS_NAME,
                config_file=config_file,
            )
        for kind in BASE_COPIES:
            folder = svd_dir / kind
            files = sorted(p for p in folder.glob("*.json") if p.is_file()) if folder.is_dir() else []
            if files:
                for p in files:
                    _read_json(p)
                plan.copies[kind] = files
            else:
                plan.notes.append(f"no {kind} in {folder}; {kind}/ not written")
    else:
        plan.notes.append(f"no base SVD folder {svd_dir}: vae/, image_encoder/, feature_extractor/, scheduler/ not written")

    # 7. The audio encoder from whisper-tiny.
    whisper_dir = Path(whisper) if whisper is not None else src / WHISPER_DIR
    if whisper_dir.is_dir():
        _plan_audio_encoder(plan, whisper_dir, dtypes["audio_encoder"])
    else:
        plan.notes.append(f"no Whisper folder {whisper_dir}: audio_encoder/ not written")

    return plan


def _getter(sd: dict[str, torch.Tensor], key: str) -> Callable[[], torch.Tensor]:
    return lambda: sd[key]


def _getter_fn(get: Callable[[str], torch.Tensor], key: str) -> Callable[[], torch.Tensor]:
    return lambda: get(key)


@contextlib.contextmanager
def _quiet_transformers():
    """No transformers progress bars (loading/saving the Whisper encoder) inside the converter's output."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _plan_audio_encoder(plan: ConversionPlan, folder: Path, dtype: torch.dtype) -> None:
    from ..models.audio_encoder import MEL_HOP, SAMPLE_RATE, load_audio_encoder

    cfg = plan.config
    with _quiet_transformers():
        encoder = load_audio_encoder(folder, freeze=True)
    _check_config_fields(
        folder / "config.json",
        encoder.config.to_dict(),
        cfg.audio_encoder,
        ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins", "max_source_positions"),
        cfg.name,
    )
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        data = _read_json(pre)
        mel_frames = 2 * encoder.config.max_source_positions
        checks = {
            "feature_size": encoder.config.num_mel_bins,
            "sampling_rate": SAMPLE_RATE,
            "hop_length": MEL_HOP,
            "chunk_length": mel_frames * MEL_HOP // SAMPLE_RATE,
        }
        for name, want in checks.items():
            if data.get(name) != want:
                raise WeightsError(f"{pre}: {name} is {data.get(name)!r}, but the Whisper encoder needs {want!r}")
        plan.audio_preprocessor = pre
    else:
        plan.notes.append(f"no {pre.name} in {folder}; the audio feature extractor is built from the encoder's config")
    plan.audio_encoder = encoder.to(dtype)
    plan.audio_encoder_source = folder


# -------------------------------------------------------------------------------------- writing


def write_safetensors(path: Path, entries: list[TensorEntry], progress=None, metadata: dict[str, str] | None = None) -> None:
    """Write ``entries`` as one safetensors file, reading, casting and writing one tensor at a time.

    The header (names, dtypes, shapes, offsets) is known before any data is read, so the file is
    written front to back and at most one tensor is held in memory.
    """
    if sys.byteorder != "little":  # safetensors is little-endian; so is every platform torch supports today
        raise WeightsError("writing safetensors needs a little-endian machine")
    header: dict[str, Any] = {"__metadata__": {"format": "pt", **(metadata or {})}}
    offset = 0
    for e in entries:
        header[e.name] = {"dtype": _DTYPE_NAMES[e.dtype], "shape": list(e.shape), "data_offsets": [offset, offset + e.nbytes]}
        offset += e.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for e in entries:
            tensor = e.load()
            if tuple(tensor.shape) != e.shape:  # the plan checked this; a file changed underneath us?
                raise WeightsError(f"{e.origin}: {e.name!r} has shape {tuple(tensor.shape)}, expected {e.shape}")
            tensor = tensor.detach().to("cpu", e.dtype).contiguous()
            data = tensor.reshape(-1).view(torch.uint8).numpy()
            if data.nbytes != e.nbytes:
                raise WeightsError(f"{e.origin}: {e.name!r} holds {data.nbytes} bytes, expected {e.nbytes}")
            f.write(data.data)
            del tensor, data
            if progress is not None:
                progress.update(1)


def write_components(plan: ConversionPlan, folder: str | os.PathLike, progress: bool | None = None) -> None:
    """Write every component of ``plan`` into ``folder`` (an existing, empty directory).

    One subfolder per component (``config.json`` + safetensors), ``priors/`` and, when the release
    had them, ``vae/``, ``image_encoder/``, ``feature_extractor/``, ``scheduler/``, ``audio_encoder/``
    and ``audio_feature_extractor/``. Writes no ``model_index.json``: callers that want a complete
    pipeline folder add it afterwards, inside the same temporary directory.
    ``progress``: show a progress bar over the tensors (None: only on a terminal).
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    with tqdm(total=plan.num_tensors, desc="writing tensors", unit="tensor", disable=None if progress is None else not progress) as bar:
        for name, comp in plan.components.items():
            out = folder / name
            out.mkdir()
            if comp.module is not None:
                comp.module.save_config(out)
            else:
                shutil.copyfile(comp.config_file, out / "config.json")
            write_safetensors(out / comp.weights_name, comp.entries, bar)
    for name, files in plan.copies.items():
        out = folder / name
        out.mkdir()
        for f in files:
            shutil.copyfile(f, out / f.name)
    if plan.audio_encoder is not None:
        _write_audio_encoder(plan, folder)
    if plan.priors:
        _write_priors(plan, folder / "priors")


def _write_audio_encoder(plan: ConversionPlan, folder: Path) -> None:
    from ..models.audio_encoder import whisper_feature_extractor

    out = folder / "audio_encoder"
    with _quiet_transformers():
        plan.audio_encoder.save_pretrained(out, safe_serialization=True)
    # The pipeline registers the feature extractor as its own component; keep a copy beside the encoder too.
    for target in (out, folder / "audio_feature_extractor"):
        target.mkdir(exist_ok=True)
        if plan.audio_preprocessor is not None:
            shutil.copyfile(plan.audio_preprocessor, target / "preprocessor_config.json")
        else:
            whisper_feature_extractor(plan.audio_encoder.config).save_pretrained(target)


def _write_priors(plan: ConversionPlan, out: Path) -> None:
    """``priors/<emotion>.safetensors`` (``mu``, optional ``var``) and the pipeline's EmotionPriors table."""
    from ..models.emotion_priors import EmotionPriors

    out.mkdir()
    # The table first: diffusers' save_pretrained tidies weight files in its folder.
    mu = {e: torch.from_numpy(p.mu.copy()) for e, p in plan.priors.items()}
    var = {e: torch.from_numpy(p.var.copy()) for e, p in plan.priors.items() if p.var is not None}
    EmotionPriors.from_tensors(mu, var).save_pretrained(out, safe_serialization=True)
    for emotion, prior in plan.priors.items():
        tensors = {"mu": mu[emotion]} if emotion not in var else {"mu": mu[emotion], "var": var[emotion]}
        entries = [TensorEntry(k, tuple(t.shape), torch.float32, (lambda t=t: t), emotion) for k, t in tensors.items()]
        write_safetensors(out / f"{emotion}.safetensors", entries, metadata={"source": plan.prior_files[emotion].name})


# ---------------------------------------------------------------------------------------- entry


def convert_official(
    src: str | os.PathLike,
    dst: str | os.PathLike | None,
    config: str | ModelConfig = "svd-xt",
    dtype: str | torch.dtype | None = None,
    check: bool = False,
    overwrite: bool = False,
    svd: str | os.PathLike | None = None,
    whisper: str | os.PathLike | None = None,
    priors: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> ConversionPlan:
    """Check the release in ``src`` and (unless ``check``) write it to ``dst`` in this project's layout.

    Raises :class:`~dicetalk.errors.DiceTalkError` (one line) before anything is written if any file
    is missing, unreadable, unsafe or does not match the modules of ``config``.
    """
    src = Path(src)
    dst = Path(dst) if dst is not None else None
    if dst is None and not check:
        raise InputError("no output folder given")
    if dst is not None:
        _check_destination(src, dst, overwrite)
    plan = plan_conversion(src, config, dtype, svd=svd, whisper=whisper, priors=priors, skip=[dst] if dst is not None else [])
    if check or dst is None:
        return plan
    _check_free_space(dst, plan.nbytes)

    from ..utils.atomic import atomic_dir

    with atomic_dir(dst) as tmp:
        write_components(plan, tmp, progress=progress)
        if "scheduler" not in plan.copies:  # the SVD folder brings one; otherwise SVD's defaults
            from ..pipeline.loading import default_scheduler

            default_scheduler().save_pretrained(tmp / "scheduler")
        # A complete release (SVD + whisper + priors) becomes a DiceTalkPipeline folder.
        from ..pipeline.loading import write_model_index

        write_model_index(tmp)
    return plan


def _check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    if dst.exists() or dst.is_symlink():
        if not overwrite:
            raise InputError(f"{dst} already exists; pass --overwrite to replace it")
        if not dst.is_dir() or dst.is_symlink():
            raise InputError(f"{dst} exists and is not a folder; remove it first")
    s, d = src.resolve(), dst.resolve()
    if s == d or d in s.parents:
        raise InputError(f"{dst} contains the release folder {src}; choose another output folder")


def _check_free_space(dst: Path, needed: int) -> None:
    parent = dst.resolve().parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if needed > free:
        raise InputError(f"{dst}: the converted weights need about {needed / 1e9:.1f} GB but only {free / 1e9:.1f} GB are free")
