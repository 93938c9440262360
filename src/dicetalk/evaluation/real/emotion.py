"""EMO-AffectNet, the emotion judge of real videos, and the paper's Emo-Score.

DICE-Talk reports Emo-Score with the static facial-expression model of Ryumina, Dresvyanskiy &
Karpov, "In search of a robust facial expressions recognition model: A large-scale visual
cross-corpus study", Neurocomputing 514 (2022), "EMO-AffectNet": a ResNet-50 pre-trained on
VGGFace2 (the keras-vggface layout, Caffe-style: the stride sits on each stage's first 1x1 conv),
fine-tuned on AffectNet with a 512-unit ReLU layer and a 7-way softmax.

Source and layout. The authors' TensorFlow model is in ``github.com/ElenaRyumina/EMO-AffectNetModel``
(``functions/get_models.py``: ``RESNET50`` + ``Dense(512, relu, name="features")`` +
``Dropout(0.5)`` + ``Dense(7, softmax)``; a Gaussian-noise layer and the dropout act in training
only). Their PyTorch port, a plain state dict of their ``ResNet50(7, channels=3)``, is on the
Hugging Face hub (:data:`EMOTION_WEIGHTS_REPO` / :data:`EMOTION_WEIGHTS_FILE`). The module names
of :class:`EmoAffectNet` are those of that port, so the state dict loads without renaming
(:func:`affectnet_state_dict` only strips a ``module.`` prefix):

* ``conv_layer_s2_same`` 7x7/2 conv, no bias, TensorFlow "same" padding (for an even input the
  extra row/column of zeros goes on the bottom/right: 224 -> 112), then ``batch_norm1``, ReLU and
  a 3x3/2 max pool without padding (Keras "valid": 112 -> 55);
* ``layer1`` .. ``layer4``: 3, 4, 6, 3 bottlenecks of widths 64, 128, 256, 512 (x4 out); in each,
  ``conv1`` 1x1 (stride 2 in the first block of layers 2-4), ``conv2`` 3x3 stride 1 padding 1,
  ``conv3`` 1x1, each followed by ``batch_norm1..3``; the first block of every layer has a
  projection shortcut ``i_downsample`` = (1x1 conv with the block's stride, BatchNorm);
* every BatchNorm has eps 1e-3 (Keras's default); the port writes ``momentum=0.99`` (Keras's
  meaning); here it is 0.01, the same running-average rule in PyTorch's convention — it only
  matters when training, never for the judge;
* global average pool -> ``fc1`` 2048 -> 512 -> ReLU -> ``fc2`` 512 -> 7 logits.

Input (:func:`preprocess`): the face crop resized to 224 x 224 by *nearest neighbour* (their torch
pipeline: ``PIL.Image.resize((224, 224), NEAREST)``; Keras's ``load_img`` also defaults to
nearest), RGB flipped to BGR, the VGGFace2 means B 91.4953, G 103.8827, R 131.0912 subtracted, no
scaling (values stay on the 0..255 scale).

Classes: output ``k`` is AffectNet's ``Neutral, Happiness, Sadness, Surprise, Fear, Disgust,
Anger``; :data:`AFFECTNET_CLASSES` names them as MEAD does, so each maps to the MEAD emotion of
the same name (:data:`AFFECTNET_TO_MEAD`). MEAD's eighth emotion, ``contempt``, has no output
(AffectNet's 8th class, contempt, is not in this 7-class model): videos asked for contempt are
excluded from Emo-Score and reported separately (:func:`emo_score`).

Licences. The authors' GitHub code is MIT-licensed (Elena Ryumina, 2021); their README offers the
models "for common use (for scientific usage only)". The weights are therefore for research use:
this project does not ship them, it downloads them on request and only reads them with
``torch.load(weights_only=True)`` (a pickle that names code is refused before it runs). The code
below is an independent implementation from the published architecture description.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ... import EMOTIONS
from ...errors import InputError, WeightsError
from .weights import convert_judge, load_judge

EMOTION_WEIGHTS_REPO = "ElenaRyumina/face_emotion_recognition"
EMOTION_WEIGHTS_FILE = "FER_static_ResNet50_AffectNet.pt"

FACE_SIZE = 224
VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
"""Per-channel means subtracted after the RGB -> BGR flip (B, G, R), on the 0..255 scale."""

AFFECTNET_LABELS = ("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger")
"""The authors' names of the 7 outputs, in output order."""
AFFECTNET_CLASSES = ("neutral", "happy", "sad", "surprised", "fear", "disgusted", "angry")
"""The same 7 outputs named as MEAD's emotions (:data:`dicetalk.EMOTIONS`)."""
AFFECTNET_TO_MEAD = dict(zip(AFFECTNET_LABELS, AFFECTNET_CLASSES))
"""AffectNet label -> MEAD emotion: each class maps to the MEAD emotion of the same meaning."""
UNSCORED_EMOTIONS = tuple(e for e in EMOTIONS if e not in AFFECTNET_CLASSES)
"""MEAD emotions the classifier cannot read (``("contempt",)``): excluded from Emo-Score."""
EMO_SCORE_CLASSES = ("neutral", "happy", "surprised", "angry")
"""The asked emotions DICE-Talk's Emo-Score is computed over."""

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # Keras momentum 0.99 in PyTorch's convention (training only)
_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride of the first block)
_EXPANSION = 4


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _StemConv(nn.Conv2d):
    """A strided conv with TensorFlow's "same" padding: output ``ceil(size / stride)``, the odd zero row/column at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class _Bottleneck(nn.Module):
    """1x1 (carrying the stride) -> 3x3 -> 1x1 (x4 channels), BatchNorm after each, residual add, ReLU."""

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * _EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride, bias=False)
        self.batch_norm1 = _bn(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)  # stride 1: "same" is symmetric
        self.batch_norm2 = _bn(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.batch_norm3 = _bn(out_channels)
        self.i_downsample = None
        if stride != 1 or in_channels != out_channels:
            self.i_downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), _bn(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.i_downsample is None else self.i_downsample(x)
        y = F.relu(self.batch_norm1(self.conv1(x)))
        y = F.relu(self.batch_norm2(self.conv2(y)))
        y = self.batch_norm3(self.conv3(y))
        return F.relu(y + shortcut)


class EmoAffectNet(ModelMixin, ConfigMixin):
    """EMO-AffectNet's ResNet-50: (N, 3, H, W) preprocessed faces (:func:`preprocess`) -> (N, num_classes) logits."""

    @register_to_config
    def __init__(self, num_classes: int = 7):
        super().__init__()
        self.conv_layer_s2_same = _StemConv(3, 64, 7, stride=2, bias=False)
        self.batch_norm1 = _bn(64)
        channels = 64
        for index, (width, blocks, stride) in enumerate(_STAGES, start=1):
            stage = []
            for b in range(blocks):
                stage.append(_Bottleneck(channels, width, stride if b == 0 else 1))
                channels = width * _EXPANSION
            setattr(self, f"layer{index}", nn.Sequential(*stage))
        self.fc1 = nn.Linear(channels, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2048): the backbone's global average pool (VGGFace2-style face descriptor, before the head)."""
        x = F.relu(self.batch_norm1(self.conv_layer_s2_same(x)))
        x = F.max_pool2d(x, 3, 2)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 512): the penultimate layer after its ReLU.

        This is the authors' ``features`` layer of the Keras model, and what their temporal (LSTM)
        models read (``relu(extract_features(x))`` in their torch code).
        """
        return F.relu(self.fc1(self.pooled(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


# ------------------------------------------------------------------------------------ input


def _as_faces(faces_rgb) -> list[np.ndarray]:
    if isinstance(faces_rgb, np.ndarray):
        if faces_rgb.ndim == 3:
            faces_rgb = faces_rgb[None]
        if faces_rgb.ndim != 4:
            raise InputError(f"faces must be (N, H, W, 3) or (H, W, 3) RGB arrays, got shape {faces_rgb.shape}")
        faces = list(faces_rgb)
    else:
        faces = [np.asarray(f) for f in faces_rgb]
    for face in faces:
        if face.ndim != 3 or face.shape[2] != 3 or face.shape[0] < 1 or face.shape[1] < 1:
            raise InputError(f"each face must be an (H, W, 3) RGB array, got shape {face.shape}")
    return faces


def preprocess(faces_rgb: np.ndarray | Sequence[np.ndarray], size: int = FACE_SIZE) -> torch.Tensor:
    """RGB face crops -> (N, 3, size, size) float32 input of :class:`EmoAffectNet`, as the authors' torch pipeline.

    ``faces_rgb``: an (N, H, W, 3) uint8 array, or a sequence of (H, W, 3) crops of any sizes.
    Each crop is resized with ``cv2.INTER_NEAREST_EXACT``, the pixel-centre nearest neighbour that
    equals PIL's ``Image.NEAREST`` (their pipeline resizes with PIL NEAREST; plain
    ``cv2.INTER_NEAREST`` samples a half pixel off), then flipped RGB -> BGR and the VGGFace2
    means are subtracted; no other scaling.
    """
    faces = _as_faces(faces_rgb)
    out = np.empty((len(faces), size, size, 3), np.float32)
    for i, face in enumerate(faces):
        if face.dtype != np.uint8:
            face = np.clip(np.rint(face), 0, 255).astype(np.uint8)
        if face.shape[:2] != (size, size):
            face = cv2.resize(np.ascontiguousarray(face), (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
        out[i] = face[..., ::-1]
    out -= np.asarray(VGGFACE2_MEAN_BGR, np.float32)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@torch.inference_mode()
def predict_logits(model: EmoAffectNet, faces_rgb: np.ndarray | Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """(N, 7) float32 logits of ``model`` on RGB face crops, ``batch_size`` faces at a time."""
    faces = _as_faces(faces_rgb)
    param = next(model.parameters())
    out = [np.zeros((0, model.config.num_classes), np.float32)]
    for start in range(0, len(faces), batch_size):
        x = preprocess(faces[start : start + batch_size]).to(param.device, param.dtype)
        out.append(model(x).float().cpu().numpy())
    return np.concatenate(out)


def _softmax(logits) -> np.ndarray:
    z = logits.detach().float().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits, np.float64)
    if z.ndim == 0 or z.shape[-1] != len(AFFECTNET_CLASSES):
        raise InputError(f"expected logits with {len(AFFECTNET_CLASSES)} classes on the last axis, got shape {z.shape}")
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def mead_probabilities(logits) -> dict[str, np.ndarray]:
    """(T, 7) logits (tensor or array) -> MEAD emotion -> (T,) per-frame softmax probability.

    Keys are the 7 :data:`AFFECTNET_CLASSES`; ``contempt`` has no entry (the model has no such class).
    """
    p = _softmax(logits)
    return {name: p[..., k] for k, name in enumerate(AFFECTNET_CLASSES)}


# --------------------------------------------------------------------------------- Emo-Score


def _group(correct: np.ndarray, mask: np.ndarray) -> dict:
    n = int(mask.sum())
    c = int(correct[mask].sum())
    return {"accuracy": c / n if n else None, "correct": c, "n": n}


def emo_score(probs_per_video: Sequence[np.ndarray], asked: Sequence[str], classes: Sequence[str] = EMO_SCORE_CLASSES) -> dict:
    """DICE-Talk's Emo-Score: the share of videos whose read emotion is the asked one.

    ``probs_per_video[i]``: (T_i, 7) per-frame softmax probabilities (in :data:`AFFECTNET_CLASSES`
    order) of video ``i``; ``asked[i]``: the MEAD emotion it was generated for. A video's emotion
    is the argmax of the **mean of its frame probabilities** (pooled over frames); it is correct
    when that equals the asked emotion. A video with no frames (no face read) counts as wrong.

    Returns:

    * ``emo_score``: accuracy over the videos asked one of ``classes`` (the paper: neutral,
      happy, surprised, angry); ``neutral``: over videos asked neutral; ``non_neutral``: over
      videos asked any of the 6 other AffectNet emotions;
    * ``counts``: ``{group: {"accuracy", "correct", "n"}}`` for those three groups,
      ``per_class``: the same per asked emotion (the 7 AffectNet ones) — for bootstrapping;
    * ``predicted`` (per video, a name or None), ``correct`` (per video: bool, None when excluded);
    * ``excluded``: indices of the videos asked an emotion the model cannot read (contempt),
      left out of every accuracy.

    An accuracy over no videos is None.
    """
    if len(probs_per_video) != len(asked):
        raise InputError(f"{len(probs_per_video)} probability arrays for {len(asked)} asked emotions")
    bad = [c for c in classes if c not in AFFECTNET_CLASSES]
    if bad:
        raise InputError(f"Emo-Score classes must be among {', '.join(AFFECTNET_CLASSES)}; got {bad[0]!r}")
    asked = [str(a).lower() for a in asked]
    unknown = [a for a in asked if a not in EMOTIONS]
    if unknown:
        raise InputError(f"asked emotion {unknown[0]!r} is not a MEAD emotion ({', '.join(EMOTIONS)})")
    predicted: list[str | None] = []
    for i, probs in enumerate(probs_per_video):
        p = np.asarray(probs, np.float64)
        if p.ndim == 1:
            p = p[None]
        if p.ndim != 2 or p.shape[1] != len(AFFECTNET_CLASSES):
            raise InputError(f"video {i}: expected (T, {len(AFFECTNET_CLASSES)}) probabilities, got shape {p.shape}")
        predicted.append(AFFECTNET_CLASSES[int(np.argmax(p.mean(axis=0)))] if len(p) else None)
    scored = np.array([a in AFFECTNET_CLASSES for a in asked], bool)
    correct = np.array([p is not None and p == a for p, a in zip(predicted, asked)], bool)
    asked_arr = np.array(asked, dtype=object)
    counts = {
        "emo_score": _group(correct, np.isin(asked_arr, list(classes))),
        "neutral": _group(correct, asked_arr == "neutral"),
        "non_neutral": _group(correct, scored & (asked_arr != "neutral")),
    }
    return {
        **{k: v["accuracy"] for k, v in counts.items()},
        "counts": counts,
        "per_class": {c: _group(correct, asked_arr == c) for c in AFFECTNET_CLASSES},
        "predicted": predicted,
        "correct": [bool(c) if s else None for c, s in zip(correct, scored)],
        "excluded": [i for i, s in enumerate(scored) if not s],
        "classes": tuple(classes),
    }


# ---------------------------------------------------------------------------------- weights


def affectnet_state_dict(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The public state dict -> :class:`EmoAffectNet`'s names.

    The names already agree (``conv_layer_s2_same.weight``, ``layer3.0.i_downsample.1.running_var``,
    ``fc1.weight``, ``fc2.bias``...); a ``module.`` prefix (a ``DataParallel`` save) is stripped.
    BatchNorm's ``num_batches_tracked`` may be absent (unused in eval mode).
    """
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in raw.items()}


def _num_classes(state: dict[str, torch.Tensor], source: Path) -> int:
    weight = state.get("fc2.weight")
    if weight is None or weight.ndim != 2:
        raise WeightsError(f"{source}: not EMO-AffectNet weights (no 2-d 'fc2.weight')")
    return int(weight.shape[0])


def load_emotion_weights(path: str | os.PathLike) -> EmoAffectNet:
    """EMO-AffectNet in eval mode from the public ``FER_static_ResNet50_AffectNet.pt``, a ``.safetensors``
    file or a diffusers folder (read as :mod:`.weights` says: never unpickled; one-line errors)."""
    build = lambda state, source: EmoAffectNet(num_classes=_num_classes(state, source))  # noqa: E731
    return load_judge(path, EmoAffectNet, "EMO-AffectNet", build, adapt=affectnet_state_dict, folder_hint="; run 'dicetalk download --judges'")


def convert_emotion(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """The public ``.pt`` (or any input of :func:`load_emotion_weights`) -> a diffusers folder ``dst``, atomically."""
    return convert_judge(load_emotion_weights(src), dst)
