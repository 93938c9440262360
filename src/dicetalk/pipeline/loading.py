"""Where a pipeline's weights come from: a weights folder, the authors' release, or the embedded default."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from ..configs import get_config
from ..errors import WeightsError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default_model"
"""The small model trained in the synthetic world, shipped inside the package."""


def default_scheduler(sampler: str = "euler"):
    """The scheduler of ``sampler`` on Stable Video Diffusion's noise range (Karras levels, 0.002 to 700)."""
    from .schedulers import scheduler_for

    return scheduler_for(sampler)


PIPELINE_COMPONENTS = {
    "unet": ["dicetalk.models.unet", "DiceTalkUNet"],
    "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
    "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
    "audio_encoder": ["dicetalk.models.audio_encoder", "AudioEncoder"],
    "audio_feature_extractor": ["transformers", "WhisperFeatureExtractor"],
    "audio_projection": ["dicetalk.models.token_projection", "TokenProjection"],
    "mask_encoder": ["dicetalk.models.mask_encoder", "FaceMaskEncoder"],
    "emotion_bank": ["dicetalk.models.emotion_bank", "EmotionBank"],
    "priors": ["dicetalk.models.emotion_priors", "EmotionPriors"],
    "scheduler": ["dicetalk.pipeline.schedulers", "EDMEulerScheduler"],  # the class is read from scheduler/
    "emotion_embedder": ["dicetalk.models.emotion_embedder", "DisentangledEmotionEmbedder"],
    "expression_encoder": ["dicetalk.models.expression_encoder", "ExpressionEncoder"],
    "discriminator": ["dicetalk.models.discriminator", "EmotionDiscriminator"],
    "refiner": ["dicetalk.models.reference_refiner", "ReferenceRefiner"],
    "frame_interpolator": ["dicetalk.models.frame_interpolator", "FrameInterpolator"],
}
OPTIONAL_COMPONENTS = ("emotion_embedder", "expression_encoder", "discriminator", "refiner", "frame_interpolator")


def write_model_index(folder: str | os.PathLike, recipe=None) -> bool:
    """Write ``model_index.json`` for a folder of component subfolders; False if one is missing.

    ``recipe``: the :class:`~.recipe.SamplingRecipe` stored with the model (None: none stored).
    """
    import json

    import diffusers

    from ..utils.atomic import write_json

    folder = Path(folder)
    index: dict = {"_class_name": "DiceTalkPipeline", "_diffusers_version": diffusers.__version__}
    for name, entry in PIPELINE_COMPONENTS.items():
        if (folder / name).is_dir():
            index[name] = _scheduler_entry(folder / name) if name == "scheduler" else entry
        elif name in OPTIONAL_COMPONENTS:
            index[name] = [None, None]
        else:
            return False
    if recipe is not None:
        index["recipe"] = recipe.to_dict()
    write_json(folder / "model_index.json", json.loads(json.dumps(index)))
    return True


def _scheduler_entry(folder: Path) -> list[str]:
    """``[library, class]`` of the scheduler saved in ``folder`` (ours, or diffusers' for a copied SVD scheduler)."""
    import json

    from . import schedulers

    name = json.loads((folder / "scheduler_config.json").read_text()).get("_class_name", "")
    return ["dicetalk.pipeline.schedulers", name] if hasattr(schedulers, name) else ["diffusers", name]


def is_release_folder(folder: Path) -> bool:
    """The authors' layout: DICE-Talk/{unet,pose_guider,audio_linear,emo_model}.pth (or the .pth at top level)."""
    return any((d / "unet.pth").is_file() and (d / "emo_model.pth").is_file() for d in (folder / "DICE-Talk", folder))


CONVERSION_VERSION = "2"  # 2: the release's sampling recipe and frame interpolator in the folder


def converted_release(folder: Path) -> Path:
    """The release converted once into the project's layout, under the cache directory."""
    import hashlib

    from ..convert.official import convert_official
    from ..data.cache import default_cache_dir

    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}:{st.st_size}:{int(st.st_mtime)}".encode())
    h.update(CONVERSION_VERSION.encode())  # a release converted by an older dicetalk is converted again
    target = default_cache_dir() / "converted" / h.hexdigest()[:16]
    if not (target / "model_index.json").is_file():
        import sys

        from ..configs import CONFIG_NAMES
        from ..errors import DiceTalkError

        # The release is full size; smaller configurations are tried for releases of our own.
        first_error = None
        for name in ("svd-xt", *[c for c in CONFIG_NAMES if c != "svd-xt"]):
            try:
                convert_official(folder, None, config=name, check=True)
            except DiceTalkError as exc:
                first_error = first_error or exc
                continue
            break
        else:
            raise first_error
        print(f"converting the DICE-Talk release in {folder} once into {target}", file=sys.stderr)
        convert_official(folder, target, config=name, overwrite=True)
        if not (target / "model_index.json").is_file():
            raise WeightsError(
                f"{folder}: the release is incomplete for generation (it needs stable-video-diffusion-img2vid-xt/ "
                "and whisper-tiny/ beside DICE-Talk/, and the emotion priors); see `dicetalk download`"
            )
    return target


def import_component_modules() -> None:
    """Import every module a weights folder may name: diffusers only loads classes already imported."""
    import importlib

    from .. import _EXPORTS

    named = {library for library, _ in PIPELINE_COMPONENTS.values() if library.startswith("dicetalk.")}
    for module in sorted(set(_EXPORTS.values()) | named):
        importlib.import_module(module)


@contextlib.contextmanager
def quiet_loading():
    """Hide the per-component loading/saving bars and notices of diffusers and transformers (our own bars stay)."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    d_on, t_on = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    d_level, t_level = dlog.get_verbosity(), tlog.get_verbosity()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(d_level)
        tlog.set_verbosity(t_level)
        if d_on:
            dlog.enable_progress_bar()
        if t_on:
            tlog.enable_progress_bar()


def _legacy_recipe(folder: Path) -> dict:
    """``{"recipe": ...}`` for a folder saved before recipes existed (its ``default_*`` keys), else ``{}``."""
    import json

    from .recipe import RECIPE_KEY, legacy_recipe

    index = json.loads((folder / "model_index.json").read_text())
    if RECIPE_KEY in index:
        return {}
    recipe = legacy_recipe(index)
    return {} if recipe is None else {RECIPE_KEY: recipe.to_dict()}


def build_random_pipeline(config: str = "tiny", seed: int = 0, device: str | torch.device = "cpu", recipe=None):
    """A pipeline of freshly initialised components (tests, benchmarks, new training runs).

    ``recipe``: its sampling recipe (None: the release's for ``svd-xt``, which comes with a random frame
    interpolator as the release's RIFE; the defaults otherwise).
    """
    from ..models.frame_interpolator import FrameInterpolator
    from .recipe import RELEASE, SamplingRecipe

    if recipe is None:
        recipe = RELEASE if config == "svd-xt" else SamplingRecipe()

    from ..models.audio_encoder import whisper_feature_extractor
    from ..models.emotion_priors import EmotionPriors
    from ..models.registry import build_components
    from . import DiceTalkPipeline
    from .. import EMOTIONS

    cfg = get_config(config)
    torch.manual_seed(seed)
    parts = build_components(cfg, device=device)
    g = torch.Generator().manual_seed(seed + 1)
    priors = EmotionPriors.from_tensors({e: torch.randn(cfg.prior_dim, generator=g) for e in EMOTIONS})
    return DiceTalkPipeline(
        unet=parts["unet"],
        vae=parts["vae"],
        image_encoder=parts["image_encoder"],
        audio_encoder=parts["audio_encoder"],
        audio_feature_extractor=whisper_feature_extractor(parts["audio_encoder"].config),
        audio_projection=parts["audio_projection"],
        mask_encoder=parts["mask_encoder"],
        emotion_bank=parts["emotion_bank"],
        priors=priors.to(device),
        scheduler=default_scheduler(),
        emotion_embedder=parts["emotion_embedder"],
        expression_encoder=parts.get("expression_encoder"),
        discriminator=parts["discriminator"],
        refiner=parts.get("refiner"),
        frame_interpolator=FrameInterpolator().to(device) if config == "svd-xt" else None,
        recipe=recipe.to_dict(),
    )


def load_pipeline(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, performance=None):
    """The pipeline in ``weights`` (a folder in the project's layout), or the embedded default.

    ``performance``: speed switches (a :class:`~.performance.PerformanceOptions` or its spec, e.g. ``"fast"``).
    """
    from . import DiceTalkPipeline

    folder = Path(weights) if weights is not None else DEFAULT_MODEL_DIR
    if not folder.is_dir():
        raise WeightsError(f"weights folder {folder} does not exist")
    if not (folder / "model_index.json").is_file() and is_release_folder(folder):
        folder = converted_release(folder)
    if not (folder / "model_index.json").is_file():
        if weights is None:
            raise WeightsError("the embedded default model is missing from this installation; pass --weights DIR")
        raise WeightsError(f"{folder} is not a dicetalk weights folder (no model_index.json)")
    import_component_modules()
    try:
        with quiet_loading():
            pipe = DiceTalkPipeline.from_pretrained(str(folder), dtype=dtype, **_legacy_recipe(folder))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot load weights from {folder}: {first}") from None
    pipe.set_progress_bar_config(leave=False)
    pipe = pipe.to(device)
    if performance is not None:
        from .performance import PerformanceOptions

        pipe.set_performance(PerformanceOptions.parse(performance) if isinstance(performance, str) else performance)
    return pipe
