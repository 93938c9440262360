"""SyncNet, the lip-sync judge of real videos: Sync-C and Sync-D with the reference protocol.

SyncNet (Chung & Zisserman, "Out of time: automated lip sync in the wild", ACCV 2016 workshops)
embeds 0.2 s of mouth video and the same 0.2 s of speech into one space, near where they are in
sync. The talking-head literature reports two numbers of it, computed exactly as the reference
implementation (joonson/syncnet_python, ``SyncNetInstance.evaluate``) does; this module follows
that protocol step by step, vectorised:

* video at 25 fps, the face cropped (:func:`face_crops_for_sync`) to 224 x 224, BGR, 0..255;
* audio at 16 kHz, 13 MFCCs at 100 frames/s (:func:`mfcc`, ``python_speech_features`` with its
  defaults, on int16 sample values);
* ``n = min(frames, floor(samples / 640))``; windows ``i = 0 .. n - 6`` (the reference stops at
  ``n - 5`` exclusive): frames ``i .. i+4`` and MFCC frames ``4i .. 4i+19``;
* every video window is compared with the audio windows ``i - vshift .. i + vshift`` (zero
  embeddings beyond the ends) by Euclidean distance; the curve is the mean over windows of the
  distance at each shift;
* **Sync-D** = the curve's minimum, **Sync-C** = its median minus its minimum, and the offset is
  ``vshift - argmin``.

Sign of the offset (the reference's): the video window at frame ``i`` matches best the audio
window at ``i - offset``. A positive offset means the speech comes *before* the lips (audio
leads); delaying the audio by ``k`` frames lowers the offset by ``k``. A clip in sync reads 0.

Weights: ``syncnet_v2.model`` from the VGG page (:data:`SYNCNET_WEIGHTS_URL`), fetched by the
reference repository's ``download_model.sh``; the reference code is MIT-licensed (Joon Son
Chung), the weights are VGG's (University of Oxford) research release. The file is a plain state
dict; :func:`load_syncnet_weights` reads it with ``torch.load(weights_only=True)`` only and
:func:`convert_syncnet` writes it as a diffusers folder (config.json + safetensors). The module
names of :class:`SyncNet` are the reference's, so the state dict loads without renaming.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ...errors import InputError, WeightsError
from .weights import convert_judge, load_judge

SYNCNET_WEIGHTS_URL = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"

FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
MFCC_PER_FRAME = 4  # 100 MFCC frames/s over 25 video frames/s
WINDOW = 5  # video frames per window (0.2 s)
MFCC_WINDOW = WINDOW * MFCC_PER_FRAME  # 20 MFCC frames per window
FACE_SIZE = 224
CROP_SCALE = 0.4  # run_pipeline.py's --crop_scale default
PAD_VALUE = 110  # the grey the reference pads frames with before cropping
CONFIDENCE_KERNEL = 9  # median filter of the per-window confidence


# ----------------------------------------------------------------------------------------- model


def _tower(conv: type[nn.Module], norm: type[nn.Module], pool: type[nn.Module], layers: list[tuple]) -> nn.Sequential:
    """conv -> batch norm -> ReLU [-> max pool] per layer.

    ``layers``: (in, out, kernel, stride, padding, pool) with pool None, "skip" (an identity: the
    reference has a 1x1 pool there, which keeps the module indices, hence the state dict's names,
    in step) or (kernel, stride, padding).
    """
    modules: list[nn.Module] = []
    for c_in, c_out, kernel, stride, padding, pooling in layers:
        modules += [conv(c_in, c_out, kernel, stride, padding), norm(c_out), nn.ReLU(inplace=True)]
        if pooling == "skip":
            modules.append(nn.Identity())
        elif pooling is not None:
            modules.append(pool(*pooling))
    return nn.Sequential(*modules)


def _head(embed_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, embed_dim))


class SyncNet(ModelMixin, ConfigMixin):
    """SyncNet's two towers (the reference's ``S``): a 13 x 20 MFCC patch, and 5 frames of a 224 x 224 BGR face.

    Inputs as the reference feeds them: raw MFCCs (:func:`mfcc`), pixel values 0..255. Module
    names match ``syncnet_v2.model``'s keys (``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``).
    """

    @register_to_config
    def __init__(self, embed_dim: int = 1024):
        super().__init__()
        # Audio: (N, 1, 13, 20) -> (N, 512, 1, 1); the pools shrink 13 x 20 to 11 x 9, then 5 x 4.
        self.netcnnaud = _tower(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, [
            (1, 64, 3, 1, 1, "skip"),
            (64, 192, 3, 1, 1, (3, (1, 2))),
            (192, 384, 3, 1, 1, None),
            (384, 256, 3, 1, 1, None),
            (256, 256, 3, 1, 1, (3, 2)),
            (256, 512, (5, 4), 1, 0, None),
        ])  # fmt: skip
        self.netfcaud = _head(embed_dim)
        self.netfclip = _head(embed_dim)  # (the reference's order of modules, hence of the state dict)
        # Lips: (N, 3, 5, 224, 224) -> (N, 512, 1, 1, 1); only the first conv looks across time.
        self.netcnnlip = _tower(nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, [
            (3, 96, (5, 7, 7), (1, 2, 2), 0, ((1, 3, 3), (1, 2, 2))),
            (96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1))),
            (256, 256, (1, 3, 3), 1, (0, 1, 1), None),
            (256, 256, (1, 3, 3), 1, (0, 1, 1), None),
            (256, 256, (1, 3, 3), 1, (0, 1, 1), ((1, 3, 3), (1, 2, 2))),
            (256, 512, (1, 6, 6), 1, 0, None),
        ])  # fmt: skip

    def embed_audio(self, mfcc_patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC patches -> (N, embed_dim) (not normalised: the protocol uses raw distances)."""
        return self.netfcaud(self.netcnnaud(mfcc_patches).flatten(1))

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR windows, 0..255 -> (N, embed_dim)."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))


# ------------------------------------------------------------------------------------- features


def mfcc(audio: np.ndarray) -> np.ndarray:
    """16 kHz mono speech -> (13, T) MFCCs, 100 frames/s, exactly the reference's features.

    The reference reads an int16 wav (``scipy.io.wavfile``) and computes the MFCCs on the raw
    sample values, so the features depend on the scale: int16 input is used as is, float input is
    taken as full scale [-1, 1] and quantised to int16 first, as ffmpeg writes the reference's wav.
    """
    import python_speech_features

    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise InputError(f"speech must be mono (one channel), got an array of shape {audio.shape}")
    if audio.dtype == np.int16:
        pcm = audio.astype(np.float64)
    elif np.issubdtype(audio.dtype, np.floating):
        pcm = np.clip(np.rint(audio.astype(np.float64) * 32768.0), -32768, 32767)
    else:
        raise InputError(f"speech must be int16 or float samples, got {audio.dtype}")
    feats = python_speech_features.mfcc(pcm, samplerate=SAMPLE_RATE, winlen=0.025, winstep=0.01, numcep=13)
    return np.ascontiguousarray(feats.T)


def face_crops_for_sync(frames_rgb: np.ndarray, boxes: np.ndarray | None, crop_scale: float = CROP_SCALE) -> np.ndarray:
    """(T, H, W, 3) RGB frames and (T, 4) face boxes (x0 y0 x1 y1, pixels) -> (T, 224, 224, 3) BGR crops.

    The reference's crop (``run_pipeline.py``): half size ``s = max(w, h) / 2`` around the box
    centre, rows ``cy - s .. cy + s(1 + 2 cs)`` (room for the chin and mouth below the centre),
    columns ``cx - s(1 + cs) .. cx + s(1 + cs)``, grey (110) beyond the frame, resized to 224.
    Boxes are used as given (the reference median-filters them over 13 frames first: the
    caller's tracker smooths). ``boxes=None``: each whole frame, resized.
    """
    import cv2

    frames_rgb = np.asarray(frames_rgb)
    if frames_rgb.ndim != 4 or frames_rgb.shape[-1] != 3 or frames_rgb.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames_rgb.shape} {frames_rgb.dtype}")
    size = (FACE_SIZE, FACE_SIZE)
    out = np.empty((len(frames_rgb), FACE_SIZE, FACE_SIZE, 3), np.uint8)
    if boxes is None:
        for t, frame in enumerate(frames_rgb):
            out[t] = cv2.resize(frame[..., ::-1], size)
        return out
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape != (len(frames_rgb), 4):
        raise ValueError(f"boxes must be ({len(frames_rgb)}, 4), got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise InputError("a face box is missing (NaN) or infinite: SyncNet needs a face in every frame")
    h, w = frames_rgb.shape[1:3]
    for t, (frame, (x0, y0, x1, y1)) in enumerate(zip(frames_rgb, boxes)):
        s = max(y1 - y0, x1 - x0) / 2
        # The reference pads by `pad` and crops with int() in padded coordinates; do the same
        # arithmetic, then copy the part inside the frame onto a grey canvas (same pixels, no pad).
        pad = int(s * (1 + 2 * crop_scale))
        cy, cx = (y0 + y1) / 2 + pad, (x0 + x1) / 2 + pad
        top, bottom = int(cy - s) - pad, int(cy + s * (1 + 2 * crop_scale)) - pad
        left, right = int(cx - s * (1 + crop_scale)) - pad, int(cx + s * (1 + crop_scale)) - pad
        if bottom - top < 1 or right - left < 1:
            raise InputError(f"face box {t} is empty ({x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f})")
        canvas = np.full((bottom - top, right - left, 3), PAD_VALUE, np.uint8)
        sy0, sy1, sx0, sx1 = max(top, 0), min(bottom, h), max(left, 0), min(right, w)
        if sy1 > sy0 and sx1 > sx0:
            canvas[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = frame[sy0:sy1, sx0:sx1, ::-1]
        out[t] = cv2.resize(canvas, size)
    return out


# ------------------------------------------------------------------------------------- protocol


@dataclass(frozen=True, eq=False)
class SyncResult:
    """SyncNet's verdict on one clip (module docstring for the protocol and the offset's sign).

    ``curve[j]`` is the mean distance at offset ``offsets[j]`` (``vshift, vshift - 1, .., -vshift``);
    ``frame_confidence[i]`` is the reference's per-window confidence (median of the curve minus
    window ``i``'s distance at the best offset, median-filtered over 9 windows).
    """

    offset: int
    sync_c: float
    sync_d: float
    curve: np.ndarray
    offsets: np.ndarray
    frame_confidence: np.ndarray


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def sync_scores(model: SyncNet, faces_bgr: np.ndarray, audio16k: np.ndarray, vshift: int = 15, batch_size: int = 20) -> SyncResult:
    """Sync-C, Sync-D and the offset of 25 fps face crops (:func:`face_crops_for_sync`) and 16 kHz speech.

    The reference protocol (module docstring), in float32 on the model's device; the network runs
    in batches of ``batch_size`` windows, the distances of all windows at all offsets at once.
    """
    from scipy.signal import medfilt

    faces_bgr = np.asarray(faces_bgr)
    if faces_bgr.ndim != 4 or faces_bgr.shape[1:] != (FACE_SIZE, FACE_SIZE, 3) or faces_bgr.dtype != np.uint8:
        raise ValueError(f"faces must be (T, 224, 224, 3) uint8 BGR, got {faces_bgr.shape} {faces_bgr.dtype}")
    if vshift < 0 or batch_size < 1:
        raise ValueError(f"vshift must be >= 0 and batch_size >= 1, got {vshift} and {batch_size}")
    if len(faces_bgr) <= WINDOW:
        raise InputError(f"the clip has {len(faces_bgr)} frames; SyncNet needs at least {WINDOW + 1} (0.24 s at 25 fps)")
    audio16k = np.asarray(audio16k)
    if audio16k.ndim != 1 or len(audio16k) // SAMPLES_PER_FRAME <= WINDOW:
        raise InputError(f"the speech is {audio16k.shape[0] / SAMPLE_RATE:.3f} s; SyncNet needs at least {(WINDOW + 1) / FPS:.2f} s of mono 16 kHz audio")
    num = min(len(faces_bgr), len(audio16k) // SAMPLES_PER_FRAME) - WINDOW  # windows, as the reference counts them

    device = _device(model)
    cc = torch.from_numpy(mfcc(audio16k)).to(device, torch.float32)  # (13, T_mfcc)
    video_feats, audio_feats = [], []
    with torch.inference_mode():
        for start in range(0, num, batch_size):
            n = min(batch_size, num - start)
            clip = torch.from_numpy(faces_bgr[start : start + n + WINDOW - 1]).to(device)
            clip = clip.permute(3, 0, 1, 2).float()  # (3, n + 4, 224, 224)
            windows = clip.unfold(1, WINDOW, 1).permute(1, 0, 4, 2, 3).contiguous()  # (n, 3, 5, 224, 224)
            video_feats.append(model.embed_video(windows).float())
            # Audio windows start every 4 MFCC frames: 20 frames each, the 5 video frames' 0.2 s.
            patches = cc[:, start * MFCC_PER_FRAME : (start + n - 1) * MFCC_PER_FRAME + MFCC_WINDOW]
            patches = patches.unfold(1, MFCC_WINDOW, MFCC_PER_FRAME).permute(1, 0, 2).unsqueeze(1).contiguous()  # (n, 1, 13, 20)
            audio_feats.append(model.embed_audio(patches).float())
        v, a = torch.cat(video_feats), torch.cat(audio_feats)

        width = 2 * vshift + 1
        padded = F.pad(a, (0, 0, vshift, vshift))  # zero embeddings beyond the ends, as the reference
        dists = torch.empty(num, width, device=device)
        chunk = 512  # windows per step: bounds the (chunk, width, dim) difference tensor
        for s in range(0, num, chunk):
            e = min(s + chunk, num)
            shifted = padded[s : e + width - 1].unfold(0, width, 1).transpose(1, 2)  # (e - s, width, dim)
            dists[s:e] = F.pairwise_distance(v[s:e, None, :], shifted)  # eps=1e-6 as the reference
        curve = dists.t().contiguous().mean(1)  # reduced over contiguous rows, as the reference's stack
        sync_d, best = torch.min(curve, 0)
        median = torch.median(curve)
        frame_conf = (median - dists[:, best]).cpu().numpy()
        sync_c, sync_d, best = float(median - sync_d), float(sync_d), int(best)
        curve_np = curve.cpu().numpy()

    return SyncResult(
        offset=vshift - best,
        sync_c=sync_c,
        sync_d=sync_d,
        curve=curve_np,
        offsets=vshift - np.arange(width),
        frame_confidence=medfilt(frame_conf, kernel_size=CONFIDENCE_KERNEL),
    )


# -------------------------------------------------------------------------------------- weights


def _embed_dim(state: dict[str, torch.Tensor], source: Path) -> int:
    weight = state.get("netfcaud.3.weight")
    if weight is None or weight.ndim != 2:
        raise WeightsError(f"{source}: not SyncNet weights (no 2-d 'netfcaud.3.weight')")
    return int(weight.shape[0])


def load_syncnet_weights(path: str | os.PathLike) -> SyncNet:
    """SyncNet in eval mode from a diffusers folder (:func:`convert_syncnet`), a ``.safetensors`` file or
    ``syncnet_v2.model`` (read as :mod:`.weights` says: never unpickled; one-line errors)."""
    build = lambda state, source: SyncNet(embed_dim=_embed_dim(state, source))  # noqa: E731
    return load_judge(path, SyncNet, "SyncNet", build, folder_hint="; run 'dicetalk download --judges'")


def convert_syncnet(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """``syncnet_v2.model`` (or any input of :func:`load_syncnet_weights`) -> a diffusers folder ``dst``, atomically."""
    return convert_judge(load_syncnet_weights(src), dst)
