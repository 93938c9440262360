"""``dicetalk download DIR``: fetch the authors' released files into their own layout.

Layout written (what ``dicetalk convert-official`` and ``--weights`` read)::

    DIR/DICE-Talk/{unet,pose_guider,audio_linear,emo_model}.pth   (hub repo EEEELY/DICE-Talk)
    DIR/RIFE/flownet.pkl                                           (same repo: the frame interpolator)
    DIR/stable-video-diffusion-img2vid-xt/...                      (stabilityai/stable-video-diffusion-img2vid-xt, fp16)
    DIR/whisper-tiny/...                                           (openai/whisper-tiny)

The eight emotion priors ship in the authors' code repository (``examples/emo/*.npy``), not on
the hub: put them anywhere under DIR. Downloads go through ``huggingface_hub`` (resumable,
cached, ``HF_TOKEN`` / ``HF_ENDPOINT`` honoured); ``mirror`` reads the same repositories from a
local folder (``MIRROR/<owner>/<name>/...``) instead, for offline machines and tests.

``RIFE/flownet.pkl`` is a torch pickle (the authors' README lists it in the same hub repository,
``huggingface-cli download EEEELY/DICE-Talk --local-dir checkpoints``). Downloading it runs
nothing; ``dicetalk convert-official`` reads it with ``torch.load(weights_only=True)`` and writes
it as safetensors (:mod:`.rife`). The face detector ``yoloface_v5m.pt`` in that repository is not
fetched: this project does not use it.
"""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..utils.atomic import atomic_path
from ._common import first_line


@dataclass(frozen=True)
class Source:
    repo_id: str
    subfolder: str  # where its files go under DIR ("" = DIR itself)
    patterns: tuple[str, ...]


SOURCES = (
    Source("EEEELY/DICE-Talk", "", ("DICE-Talk/*.pth", "RIFE/flownet.pkl")),
    Source(
        "stabilityai/stable-video-diffusion-img2vid-xt",
        "stable-video-diffusion-img2vid-xt",
        (
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "vae/config.json",
            "vae/diffusion_pytorch_model.fp16.safetensors",
            "image_encoder/config.json",
            "image_encoder/model.fp16.safetensors",
            "feature_extractor/preprocessor_config.json",
            "scheduler/scheduler_config.json",
        ),
    ),
    Source("openai/whisper-tiny", "whisper-tiny", ("config.json", "preprocessor_config.json", "model.safetensors")),
)


def download_release(target: str | Path, mirror: str | Path | None = None, revision: str | None = None, progress=print) -> Path:
    """Fetch every :data:`SOURCES` repository into ``target``; returns ``target``."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a folder")
    for source in SOURCES:
        dest = target / source.subfolder if source.subfolder else target
        dest.mkdir(parents=True, exist_ok=True)
        progress(f"{source.repo_id} -> {dest}")
        if mirror is not None:
            _copy_from_mirror(Path(mirror) / source.repo_id, dest, source.patterns)
        else:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import HfHubHTTPError

            try:
                snapshot_download(repo_id=source.repo_id, local_dir=str(dest), allow_patterns=list(source.patterns), revision=revision)
            except (HfHubHTTPError, OSError, ValueError) as exc:
                raise InputError(f"cannot download {source.repo_id}: {first_line(exc)}") from None
    return target


def _copy_from_mirror(repo: Path, dest: Path, patterns: tuple[str, ...]) -> None:
    if not repo.is_dir():
        raise InputError(f"mirror has no repository folder {repo}")
    files = [p for p in sorted(repo.rglob("*")) if p.is_file() and any(fnmatch.fnmatch(p.relative_to(repo).as_posix(), pat) for pat in patterns)]
    if not files:
        raise InputError(f"mirror folder {repo} holds none of {', '.join(patterns)}")
    for f in files:
        out = dest / f.relative_to(repo)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            shutil.copyfile(f, tmp)
