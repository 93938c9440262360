"""dicetalk: DICE-Talk emotional talking-head generation (Disentangle Identity, Cooperate Emotion).

Folders: ``models`` (neural components), ``pipeline`` (generation), ``training``, ``data``
(loaders for MEAD/HDTF layouts), ``synthetic`` (the synthetic talking-face world),
``evaluation`` (judges and metrics), ``convert`` (the authors' released checkpoints),
``cli`` and ``ui``.
"""

__version__ = "0.1.0"


def _compiler_cache_in_the_user_cache() -> None:
    """torch makes its compiler cache folder in $TMPDIR as soon as ``torch._dynamo`` is imported (diffusers
    imports it), compile switch or not. dicetalk leaves nothing in $TMPDIR: the cache goes under the
    user's cache folder instead, unless the user chose a place."""
    import os

    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        from platformdirs import user_cache_dir

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(user_cache_dir("dicetalk"), "torchinductor")


_compiler_cache_in_the_user_cache()

EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
"""The eight MEAD emotions, in the order used by every label index in the project."""

# Public classes, imported lazily so that `import dicetalk` (and the CLI's --help) stays light.
_EXPORTS = {
    "DiceTalkPipeline": "dicetalk.pipeline.pipeline_dicetalk",
    "DiceTalkUNet": "dicetalk.models.unet",
    "TokenProjection": "dicetalk.models.token_projection",
    "FaceMaskEncoder": "dicetalk.models.mask_encoder",
    "EmotionBank": "dicetalk.models.emotion_bank",
    "EmotionDiscriminator": "dicetalk.models.discriminator",
    "EmotionPriors": "dicetalk.models.emotion_priors",
    "DisentangledEmotionEmbedder": "dicetalk.models.emotion_embedder",
    "ExpressionEncoder": "dicetalk.models.expression_encoder",
    "ReferenceRefiner": "dicetalk.models.reference_refiner",
    "FrameInterpolator": "dicetalk.models.frame_interpolator",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dicetalk' has no attribute {name!r}")


__all__ = ["EMOTIONS", "__version__", *_EXPORTS]
