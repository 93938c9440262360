"""Generation: :class:`DiceTalkPipeline` and what feeds it (emotion conditions, windows, loading).

The pipeline is imported on first use, so that the torch-free parts (options, recipes, emotion
grammar, speed switches) check a user's input before torch is loaded.
"""

from typing import TYPE_CHECKING

__all__ = ["DiceTalkPipeline", "DiceTalkPipelineOutput"]

if TYPE_CHECKING:
    from .pipeline_dicetalk import DiceTalkPipeline, DiceTalkPipelineOutput


def __getattr__(name: str):
    if name in __all__:
        from . import pipeline_dicetalk

        return getattr(pipeline_dicetalk, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
