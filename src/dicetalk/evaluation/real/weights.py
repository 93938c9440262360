"""Loading and converting a real-face judge's weights: the one path SyncNet, EMO-AffectNet, I3D and
FID's InceptionV3 share.

A judge is read from a diffusers folder (``config.json`` + safetensors, what :func:`convert_judge`
writes), a ``.safetensors`` file or the public torch file. A torch file is read with
``torch.load(weights_only=True)`` only (:func:`dicetalk.convert.release_reader.load_checkpoint`):
a pickle naming code is refused before it runs (:class:`~dicetalk.errors.UnsafeFileError`). Every
failure — a missing or unreadable file, wrong names, wrong shapes — is a one-line
:class:`~dicetalk.errors.WeightsError` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME as WEIGHTS_NAME

from ...errors import WeightsError

State = dict[str, torch.Tensor]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def read_safetensors(path: Path) -> State:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None


def load_checked(model: torch.nn.Module, state: State, source: Path, name: str):
    """``model`` with ``state`` after checking names and shapes; in eval mode, frozen, float32."""
    own = model.state_dict()
    # BatchNorm's `num_batches_tracked` is unused in eval mode (and older public files lack it).
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = [f"{len(missing)} missing (e.g. {missing[0]!r})" if missing else "", f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})" if unexpected else ""]
        raise WeightsError(f"{source}: not {name} weights: {', '.join(p for p in parts if p)} entries")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(f"{source}: {key!r} has shape {tuple(value.shape)}, {name} expects {tuple(own[key].shape)}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
    return model.eval().requires_grad_(False)


def load_judge(
    path: str | os.PathLike,
    cls: type,
    name: str,
    build: Callable[[State, Path], torch.nn.Module],
    adapt: Callable[[State], State] = lambda state: state,
    folder_hint: str = "",
    file_hint: str = "",
):
    """The judge ``cls`` (called ``name`` in messages) from a folder, a ``.safetensors`` or a torch file.

    ``build(state, path)`` makes the model a bare file's weights fit (its sizes read off the
    state); ``adapt`` renames a state's entries to ``cls``'s. The hints end the "not found" messages.
    """
    path = Path(path)
    if path.is_dir():
        config_path, weights_path = path / "config.json", path / WEIGHTS_NAME
        if not config_path.is_file() or not weights_path.is_file():
            raise WeightsError(f"{path}: no {name} here (needs config.json and {WEIGHTS_NAME}){folder_hint}")
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{config_path}: unreadable ({_first_line(exc)})") from None
        if not isinstance(config, dict) or config.get("_class_name") != cls.__name__:
            found = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
            raise WeightsError(f"{config_path}: holds a {found!r}, expected {cls.__name__}")
        try:
            model = cls.from_config(config)
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"{config_path}: unusable config ({_first_line(exc)})") from None
        return load_checked(model, adapt(read_safetensors(weights_path)), weights_path, name)
    if not path.is_file():
        raise WeightsError(f"{path}: no such {name} weights file{file_hint}")
    if path.suffix == ".safetensors":
        state = read_safetensors(path)
    else:
        from ...convert.release_reader import load_checkpoint

        state = load_checkpoint(path)
    state = adapt(state)
    return load_checked(build(state, path), state, path, name)


def convert_judge(model, dst: str | os.PathLike, record: dict | None = None) -> Path:
    """``model`` -> a diffusers folder ``dst`` (float32 safetensors), ``record`` in ``dst/source.json``.

    Written atomically: on any failure an earlier ``dst`` is left as it was. Returns ``dst``.
    """
    from ...utils.atomic import atomic_dir

    dst = Path(dst)
    with atomic_dir(dst) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if record is not None:
            (tmp / "source.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return dst
