"""Generation: :class:`DiceTalkPipeline` and what feeds it (emotion conditions, windows, loading)."""

from .pipeline_dicetalk import DiceTalkPipeline, DiceTalkPipelineOutput

__all__ = ["DiceTalkPipeline", "DiceTalkPipelineOutput"]
