"""Writing a checked :class:`~dicetalk.convert.plan.ConversionPlan` as a dicetalk weights folder.

Tensors are streamed one at a time from their (memory-mapped) sources into safetensors files
(:func:`write_safetensors`), so the 1.6 B-parameter UNet is never held in memory twice. The
callers write into a temporary folder that is renamed into place at the end
(:func:`~dicetalk.utils.atomic.atomic_dir`); :func:`check_destination` and
:func:`check_free_space` refuse a bad output folder before anything is read.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, WeightsError
from ._common import quiet_transformers
from .plan import ComponentPlan, ConversionPlan, TensorEntry
from .release_reader import SAFETENSORS_DTYPES

_DTYPE_NAMES = {v: k for k, v in SAFETENSORS_DTYPES.items()}


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


def write_component(comp: ComponentPlan, out: Path, progress=None) -> None:
    """One component folder ``out`` (created if needed): its ``config.json`` and its safetensors file."""
    out.mkdir(exist_ok=True)
    if comp.module is not None:
        comp.module.save_config(out)
    else:
        shutil.copyfile(comp.config_file, out / "config.json")
    write_safetensors(out / comp.weights_name, comp.entries, progress)


def write_components(plan: ConversionPlan, folder: str | os.PathLike, progress: bool | None = None) -> None:
    """Write every component of ``plan`` into ``folder`` (an existing, empty directory).

    One subfolder per component (``config.json`` + safetensors), ``priors/`` and, when the release
    had them, ``vae/``, ``image_encoder/``, ``feature_extractor/``, ``scheduler/``, ``audio_encoder/``,
    ``audio_feature_extractor/`` and ``frame_interpolator/``. Writes no ``model_index.json``: callers
    that want a complete pipeline folder add it afterwards, inside the same temporary directory.
    ``progress``: show a progress bar over the tensors (None: only on a terminal).
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    with tqdm(total=plan.num_tensors, desc="writing tensors", unit="tensor", disable=None if progress is None else not progress) as bar:
        for name, comp in plan.components.items():
            write_component(comp, folder / name, bar)
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
    with quiet_transformers():
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


# ------------------------------------------------------------------------------- output checks


def check_destination(src: Path | None, dst: Path, overwrite: bool) -> None:
    """Refuse an existing ``dst`` (unless ``overwrite`` and it is a folder) and one that contains ``src``."""
    if dst.exists() or dst.is_symlink():
        if not overwrite:
            raise InputError(f"{dst} already exists; pass --overwrite to replace it")
        if not dst.is_dir() or dst.is_symlink():
            raise InputError(f"{dst} exists and is not a folder; remove it first")
    if src is None:
        return
    s, d = src.resolve(), dst.resolve()
    if s == d or d in s.parents:
        raise InputError(f"{dst} contains the release folder {src}; choose another output folder")


def check_free_space(dst: Path, needed: int) -> None:
    """Refuse to start a conversion that cannot fit on the disk holding ``dst``."""
    parent = dst.resolve().parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if needed > free:
        raise InputError(f"{dst}: the converted weights need about {needed / 1e9:.1f} GB but only {free / 1e9:.1f} GB are free")
