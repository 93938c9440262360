"""Which judges score a video: ``--judges real|synthetic|DIR`` and the default for each input.

The synthetic judges were trained on the synthetic world's 64 px faces and mean nothing on a real
face; the real judges (:mod:`~dicetalk.evaluation.real`) are the field's. The default is told from
the inputs: a video, portrait or reference dataset inside a synthetic-world folder (a folder that
``dicetalk synth`` made, marked by its ``world.json``), or a world clip itself (its sidecar ``.json``
lists the world's ``expression_names``), is scored by the synthetic judges, anything else by the
real ones. A ``DIR`` is a real-judges folder when its ``judges.json`` says
``"kind": "real"`` or it holds ``sync/`` or ``emotion/`` without the synthetic ``identity/``;
otherwise a synthetic-judges folder (``dicetalk train-judges`` output).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

KINDS = ("real", "synthetic")
WORLD_MARKER = "world.json"


@dataclass(frozen=True)
class JudgeChoice:
    kind: str  # "real" or "synthetic"
    folder: Path | None  # None: the default folder of that kind
    reason: str  # why this kind, for the printout

    @property
    def real(self) -> bool:
        return self.kind == "real"


def world_root(path: str | os.PathLike | None, levels: int = 8) -> Path | None:
    """The synthetic-world folder holding ``path`` (itself or one of ``levels`` parents), or None."""
    if path is None:
        return None
    path = Path(path).resolve()
    if _is_world_clip(path):
        return path.parent
    for folder in [path, *path.parents][: levels + 1]:
        if (folder / WORLD_MARKER).is_file():
            return folder
    return None


def _is_world_clip(path: Path) -> bool:
    sidecar = path.with_suffix(".json")
    if path.suffix != ".mp4" or not sidecar.is_file() or sidecar.stat().st_size > 1 << 20:
        return False
    try:
        meta = json.loads(sidecar.read_text())
    except (ValueError, OSError):
        return False
    return isinstance(meta, dict) and "expression_names" in meta and "identity" in meta


def _folder_kind(folder: Path) -> str:
    manifest = folder / "judges.json"
    if manifest.is_file():
        try:
            kind = json.loads(manifest.read_text()).get("kind")
        except (ValueError, OSError, AttributeError):
            kind = None
        if kind in KINDS:
            return kind
    if ((folder / "sync").is_dir() or (folder / "emotion").is_dir()) and not (folder / "identity").is_dir():
        return "real"
    return "synthetic"


def choose_judges(spec: str | os.PathLike | None, inputs: list[str | os.PathLike | None]) -> JudgeChoice:
    """The judges for ``inputs`` (videos, portrait, reference folder) given ``--judges`` (None: default)."""
    if spec is None or str(spec) == "":
        world = next((w for w in map(world_root, inputs) if w is not None), None)
        if world is not None:
            return JudgeChoice("synthetic", None, f"default: a synthetic-world input ({world / WORLD_MARKER})")
        return JudgeChoice("real", None, "default: not a synthetic-world input")
    text = str(spec)
    if text in KINDS:
        return JudgeChoice(text, None, f"--judges {text}")
    folder = Path(text)
    if not folder.is_dir():
        raise InputError(f"--judges takes real, synthetic or a judges folder: {text} is none of these")
    return JudgeChoice(_folder_kind(folder), folder, f"--judges {text}")


def synthetic_on_real_warning(choice: JudgeChoice, inputs: list[str | os.PathLike | None]) -> str | None:
    """A warning when the synthetic judges score something that is not from the synthetic world."""
    if choice.real or any(world_root(p) is not None for p in inputs if p is not None):
        return None
    return "synthetic judges on a video that is not from the synthetic world: their emotion, identity and sync figures mean nothing on real faces (use --judges real)"
