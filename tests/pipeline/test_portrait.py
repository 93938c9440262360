"""prepare_portrait: the three crops, the release's mask on each, and bad input."""

import numpy as np
import pytest
from PIL import Image

from dicetalk.errors import InputError
from dicetalk.pipeline.portrait import prepare_portrait
from dicetalk.utils.faces import SYNTHETIC_LAYOUT, FaceLayout, release_face_mask

ASTRONAUT_EYES = ((204.0, 101.0), (247.0, 103.0))  # pupils, read by eye


@pytest.fixture(scope="module")
def flat_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("portraits") / "flat.png"
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(path)
    return path


def _check_mask(portrait):
    h, w = portrait.image.shape[:2]
    assert portrait.mask.shape == (h, w) and portrait.mask.dtype == np.uint8
    assert set(np.unique(portrait.mask)) == {0, 255}
    assert np.array_equal(portrait.mask, release_face_mask(portrait.face.box, h, w))


def test_release_crop(portrait_png):
    p = prepare_portrait(portrait_png, "release")
    h, w = p.image.shape[:2]
    assert p.image.dtype == np.uint8 and p.image.shape[2] == 3
    assert abs(h - w) <= 1 and 120 < h < 260  # about twice the face box, at the photo's resolution
    _check_mask(p)
    (x0, y0), (x1, y1) = p.face.eyes
    assert p.mask[int(y0), int(x0)] == 255 and p.mask[int(y1), int(x1)] == 255
    assert p.mask[0, 0] == 0  # the mask is the face, not the whole crop


def test_layout_crop(portrait_png):
    p = prepare_portrait(portrait_png, "layout")
    n = p.image.shape[0]
    assert p.image.shape == (n, n, 3)
    _check_mask(p)
    assert abs(p.face.eye_centre[1] / n - SYNTHETIC_LAYOUT.eye_y) < 0.01  # placed exactly (up to rounding)
    other = prepare_portrait(portrait_png, "layout", FaceLayout(eye_y=0.3, mouth_y=0.5))
    assert other.image.shape[0] > n  # a smaller eye-mouth gap in the frame: a wider crop


def test_no_crop_keeps_the_image(portrait_png):
    from skimage import data

    p = prepare_portrait(portrait_png, "none")
    assert np.array_equal(p.image, data.astronaut())
    _check_mask(p)
    for x, y in ASTRONAUT_EYES:
        assert p.mask[int(y), int(x)] == 255


def test_no_crop_without_a_face(flat_png):
    p = prepare_portrait(flat_png, "none")
    assert p.image.shape == (200, 300, 3) and p.mask is None and p.face is None


@pytest.mark.parametrize("crop", ["release", "layout"])
def test_no_face_when_cropping_names_the_file_and_the_way_out(flat_png, crop):
    with pytest.raises(InputError) as err:
        prepare_portrait(flat_png, crop)
    message = str(err.value)
    assert "flat.png" in message and "no face found" in message and "--no-crop" in message
    assert "\n" not in message


def test_bad_input(tmp_path, portrait_png):
    text = tmp_path / "text.png"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        prepare_portrait(text, "release")
    with pytest.raises(InputError, match="no such file"):
        prepare_portrait(tmp_path / "missing.png", "none")
    with pytest.raises(InputError, match="unknown crop 'square'; expected one of release, layout, none"):
        prepare_portrait(portrait_png, "square")


def test_generate_frames_the_portrait_as_the_model_was_trained(portrait_png, tiny_weights):
    """The embedded default model gets a photo aligned to its synthetic faces and the mask its training
    used; weights without a face layout (the release) get the release's crop and mask rule."""
    from dicetalk.pipeline.generate import face_layout_of, portrait_for
    from dicetalk.utils.faces import detect_face, layout_face_mask

    default_layout = face_layout_of(None)
    assert default_layout == SYNTHETIC_LAYOUT  # stored with the embedded model
    assert face_layout_of(tiny_weights) is None
    aligned = portrait_for(portrait_png, True, default_layout)
    n = aligned.image.shape[0]
    assert np.array_equal(aligned.mask, layout_face_mask(SYNTHETIC_LAYOUT, n))
    face = detect_face(aligned.image)  # found again in the crop: the mouth where the synthetic faces have it
    assert abs(face.mouth[1] / n - SYNTHETIC_LAYOUT.mouth_y) < 0.04
    assert abs((face.eyes[0][1] + face.eyes[1][1]) / 2 / n - SYNTHETIC_LAYOUT.eye_y) < 0.04
    release = portrait_for(portrait_png, True, None)
    assert np.array_equal(release.mask, release_face_mask(release.face.box, *release.image.shape[:2]))
    assert portrait_for(portrait_png, False, default_layout).mask is None  # --no-crop: the model's default region
