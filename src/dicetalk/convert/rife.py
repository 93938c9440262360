"""The release's frame interpolator, ``checkpoints/RIFE/flownet.pkl``, converted safely to safetensors.

The authors double their 12.5 fps output to 25 fps with RIFE (the "HDv3" IFNet), whose weights
they ship as a torch pickle of the network's state dict saved under ``DataParallel`` (every name
starts with ``module.``). :func:`convert_frame_interpolator` reads it with
``torch.load(weights_only=True)`` (:func:`~dicetalk.convert.release_reader.load_checkpoint`), which
refuses any pickle that names code (:class:`~dicetalk.errors.UnsafeFileError`, raised before
anything runs), requires a flat ``name -> tensor`` dict (:class:`~dicetalk.errors.WeightsError`
otherwise), checks every name (``module.`` dropped), shape and dtype against
:class:`~dicetalk.models.frame_interpolator.FrameInterpolator` and writes ``frame_interpolator/``
(``config.json`` + ``diffusion_pytorch_model.safetensors``) atomically. ``dicetalk convert-official``
does the same for ``SRC/RIFE/flownet.pkl`` when the release has it.

Why convert the release's weights rather than use a frame-interpolation library: no maintained
package on PyPI ships interpolation weights; the ones that exist fetch them from third-party hosts
when first run (unpinned, often as pickles), which an offline, checked installation cannot do. And
only the release's own interpolator with its weights reproduces the authors' 25 fps videos.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import InputError
from .plan import ComponentPlan, check_source, source_entry
from .release_reader import CheckpointSource
from .writer import check_destination, write_component

COMPONENT = "frame_interpolator"
PREFIX = "module."  # the release saved the network wrapped in (Distributed)DataParallel


def _drop_prefix(name: str) -> str:
    return name[len(PREFIX) :] if name.startswith(PREFIX) else name


def expected_frame_interpolator(**config):
    """A :class:`FrameInterpolator` (the release's sizes unless ``config`` says otherwise) on the meta device."""
    from ..models.frame_interpolator import FrameInterpolator

    with torch.device("meta"):
        return FrameInterpolator(**config)


def plan_frame_interpolator(path: str | os.PathLike, dtype: torch.dtype = torch.float32, origin: str | None = None) -> ComponentPlan:
    """Read and check ``flownet.pkl``; the component to write (tensors are read only when written).

    Raises :class:`~dicetalk.errors.UnsafeFileError` for a pickle that names code and
    :class:`~dicetalk.errors.WeightsError` (naming the first offending key) for anything that is not
    exactly the release network's state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"frame interpolator weights {path} not found")
    source = CheckpointSource(path, rename=_drop_prefix)
    module = expected_frame_interpolator()
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_source(source, expected, f"release's frame interpolator (RIFE HDv3 IFNet; names without {PREFIX!r})")
    origin = origin or path.name
    entries = [source_entry(k, shape, source, k, dtype, origin) for k, shape in expected.items()]
    return ComponentPlan(name=COMPONENT, entries=entries, dtype=dtype, module=module)


def convert_frame_interpolator(
    pkl_path: str | os.PathLike, out_folder: str | os.PathLike, dtype: torch.dtype = torch.float32, overwrite: bool = False
) -> Path:
    """Convert a RIFE ``flownet.pkl`` into ``out_folder/frame_interpolator/``; returns that folder.

    Everything is checked before anything is written; the folder is built beside its destination
    and renamed into place, so a failure leaves no partial output.
    """
    from ..utils.atomic import atomic_dir

    target = Path(out_folder) / COMPONENT
    check_destination(None, target, overwrite)
    comp = plan_frame_interpolator(pkl_path, dtype)
    with atomic_dir(target) as tmp:
        write_component(comp, tmp)
    return target
