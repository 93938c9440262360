"""I3D features for FVD, the Fréchet Video Distance, with the protocol most talking-head papers use.

FVD (Unterthiner et al., "Towards accurate generative models of video: a new metric and
challenges", arXiv 1812.01717, 2018) is the Fréchet distance between Gaussians fitted to
features of real and generated clips, the features being those of I3D (Carreira & Zisserman,
"Quo vadis, action recognition? A new model and the Kinetics dataset", CVPR 2017), the RGB
Inception-v1 network inflated to 3-D and trained on Kinetics-400.

Most PyTorch evaluations (VideoGPT, ``wilson1yan/VideoGPT``, ``videogpt/fvd/``; and the widely
copied ``JunyaoHu/common_metrics_on_video_quality``, ``fvd/videogpt/``) run the
``piergiaj/pytorch-i3d`` port of the network (``InceptionI3d``) with ``i3d_pretrained_400.pt``, a
plain state dict that VideoGPT's ``convert_tf_pretrained.py`` made from the TF-Hub module
``deepmind/i3d-kinetics-400/1`` (the network of the original TensorFlow FVD). This module is an
independent implementation of that route:

* :class:`I3D`: the port's architecture and parameter names (the file loads without renaming).
  Every convolution and max pool pads TensorFlow-"SAME"-style, computed from each input's size:
  total ``max(k - s, 0)`` where the stride divides the size, else ``max(k - size % s, 0)``, the
  smaller half in front. Pools pad with zeros, as the port does; their inputs follow a ReLU, so
  this equals TensorFlow's padding with -inf. BatchNorm uses eps 1e-5, as the port does (Sonnet's
  original used 1e-3: a small, systematic difference of the PyTorch route, kept so that numbers
  match the papers that used it).
* The features are what VideoGPT's ``get_fvd_logits`` takes: the port's ``forward``, the 400
  Kinetics logits before the softmax (a 1x1x1 convolution of the 2 x 7 x 7 average pool of
  ``Mixed_5c``), averaged over the remaining time steps (one step for 16 frames). Not the 1024-d
  pool (``extract_features``; common_metrics marks that use "wrong").
* :func:`preprocess_clips`: VideoGPT's ``preprocess``: uint8 / 255; the short side resized to
  224 (the long side to ``ceil(long * 224 / short)``) with ``F.interpolate(mode="bilinear",
  align_corners=False)``, no antialiasing; the centre 224 x 224 crop; then ``(x - 0.5) * 2``, in
  [-1, 1]; layout (N, 3, T, 224, 224). (The original TensorFlow FVD and some copies instead resize
  the whole frame to 224 x 224; for square talking-head frames the two agree to float rounding.)
* :func:`fvd_features`: a long talking-head video gives consecutive non-overlapping 16-frame clips
  (frames 0-15, 16-31, ...; the frames left after the last whole clip are dropped), one 400-d
  feature each ("FVD-16", as talking-head evaluations commonly compute it: every clip of every
  video is one sample of the distribution).

Weights: ``i3d_pretrained_400.pt`` (287 float32 tensors, 12.7 M numbers, about 51 MB).
VideoGPT fetches it from Google Drive (:data:`I3D_GDRIVE_ID`), which needs a Drive client;
``common_metrics_on_video_quality`` keeps the file in its git repository, so :func:`i3d_weights`
downloads it from there, pinned to a commit (:data:`I3D_WEIGHTS_URL`), and checks it against the
git blob id that commit's tree gives it (:data:`I3D_WEIGHTS_GIT_BLOB`); a Hugging Face copy of the
same name is tried second, checked the same way. The file is read with
``torch.load(weights_only=True)`` only and converted to a diffusers folder (config.json +
safetensors). Licences: the port (piergiaj/pytorch-i3d) is Apache-2.0, VideoGPT's conversion
script MIT; the weights are DeepMind's Kinetics-400 I3D (deepmind/kinetics-i3d, Apache-2.0),
converted.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ...errors import InputError, WeightsError
from .weights import convert_judge, load_judge

I3D_FILE = "i3d_pretrained_400.pt"
I3D_WEIGHTS_URL = (
    "https://raw.githubusercontent.com/JunyaoHu/common_metrics_on_video_quality/"
    "5f751734ce9cef4cd2dddb235726b75dff62a387/fvd/videogpt/i3d_pretrained_400.pt"
)
"""The file as committed to ``JunyaoHu/common_metrics_on_video_quality`` (plain git, not LFS), pinned to a commit."""
I3D_WEIGHTS_MIRRORS = ("https://huggingface.co/Xiaodong/FVD_I3D/resolve/main/i3d_pretrained_400.pt",)
"""Tried after :data:`I3D_WEIGHTS_URL`; a copy is only kept if its git blob id matches."""
I3D_WEIGHTS_GIT_BLOB = "a867b87ac3a9097d200598b1d48a1b890d8ec744"
"""Git's object id of the file (``sha1(b"blob <size>\\0" + bytes)``), from the pinned commit's tree."""
I3D_GDRIVE_ID = "1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT"
"""Where VideoGPT (``videogpt/download.py``) fetches the file (``gdown``); not fetched here."""
I3D_URL_ENV = "DICETALK_I3D_URL"
"""Overrides the source URL (then the file is not checked against the blob id: the user chose it)."""
I3D_LICENCE = (
    "i3d_pretrained_400.pt: DeepMind's Kinetics-400 I3D (deepmind/kinetics-i3d, Apache-2.0) from TF-Hub "
    "deepmind/i3d-kinetics-400/1, converted by VideoGPT (MIT) for the piergiaj/pytorch-i3d port (Apache-2.0)"
)
FVD_DIR = "fvd"
"""Subfolder of the judges folder that holds the converted I3D."""

CLIP_LEN = 16
SIZE = 224
MIN_FRAMES = 9  # the time axis shrinks 8x before the 2-frame average pool
_BN_EPS = 1e-5  # the port's; Sonnet's BatchNorm (the TensorFlow original) used 1e-3

# Inception blocks: name, input channels, (branch 0, branch 1 reduce, branch 1, branch 2 reduce, branch 2, branch 3).
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


# ----------------------------------------------------------------------------------------- model


def same_padding(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> tuple[int, ...]:
    """TensorFlow "SAME" padding of a (T, H, W) input, in ``F.pad``'s order (W front, W back, H.., T..)."""
    pads: list[int] = []
    for n, k, s in zip(reversed(tuple(size)), reversed(tuple(kernel)), reversed(tuple(stride))):
        total = max(k - (s if n % s == 0 else n % s), 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class Unit3D(nn.Module):
    """Conv3d (no bias, SAME padding) -> BatchNorm -> ReLU; the logits layer is a plain biased conv."""

    def __init__(self, c_in: int, c_out: int, kernel=(1, 1, 1), stride=(1, 1, 1), norm_act: bool = True):
        super().__init__()
        self.kernel, self.stride, self.norm_act = tuple(kernel), tuple(stride), norm_act
        self.conv3d = nn.Conv3d(c_in, c_out, self.kernel, self.stride, padding=0, bias=not norm_act)
        if norm_act:
            self.bn = nn.BatchNorm3d(c_out, eps=_BN_EPS, momentum=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel != (1, 1, 1):  # SAME padding of a 1x1x1 kernel is 0 whatever the size and stride
            x = F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride))
        x = self.conv3d(x)
        return F.relu(self.bn(x)) if self.norm_act else x


class SamePool3d(nn.Module):
    """Max pool with SAME padding (zeros, as the port: the inputs are non-negative)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride)), self.kernel, self.stride)


class Mixed(nn.Module):
    """An Inception block: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | 3x3x3 max pool -> 1x1, concatenated."""

    def __init__(self, c_in: int, widths: Sequence[int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(c_in, w0)
        self.b1a = Unit3D(c_in, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(c_in, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = SamePool3d((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(c_in, w3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class I3D(ModelMixin, ConfigMixin):
    """RGB I3D (Inception-v1 inflated), Kinetics-400 logits: the FVD feature network.

    Input (N, 3, T, H, W) in [-1, 1] (:func:`preprocess_clips`), ``T >= 9``, ``193 <= H, W <= 224``
    (the final 2 x 7 x 7 average pool must leave one spatial position; 224 is the protocol's).
    Output (N, num_classes): the logits before the softmax, averaged over ``ceil(T / 8) - 1``
    time steps. Parameter names are ``i3d_pretrained_400.pt``'s.
    """

    @register_to_config
    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = SamePool3d((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = SamePool3d((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = Mixed(*_MIXED["Mixed_3b"])
        self.Mixed_3c = Mixed(*_MIXED["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = SamePool3d((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = Mixed(*_MIXED["Mixed_4b"])
        self.Mixed_4c = Mixed(*_MIXED["Mixed_4c"])
        self.Mixed_4d = Mixed(*_MIXED["Mixed_4d"])
        self.Mixed_4e = Mixed(*_MIXED["Mixed_4e"])
        self.Mixed_4f = Mixed(*_MIXED["Mixed_4f"])
        self.MaxPool3d_5a_2x2 = SamePool3d((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = Mixed(*_MIXED["Mixed_5b"])
        self.Mixed_5c = Mixed(*_MIXED["Mixed_5c"])
        self.logits = Unit3D(1024, num_classes, norm_act=False)

    def features_5c(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> Mixed_5c's (N, 1024, ceil(T/8), ceil(H/32), ceil(W/32))."""
        for name in ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                     "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                     "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"):  # fmt: skip
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D takes (N, 3, T, H, W) clips, got {tuple(x.shape)}")
        t, h, w = x.shape[2:]
        if t < MIN_FRAMES or not (-(-h // 32) == -(-w // 32) == 7):
            raise ValueError(f"I3D needs T >= {MIN_FRAMES} and 193 <= H, W <= 224 (FVD uses 16 x 224 x 224), got {t} x {h} x {w}")
        pooled = F.avg_pool3d(self.features_5c(x), (2, 7, 7), stride=1)  # (N, 1024, T', 1, 1); dropout: identity in eval
        return self.logits(pooled).flatten(2).mean(dim=2)  # (N, classes, T') -> time average


# ----------------------------------------------------------------------------------- preprocessing


def preprocess_clips(clips_uint8: np.ndarray) -> torch.Tensor:
    """(N, T, H, W, 3) uint8 RGB clips -> (N, 3, T, 224, 224) float32 in [-1, 1], VideoGPT's FVD preprocessing.

    Per clip: ``/ 255``; bilinear resize (``align_corners=False``, no antialias) of the short side
    to 224, the long side to ``ceil(long * 224 / short)`` (VideoGPT's float arithmetic, kept);
    the centre crop (offset ``(size - 224) // 2``); ``(x - 0.5) * 2``.
    """
    clips = np.asarray(clips_uint8)
    if clips.ndim != 5 or clips.shape[-1] != 3 or clips.dtype != np.uint8:
        raise ValueError(f"clips must be (N, T, H, W, 3) uint8 RGB, got {clips.shape} {clips.dtype}")
    n, t, h, w, _ = clips.shape
    scale = SIZE / min(h, w)
    size = (SIZE, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), SIZE)
    top, left = (size[0] - SIZE) // 2, (size[1] - SIZE) // 2
    out = torch.empty((n, 3, t, SIZE, SIZE), dtype=torch.float32)
    for i, clip in enumerate(clips):
        frames = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
        frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        frames = frames[:, :, top : top + SIZE, left : left + SIZE]
        out[i] = (frames.permute(1, 0, 2, 3) - 0.5) * 2
    return out


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def clip_starts(num_frames: int, clip_len: int = CLIP_LEN, stride: int = CLIP_LEN, max_clips: int | None = None) -> list[int]:
    """First frames of the whole clips ``start .. start + clip_len - 1`` of a video, every ``stride`` frames from 0."""
    starts = list(range(0, num_frames - clip_len + 1, stride))
    return starts if max_clips is None else starts[:max_clips]


def fvd_features(
    model: I3D,
    video_rgb: np.ndarray,
    clip_len: int = CLIP_LEN,
    stride: int = CLIP_LEN,
    max_clips: int | None = None,
    batch_size: int = 2,
) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB video -> (K, 400) float64 I3D logits of its clips (module docstring).

    Clips of ``clip_len`` frames start at frames 0, ``stride``, ``2 stride``, ... (the defaults:
    consecutive non-overlapping 16-frame clips, the remainder dropped), at most ``max_clips`` of
    them; ``batch_size`` clips go through the network at once, in float32 on the model's device.
    """
    video = np.asarray(video_rgb)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"video must be (T, H, W, 3) uint8 RGB, got {video.shape} {video.dtype}")
    if clip_len < MIN_FRAMES or stride < 1 or batch_size < 1 or (max_clips is not None and max_clips < 1):
        raise ValueError(f"need clip_len >= {MIN_FRAMES}, stride >= 1, batch_size >= 1, max_clips >= 1; got {clip_len}, {stride}, {batch_size}, {max_clips}")
    if len(video) < clip_len:
        raise InputError(f"the video has {len(video)} frames; FVD needs clips of {clip_len}")
    starts = clip_starts(len(video), clip_len, stride, max_clips)
    device = _device(model)
    feats = []
    with torch.inference_mode():
        for b in range(0, len(starts), batch_size):
            clips = np.stack([video[s : s + clip_len] for s in starts[b : b + batch_size]])
            feats.append(model(preprocess_clips(clips).to(device)).double().cpu())
    return torch.cat(feats).numpy()


# -------------------------------------------------------------------------------------- weights


def _num_classes(state: dict[str, torch.Tensor], source: Path) -> int:
    bias = state.get("logits.conv3d.bias")
    if bias is None or bias.ndim != 1:
        raise WeightsError(f"{source}: not I3D weights (no 1-d 'logits.conv3d.bias')")
    return int(bias.shape[0])


def load_i3d(path: str | os.PathLike) -> I3D:
    """I3D in eval mode from a diffusers folder (:func:`convert_i3d`), a ``.safetensors`` file or
    ``i3d_pretrained_400.pt`` (read as :mod:`.weights` says: never unpickled; one-line errors)."""
    return load_judge(path, I3D, "I3D", lambda state, source: I3D(num_classes=_num_classes(state, source)))


def convert_i3d(src: str | os.PathLike, dst: str | os.PathLike, source: str | None = None) -> Path:
    """``i3d_pretrained_400.pt`` (or any input of :func:`load_i3d`) -> a diffusers folder ``dst``, atomically;
    ``source``, when given, is recorded with the licence in ``dst/source.json``."""
    return convert_judge(load_i3d(src), dst, None if source is None else {"source": source, "licence": I3D_LICENCE})


def git_blob_id(path: str | os.PathLike) -> str:
    """Git's object id of a file's bytes (what a commit's tree names it by)."""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # noqa: S324 (git's identifier, not a security hash)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(urls: Sequence[str], dst: Path, blob_id: str | None, progress: Callable[[str], object]) -> str:
    """The first of ``urls`` that downloads (and, with ``blob_id``, matches it) -> ``dst``; returns that URL."""
    from ...utils.atomic import atomic_path

    errors = []
    for url in urls:
        progress(f"{url} -> {dst}")
        try:
            with atomic_path(dst) as tmp:
                with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:  # noqa: S310 (fixed URLs of the weights)
                    shutil.copyfileobj(response, out, 1 << 20)
                if blob_id is not None and (got := git_blob_id(tmp)) != blob_id:
                    raise ValueError(f"git blob id {got[:12]}, expected {blob_id[:12]}")
            return url
        except (OSError, ValueError, http.client.HTTPException) as exc:
            errors.append(f"{url}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
    raise InputError(
        f"cannot download {I3D_FILE} ({'; '.join(errors)}); get it from Google Drive id {I3D_GDRIVE_ID} "
        f"(VideoGPT) or {I3D_WEIGHTS_URL} and pass the folder holding it as the mirror"
    )


def i3d_weights(folder: str | os.PathLike, mirror: str | os.PathLike | None = None, progress: Callable[[str], object] = print) -> I3D:
    """The FVD network of the judges ``folder``: ``folder/fvd`` if converted, else fetched and converted first.

    Without a converted folder, ``mirror/i3d_pretrained_400.pt`` is used when ``mirror`` is given,
    else the file is downloaded (:data:`I3D_WEIGHTS_URL`, then :data:`I3D_WEIGHTS_MIRRORS`, each
    checked against :data:`I3D_WEIGHTS_GIT_BLOB`; ``$DICETALK_I3D_URL`` replaces them, unchecked)
    into a scratch folder; it is converted to ``folder/fvd`` (``source.json`` names where it came
    from) and the raw download deleted. Fetch failures raise one-line :class:`InputError`.
    """
    folder = Path(folder)
    target = folder / FVD_DIR
    if (target / "config.json").is_file():
        return load_i3d(target)
    if mirror is not None:
        src = Path(mirror) / I3D_FILE
        if not src.is_file():
            raise InputError(f"mirror {mirror} has no {I3D_FILE}")
        progress(f"converting {src} -> {target}")
        convert_i3d(src, target, source=str(src))
        return load_i3d(target)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write {folder}: {exc.strerror or type(exc).__name__}") from None
    override = os.environ.get(I3D_URL_ENV)
    urls, blob_id = ([override], None) if override else ([I3D_WEIGHTS_URL, *I3D_WEIGHTS_MIRRORS], I3D_WEIGHTS_GIT_BLOB)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
        src = Path(scratch) / I3D_FILE
        url = _download(urls, src, blob_id, progress)
        progress(f"converting {src.name} -> {target}")
        convert_i3d(src, target, source=url)
    return load_i3d(target)
