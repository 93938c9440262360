"""Planning a conversion: every check on the release, and the :class:`ConversionPlan` that results.

:func:`plan_conversion` opens every file of the release, checks every name, shape and dtype
against this project's modules of the chosen configuration (built on the meta device) and the
fields of every base config against that configuration, and returns a plan of what to write:
for each output tensor its name, shape, output dtype and a function that reads it. Nothing is
written here, and no tensor data is read except the memory-mapped checkpoints' headers.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Container, Iterable

import torch
from torch import nn

from .. import EMOTIONS
from ..configs import ModelConfig, get_config
from ..errors import InputError, WeightsError
from ._common import quiet_transformers, rel
from .priors import PRIOR_SUFFIXES, Prior, read_prior
from .release_reader import (
    RELEASE_DIR,
    RELEASE_FILES,
    RIFE_FILE,
    SVD_DIR,
    WHISPER_DIR,
    CheckpointSource,
    find_prior_files,
    find_weights,
    open_weights,
    read_json,
    release_dir,
)

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
    "frame_interpolator": torch.float32,
}

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # diffusers
TRANSFORMERS_WEIGHTS_NAME = "model.safetensors"  # transformers (image encoder)

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
_WHISPER_FIELDS = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins", "max_source_positions")


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


def source_entry(name: str, shape: Iterable[int], source, key: str, dtype: torch.dtype, origin: str) -> TensorEntry:
    """The entry for tensor ``key`` of ``source`` written as ``name``: floating tensors cast to ``dtype``, others kept."""
    stored = source.dtype(key)
    out_dtype = dtype if stored.is_floating_point else stored
    return TensorEntry(name, tuple(shape), out_dtype, functools.partial(source.get, key), origin)


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
    """Everything :func:`~dicetalk.convert.writer.write_components` writes, all checked already."""

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

    def _rows(self) -> list[tuple[str, str, str, str]]:
        rows = []
        for name, comp in self.components.items():
            origins = ", ".join(f"{n} from {o}" for o, n in comp.origins().items())
            rows.append((name, f"{comp.num_parameters:,}", str(comp.dtype).replace("torch.", ""), origins))
        for name, files in self.copies.items():
            rows.append((name, "", "", f"{len(files)} file(s) copied from {rel(files[0].parent, self.src)}"))
        if self.audio_encoder is not None:
            n = sum(p.numel() for p in self.audio_encoder.parameters())
            dtype = str(next(self.audio_encoder.parameters()).dtype).replace("torch.", "")
            rows.append(("audio_encoder", f"{n:,}", dtype, f"Whisper encoder from {rel(self.audio_encoder_source, self.src)}"))
        return rows

    def summary(self) -> str:
        rows = self._rows()
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"DICE-Talk release {self.src} (configuration {self.config.name}):"]
        lines += [f"  {a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in rows]
        if self.priors:
            lines.append(f"  priors: {len(self.priors)} ({', '.join(sorted(self.priors))})")
        else:
            lines.append("  priors: none found")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


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


# --------------------------------------------------------------------------------------- checks


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def check_config_fields(path: Path, found: dict[str, Any], expected: dict[str, Any], fields: Iterable[str], config_name: str) -> None:
    """Raise :class:`WeightsError` for the first of ``fields`` whose value in ``found`` differs from ``expected``."""
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


def mismatch_message(path: Path, what: str, extra: list[str], missing: list[str], wrong: list[tuple[str, tuple, tuple]], bad_dtype: list[tuple[str, torch.dtype]], total: int) -> str | None:
    """One line naming the first problem and counting all of them; None when there is none."""
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


def compare(source, expected: dict[str, tuple[int, ...]]) -> tuple[list[str], list[str], list[tuple[str, tuple, tuple]], list[tuple[str, torch.dtype]]]:
    """(unexpected keys, missing keys, wrong shapes, non-floating dtypes) of ``source`` against ``expected``."""
    keys = source.keys()
    present = set(keys)
    extra = [k for k in keys if k not in expected]
    missing = [k for k in expected if k not in present]
    wrong = [(k, source.shape(k), expected[k]) for k in keys if k in expected and tuple(source.shape(k)) != tuple(expected[k])]
    bad_dtype = [(k, source.dtype(k)) for k in keys if k in expected and not source.dtype(k).is_floating_point]
    return extra, missing, wrong, bad_dtype


def check_source(source, expected: dict[str, tuple[int, ...]], what: str, ignore: Container[str] = ()) -> list[str]:
    """Raise :class:`WeightsError` (one line) if ``source`` does not match ``expected``; return its unexpected keys.

    ``ignore``: kinds of mismatch that are not errors here (``"extra"``, ``"missing"``, ``"dtype"``).
    """
    extra, missing, wrong, bad_dtype = compare(source, expected)
    message = mismatch_message(
        source.path,
        what,
        [] if "extra" in ignore else extra,
        [] if "missing" in ignore else missing,
        wrong,
        [] if "dtype" in ignore else bad_dtype,
        len(expected),
    )
    if message:
        raise WeightsError(message)
    return extra


# ------------------------------------------------------------------------------------- planning


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
    ``SRC/RIFE/flownet.pkl``, the release's frame interpolator, is converted when present.
    """
    src = Path(src)
    cfg = get_config(config)
    dtypes = _check_options(src, dtype, svd, whisper)
    plan = ConversionPlan(src=src, config=cfg)
    release = release_dir(src)
    paths = _release_paths(release)  # cheap checks first: an unsafe prior stops everything before heavy work
    _plan_priors(plan, priors, skip)
    modules = expected_components(cfg, DICE_COMPONENTS)
    expected = expected_release_shapes(cfg, modules)
    checkpoints = _check_release_checkpoints(cfg, paths, expected)
    svd_dir = Path(svd) if svd is not None else src / SVD_DIR
    base_unet = _base_unet(cfg, checkpoints["unet"], expected["unet"], svd_dir, dtypes["unet"])
    folder = f"{RELEASE_DIR}/" if release == src / RELEASE_DIR else ""  # how the summary names the release files
    _plan_dice_components(plan, modules, checkpoints, base_unet, folder, dtypes)
    _plan_frame_interpolator(plan, dtypes["frame_interpolator"])
    if svd_dir.is_dir():
        _plan_base_models(plan, svd_dir, dtypes)
        _plan_base_copies(plan, svd_dir)
    else:
        plan.notes.append(f"no base SVD folder {svd_dir}: vae/, image_encoder/, feature_extractor/, scheduler/ not written")
    whisper_dir = Path(whisper) if whisper is not None else src / WHISPER_DIR
    if whisper_dir.is_dir():
        _plan_audio_encoder(plan, whisper_dir, dtypes["audio_encoder"])
    else:
        plan.notes.append(f"no Whisper folder {whisper_dir}: audio_encoder/ not written")
    return plan


def _check_options(src: Path, dtype: str | torch.dtype | None, svd, whisper) -> dict[str, torch.dtype]:
    """Check the folders given; the output dtype of every component."""
    if not src.is_dir():
        raise InputError(f"release folder {src} does not exist")
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise InputError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    for option, value in (("--svd", svd), ("--whisper", whisper)):
        if value is not None and not Path(value).is_dir():
            raise InputError(f"{option} folder {value} does not exist")
    return {name: dtype or default for name, default in DEFAULT_DTYPES.items()}


def _release_paths(release: Path) -> dict[str, Path]:
    """The four release files, which must exist."""
    paths = {group: release / name for group, name in RELEASE_FILES.items()}
    for path in paths.values():
        if not path.is_file():
            raise WeightsError(f"{path} is missing (expected the DICE-Talk release files {', '.join(RELEASE_FILES.values())} in {release})")
    return paths


def _plan_priors(plan: ConversionPlan, priors: str | os.PathLike | None, skip: Iterable[Path]) -> None:
    """Emotion priors: ``.npy`` anywhere under SRC, any prior format in ``priors``."""
    src, cfg = plan.src, plan.config
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


def _check_release_checkpoints(cfg: ModelConfig, paths: dict[str, Path], expected: dict[str, dict[str, tuple]]) -> dict[str, CheckpointSource]:
    """Every name and shape of the four checkpoints (the UNet may be partial: it is completed from the base)."""
    what = {
        "unet": f"{cfg.name} UNet",
        "pose_guider": f"{cfg.name} face-mask encoder (pose_guider)",
        "audio_linear": f"{cfg.name} audio projection (audio_linear)",
        "emo_model": f"{cfg.name} emotion bank + classifier (emo_model)",
    }
    checkpoints = {group: CheckpointSource(path) for group, path in paths.items()}
    for group, source in checkpoints.items():
        check_source(source, expected[group], what[group], ignore=("missing",) if group == "unet" else ())
    return checkpoints


def _base_unet(cfg: ModelConfig, release_unet: CheckpointSource, expected: dict[str, tuple], svd_dir: Path, dtype: torch.dtype):
    """The base SVD UNet that completes a partial ``unet.pth`` (None when ``unet.pth`` is complete)."""
    unet_keys = set(release_unet.keys())
    unet_missing = [k for k in expected if k not in unet_keys]
    if not unet_missing:
        return None
    base_file = find_weights(svd_dir / "unet", "unet", dtype)
    if base_file is None:
        raise WeightsError(
            f"{release_unet.path} holds {len(unet_keys)} of the {len(expected)} UNet weights "
            f"({len(unet_missing)} missing, e.g. {unet_missing[0]!r}) and no base SVD UNet was found in {svd_dir / 'unet'} "
            f"(diffusion_pytorch_model[.fp16].safetensors); put stable-video-diffusion-img2vid-xt there or pass --svd DIR"
        )
    base_config = svd_dir / "unet" / "config.json"
    check_config_fields(base_config, read_json(base_config), cfg.unet, _UNET_FIELDS, cfg.name)
    base_unet = open_weights(base_file)
    check_source(base_unet, expected, f"{cfg.name} UNet", ignore=("missing",))
    base_keys = set(base_unet.keys())
    still = [k for k in unet_missing if k not in base_keys]
    if still:
        raise WeightsError(
            f"{len(still)} UNet weights are in neither {release_unet.path} nor {base_file} (first: {still[0]!r}; "
            f"{len(unet_keys)} from unet.pth, {len(unet_missing) - len(still)} from the base)"
        )
    return base_unet


def _plan_dice_components(plan: ConversionPlan, modules: dict[str, nn.Module], checkpoints: dict[str, CheckpointSource], base_unet, folder: str, dtypes: dict[str, torch.dtype]) -> None:
    """The five DICE-Talk components; UNet weights missing from ``unet.pth`` come from ``base_unet``."""
    for component, (group, prefix) in COMPONENT_SOURCES.items():
        module, release = modules[component], checkpoints[group]
        present = set(release.keys())
        entries = []
        for key, meta in module.state_dict().items():
            full = prefix + key
            if full in present:
                entries.append(source_entry(key, meta.shape, release, full, dtypes[component], folder + RELEASE_FILES[group]))
            else:  # only the UNet may get here, checked by _base_unet
                assert base_unet is not None
                entries.append(source_entry(key, meta.shape, base_unet, full, dtypes[component], rel(base_unet.path, plan.src)))
        plan.components[component] = ComponentPlan(name=component, entries=entries, dtype=dtypes[component], module=module)


def _plan_frame_interpolator(plan: ConversionPlan, dtype: torch.dtype) -> None:
    """The release's RIFE frame interpolator (``SRC/RIFE/flownet.pkl``), when present."""
    path = plan.src / RIFE_FILE
    if not path.is_file():
        plan.notes.append(f"no frame interpolator {path}: frame_interpolator/ not written")
        return
    from .rife import plan_frame_interpolator

    plan.components["frame_interpolator"] = plan_frame_interpolator(path, dtype, origin=rel(path, plan.src))


def _plan_base_models(plan: ConversionPlan, svd_dir: Path, dtypes: dict[str, torch.dtype]) -> None:
    """The VAE and the image encoder from the SVD folder, checked and cast."""
    cfg = plan.config
    for kind in BASE_MODELS:
        folder = svd_dir / kind
        weights = find_weights(folder, kind, dtypes[kind]) if folder.is_dir() else None
        if weights is None:
            plan.notes.append(f"no {kind} weights in {folder}; {kind}/ not written")
            continue
        config_file = folder / "config.json"
        check_config_fields(config_file, read_json(config_file), getattr(cfg, kind), _BASE_FIELDS[kind], cfg.name)
        source = open_weights(weights)
        want = {k: tuple(v.shape) for k, v in expected_components(cfg, (kind,))[kind].state_dict().items()}
        extra = check_source(source, want, f"{cfg.name} {kind}", ignore=("extra", "dtype"))
        if extra:
            plan.notes.append(f"{kind}: dropped {len(extra)} tensor(s) the model does not use (e.g. {extra[0]!r})")
        entries = [source_entry(k, want[k], source, k, dtypes[kind], rel(weights, plan.src)) for k in want]
        weights_name = WEIGHTS_NAME if kind == "vae" else TRANSFORMERS_WEIGHTS_NAME
        plan.components[kind] = ComponentPlan(name=kind, entries=entries, dtype=dtypes[kind], weights_name=weights_name, config_file=config_file)


def _plan_base_copies(plan: ConversionPlan, svd_dir: Path) -> None:
    """The feature extractor and scheduler configs of the SVD folder, copied as they are (if valid JSON)."""
    for kind in BASE_COPIES:
        folder = svd_dir / kind
        files = sorted(p for p in folder.glob("*.json") if p.is_file()) if folder.is_dir() else []
        if files:
            for p in files:
                read_json(p)
            plan.copies[kind] = files
        else:
            plan.notes.append(f"no {kind} in {folder}; {kind}/ not written")


def _plan_audio_encoder(plan: ConversionPlan, folder: Path, dtype: torch.dtype) -> None:
    """The Whisper encoder (and its feature extractor's config) from a whisper-tiny folder."""
    from ..models.audio_encoder import MEL_HOP, SAMPLE_RATE, load_audio_encoder

    cfg = plan.config
    with quiet_transformers():
        encoder = load_audio_encoder(folder, freeze=True)
    check_config_fields(folder / "config.json", encoder.config.to_dict(), cfg.audio_encoder, _WHISPER_FIELDS, cfg.name)
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        data = read_json(pre)
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
