"""Face tracking (locate_faces) and the mouth landmarks judge (LMD, mouth opening) on real photos."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from dicetalk.errors import InputError
from dicetalk.evaluation.real import faces as real_faces
from dicetalk.evaluation.real.faces import locate_faces
from dicetalk.evaluation.real.landmarks import DlibLandmarks, lmd, mouth_opening

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "faces"
PEOPLE = ("grace_hopper", "eileen_collins")


def load(name: str) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(ASSETS / f"{name}.jpg"))[:, :, ::-1])


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def half(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def stretch_lower_face(image: np.ndarray, mouth_y: float, factor: float = 2.0) -> np.ndarray:
    """Everything below the mouth's centre line stretched down ``factor`` times (an opening mouth)."""
    h, w = image.shape[:2]
    y = int(round(mouth_y))
    out = image.copy()
    out[y:] = cv2.warpAffine(image[y:], np.float32([[1, 0, 0], [0, factor, 0]]), (w, h - y), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


@pytest.fixture(scope="module")
def landmarks():
    return DlibLandmarks()


@pytest.fixture(scope="module")
def photos():
    return {name: load(name) for name in PEOPLE}


@pytest.fixture(scope="module")
def tracked(photos):
    """name -> (4-frame video of the photo drifting, its boxes)."""
    out = {}
    for name, im in photos.items():
        video = np.stack([shifted(im, 2 * t, t) for t in range(4)])
        out[name] = video, locate_faces(video, every=1, name=name)
    return out


# ---- tracking ----------------------------------------------------------------------------------


def test_locate_faces_follows_a_moving_face(photos, monkeypatch):
    image = np.ascontiguousarray(cv2.resize(photos["grace_hopper"], (512, 512), interpolation=cv2.INTER_AREA))
    step = np.array([1.5, 0.75])
    video = np.stack([shifted(image, *(step * t)) for t in range(20)])
    calls = []
    detect = real_faces.detect_box
    monkeypatch.setattr(real_faces, "detect_box", lambda im: calls.append(1) or detect(im))
    boxes = locate_faces(video, every=5)
    assert len(calls) == 5  # frames 0, 5, 10, 15 and the last
    assert boxes.shape == (20, 4) and boxes.dtype == np.float32 and np.isfinite(boxes).all()
    first = real_faces.refine_box(video[0], detect(video[0]))
    expected = first + np.array([np.tile(step * t, 2) for t in range(20)])
    error = np.abs(boxes - expected).max()
    print(f"\nlocate_faces: largest error {error:.2f} px over 20 frames (face box {first[2] - first[0]:.0f} px wide)")
    assert error < 4.0
    assert np.ptp(boxes[:, 2] - boxes[:, 0]) < 4.0  # the size does not jump with the HOG pyramid


def test_locate_faces_without_a_face():
    noise = np.random.default_rng(0).integers(0, 256, (6, 160, 160, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="no face found in clip.mp4"):
        locate_faces(noise, every=5, name="clip.mp4")


def test_locate_faces_leaves_long_face_free_stretches_nan(photos):
    face = photos["eileen_collins"]
    noise = np.random.default_rng(1).integers(0, 256, face.shape, dtype=np.uint8)
    video = np.stack([face] * 10 + [noise] * 20)
    boxes = locate_faces(video, every=5)
    ok = np.isfinite(boxes).all(axis=1)
    assert ok[:11].all() and not ok[11:].any()  # detections at 0 and 5, held for `every` frames after the last
    assert np.isnan(boxes[11:]).all()


# ---- landmarks -----------------------------------------------------------------------------------


def test_points_lie_in_the_face_box(landmarks, photos):
    for name, im in photos.items():
        box = locate_faces(im[None])[0]
        pts = landmarks.points(im, box)
        assert pts.shape == (68, 2) and pts.dtype == np.float32
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        # The WIDER-style box runs cheek to cheek; the jaw's outermost points may reach a little past.
        assert (pts[:, 0] > x0 - 0.1 * w).all() and (pts[:, 0] < x1 + 0.1 * w).all(), name
        assert (pts[:, 1] > y0).all() and (pts[:, 1] < y1 + 0.1 * h).all(), name
        mouth = pts[48:68]
        assert (mouth[:, 1] > y0 + 0.5 * h).all() and (mouth[:, 1] < y1).all(), name
        assert x0 < mouth[:, 0].mean() < x1
        np.testing.assert_allclose(landmarks.points(im), landmarks.points(im, real_faces.detect_box(im)))


def test_mouth_and_missing_frames(landmarks, tracked):
    video, boxes = tracked["grace_hopper"]
    boxes = boxes.copy()
    boxes[1] = np.nan
    mouths = landmarks.mouth(video, boxes)
    assert mouths.shape == (4, 20, 2) and mouths.dtype == np.float32
    assert np.isnan(mouths[1]).all() and np.isfinite(mouths[[0, 2, 3]]).all()
    opening = mouth_opening(mouths, boxes)
    assert opening.shape == (4,) and np.isnan(opening[1]) and np.isfinite(opening[[0, 2, 3]]).all()
    assert lmd(mouths, mouths, boxes, boxes) == 0.0  # NaN frames left out
    with pytest.raises(InputError, match="no frame has a mouth"):
        lmd(mouths[1:2], mouths[1:2], boxes[1:2], boxes[1:2])


def test_lmd_is_zero_on_itself_scale_free_and_positive_on_other_mouths(landmarks, tracked):
    video, boxes = tracked["grace_hopper"]
    mouths = landmarks.mouth(video, boxes)
    assert lmd(mouths, mouths, boxes, boxes) == 0.0

    small = np.stack([half(f) for f in video])
    small_boxes = locate_faces(small, every=1)
    small_mouths = landmarks.mouth(small, small_boxes)
    scaled = lmd(mouths, small_mouths, boxes, small_boxes)
    unnormalised = lmd(mouths, small_mouths, boxes, boxes)  # the half-size mouths divided by the full-size face
    other_video, other_boxes = tracked["eileen_collins"]
    other = lmd(mouths, landmarks.mouth(other_video, other_boxes), boxes, other_boxes)

    top = float(np.nanmax(mouths[:, :, 1].mean(axis=1)))  # the mouth's centre line, lowest over the frames
    opened = np.stack([stretch_lower_face(f, top) for f in video])
    opened_boxes = locate_faces(opened, every=1)
    stretched = lmd(mouths, landmarks.mouth(opened, opened_boxes), boxes, opened_boxes)
    print(f"\nLMD (face widths): half size {scaled:.4f} (unnormalised {unnormalised:.4f}), stretched mouth {stretched:.4f}, other person {other:.4f}")
    assert scaled < 0.02 and scaled < unnormalised / 3
    assert other > 0.025 and other > 3 * scaled
    assert stretched > 0.015 and stretched > 1.5 * scaled


def test_mouth_opening_grows_when_the_mouth_is_stretched_open(landmarks, photos):
    for name, im in photos.items():
        box = locate_faces(im[None])
        mouth = landmarks.mouth(im[None], box)
        opened = stretch_lower_face(im, float(mouth[0, :, 1].mean()))
        opened_box = locate_faces(opened[None])
        before = float(mouth_opening(mouth, box)[0])
        after = float(mouth_opening(landmarks.mouth(opened[None], opened_box), opened_box)[0])
        print(f"\n{name}: mouth opening {before:.3f} -> {after:.3f} face widths")
        assert after > before + 0.01, name
