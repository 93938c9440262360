"""dicetalk: DICE-Talk emotional talking-head generation (Disentangle Identity, Cooperate Emotion).

Folders: ``models`` (neural components), ``pipeline`` (generation), ``training``, ``data``
(loaders for MEAD/HDTF layouts), ``synthetic`` (the synthetic talking-face world),
``evaluation`` (judges and metrics), ``convert`` (the authors' released checkpoints),
``cli`` and ``ui``.
"""

__version__ = "0.1.0"

EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
"""The eight MEAD emotions, in the order used by every label index in the project."""
