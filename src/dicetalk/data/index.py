"""Find the clips of a dataset folder.

Layout (the synthetic world writes it; real data can be arranged the same way)::

    ROOT/mead/<identity>/<emotion>/level_<k>/<clip>.mp4   emotional clips (MEAD)
    ROOT/hdtf/<identity>/<clip>.mp4                       regular talking clips (HDTF), no label
    ROOT/splits.json                                      identities per split (optional)

Beside each mp4, optionally ``<clip>.json`` (metadata) and ``<clip>.safetensors`` (per-frame
``expression``, ``pose``, ``face_box``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .. import EMOTIONS
from ..emotions import class_index
from ..errors import InputError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClipRecord:
    root: Path
    rel: str  # e.g. "mead/mead_000/happy/level_3/001" (no suffix)
    dataset: str  # "mead" or "hdtf"
    identity: str
    emotion: str | None  # None: unlabelled talking data
    level: int | None
    split: str

    @property
    def video(self) -> Path:
        return self.root / f"{self.rel}.mp4"

    @property
    def coefficients(self) -> Path:
        return self.root / f"{self.rel}.safetensors"

    @property
    def labelled(self) -> bool:
        return self.emotion is not None

    @property
    def emotion_id(self) -> int:
        """Index in :data:`EMOTIONS`, -1 when unlabelled."""
        return EMOTIONS.index(self.emotion) if self.emotion else -1

    @property
    def class_id(self) -> int:
        """Discriminator class (22 MEAD classes), -1 when unlabelled."""
        return class_index(self.emotion, self.level or 1) if self.emotion else -1


_MEAD = re.compile(r"^mead/(?P<identity>[^/]+)/(?P<emotion>[^/]+)/level_(?P<level>\d+)/(?P<clip>[^/]+)$")
_HDTF = re.compile(r"^hdtf/(?P<identity>[^/]+)/(?P<clip>[^/]+)$")


def _split_table(root: Path) -> dict[str, str]:
    path = root / "splits.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable splits file ({exc})") from None
    table = {}
    for per_split in (data.get("datasets") or {}).values():
        for split, identities in per_split.items():
            for identity in identities:
                table[identity] = split
    for split in SPLITS:  # also accept a flat {"train": [...], ...}
        for identity in data.get(split, []) or []:
            table[identity] = split
    return table


def scan(root: str | Path, splits: tuple[str, ...] | None = None, datasets: tuple[str, ...] = ("mead", "hdtf")) -> list[ClipRecord]:
    """Every clip under ``root`` (sorted, so indices are stable), filtered by split and dataset."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder {root} does not exist")
    table = _split_table(root)
    records = []
    for video in sorted(root.glob("*/**/*.mp4")):
        rel = video.relative_to(root).with_suffix("").as_posix()
        if m := _MEAD.match(rel):
            emotion = m["emotion"]
            if emotion not in EMOTIONS:
                raise InputError(f"{video}: unknown emotion folder {emotion!r}")
            rec = ClipRecord(root, rel, "mead", m["identity"], emotion, int(m["level"]), table.get(m["identity"], "train"))
        elif m := _HDTF.match(rel):
            rec = ClipRecord(root, rel, "hdtf", m["identity"], None, None, table.get(m["identity"], "train"))
        else:
            continue
        if rec.dataset in datasets and (splits is None or rec.split in splits):
            records.append(rec)
    if not records:
        raise InputError(f"{root}: no clips found for splits {splits or 'any'} in {', '.join(datasets)}")
    return records
