"""Mouth landmarks of real faces: LMD (landmark distance) and the mouth opening over time.

dlib's 68-point shape predictor (an ensemble of regression trees, Kazemi & Sullivan 2014) places
the iBUG 300-W points in a face box; points 48-59 are the outer lip contour, 60-67 the inner one.

Licence: ``shape_predictor_68_face_landmarks.dat`` is trained on the iBUG 300-W data set, whose
licence EXCLUDES COMMERCIAL USE; use this judge (LMD, mouth opening) for research only. The file
comes from the PyPI package ``face_recognition_models`` (MIT for the package itself).

LMD
---
Papers differ on LMD's normalisation (pixels of a fixed-size crop, mouth-only or whole-face
points, aligned or not). Here: per frame, the 20 mouth points are translated to their centroid
(the head's position is not the mouth's shape) and divided by the face box width (so videos of
different resolutions or face sizes compare); LMD is the mean euclidean distance between
corresponding points over the frames both videos have, in face widths. Multiply by the face width
of a papers' crop (e.g. ~0.6 x 256 px) to compare orders of magnitude with pixel LMDs.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from .faces import as_box, detect_box, predict_points

PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
MOUTH = slice(48, 68)  # 20 points: outer lip 48-59, inner lip 60-67
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner lip, left to right


class DlibLandmarks:
    """dlib's 68-point predictor (research use only: iBUG 300-W). The model file is loaded on the
    first call, once per process under a lock, and shared (:func:`~.faces.predict_points`)."""

    name = "dlib-68"

    def points(self, image_rgb: np.ndarray, box=None, name: str = "the image") -> np.ndarray:
        """The 68 landmarks ``(68, 2)`` float32 (x, y pixels) of the face in the WIDER-style
        ``box`` (as :func:`~.faces.locate_faces` gives), or of the largest face detected when
        ``box`` is None (:class:`InputError` if there is none)."""
        image = np.asarray(image_rgb)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        image = np.ascontiguousarray(image)
        if box is None:
            box = detect_box(image)
            if box is None:
                raise InputError(f"no face found in {name}")
        return predict_points(image, box, PREDICTOR_68).astype(np.float32)

    def mouth(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Mouth points 48-67 of every frame: ``(T, 20, 2)`` float32, NaN where a box is NaN."""
        boxes = np.asarray(boxes, np.float64)
        if len(frames) != len(boxes):
            raise ValueError(f"{len(frames)} frames but {len(boxes)} boxes")
        out = np.full((len(frames), 20, 2), np.nan, np.float32)
        for i, (frame, box) in enumerate(zip(frames, boxes)):
            if np.isfinite(box).all():
                out[i] = self.points(frame, box)[MOUTH]
        return out


def _widths(boxes, n: int) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4) if not hasattr(boxes, "x0") else as_box(boxes)[None]
    if len(b) == 1 and n > 1:
        b = np.repeat(b, n, axis=0)
    if len(b) < n:
        raise ValueError(f"{n} frames of mouth points but {len(b)} boxes")
    w = b[:n, 2] - b[:n, 0]
    return np.where(w > 0, w, np.nan)


def normalised_mouths(mouths: np.ndarray, boxes) -> np.ndarray:
    """Mouth points ``(T, 20, 2)`` translated to each frame's centroid and divided by its face box width."""
    m = np.asarray(mouths, np.float64)
    if m.ndim == 2:
        m = m[None]
    if m.shape[1:] != (20, 2):
        raise ValueError(f"expected mouth points (T, 20, 2), got {m.shape}")
    w = _widths(boxes, len(m))
    return (m - m.mean(axis=1, keepdims=True)) / w[:, None, None]


def lmd(generated_mouths: np.ndarray, reference_mouths: np.ndarray, boxes_gen, boxes_ref) -> float:
    """Mouth landmark distance in face widths (module docstring) over the first ``min(T_gen, T_ref)``
    frames, leaving out frames without a face in either video (NaN points or boxes).
    :class:`InputError` when no frame has a mouth in both."""
    g = normalised_mouths(generated_mouths, boxes_gen)
    r = normalised_mouths(reference_mouths, boxes_ref)
    n = min(len(g), len(r))
    d = np.linalg.norm(g[:n] - r[:n], axis=2).mean(axis=1)  # (n,), NaN where either is missing
    ok = np.isfinite(d)
    if not ok.any():
        raise InputError("LMD: no frame has a mouth in both videos")
    return float(d[ok].mean())


def mouth_opening(mouths: np.ndarray, boxes) -> np.ndarray:
    """The inner-lip gap ``(T,)``: mean distance of points 61-67, 62-66 and 63-65 over the face box width (NaN where missing)."""
    m = np.asarray(mouths, np.float64)
    if m.ndim == 2:
        m = m[None]
    if m.shape[1:] != (20, 2):
        raise ValueError(f"expected mouth points (T, 20, 2), got {m.shape}")
    gap = np.mean([np.linalg.norm(m[:, a - 48] - m[:, b - 48], axis=1) for a, b in INNER_PAIRS], axis=0)
    return (gap / _widths(boxes, len(m))).astype(np.float32)
