"""FID's feature network: InceptionV3's 2048-d pool3 features, exactly as the standard FID computes them.

FID (Heusel et al., "GANs trained by a two time-scale update rule converge to a local Nash
equilibrium", NeurIPS 2017) is the Fréchet distance between Gaussians fitted to the pool3
features of real and generated images, the network being TensorFlow's 2015-12-05 InceptionV3
graph (``inception-2015-12-05.tgz``). ``pytorch-fid`` (mseitzer) ported that graph to PyTorch and
``torch-fidelity`` (toshas) made the port epsilon-exact, weights included; this module is an
independent implementation of torch-fidelity's ``FeatureExtractorInceptionV3`` with the feature
``"2048"`` (its FID default), written without torchvision:

* input (N, 3, H, W) pixel values 0..255 (uint8, or float on that scale), RGB;
* resized to 299 x 299 by TensorFlow 1.x's bilinear resize (:func:`resize_bilinear_tf1`,
  ``align_corners=False``: source coordinate ``i * in / out``, no half-pixel offset, no
  antialiasing, the last row and column repeated), in float32 — for any input size, as
  torch-fidelity does (299 x 299 input passes through unchanged);
* ``(x - 128) / 128``;
* the graph's InceptionV3: BatchNorm eps 1e-3; the average pools of the A, C and first E blocks
  leave the padding out of their means (``count_include_pad=False``); the last E block
  (``Mixed_7c``) pools with a 3 x 3 *max* pool, as the TensorFlow graph does;
* the global average of ``Mixed_7c`` (8 x 8 x 2048): the (N, 2048) pool3 features. The 1008-way
  ``fc`` is kept (its parameters are in the file) but not used.

:func:`fid_features` batches (N, H, W, 3) uint8 frames through it; :func:`frechet_distance` is the
usual FID formula (:func:`dicetalk.evaluation.metrics.frechet_distance`: means, unbiased
covariances, ``scipy.linalg.sqrtm`` of their product, its real part).

Weights: ``weights-inception-2015-12-05-6726825d.pth`` (:data:`INCEPTION_URL`), torch-fidelity's
conversion of the TensorFlow graph's variables (Apache-2.0, as the TensorFlow models they come
from), a plain state dict (about 95 MB) whose names this module's parameters share. It is read with
``torch.load(weights_only=True)`` only and converted to a diffusers folder (``config.json`` +
safetensors); :func:`inception_weights` fetches and converts it on first use. Credits: the block
structure and the TF-compatible details follow pytorch-fid and torch-fidelity (both Apache-2.0).
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import urllib.request
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ...errors import InputError
from .weights import convert_judge, load_judge

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
"""torch-fidelity's ``URL_INCEPTION_V3`` (also what torchmetrics' FID fetches)."""
INCEPTION_LICENCE = (
    f"{INCEPTION_FILE}: TensorFlow's inception-2015-12-05 InceptionV3 graph (tensorflow/models, Apache-2.0), "
    "converted to PyTorch by torch-fidelity (Apache-2.0)"
)
FID_DIR = "fid"
"""Subfolder of the judges folder that holds the converted InceptionV3."""

SIZE = 299
FEATURES = 2048
_BN_EPS = 1e-3  # the TensorFlow graph's

# ----------------------------------------------------------------------------------------- resize


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, *size): TensorFlow 1.x ``resize_bilinear`` with ``align_corners=False``.

    Output pixel ``i`` samples the input at ``i * in / out`` (the ratio rounded to float32, the
    coordinates computed in the input's dtype), between rows/columns ``floor`` and ``floor + 1``
    (the last one repeated at the edge); columns are blended first, then rows, ``a + (b - a) t``:
    the arithmetic of torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x`` (method
    "slow"), step for step, so the result is the same to the bit on the CPU.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"resize takes (N, C, H, W) float tensors, got {tuple(x.shape)} {x.dtype}")

    def taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(n_out, dtype=x.dtype, device=x.device) * torch.tensor(n_in / n_out, dtype=torch.float32)
        lo = pos.long()  # pos >= 0: truncation is floor
        return lo, (lo + 1).clamp_max(n_in - 1), pos - lo.to(pos.dtype)

    (y0, y1, ty), (x0, x1, tx) = taps(x.shape[2], size[0]), taps(x.shape[3], size[1])
    tx = tx.view(1, 1, 1, -1)
    rows = []
    for y in (y0, y1):
        band = x.index_select(2, y)
        left, right = band.index_select(3, x0), band.index_select(3, x1)
        rows.append(left + (right - left) * tx)
    top, bottom = rows
    return top + (bottom - top) * ty.view(1, 1, -1, 1)


# ----------------------------------------------------------------------------------------- model


class _ConvBN(nn.Module):
    """Conv2d (no bias) -> BatchNorm (eps 1e-3) -> ReLU: the graph's convolution unit."""

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


# Pools of the blocks' pooling branches.
_AVG_3x3 = partial(F.avg_pool2d, kernel_size=3, stride=1, padding=1, count_include_pad=False)  # TF ignores the padding
_MAX_3x3 = partial(F.max_pool2d, kernel_size=3, stride=1, padding=1)
_MAX_3x3_S2 = partial(F.max_pool2d, kernel_size=3, stride=2)

# A unit: (name, in, out, kernel, stride, padding); 1x7 / 7x1 / 1x3 / 3x1 kernels pad only along their length.
_ROW7, _COL7, _ROW3, _COL3 = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0)), ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))


def _u(name: str, c_in: int, c_out: int, kernel=1, stride=1, padding=0) -> tuple:
    return (name, c_in, c_out, kernel, stride, padding)


class _Mixed(nn.Module):
    """An Inception block: branches whose outputs are concatenated along the channels.

    A branch is a list of steps: a unit (registered under its name, so the parameter names are
    the graph's), a pool (a function, no parameters) or, last, a fork: a list of units applied to
    the same input, their outputs concatenated (the E blocks' 1x3 | 3x1 split).
    """

    def __init__(self, branches: Sequence[Sequence]):
        super().__init__()
        self.plan: list[list] = []
        for branch in branches:
            steps = []
            for step in branch:
                if callable(step):
                    steps.append(step)
                elif isinstance(step, list):
                    steps.append([self._add(*unit) for unit in step])
                else:
                    steps.append(self._add(*step))
            self.plan.append(steps)

    def _add(self, name: str, c_in: int, c_out: int, kernel, stride, padding) -> str:
        self.add_module(name, _ConvBN(c_in, c_out, kernel, stride, padding))
        return name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for steps in self.plan:
            y = x
            for step in steps:
                if isinstance(step, str):
                    y = self._modules[step](y)
                elif isinstance(step, list):
                    y = torch.cat([self._modules[name](y) for name in step], 1)
                else:
                    y = step(y)
            outputs.append(y)
        return torch.cat(outputs, 1)


def _block_a(c_in: int, pool_features: int) -> _Mixed:  # 35 x 35
    return _Mixed([
        [_u("branch1x1", c_in, 64)],
        [_u("branch5x5_1", c_in, 48), _u("branch5x5_2", 48, 64, 5, 1, 2)],
        [_u("branch3x3dbl_1", c_in, 64), _u("branch3x3dbl_2", 64, 96, 3, 1, 1), _u("branch3x3dbl_3", 96, 96, 3, 1, 1)],
        [_AVG_3x3, _u("branch_pool", c_in, pool_features)],
    ])  # fmt: skip


def _block_b(c_in: int) -> _Mixed:  # 35 x 35 -> 17 x 17
    return _Mixed([
        [_u("branch3x3", c_in, 384, 3, 2)],
        [_u("branch3x3dbl_1", c_in, 64), _u("branch3x3dbl_2", 64, 96, 3, 1, 1), _u("branch3x3dbl_3", 96, 96, 3, 2)],
        [_MAX_3x3_S2],
    ])  # fmt: skip


def _block_c(c_in: int, c7: int) -> _Mixed:  # 17 x 17
    return _Mixed([
        [_u("branch1x1", c_in, 192)],
        [_u("branch7x7_1", c_in, c7), _u("branch7x7_2", c7, c7, *_ROW7), _u("branch7x7_3", c7, 192, *_COL7)],
        [_u("branch7x7dbl_1", c_in, c7), _u("branch7x7dbl_2", c7, c7, *_COL7), _u("branch7x7dbl_3", c7, c7, *_ROW7),
         _u("branch7x7dbl_4", c7, c7, *_COL7), _u("branch7x7dbl_5", c7, 192, *_ROW7)],
        [_AVG_3x3, _u("branch_pool", c_in, 192)],
    ])  # fmt: skip


def _block_d(c_in: int) -> _Mixed:  # 17 x 17 -> 8 x 8
    return _Mixed([
        [_u("branch3x3_1", c_in, 192), _u("branch3x3_2", 192, 320, 3, 2)],
        [_u("branch7x7x3_1", c_in, 192), _u("branch7x7x3_2", 192, 192, *_ROW7), _u("branch7x7x3_3", 192, 192, *_COL7),
         _u("branch7x7x3_4", 192, 192, 3, 2)],
        [_MAX_3x3_S2],
    ])  # fmt: skip


def _block_e(c_in: int, pool: Callable) -> _Mixed:  # 8 x 8
    return _Mixed([
        [_u("branch1x1", c_in, 320)],
        [_u("branch3x3_1", c_in, 384), [_u("branch3x3_2a", 384, 384, *_ROW3), _u("branch3x3_2b", 384, 384, *_COL3)]],
        [_u("branch3x3dbl_1", c_in, 448), _u("branch3x3dbl_2", 448, 384, 3, 1, 1),
         [_u("branch3x3dbl_3a", 384, 384, *_ROW3), _u("branch3x3dbl_3b", 384, 384, *_COL3)]],
        [pool, _u("branch_pool", c_in, 192)],
    ])  # fmt: skip


class InceptionFID(ModelMixin, ConfigMixin):
    """TensorFlow's 2015-12-05 InceptionV3 as FID uses it: (N, 3, H, W) pixels 0..255 -> (N, 2048) pool3 features.

    Parameter names are ``weights-inception-2015-12-05-6726825d.pth``'s (torch-fidelity's), so
    the file loads without renaming. Runs in float32 on the parameters' device.
    """

    @register_to_config
    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)  # 299 -> 149
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)  # -> 147
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)  # then max pool -> 73
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)  # -> 71, then max pool -> 35
        self.Mixed_5b = _block_a(192, 32)
        self.Mixed_5c = _block_a(256, 64)
        self.Mixed_5d = _block_a(288, 64)
        self.Mixed_6a = _block_b(288)  # -> 17
        self.Mixed_6b = _block_c(768, 128)
        self.Mixed_6c = _block_c(768, 160)
        self.Mixed_6d = _block_c(768, 160)
        self.Mixed_6e = _block_c(768, 192)
        self.Mixed_7a = _block_d(768)  # -> 8
        self.Mixed_7b = _block_e(1280, _AVG_3x3)
        self.Mixed_7c = _block_e(2048, _MAX_3x3)  # the graph's max pool here (other InceptionV3s average)
        self.fc = nn.Linear(FEATURES, 1008)  # the graph's 1008 logits: in the file, unused by FID

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 (or float, 0..255) RGB -> (N, 2048) float32 pool3 features (module docstring)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"InceptionFID takes (N, 3, H, W) RGB images, got {tuple(images.shape)}")
        param = self.Conv2d_1a_3x3.conv.weight
        x = images.to(param.device, torch.float32)
        if tuple(x.shape[2:]) != (SIZE, SIZE):  # (at 299 the resize is the identity, to the bit)
            x = resize_bilinear_tf1(x, (SIZE, SIZE))
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


# -------------------------------------------------------------------------------------- features


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def fid_features(model: InceptionFID, frames_rgb: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames -> (N, 2048) float64 pool3 features, ``batch_size`` frames at a time."""
    frames = np.asarray(frames_rgb)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _device(model)
    feats = [torch.zeros((0, FEATURES), dtype=torch.float64)]
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size])).to(device)
            feats.append(model(batch.permute(0, 3, 1, 2)).double().cpu())
    return torch.cat(feats).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID's formula on (N, d) and (M, d) features: ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)``.

    Unbiased covariances, ``scipy.linalg.sqrtm`` of their product (both regularised by 1e-6 I when
    it is not finite, as pytorch-fid does), its real part; N, M >= 2. This is
    :func:`dicetalk.evaluation.metrics.frechet_distance`, the project's one formula (clamped at 0).
    """
    from ..metrics import frechet_distance as _frechet

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need (N, d) and (M, d) features of the same d, got {a.shape} and {b.shape}")
    return _frechet(a, b)


# -------------------------------------------------------------------------------------- weights


def load_inception(path: str | os.PathLike | None = None) -> InceptionFID:
    """InceptionFID in eval mode from a diffusers folder (:func:`convert_inception`), a ``.safetensors`` file
    or the ``.pth`` (read as :mod:`.weights` says: never unpickled; one-line errors).

    ``path=None``: the converted folder of the default judges folder (``real_judges_dir() / "fid"``).
    """
    if path is None:
        from .judges import real_judges_dir

        path = real_judges_dir() / FID_DIR
    return load_judge(path, InceptionFID, "FID InceptionV3", lambda state, source: InceptionFID(), file_hint=f" (folder or {INCEPTION_FILE})")


def convert_inception(src: str | os.PathLike, dst: str | os.PathLike, source: str | None = None) -> Path:
    """``weights-inception-2015-12-05-6726825d.pth`` (or any input of :func:`load_inception`) -> a diffusers
    folder ``dst``, atomically; ``source``, when given, is recorded with the licence in ``dst/source.json``."""
    return convert_judge(load_inception(src), dst, None if source is None else {"source": source, "licence": INCEPTION_LICENCE})


def _download(url: str, dst: Path, progress: Callable[[str], object]) -> None:
    from ...utils.atomic import atomic_path

    progress(f"{url} -> {dst}")
    try:
        with atomic_path(dst) as tmp:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:  # noqa: S310 (the fixed URL of the weights)
                shutil.copyfileobj(response, out, 1 << 20)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot download {url} ({reason}); fetch {INCEPTION_FILE} by hand and pass the folder holding it as the mirror") from None


def inception_weights(folder: str | os.PathLike, mirror: str | os.PathLike | None = None, progress: Callable[[str], object] = print) -> InceptionFID:
    """The FID network of the judges ``folder``: ``folder/fid`` if converted, else fetched and converted first.

    Without a converted folder, ``mirror/weights-inception-2015-12-05-6726825d.pth`` is used when
    ``mirror`` is given (offline machines, tests), else :data:`INCEPTION_URL` is downloaded into a
    scratch folder inside ``folder``; it is converted to ``folder/fid`` (``source.json`` names where
    it came from) and the raw file deleted. Fetch failures raise one-line :class:`InputError`.
    """
    folder = Path(folder)
    target = folder / FID_DIR
    if (target / "config.json").is_file():
        return load_inception(target)
    if mirror is not None:
        src = Path(mirror) / INCEPTION_FILE
        if not src.is_file():
            raise InputError(f"mirror {mirror} has no {INCEPTION_FILE}")
        progress(f"converting {src} -> {target}")
        convert_inception(src, target, source=str(src))
        return load_inception(target)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write {folder}: {exc.strerror or type(exc).__name__}") from None
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
        src = Path(scratch) / INCEPTION_FILE
        _download(INCEPTION_URL, src, progress)
        progress(f"converting {src.name} -> {target}")
        convert_inception(src, target, source=INCEPTION_URL)
    return load_inception(target)
