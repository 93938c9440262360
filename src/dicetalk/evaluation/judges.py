"""The four judges: small networks trained only on ground-truth frames of training identities.

- :class:`EmotionJudge` — 8 MEAD emotions from one whole frame (64 px); an auxiliary head
  regresses the frame's 12 expression coefficients and head pose during training, which
  makes its features read the face rather than the person. A video's prediction is the mean
  of its frame logits (the first frames skipped: a generated clip starts from the reference).
- :class:`IdentityJudge` — a normalised 64-d embedding of one whole frame, trained as a cosine
  classifier with an additive margin (CosFace) over the training identities; F-SIM is the
  cosine similarity of embeddings.
- :class:`SyncJudge` — SyncNet-style two towers: a mouth tower over 5 consecutive lower-face
  crops and an audio tower over the 20 log-mel frames (200 ms) of the same 5 video frames,
  both giving normalised 128-d embeddings, trained contrastively so that the true alignment
  is nearer than every offset up to +-15 frames and than other clips.
- :class:`MouthJudge` — a regressor of the mouth's shape (inner-lip opening and mouth width,
  in percent of the frame side; :mod:`~dicetalk.evaluation.mouth`) from one colour lower-face
  crop, trained on the world's true shapes: lip sync measured against the truth, with no
  contrastive model in the loop (LMD-style error, correlation of the opening over time).

Each judge is a diffusers ``ModelMixin`` + ``ConfigMixin`` saved as ``config.json`` +
``diffusion_pytorch_model.safetensors`` in its own folder. The trained judges ship inside the
package under ``dicetalk/assets/judges/`` (:func:`load_judges` reads them, no download);
``dicetalk train-judges`` retrains them (see ``judges.json`` there for the exact command). The
mouth judge is optional when loading: a judges folder trained before it existed still loads
(``Judges.mouth`` is then None and the mouth measures are left out).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .. import EMOTIONS
from ..errors import WeightsError
from .features import FACE_SIZE, MELS_PER_FRAME, MOUTH_SIZE, N_MELS

JUDGE_NAMES = ("emotion", "identity", "sync", "mouth")
REQUIRED_JUDGES = ("emotion", "identity", "sync")  # a folder without a mouth judge still loads
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"
MANIFEST_NAME = "judges.json"


def default_judges_dir() -> Path:
    """The judges shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "assets" / "judges"


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FrameEncoder(nn.Module):
    """(N, C, H, W) -> (N, widths[-1], H / 2^k, W / 2^k): per stage a stride-2 conv, then (after the first) a stride-1 conv."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        layers, cin = [], in_channels
        for i, w in enumerate(widths):
            layers.append(_conv_block(cin, w, 2))
            if i:
                layers.append(_conv_block(w, w, 1))
            cin = w
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _to_images(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) numpy/torch -> float (N, 3, H, W) in [0, 1]; float tensors pass through."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.dtype == torch.uint8:
        return frames.permute(0, 3, 1, 2).float().div_(255.0)
    return frames


class EmotionJudge(ModelMixin, ConfigMixin):
    """Whole frame (64 px) -> logits over :data:`EMOTIONS`; ``features`` is the 128-d penultimate layer."""

    @register_to_config
    def __init__(
        self,
        emotions: tuple[str, ...] = EMOTIONS,
        image_size: int = FACE_SIZE,
        widths: tuple[int, ...] = (32, 48, 64, 96),
        feature_dim: int = 128,
        num_aux: int = 15,  # 12 expression coefficients + 3 pose angles (training only)
        skip_frames: int = 5,
    ):
        super().__init__()
        self.encoder = FrameEncoder(3, tuple(widths))
        # Flattened, not pooled: where the brows, lids and lip corners sit is the expression.
        cells = (image_size // 2 ** len(widths)) ** 2
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * cells, feature_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(feature_dim, len(emotions))
        self.aux = nn.Linear(feature_dim, num_aux)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.encoder(_to_images(images)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (logits (N, 8), features (N, 128), auxiliary regression (N, 15))."""
        f = self.features(images)
        return self.classifier(f), f, self.aux(f)


class IdentityJudge(ModelMixin, ConfigMixin):
    """Whole frame (64 px) -> normalised identity embedding; ``features`` is the 128-d penultimate layer."""

    @register_to_config
    def __init__(
        self,
        identities: tuple[str, ...] = (),
        image_size: int = FACE_SIZE,
        widths: tuple[int, ...] = (32, 48, 64, 96),
        feature_dim: int = 128,
        embed_dim: int = 64,
        scale: float = 16.0,
        margin: float = 0.25,
    ):
        super().__init__()
        self.encoder = FrameEncoder(3, tuple(widths))
        self.project = nn.Sequential(nn.Linear(widths[-1], feature_dim), nn.ReLU(inplace=True))
        self.embed_head = nn.Linear(feature_dim, embed_dim)
        # Cosine classifier over the training identities (training only).
        self.class_weight = nn.Parameter(torch.randn(max(1, len(identities)), embed_dim) * 0.1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.encoder(_to_images(images)).mean(dim=(2, 3)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (normalised embedding (N, 64), features (N, 128))."""
        f = self.features(images)
        return F.normalize(self.embed_head(f), dim=-1), f

    def margin_logits(self, embedding: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """CosFace logits ``s * (cos - m [true class])`` over the training identities."""
        cos = embedding @ F.normalize(self.class_weight, dim=-1).T
        if labels is not None:
            cos = cos - self.config.margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.config.scale * cos


class SyncJudge(ModelMixin, ConfigMixin):
    """Two towers over 5-frame windows: mouth crops and the matching 200 ms of log-mel.

    Both towers are fully convolutional in time: a clip of ``T`` frames gives ``T - 4`` window
    embeddings at once (window ``t`` = frames ``t .. t + 4``), so scoring every offset costs one
    pass per tower.
    """

    @register_to_config
    def __init__(
        self,
        mouth_size: tuple[int, int] = MOUTH_SIZE,
        window: int = 5,
        max_offset: int = 15,
        widths: tuple[int, ...] = (24, 48, 64),
        frame_dim: int = 128,
        audio_channels: int = 128,
        embed_dim: int = 128,
        n_mels: int = N_MELS,
        mels_per_frame: int = MELS_PER_FRAME,
        mel_offset: float = 5.0,
        mel_scale: float = 5.0,
    ):
        super().__init__()
        self.mouth_encoder = FrameEncoder(1, tuple(widths))
        h, w = (s // 2 ** len(widths) for s in mouth_size)
        self.mouth_project = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * h * w, frame_dim), nn.ReLU(inplace=True))
        self.mouth_temporal = nn.Sequential(
            nn.Conv1d(frame_dim, embed_dim, window), nn.BatchNorm1d(embed_dim), nn.ReLU(inplace=True), nn.Conv1d(embed_dim, embed_dim, 1)
        )
        c = audio_channels
        self.audio_tower = nn.Sequential(
            nn.Conv1d(n_mels, c, 3, padding=1), nn.BatchNorm1d(c), nn.ReLU(inplace=True),
            nn.Conv1d(c, c, mels_per_frame, stride=mels_per_frame), nn.BatchNorm1d(c), nn.ReLU(inplace=True),
            nn.Conv1d(c, embed_dim, window), nn.BatchNorm1d(embed_dim), nn.ReLU(inplace=True),
            nn.Conv1d(embed_dim, embed_dim, 1),
        )  # fmt: skip
        self.logit_scale = nn.Parameter(torch.tensor(2.3))  # exp(2.3) = 10 (training only)

    def frame_features(self, mouths: torch.Tensor) -> torch.Tensor:
        """(N, h, w) uint8 or (N, 1, h, w) float mouth crops -> (N, frame_dim): each crop standardised first."""
        if mouths.dtype == torch.uint8:
            mouths = mouths.float().div_(255.0)
        if mouths.dim() == 3:
            mouths = mouths[:, None]
        mean = mouths.mean(dim=(1, 2, 3), keepdim=True)
        std = mouths.std(dim=(1, 2, 3), keepdim=True).clamp_min(0.02)
        return self.mouth_project(self.mouth_encoder((mouths - mean) / std))

    def embed_video(self, frame_features: torch.Tensor) -> torch.Tensor:
        """(B, T, frame_dim) -> (B, T - 4, embed_dim) normalised window embeddings."""
        return F.normalize(self.mouth_temporal(frame_features.transpose(1, 2)).transpose(1, 2), dim=-1)

    def embed_audio(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, T, 4, n_mels) log-mel grouped per video frame -> (B, T - 4, embed_dim) normalised."""
        b, t = mels.shape[:2]
        x = ((mels - self.config.mel_offset) / self.config.mel_scale).reshape(b, t * self.config.mels_per_frame, -1)
        return F.normalize(self.audio_tower(x.transpose(1, 2)).transpose(1, 2), dim=-1)


class MouthJudge(ModelMixin, ConfigMixin):
    """Colour lower-face crop (32 x 48) -> the mouth's shape, ``measures`` in percent of the frame side.

    The head predicts standardised values; ``target_mean`` / ``target_scale`` (set from the
    training targets) bring them back to percent of the frame side.
    """

    @register_to_config
    def __init__(
        self,
        measures: tuple[str, ...] = ("opening", "width"),
        crop_size: tuple[int, int] = MOUTH_SIZE,
        widths: tuple[int, ...] = (32, 48, 64),
        feature_dim: int = 128,
        target_mean: tuple[float, ...] = (0.0, 0.0),
        target_scale: tuple[float, ...] = (1.0, 1.0),
    ):
        super().__init__()
        self.encoder = FrameEncoder(3, tuple(widths))
        h, w = (s // 2 ** len(widths) for s in crop_size)
        # Flattened, not pooled: where the lips' edges sit is the measurement.
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * h * w, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, len(measures))
        self.register_buffer("mean", torch.tensor(target_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("scale", torch.tensor(target_scale, dtype=torch.float32), persistent=False)

    def standardised(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, h, w, 3) uint8 or (N, 3, h, w) float crops -> (N, len(measures)) standardised predictions."""
        return self.head(self.project(self.encoder(_to_images(crops))))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """-> (N, len(measures)) in percent of the frame side."""
        return self.standardised(crops) * self.scale + self.mean


JUDGE_CLASSES = {"emotion": EmotionJudge, "identity": IdentityJudge, "sync": SyncJudge, "mouth": MouthJudge}


@dataclass
class Judges:
    emotion: EmotionJudge
    identity: IdentityJudge
    sync: SyncJudge
    folder: Path
    manifest: dict
    mouth: MouthJudge | None = None

    def eval(self) -> "Judges":
        for judge in (self.emotion, self.identity, self.sync, self.mouth):
            if judge is not None:
                judge.eval().requires_grad_(False)
        return self


def round_to_half(judge: nn.Module) -> nn.Module:
    """Round every float parameter and buffer to float16 precision (kept as float32), in place.

    The judges are stored in float16 (half the size); rounding before validating and saving makes
    the saved judge exactly the one that was measured.
    """
    with torch.no_grad():
        for tensor in [*judge.parameters(), *judge.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return judge


def save_judge(judge: ModelMixin, folder: str | os.PathLike) -> None:
    """``config.json`` + float16 ``diffusion_pytorch_model.safetensors`` (diffusers' layout)."""
    from safetensors.torch import save

    from ..utils.atomic import write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    judge.save_config(str(folder))
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in judge.state_dict().items()}
    write_bytes(folder / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))


def load_judge(name: str, folder: str | os.PathLike) -> ModelMixin:
    """One judge from ``folder`` (config.json + safetensors); :class:`WeightsError` if unusable."""
    from safetensors.torch import load_file

    cls = JUDGE_CLASSES[name]
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not config_path.is_file() or not weights_path.is_file():
        raise WeightsError(f"{folder}: no {name} judge here (needs {CONFIG_NAME} and {WEIGHTS_NAME}); train one with 'dicetalk train-judges'")
    try:
        config = json.loads(config_path.read_text())
        if config.get("_class_name") != cls.__name__:
            raise WeightsError(f"{config_path}: holds a {config.get('_class_name')!r}, expected {cls.__name__}")
        model = cls.from_config(config)
        state = load_file(str(weights_path))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"{folder}: the {name} judge cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    return model.eval().requires_grad_(False)


def load_judges(folder: str | os.PathLike | None = None) -> Judges:
    """The judges from ``folder`` (default: those shipped with the package), in eval mode.

    The emotion, identity and lip-sync judges are required; the mouth judge is loaded when the
    folder has one (``mouth/``), else ``Judges.mouth`` is None.
    """
    folder = default_judges_dir() if folder is None else Path(folder)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: no such judges folder")
    manifest_path = folder / MANIFEST_NAME
    manifest = {}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError:
            raise WeightsError(f"{manifest_path}: not valid JSON") from None
    judges = {name: load_judge(name, folder / name) for name in REQUIRED_JUDGES}
    mouth = load_judge("mouth", folder / "mouth") if (folder / "mouth").exists() else None
    return Judges(**judges, folder=folder, manifest=manifest, mouth=mouth).eval()
