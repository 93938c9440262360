"""Faces in portraits: detection, the release's crop and mask rules, and alignment to a face layout.

Detection
---------
The release finds faces with a YOLOv5-face network whose weights are a pickle we cannot use.
We use dlib's HOG + linear-SVM frontal face detector (``dlib-bin`` wheels: the detector is
compiled into the library, no weights file, no download, no GPU), chosen over OpenCV's Haar
cascades, MediaPipe builds and TensorFlow/ONNX ports for robustness to head roll, the absence of
false positives on textured backgrounds, and a dependency that pins nothing (docs in
``pyproject.toml``). Where ``dlib`` cannot be imported (no wheel for the platform, e.g. Intel
macOS) the Haar cascades shipped with OpenCV take over, with their own calibration.

Calibration to the release's box
--------------------------------
YOLOv5-face is trained on WIDER FACE, whose boxes run from the hairline/upper forehead to the
chin and from cheek to cheek. A dlib HOG box is a square from the eyebrows to just under the
lower lip; a Haar box is a square around the brows, eyes, nose and mouth. Each is mapped to a
WIDER-style box by fixed offsets in units of its side ``s`` (centre ``c``)::

    WIDER box = centre c + (dx, dy) * s,  size (w, h) * s
    dlib HOG: dx 0.000, dy -0.118, w 0.926, h 1.270
    Haar:     dx 0.000, dy  0.002, w 0.811, h 1.117

measured (mean over 52 and 47 detections) against a WIDER FACE-trained RetinaFace
(mobilenet-0.25, the same annotation convention and 5 keypoints as YOLOv5-face) on the
scikit-image astronaut and the authors' four example portraits at 5 scales, 10° roll,
off-centre and mirrored; spread (std) of dy 0.04 s and of h 0.10 s for dlib. Over 72 detected
faces (rolls up to 30 degrees included) the calibrated box overlaps RetinaFace's by IoU 0.80
(median; 10th percentile 0.72) and the release crop made from it overlaps the crop made from
RetinaFace's box by IoU 0.89 (10th percentile 0.78).

Eyes and mouth: both eyes are found by OpenCV's Haar eye cascades inside the face (and, for a
tilted head, in the face turned upright by +-15 or +-30 degrees), else placed at the mean
offsets (+-0.212, -0.242) s; the mouth centre is the mean of its box offset (0, 0.199) s and of
the point 1.04 inter-ocular distances below the eyes' midpoint, perpendicular to the eye line.
Against RetinaFace's keypoints on those photos (errors in reference box widths): eyes median
0.021, 90th percentile 0.048 (0.025 / 0.043 with the head rolled by 20-30 degrees, eyes found in
94 % of faces); mouth median 0.042, 90th percentile 0.077.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .image import Box

Point = tuple[float, float]

# dlib: the working image's longest side (a portrait's face is far above the 40 px the detector
# needs after one upsampling there) and the SVM score a detection needs. In evaluation, every
# false detection of the first pass (no upsampling; all on the astronaut's spacesuit) scored
# below 0.2, and 97 % of true ones above; the second pass runs only when the first finds nothing.
DETECTOR_MAX_SIDE = 800
SCORE_THRESHOLD = 0.2
KEYPOINT_FACE_SIDE = 160  # detector box side (pixels) at which eyes are searched

# Per detector: WIDER box (dx, dy, w, h), eye offsets (x, y) and mouth offset (x, y), in units
# of the detector's box side, from the detector box's centre. See the module docstring.
_CALIBRATION = {
    "dlib-hog": ((0.0, -0.118, 0.926, 1.270), (0.212, -0.242), (0.0, 0.199)),
    "haar": ((0.0, 0.002, 0.811, 1.117), (0.185, -0.107), (0.0, 0.282)),
}
MOUTH_BELOW_EYES = 1.04  # eye midpoint to mouth centre, in inter-ocular distances (RetinaFace, 5 photos + LFW)


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    ``box`` is a WIDER FACE-style box (what the release's YOLOv5-face gives); ``eyes`` are the
    image-left then image-right eye centres; ``mouth`` the mouth centre. ``eyes_located`` tells
    whether the eyes were found in the image (True) or placed from the box (False).
    """

    box: Box
    eyes: tuple[Point, Point]
    mouth: Point
    score: float
    detector: str
    eyes_located: bool

    @property
    def eye_centre(self) -> Point:
        (x0, y0), (x1, y1) = self.eyes
        return (x0 + x1) / 2, (y0 + y1) / 2

    def moved(self, dx: float, dy: float, scale: float = 1.0) -> "Face":
        """The same face in another frame: ``x' = (x - dx) * scale`` (a crop, then a resize)."""

        def p(pt: Point) -> Point:
            return (pt[0] - dx) * scale, (pt[1] - dy) * scale

        b = self.box
        x0, y0 = p((b.x0, b.y0))
        x1, y1 = p((b.x1, b.y1))
        return Face(Box(x0, y0, x1, y1), (p(self.eyes[0]), p(self.eyes[1])), p(self.mouth), self.score, self.detector, self.eyes_located)


# ---- detection -------------------------------------------------------------------------------

_LOCK = threading.Lock()  # dlib and OpenCV cascades are not documented as thread-safe; the UI may call concurrently


@lru_cache(maxsize=1)
def _dlib_detector():
    try:
        import dlib
    except ImportError:
        return None
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def _cascade(name: str):
    import cv2

    return cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))


def detector_name() -> str:
    """``"dlib-hog"``, or ``"haar"`` where dlib is not installed."""
    return "dlib-hog" if _dlib_detector() is not None else "haar"


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _dlib_boxes(image: np.ndarray) -> list[tuple[float, Box]]:
    import cv2

    h, w = image.shape[:2]
    s = min(1.0, DETECTOR_MAX_SIDE / max(h, w))
    work = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else image
    detector = _dlib_detector()
    for upsample in (0, 1):  # faces from 80 px, then from 40 px of the working image
        rects, scores, _ = detector.run(work, upsample, SCORE_THRESHOLD)
        if len(rects):
            return [
                (float(c), Box(r.left() / s, r.top() / s, (r.right() + 1) / s, (r.bottom() + 1) / s))
                for r, c in zip(rects, scores)
            ]
    return []


def _haar_boxes(image: np.ndarray) -> list[tuple[float, Box]]:
    import cv2

    gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    min_side = max(24, min(gray.shape) // 10)
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        found = _cascade(name).detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        if len(found):
            return [(1.0, Box(float(x), float(y), float(x + w), float(y + h))) for x, y, w, h in found]
    return []


def _locate_eyes(image: np.ndarray, box: Box, guess: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Both eye centres by OpenCV's eye cascades in the upper face, each within 0.12 box sides of its guess."""
    import cv2

    s = box.width
    cy = box.center[1]
    h, w = image.shape[:2]
    x0, y0 = int(max(0, box.x0)), int(max(0, cy - 0.55 * s))
    x1, y1 = int(min(w, box.x1)), int(min(h, cy + 0.05 * s))
    if x1 - x0 < 24 or y1 - y0 < 12:
        return None
    gray = cv2.equalizeHist(cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY))
    lo, hi = max(6, int(0.12 * s)), max(8, int(0.4 * s))
    for name in ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml"):
        found = _cascade(name).detectMultiScale(gray, 1.05, 3, minSize=(lo, lo), maxSize=(hi, hi))
        centres = [np.array([x0 + x + ew / 2, y0 + y + eh / 2]) for x, y, ew, eh in found]
        eyes = []
        for g in guess:
            near = [c for c in centres if np.hypot(*(c - g)) < 0.12 * s]
            if not near:
                break
            eyes.append(min(near, key=lambda c: float(np.hypot(*(c - g)))))
        if len(eyes) == 2 and 0.25 * s < eyes[1][0] - eyes[0][0] < 0.65 * s and abs(eyes[1][1] - eyes[0][1]) < 0.12 * s:
            return eyes[0], eyes[1]
    return None


def _keypoints(image: np.ndarray, det: Box, detector: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """(eyes (2, 2), mouth (2,), eyes located) of the face in detector box ``det``, upright."""
    _, (ex, ey), (mx, my) = _CALIBRATION[detector]
    s = det.width
    cx, cy = det.center
    guess = (np.array([cx - ex * s, cy + ey * s]), np.array([cx + ex * s, cy + ey * s]))
    mouth = np.array([cx + mx * s, cy + my * s])
    located = _locate_eyes(image, det, guess)
    if located is None:
        return np.stack(guess), mouth, False
    eyes = np.stack(located)
    v = eyes[1] - eyes[0]
    below = eyes.mean(axis=0) + MOUTH_BELOW_EYES * np.array([-v[1], v[0]])
    return eyes, (mouth + below) / 2, True


def _upright_keypoints(image: np.ndarray, det: Box, detector: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Eyes and mouth where the eyes could be located: as the face is, else in its region turned
    upright by +-15 or +-30 degrees (dlib finds faces rolled by 30 degrees; the eye cascades only
    upright eyes). (None, None) when not found."""
    import cv2

    eyes, mouth, located = _keypoints(image, det, detector)
    if located:
        return eyes, mouth
    s = det.width
    cx, cy = det.center
    side = int(round(2 * s))
    upright = Box(side / 2 - s / 2, side / 2 - s / 2, side / 2 + s / 2, side / 2 + s / 2)
    for angle in (15.0, -15.0, 30.0, -30.0):
        turn = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        turn[:, 2] -= (cx - side / 2, cy - side / 2)  # the face's surroundings, turned
        patch = cv2.warpAffine(image, turn, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        eyes, mouth, located = _keypoints(patch, upright, detector)
        if located:
            back = cv2.invertAffineTransform(turn)
            pts = np.concatenate([eyes, mouth[None]]) @ back[:, :2].T + back[:, 2]
            return pts[:2][np.argsort(pts[:2, 0])], pts[2]
    return None, None


def _face_from_box(image: np.ndarray, score: float, det: Box, detector: str) -> Face:
    import cv2

    (dx, dy, bw, bh), _, _ = _CALIBRATION[detector]
    s = det.width
    cx, cy = det.center
    wx, wy = cx + dx * s, cy + dy * s
    box = Box(wx - bw * s / 2, wy - bh * s / 2, wx + bw * s / 2, wy + bh * s / 2)
    # Keypoints are searched at most KEYPOINT_FACE_SIDE pixels per face (speed), in the face's surroundings.
    k = min(1.0, KEYPOINT_FACE_SIDE / s)
    h, w = image.shape[:2]
    ox, oy = int(max(0, cx - 1.5 * s)), int(max(0, cy - 1.5 * s))
    region = image[oy : int(min(h, cy + 1.5 * s)), ox : int(min(w, cx + 1.5 * s))]
    if k < 1:
        region = cv2.resize(region, (max(1, round(region.shape[1] * k)), max(1, round(region.shape[0] * k))), interpolation=cv2.INTER_AREA)
    local = Box((det.x0 - ox) * k, (det.y0 - oy) * k, (det.x1 - ox) * k, (det.y1 - oy) * k)
    eyes, mouth = _upright_keypoints(region, local, detector)
    located = eyes is not None
    if not located:
        eyes, mouth, _ = _keypoints(region, local, detector)
    eyes, mouth = eyes / k + (ox, oy), mouth / k + (ox, oy)
    return Face(
        box,
        ((float(eyes[0][0]), float(eyes[0][1])), (float(eyes[1][0]), float(eyes[1][1]))),
        (float(mouth[0]), float(mouth[1])),
        score,
        detector,
        located,
    )


def detect_faces(image: np.ndarray) -> list[Face]:
    """The faces found in an RGB uint8 image, largest box first.

    With dlib, faces from 80 pixels of an image scaled to at most 800 pixels are looked for first,
    and faces from 40 pixels only when none is found: smaller faces beside a larger one are not
    reported (the portrait keeps the largest anyway).
    """
    image = _check_image(image)
    detector = detector_name()
    with _LOCK:
        boxes = _dlib_boxes(image) if detector == "dlib-hog" else _haar_boxes(image)
        faces = [_face_from_box(image, score, box, detector) for score, box in boxes]
    return sorted(faces, key=lambda f: -f.box.width * f.box.height)


def largest_face(faces: list[Face]) -> Face | None:
    """The largest face, as the release keeps. HOG box sides come in steps of 6/5 (its image
    pyramid), so boxes within 20 % of the largest area count as equally large and the detector's
    score decides among them. (The release's own pick has a slip, it never updates its running
    maximum, so it keeps the last face larger than the first; we keep the largest.)"""
    if not faces:
        return None
    top = max(f.box.width * f.box.height for f in faces)
    return max((f for f in faces if f.box.width * f.box.height >= 0.8 * top), key=lambda f: f.score)


def detect_face(image: np.ndarray) -> Face | None:
    """The largest face in an RGB uint8 image, or None."""
    return largest_face(detect_faces(image))


# ---- the release's crop and mask ---------------------------------------------------------------


def release_crop_box(box: Box, height: int, width: int, expand: float = 0.5) -> tuple[int, int, int, int]:
    """The release's crop ``(x0, y0, x1, y1)`` around a face box (its ``process_bbox``).

    1. Grow each side of the box by ``expand`` times the box's width (left/right) or height
       (top/bottom), clipped to the image.
    2. Take a square of the grown region's shorter side, centred on the grown region, shifted
       along the longer side toward the face's centre by at most the half-difference of the two
       sides (so it stays inside the grown region).
    3. Round each coordinate with Python's ``round`` (half to even). The result may therefore be
       one pixel off square in rare half-pixel ties, as in the release.
    """
    bw, bh = box.width, box.height
    gx0, gy0 = max(box.x0 - expand * bw, 0), max(box.y0 - expand * bh, 0)
    gx1, gy1 = min(box.x1 + expand * bw, width), min(box.y1 + expand * bh, height)
    gw, gh = gx1 - gx0, gy1 - gy0
    cx, cy = (gx0 + gx1) / 2, (gy0 + gy1) / 2
    fx, fy = box.center
    slack = abs(gh - gw) / 2
    if gw < gh:
        cy += math.copysign(min(slack, abs(fy - cy)), 1.0 if fy > cy else -1.0)
    else:
        cx += math.copysign(min(slack, abs(fx - cx)), 1.0 if fx > cx else -1.0)
    half = min(gw, gh) / 2
    return round(cx - half), round(cy - half), round(cx + half), round(cy + half)


def release_crop(image: np.ndarray, face: Face, expand: float = 0.5) -> tuple[np.ndarray, Face]:
    """The release's crop of ``image`` around ``face`` and the face in the crop's coordinates.

    (The release detects the face again in the saved crop to make its mask; moving the detected
    face into the crop gives the same box without a second detection.)
    """
    h, w = image.shape[:2]
    x0, y0, x1, y1 = release_crop_box(face.box, h, w, expand)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(f"face box {face.box} gives an empty crop of a {w}x{h} image")
    return image[y0:y1, x0:x1].copy(), face.moved(x0, y0)


def release_face_mask(box: Box, height: int, width: int, area: float = 1.1) -> np.ndarray:
    """The release's face mask: (height, width) uint8, 255 inside the face box scaled by ``area``.

    As the release computes it on a float ``(x, y, w, h)`` box: the centre is
    ``(x0 + x1) // 2`` (floor division of floats), the half-sizes ``(w * area) // 2``; the
    corners are clipped to ``[0, width]`` x ``[0, height]`` and truncated to integers. (A box
    lying wholly outside the image gives an empty mask here, where the release's negative slice
    indices would wrap around.) The release then resizes the mask with the image (LANCZOS), so it
    reaches the model with soft edges.
    """
    sw, sh = (box.x1 - box.x0) * area, (box.y1 - box.y0) * area
    cx, cy = (box.x1 + box.x0) // 2, (box.y1 + box.y0) // 2
    x0, y0 = max(cx - sw // 2, 0), max(cy - sh // 2, 0)
    x1, y1 = min(cx + sw // 2, width), min(cy + sh // 2, height)
    mask = np.zeros((height, width), np.uint8)
    mask[max(int(y0), 0) : max(int(y1), 0), max(int(x0), 0) : max(int(x1), 0)] = 255
    return mask


# ---- alignment to a face layout ----------------------------------------------------------------


@dataclass(frozen=True)
class FaceLayout:
    """Where a model's training faces sit in the frame, as fractions of the (square) frame's side.

    ``eye_y``: height of the eyes' midpoint; ``mouth_y``: height of the mouth centre;
    ``centre_x``: the eyes' midpoint across; ``face_width``: cheek-to-cheek width (for reference:
    :func:`layout_crop` matches the eyes and mouth, which carry the lip-sync, not the width);
    ``face_box``: the training faces' mean box ``(x0, y0, x1, y1)``, from which the model's face
    mask was made in training (:func:`layout_face_mask`).
    """

    eye_y: float
    mouth_y: float
    centre_x: float = 0.5
    face_width: float = 0.6
    face_box: tuple[float, float, float, float] = (0.2, 0.2, 0.8, 0.8)

    def to_dict(self) -> dict:
        return {"eye_y": self.eye_y, "mouth_y": self.mouth_y, "centre_x": self.centre_x, "face_width": self.face_width, "face_box": list(self.face_box)}

    @classmethod
    def from_dict(cls, values: dict) -> "FaceLayout":
        return cls(**{**values, "face_box": tuple(values.get("face_box", cls.face_box))})

    def __post_init__(self) -> None:
        if not 0.0 < self.eye_y < self.mouth_y < 1.0:
            raise ValueError(f"a layout needs 0 < eye_y < mouth_y < 1, got {self.eye_y}, {self.mouth_y}")
        if not 0.0 < self.centre_x < 1.0 or not 0.0 < self.face_width <= 1.5:
            raise ValueError(f"centre_x must be in (0, 1) and face_width in (0, 1.5], got {self.centre_x}, {self.face_width}")


SYNTHETIC_LAYOUT = FaceLayout(eye_y=0.474, mouth_y=0.697, centre_x=0.499, face_width=0.604, face_box=(0.196, 0.116, 0.8, 0.855))
"""The synthetic world's layout (the embedded default model's training faces), as measured by
:func:`measure_synthetic_layout` over 200 identities x 16 head poses (std over faces: 0.013-0.018).
Its eye-to-mouth distance is 0.36 face widths where real faces have about 0.47: cartoon heads are
wide, so a real face aligned on eyes and mouth looks narrower than the synthetic heads."""


def measure_synthetic_layout(identities: int = 200, poses: int = 16, seed: int = 0) -> FaceLayout:
    """Mean face layout of the synthetic world: eye and mouth centres projected by the renderer.

    Each identity of world ``seed`` is posed ``poses`` times like the world's clips: an emotion's
    posture at a random MEAD level plus the identity's sway (see ``synthetic.motion``). Eyes and
    mouth are the points the renderer draws them around (the mouth raised as its lips are); the
    width is the head outline's.
    """
    from ..synthetic.face import FaceRenderer
    from ..synthetic.expressions import NUM_EXPRESSION
    from ..synthetic.identity import sample_identity
    from ..synthetic.motion import EMOTION_POSTURE, emotion_posture

    rng = np.random.default_rng(seed)
    emotions = sorted(EMOTION_POSTURE)
    rows = []
    for index in range(identities):
        identity = sample_identity(seed, index)
        a = identity.appearance
        renderer = FaceRenderer(a, 64)
        size = renderer.canvas_size
        features = np.array([[-a.eye_spacing, a.eye_y], [a.eye_spacing, a.eye_y], [0.0, a.mouth_y]])
        for _ in range(poses):
            posture = emotion_posture(emotions[rng.integers(len(emotions))], int(rng.integers(1, 4)))
            sway = rng.uniform(-1, 1, 3) * identity.habits.sway * np.array([1.0, 0.5, 0.6])
            pose = posture + sway
            box = renderer.face_box(np.zeros(NUM_EXPRESSION), pose) / renderer.size
            # The renderer's projection of points on the face surface (the lips stand 0.05 off it).
            pts = renderer._project(features, np.array([0.0, 0.0, 0.05])) / size  # noqa: SLF001 (face_box set the pose)
            eyes = (pts[0] + pts[1]) / 2
            rows.append((eyes[1], pts[2][1], eyes[0], box[2] - box[0], *box))
    eye_y, mouth_y, centre_x, width, *box = (round(float(v), 3) for v in np.mean(rows, axis=0))
    return FaceLayout(eye_y, mouth_y, centre_x, width, tuple(box))


def layout_face_mask(layout: FaceLayout, size: int) -> np.ndarray:
    """The face mask a model trained on ``layout``'s faces saw: its mean face box enlarged 1.25x, as
    training makes it (:func:`dicetalk.data.datasets.face_mask`), float (size, size) in {0, 1}."""
    from ..data.datasets import face_mask

    return face_mask(np.array([layout.face_box], np.float32), size)


def layout_crop_box(face: Face, layout: FaceLayout) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square that puts ``face``'s eyes and mouth at ``layout``'s places.

    The side makes the eye-midpoint-to-mouth distance (measured along the face, so a tilted head
    keeps its size) equal to ``mouth_y - eye_y`` of the side; the eyes' midpoint then lands at
    ``(centre_x, eye_y)``.
    """
    ex, ey = face.eye_centre
    mx, my = face.mouth
    side = math.hypot(mx - ex, my - ey) / (layout.mouth_y - layout.eye_y)
    if not side >= 2:
        raise ValueError(f"face {face} is too small to align")
    n = round(side)
    return round(ex - layout.centre_x * n), round(ey - layout.eye_y * n), n


def layout_crop(image: np.ndarray, face: Face, layout: FaceLayout = SYNTHETIC_LAYOUT) -> tuple[np.ndarray, Face]:
    """A square crop of ``image`` with ``face``'s eyes and mouth at ``layout``'s places, at the
    image's own resolution (no resampling, no rotation); parts outside the image repeat its edge
    pixels. Returns the crop and the face in the crop's coordinates."""
    x0, y0, n = layout_crop_box(face, layout)
    h, w = image.shape[:2]
    rows = np.clip(np.arange(y0, y0 + n), 0, h - 1)  # clipped indices repeat the edge pixels
    cols = np.clip(np.arange(x0, x0 + n), 0, w - 1)
    crop = image[rows[:, None], cols[None, :]]
    return crop, face.moved(x0, y0)
