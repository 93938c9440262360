"""Face detection on real photos, the release's crop and mask rules, and alignment to a face layout."""

import numpy as np
import pytest
from skimage import data

from dicetalk.utils import faces
from dicetalk.utils.faces import (
    SYNTHETIC_LAYOUT,
    Face,
    FaceLayout,
    detect_face,
    detect_faces,
    layout_crop,
    measure_synthetic_layout,
    release_crop,
    release_crop_box,
    release_face_mask,
)
from dicetalk.utils.image import Box

# The astronaut's pupils and the middle of her open mouth (between the lips), read by eye on a
# 5x enlargement of the photo.
ASTRONAUT_EYES = ((204.0, 101.0), (247.0, 103.0))
ASTRONAUT_MOUTH = (223.0, 145.0)


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    return detect_face(astronaut)


def _face(box: Box) -> Face:
    cx, cy = box.center
    return Face(box, ((cx - 1, cy), (cx + 1, cy)), (cx, cy + 1), 1.0, "test", False)


# ---- the release's crop rule (process_bbox with expand 0.5) ------------------------------------


@pytest.mark.parametrize(
    "box, height, width, expected",
    [
        # At the image's top-left edge, 40x40 in a 100x200 image: grown by 20 per side and clipped
        # to x 0..60, y 0..70 (60 wide, 70 tall). Square of side 60; the centre moves toward the
        # face's (y 30) from 35 by min(5 = half the difference, 5) -> y 0..60.
        (Box(0, 10, 40, 50), 100, 200, (0, 0, 60, 60)),
        # Wide 100x40 box in 300x300: grown to x 50..250, y 110..190 (200 x 80); square of 80
        # centred (the face's centre is the grown region's): x 110..190.
        (Box(100, 130, 200, 170), 300, 300, (110, 110, 190, 190)),
        # Wide box at the left edge: grown x max(10-50, 0)=0..160, y 110..190 (160 x 80). Centre x
        # 80 moves toward the face's 60 by min(40, 20) = 20: x 60-40..60+40.
        (Box(10, 130, 110, 170), 300, 300, (20, 110, 100, 190)),
        # Tall 40x100 box: grown x 80..160, y 0..200 (80 x 200); square of 80 at the centre y 100.
        (Box(100, 50, 140, 150), 300, 300, (80, 60, 160, 140)),
        # Tall box at the top: grown y 0..160 (centre 80); the face's centre is 60: moves by
        # min((160-80)/2, 20) = 20 up -> y 20..100.
        (Box(100, 10, 140, 110), 300, 300, (80, 20, 160, 100)),
        # Half-pixel ties round half to even, as Python's round: grown 0.5..40.5 -> 0..40.
        (Box(10.5, 10.5, 30.5, 30.5), 100, 100, (0, 0, 40, 40)),
    ],
)
def test_release_crop_box_by_hand(box, height, width, expected):
    assert release_crop_box(box, height, width, expand=0.5) == expected


def test_release_crop_returns_the_face_in_crop_coordinates():
    image = np.arange(300 * 300 * 3, dtype=np.uint32).reshape(300, 300, 3).astype(np.uint8)
    crop, face = release_crop(image, _face(Box(10, 130, 110, 170)))
    assert crop.shape == (80, 80, 3)
    assert np.array_equal(crop, image[110:190, 20:100])
    assert (face.box.x0, face.box.y0, face.box.x1, face.box.y1) == (-10, 20, 90, 60)


# ---- the release's mask rule (area 1.1) ----------------------------------------------------------


def test_release_mask_extent_by_hand():
    # Box x 10..50, y 20..80: centre (60 // 2, 100 // 2) = (30, 50); half-sizes (44.000...01 // 2,
    # 66.000...01 // 2) = (22, 33) -> columns 8..52, rows 17..83 (end excluded).
    mask = release_face_mask(Box(10, 20, 50, 80), 100, 100, area=1.1)
    assert mask.dtype == np.uint8 and mask.shape == (100, 100)
    assert set(np.unique(mask)) == {0, 255}
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (17, 83, 8, 52)
    assert mask.sum() == 255 * 66 * 44
    # Odd sizes floor: x 11..50 (39 x 1.1 = 42.9 -> 21), centre 61 // 2 = 30 -> 9..51;
    # y 21..80 (59 x 1.1 = 64.9 -> 32), centre 101 // 2 = 50 -> 18..82.
    rows, cols = np.nonzero(release_face_mask(Box(11, 21, 50, 80), 100, 100))
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (18, 82, 9, 51)


def test_release_mask_is_clipped_to_the_image():
    # Box 0..40 square in a 30 x 50 image: centre 20, half-size 22 -> x max(-2, 0)..min(42, 50),
    # y max(-2, 0)..min(42, 30).
    mask = release_face_mask(Box(0, 0, 40, 40), 30, 50)
    assert mask.shape == (30, 50)
    assert mask[:, :42].min() == 255 and mask[:, 42:].max() == 0
    assert release_face_mask(Box(-100, -100, -60, -60), 30, 50).max() == 0  # wholly outside: empty


# ---- detection ---------------------------------------------------------------------------------------


def test_detects_the_astronaut(astronaut, astronaut_face):
    found = detect_faces(astronaut)
    assert len(found) == 1
    face = astronaut_face
    b = face.box
    for x, y in (*ASTRONAUT_EYES, ASTRONAUT_MOUTH):
        assert b.x0 < x < b.x1 and b.y0 < y < b.y1
    # WIDER FACE-style: from the forehead (brows at y ~ 90, hairline ~ 60) to the chin (~ 168).
    assert 45 < b.y0 < 85 and 160 < b.y1 < 185 and 70 < b.width < 110
    for (x, y), (hx, hy) in zip(face.eyes, ASTRONAUT_EYES):
        assert abs(x - hx) < 5 and abs(y - hy) < 5
    assert abs(face.mouth[0] - ASTRONAUT_MOUTH[0]) < 6 and abs(face.mouth[1] - ASTRONAUT_MOUTH[1]) < 6


def _resize(image, scale):
    import cv2

    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


@pytest.mark.parametrize("big_on_the_left", [True, False])
def test_largest_of_two_faces_wins(astronaut, big_on_the_left):
    head = astronaut[0:300, 100:400]
    big, small = _resize(head, 1.6), head  # faces of about 140 and 87 pixels
    canvas = np.full((500, 820, 3), 90, np.uint8)
    if big_on_the_left:
        canvas[:480, :480], canvas[100:400, 500:800] = big, small
    else:
        canvas[:480, 340:820], canvas[100:400, 20:320] = big, small
    found = detect_faces(canvas)
    assert len(found) == 2
    face = detect_face(canvas)
    assert (face.box.center[0] < 480) == big_on_the_left
    assert face.box.width > min(f.box.width for f in found)  # HOG box sizes come in steps of 6/5


@pytest.mark.parametrize("name", ["flat", "noise", "coffee"])
def test_no_face(name):
    image = {
        "flat": lambda: np.full((256, 256, 3), 128, np.uint8),
        "noise": lambda: np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8),
        "coffee": data.coffee,
    }[name]()
    assert detect_face(image) is None


@pytest.mark.parametrize("angle", [-20, 20])
def test_tilted_face_keeps_its_eyes(astronaut, angle):
    import cv2

    turn = cv2.getRotationMatrix2D((256, 256), angle, 1.0)
    image = cv2.warpAffine(astronaut, turn, (512, 512), borderMode=cv2.BORDER_REFLECT)
    face = detect_face(image)
    assert face is not None
    truth = np.array(ASTRONAUT_EYES) @ turn[:, :2].T + turn[:, 2]
    assert np.abs(np.array(face.eyes) - truth).max() < 8


def test_haar_stands_in_without_dlib(astronaut, monkeypatch):
    monkeypatch.setattr(faces, "_dlib_detector", lambda: None)
    assert faces.detector_name() == "haar"
    face = detect_face(astronaut)
    assert face.detector == "haar"
    for x, y in (*ASTRONAUT_EYES, ASTRONAUT_MOUTH):
        assert face.box.x0 < x < face.box.x1 and face.box.y0 < y < face.box.y1
    assert detect_face(np.full((256, 256, 3), 128, np.uint8)) is None


def test_detection_refuses_non_rgb():
    with pytest.raises(ValueError, match="RGB uint8"):
        detect_face(np.zeros((64, 64), np.uint8))


# ---- layout ----------------------------------------------------------------------------------------


def test_synthetic_layout_is_the_worlds():
    measured = measure_synthetic_layout(identities=40, poses=4, seed=1)
    for field in ("eye_y", "mouth_y", "centre_x", "face_width"):
        assert abs(getattr(measured, field) - getattr(SYNTHETIC_LAYOUT, field)) < 0.01, field


def _in_crop(points, face_in_crop, face):
    # The crop is a translation of the image: the detected face's eye moved by the same offset.
    dx, dy = face.eyes[0][0] - face_in_crop.eyes[0][0], face.eyes[0][1] - face_in_crop.eyes[0][1]
    return [(x - dx, y - dy) for x, y in points]


@pytest.mark.parametrize("layout", [SYNTHETIC_LAYOUT, FaceLayout(eye_y=0.4, mouth_y=0.68, centre_x=0.45)])
def test_layout_crop_puts_eyes_and_mouth_in_place(astronaut, astronaut_face, layout):
    crop, face = layout_crop(astronaut, astronaut_face, layout)
    n = crop.shape[0]
    assert crop.shape == (n, n, 3)
    # The hand-read eyes and mouth of the photo, in the crop, as fractions of its side.
    (le, re, mouth) = np.array(_in_crop([*ASTRONAUT_EYES, ASTRONAUT_MOUTH], face, astronaut_face)) / n
    assert abs((le[1] + re[1]) / 2 - layout.eye_y) < 0.03
    assert abs((le[0] + re[0]) / 2 - layout.centre_x) < 0.03
    assert abs(mouth[1] - layout.mouth_y) < 0.03
    # Detected again in the crop, enlarged to 256 pixels, the face lands at the same places.
    again = detect_face(_resize(crop, 256 / n))
    ex, ey = np.array(again.eye_centre) / 256
    assert abs(ey - layout.eye_y) < 0.04 and abs(ex - layout.centre_x) < 0.04
    assert abs(again.mouth[1] / 256 - layout.mouth_y) < 0.04


def test_layout_crop_pads_past_the_edge():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :50] = 200
    face = Face(Box(0, 0, 20, 30), ((2.0, 10.0), (12.0, 10.0)), (7.0, 20.0), 1.0, "test", True)
    crop, moved = layout_crop(image, face, FaceLayout(eye_y=0.5, mouth_y=0.75))
    # Eye-mouth distance 10 = a quarter of the side -> 40 pixels, eyes' midpoint (7, 10) at (20, 20).
    assert crop.shape == (40, 40, 3)
    assert moved.eye_centre == (20.0, 20.0) and moved.mouth == (20.0, 30.0)
    assert (crop == 200).all()  # columns and rows before the image repeat its edge


def test_layout_must_be_ordered():
    with pytest.raises(ValueError):
        FaceLayout(eye_y=0.7, mouth_y=0.5)
