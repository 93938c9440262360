"""Convert the authors' released DICE-Talk checkpoints into a dicetalk weights folder.

The release (``huggingface-cli download EEEELY/DICE-Talk --local-dir checkpoints``, plus SVD-xt and
whisper-tiny beside it) looks like::

    SRC/DICE-Talk/{unet,pose_guider,audio_linear,emo_model}.pth
    SRC/RIFE/flownet.pkl                                  frame interpolator (optional)
    SRC/stable-video-diffusion-img2vid-xt/{unet,vae,image_encoder,feature_extractor,scheduler}/   (optional)
    SRC/whisper-tiny/                                                                          (optional)
    SRC/**/<emotion>.npy                                  emotion priors, np.save of {"mu": (1, 256)}

Every ``.pth``/``.pkl`` is opened with ``torch.load(weights_only=True, mmap=True)`` and every name and
shape is checked against this project's modules of the chosen configuration, built on the meta device:

=====================  =======================================================
release file           dicetalk component
=====================  =======================================================
``unet.pth``           ``unet`` (:class:`~dicetalk.models.unet.DiceTalkUNet`)
``pose_guider``        ``mask_encoder``
``audio_linear``       ``audio_projection``
``emo_model``          ``emotion_bank`` (+ ``classifier.*`` -> ``discriminator``)
``RIFE/flownet.pkl``   ``frame_interpolator`` (:class:`~dicetalk.models.frame_interpolator.FrameInterpolator`)
=====================  =======================================================

The authors load ``unet.pth`` with ``strict=False`` on top of the SVD-xt UNet; a partial ``unet.pth``
is therefore completed from ``SRC/stable-video-diffusion-img2vid-xt/unet`` (same checks), and it is an
error if weights are still missing. Nothing is written until everything has been checked; the output
folder is built beside ``DST`` and renamed into place at the end.

The work is split in three modules: :mod:`.release_reader` (finding and safely reading the files),
:mod:`.plan` (every check, and the :class:`ConversionPlan`) and :mod:`.writer` (streaming the plan
into safetensors). This module is the entry point, :func:`convert_official`; the names other code
used to import from here are re-exported.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..configs import ModelConfig
from ..errors import InputError
from .plan import (
    COMPONENT_SOURCES,
    DEFAULT_DTYPES,
    DICE_COMPONENTS,
    DTYPES,
    ComponentPlan,
    ConversionPlan,
    TensorEntry,
    expected_components,
    expected_release_shapes,
    plan_conversion,
)
from .release_reader import RELEASE_DIR, RELEASE_FILES, SVD_DIR, WHISPER_DIR, SafetensorsSource, find_prior_files, load_checkpoint
from .writer import check_destination, check_free_space, write_components, write_safetensors

__all__ = [
    "COMPONENT_SOURCES",
    "DEFAULT_DTYPES",
    "DICE_COMPONENTS",
    "DTYPES",
    "RELEASE_DIR",
    "RELEASE_FILES",
    "SVD_DIR",
    "WHISPER_DIR",
    "ComponentPlan",
    "ConversionPlan",
    "SafetensorsSource",
    "TensorEntry",
    "convert_official",
    "expected_components",
    "expected_release_shapes",
    "find_prior_files",
    "load_checkpoint",
    "plan_conversion",
    "write_components",
    "write_safetensors",
]


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
        check_destination(src, dst, overwrite)
    plan = plan_conversion(src, config, dtype, svd=svd, whisper=whisper, priors=priors, skip=[dst] if dst is not None else [])
    if check or dst is None:
        return plan
    check_free_space(dst, plan.nbytes)

    from ..pipeline.loading import default_scheduler, write_model_index
    from ..pipeline.recipe import RELEASE
    from ..utils.atomic import atomic_dir

    with atomic_dir(dst) as tmp:
        write_components(plan, tmp, progress=progress)
        if "scheduler" not in plan.copies:  # the SVD folder brings one; otherwise SVD's defaults
            default_scheduler().save_pretrained(tmp / "scheduler")
        # A complete release (SVD + whisper + priors) becomes a DiceTalkPipeline folder that samples as the
        # authors' code does; without the frame interpolator its videos stay at the generated 12.5 fps.
        recipe = RELEASE if "frame_interpolator" in plan.components else RELEASE.replace(fps=RELEASE.generated_fps, interpolation=1)
        write_model_index(tmp, recipe=recipe)
    return plan
