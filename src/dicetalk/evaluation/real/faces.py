"""The face track of a video for the real-face judges, and the dlib model files they run.

Tracking
--------
:func:`locate_faces` runs the project's face detector (:mod:`dicetalk.utils.faces`: dlib's HOG
detector, its box calibrated to a WIDER FACE-style box, hairline to chin) on every ``every``-th
frame and on the last one, keeps the largest face of each (the rule of
:func:`~dicetalk.utils.faces.largest_face`), re-places each box by the face's 5 landmarks
(:func:`refine_box`), interpolates the box coordinates linearly between detections and smooths
them with a short centred moving average. A 250-frame video costs 51 detections. Only the boxes
are needed, so the detector's eye search (Haar cascades, ~6x the cost of the detection itself on
a 512 px frame) is skipped: the raw boxes (:func:`detect_box`) are exactly those of
:func:`~dicetalk.utils.faces.detect_faces`.

Why refine: the HOG box moves on its pyramid's 8-pixel cell grid and grows in steps of 6/5, so
on a face moving 1.5 px a frame it stood still, then jumped by up to 25 px (12 % of its width)
and changed size; the landmark-placed box followed the same motion within 2 px. Mouth measures
divided by the box width (:mod:`.landmarks`) would otherwise jump with it.

Boxes are ``(x0, y0, x1, y1)`` float32 in the frame's pixels, WIDER-style like
:attr:`~dicetalk.utils.faces.Face.box`. The dlib shape predictors were trained on boxes of the
HOG detector itself; :func:`dlib_rectangle` undoes the calibration to give them that box back.

Model files
-----------
:func:`model_path` finds a file of the PyPI package ``face_recognition_models`` (MIT; the model
files are dlib-models', see :mod:`.identity` and :mod:`.landmarks` for their licences). The
package's ``__init__`` imports ``pkg_resources``, so it is located, never imported.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import numpy as np

from ...errors import InputError, WeightsError

MODELS_PACKAGE = "face_recognition_models"
SMOOTH = 5  # frames of the centred moving average over the interpolated boxes (0.2 s at 25 fps)
PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"

# dlib's 5 points (image-right eye outer and inner corner, image-left eye outer and inner corner,
# nose base) relative to the HOG detector's box: (point - box centre) / box side, the mean over
# 160 detections of the two test portraits (mirrored too; scaled 0.8-1.6x, shifted +-20 px, so
# the detector's 8-pixel-cell quantisation averages out), made left-right symmetric. Spread
# (std) of each coordinate 0.03 box sides: that is the HOG box's own jitter.
MEAN_SHAPE_5 = np.array([[0.310, -0.240], [0.137, -0.233], [-0.310, -0.240], [-0.137, -0.233], [0.0, 0.086]])
_PREDICTORS: dict = {}
_PREDICTOR_LOCK = threading.Lock()


# ---- model files -----------------------------------------------------------------------------


def _models_dirs() -> list[Path]:
    dirs: list[Path] = []
    try:  # a top-level name: find_spec locates the package without running its __init__
        spec = importlib.util.find_spec(MODELS_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) / "models" for p in spec.submodule_search_locations]
    dirs += [Path(p) / MODELS_PACKAGE / "models" for p in sys.path if p]
    return dirs


def model_path(name: str) -> Path:
    """The file ``name`` of ``face_recognition_models`` (e.g. ``"shape_predictor_5_face_landmarks.dat"``)."""
    for folder in _models_dirs():
        if (folder / name).is_file():
            return folder / name
    raise WeightsError(f"dlib model {name} not found: pip install face_recognition_models")


def _shape_predictor(name: str):
    """(predictor, its lock): the dlib shape predictor file ``name`` of :func:`model_path`, loaded once."""
    with _PREDICTOR_LOCK:
        if name not in _PREDICTORS:
            import dlib

            _PREDICTORS[name] = (dlib.shape_predictor(str(model_path(name))), threading.Lock())
        return _PREDICTORS[name]


def predict_shape(image: np.ndarray, box, name: str = PREDICTOR_5):
    """dlib's ``full_object_detection`` of predictor ``name`` for the face in the WIDER-style ``box``
    (dlib's objects are not documented as thread-safe: one call at a time per predictor)."""
    predictor, lock = _shape_predictor(name)
    rect = dlib_rectangle(box)
    with lock:
        return predictor(image, rect)


def predict_points(image: np.ndarray, box, name: str = PREDICTOR_5) -> np.ndarray:
    """The landmarks ``(K, 2)`` float64 (x, y pixels) of :func:`predict_shape`."""
    return np.array([(p.x, p.y) for p in predict_shape(image, box, name).parts()], np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity transform (rotation, scale, shift) taking points ``src`` onto ``dst`` (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    e = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ e @ vt
    scale = float(np.trace(np.diag(sig) @ e) / (s**2).sum(axis=1).mean())
    return np.hstack([scale * rot, (md - scale * rot @ ms)[:, None]])


# ---- boxes -----------------------------------------------------------------------------------


def as_box(box) -> np.ndarray:
    """``(x0, y0, x1, y1)`` float64 of a :class:`~dicetalk.utils.image.Box`, tuple or array."""
    if hasattr(box, "x0"):
        return np.array([box.x0, box.y0, box.x1, box.y1], np.float64)
    out = np.asarray(box, np.float64).reshape(-1)
    if out.shape != (4,):
        raise ValueError(f"a face box is (x0, y0, x1, y1), got {box!r}")
    return out


def dlib_rectangle(box):
    """The dlib HOG detector's square rectangle behind a WIDER-style ``box`` (the calibration of
    :mod:`dicetalk.utils.faces` inverted), as the dlib shape predictors expect it."""
    import dlib

    from ...utils.faces import _CALIBRATION

    (dx, dy, bw, bh), _, _ = _CALIBRATION["dlib-hog"]
    x0, y0, x1, y1 = as_box(box)
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise ValueError(f"not a face box: {(x0, y0, x1, y1)}")
    side = float(np.sqrt((x1 - x0) / bw * (y1 - y0) / bh))
    cx, cy = (x0 + x1) / 2 - dx * side, (y0 + y1) / 2 - dy * side
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    n = max(1, int(round(side)))
    return dlib.rectangle(left, top, left + n - 1, top + n - 1)


def _wider(cx: float, cy: float, side: float) -> np.ndarray:
    """The WIDER-style box of a HOG detector box of centre ``(cx, cy)`` and ``side`` (faces._face_from_box)."""
    from ...utils.faces import _CALIBRATION

    (dx, dy, bw, bh), _, _ = _CALIBRATION["dlib-hog"]
    cx, cy = cx + dx * side, cy + dy * side
    return np.array([cx - bw * side / 2, cy - bh * side / 2, cx + bw * side / 2, cy + bh * side / 2])


def refine_box(image: np.ndarray, box, passes: int = 2) -> np.ndarray:
    """``box`` placed by the face's 5 landmarks rather than by the HOG detector's coarse grid.

    The HOG box moves in steps of 8 cells of its pyramid level (about a tenth of the box) and
    grows in steps of 6/5, so a face moving smoothly gets a box that jumps. Here dlib's 5 points
    are predicted in the box, the mean shape :data:`MEAN_SHAPE_5` is fitted to them (similarity),
    and the fit gives the detector box's centre and side, then its WIDER-style box; ``passes``
    times (the prediction depends a little on the box it starts from). The result is the same
    box in expectation, following the face to a pixel or two.
    """
    box = as_box(box)
    for _ in range(passes):
        fit = similarity_transform(MEAN_SHAPE_5, predict_points(image, box))
        side = float(np.sqrt(abs(np.linalg.det(fit[:, :2]))))
        box = _wider(float(fit[0, 2]), float(fit[1, 2]), side)
    return box


def _largest(found: list[tuple[float, np.ndarray]]) -> np.ndarray | None:
    """:func:`~dicetalk.utils.faces.largest_face`'s rule: the best score among boxes within 20 % of the largest area."""
    if not found:
        return None
    area = [(b[2] - b[0]) * (b[3] - b[1]) for _, b in found]
    top = max(area)
    return max((f for f, a in zip(found, area) if a >= 0.8 * top), key=lambda f: f[0])[1]


def detect_box(image: np.ndarray) -> np.ndarray | None:
    """The largest face's WIDER-style box ``(x0, y0, x1, y1)`` in an RGB uint8 image, or None."""
    from ...utils import faces

    image = faces._check_image(image)
    if faces.detector_name() != "dlib-hog":  # OpenCV's cascades (no dlib): the full detector
        face = faces.detect_face(image)
        return None if face is None else as_box(face.box)
    with faces._LOCK:
        raw = faces._dlib_boxes(image)
    found = [(score, _wider(*det.center, det.width)) for score, det in raw]
    return _largest(found)


def _smooth(track: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average within each run of finite rows; the window shrinks symmetrically at
    a run's ends (so a box moving at constant speed is left unchanged)."""
    k = window // 2
    if k < 1:
        return track
    out = track.copy()
    ok = np.isfinite(track).all(axis=1)
    t = 0
    while t < len(track):
        if not ok[t]:
            t += 1
            continue
        end = t
        while end + 1 < len(track) and ok[end + 1]:
            end += 1
        csum = np.concatenate([np.zeros((1, 4)), np.cumsum(track[t : end + 1], axis=0)])
        for i in range(t, end + 1):
            r = min(k, i - t, end - i)
            a, b = i - t - r, i - t + r + 1
            out[i] = (csum[b] - csum[a]) / (b - a)
        t = end + 1
    return out


def locate_faces(frames_rgb: np.ndarray, every: int = 5, name: str = "the video", smooth: int = SMOOTH, max_gap: int | None = None, refine: bool = True) -> np.ndarray:
    """The face box of every frame: ``(T, 4)`` float32 ``x0, y0, x1, y1`` (WIDER-style, pixels).

    The largest face is detected on frames ``0, every, 2 * every, ...`` and on the last frame,
    and its box re-placed by its landmarks (:func:`refine_box`; ``refine=False`` keeps the HOG
    box). Between two detections at most ``max_gap`` frames apart (default ``max(25, 2 * every)``: one
    missed detection, or a second of video, is bridged) the box is interpolated linearly;
    before the first and after the last detection it is held for up to ``every`` frames. The
    remaining frames (the face left, or was missed for long) are NaN rows. Then each run of boxes
    is smoothed by a centred ``smooth``-frame moving average.

    Raises :class:`InputError` when no frame has a face.
    """
    frames_rgb = np.asarray(frames_rgb)
    if frames_rgb.ndim != 4 or frames_rgb.shape[-1] != 3 or frames_rgb.dtype != np.uint8 or len(frames_rgb) == 0:
        raise ValueError(f"expected RGB uint8 frames (T, H, W, 3), got {frames_rgb.dtype} {frames_rgb.shape}")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    n = len(frames_rgb)
    max_gap = max(25, 2 * every) if max_gap is None else max(int(max_gap), every)
    sampled = sorted(set(range(0, n, every)) | {n - 1})
    hits = []
    for i in sampled:
        box = detect_box(frames_rgb[i])
        if box is not None:
            hits.append((i, refine_box(frames_rgb[i], box) if refine else box))
    if not hits:
        raise InputError(f"no face found in {name} ({len(sampled)} of its {n} frames searched)")
    at = np.array([i for i, _ in hits])
    known = np.stack([b for _, b in hits])
    track = np.full((n, 4), np.nan)
    for t in range(n):
        j = int(np.searchsorted(at, t))  # at[j - 1] < t <= at[j]
        if j < len(at) and at[j] == t:
            track[t] = known[j]
        elif 0 < j < len(at):
            a, b = at[j - 1], at[j]
            if b - a <= max_gap:
                w = (t - a) / (b - a)
                track[t] = (1 - w) * known[j - 1] + w * known[j]
        elif j == 0 and at[0] - t <= every:
            track[t] = known[0]
        elif j == len(at) and t - at[-1] <= every:
            track[t] = known[-1]
    return _smooth(track, smooth).astype(np.float32)
