"""Pasting the generated crop back into the whole photo (issue 31)."""

import numpy as np
import pytest
from PIL import Image

from dicetalk.cli.main import main
from dicetalk.errors import InputError
from dicetalk.pipeline.paste_back import PasteBack
from dicetalk.pipeline.portrait import Portrait, prepare_portrait
from dicetalk.utils.media import read_video


def photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC))
    return np.ascontiguousarray(smooth)


def cut(image, box):
    """The crop of ``box`` as the layout rule makes it: outside the photo, its edge pixels repeat."""
    x0, y0, w, h = box
    rows = np.clip(np.arange(y0, y0 + h), 0, image.shape[0] - 1)
    cols = np.clip(np.arange(x0, x0 + w), 0, image.shape[1] - 1)
    return image[rows[:, None], cols[None, :]]


@pytest.mark.parametrize(
    "shape, box",
    [((300, 400), (120, 60, 150, 150)), ((301, 207), (-40, 10, 131, 131)), ((240, 320), (250, 190, 120, 120)), ((97, 333), (20, 5, 77, 60))],
    ids=["inside", "past-left-odd", "past-bottom-right", "not-square"],
)
def test_a_crop_pasted_back_unchanged_gives_the_photo(shape, box):
    """The inverse is exact: the crop itself, at the photo's resolution, reproduces the photo."""
    image = photo(*shape)
    crop = cut(image, box)
    paste = PasteBack(Portrait(crop, None, None, image, box), crop.shape[:2], max_side=4096)
    out = paste.paste(crop[None])[0]
    even = (shape[0] // 2 * 2, shape[1] // 2 * 2)
    assert out.shape == (*even, 3)
    assert np.abs(out.astype(int) - image[: even[0], : even[1]].astype(int)).max() <= 1


def test_outside_the_box_the_frame_is_the_photo_and_inside_it_the_face():
    image = photo(400, 600)
    box = (200, 100, 160, 160)
    generated = np.full((4, 64, 64, 3), 30, np.uint8)  # a dark face where the photo is bright
    out = PasteBack(Portrait(cut(image, box), None, None, image, box), (64, 64)).paste(generated)
    outside = np.ones((400, 600), bool)
    outside[100:260, 200:360] = False
    assert (out[:, outside] == image[outside]).all()
    centre = out[:, 160:200, 260:300].astype(int)
    # The colour match lifts the crop toward the photo at its border only: the middle stays the generated face.
    assert np.abs(centre - 30).max() <= 2
    assert out.shape == (4, 400, 600, 3)


def test_the_colour_drift_of_the_crop_is_matched_at_its_border():
    image = np.full((200, 200, 3), 128, np.uint8)
    box = (50, 50, 100, 100)
    drifted = np.full((1, 100, 100, 3), 148, np.uint8)  # the generated background came out 20 levels brighter
    out = PasteBack(Portrait(cut(image, box), None, None, image, box), (100, 100)).paste(drifted)[0].astype(int)
    assert np.abs(out[50:150, 50:52] - 128).max() <= 1  # at the border: the photo's level
    assert np.abs(np.diff(out[100, 40:110, 0])).max() <= 3  # from the photo into the crop without a seam
    assert np.abs(out[100, 100] - 148).max() <= 1  # the middle: the generated crop's own


def test_a_crop_larger_than_its_box_is_averaged_down_without_aliasing():
    """The release's 512 px crop into a smaller face box: area averaging, so a 1-pixel checker becomes its mean."""
    image = np.full((300, 300, 3), 128, np.uint8)
    box = (100, 100, 100, 100)
    checker = ((np.indices((512, 512)).sum(axis=0) % 2) * 255).astype(np.uint8)
    generated = np.repeat(checker[None, ..., None], 3, axis=3)
    out = PasteBack(Portrait(cut(image, box), None, None, image, box), (512, 512)).paste(generated)[0].astype(int)
    assert np.abs(out[130:170, 130:170] - 128).max() <= 5  # bicubic aliases it into 1..254


def test_max_side_scales_the_photo_and_a_max_side_below_the_crop_is_refused():
    image = photo(1000, 1500)
    box = (600, 300, 300, 300)
    paste = PasteBack(Portrait(cut(image, box), None, None, image, box), (64, 64), max_side=999)
    assert paste.output_shape == (666, 998, 3)  # scaled to 999 on the long side, then even
    with pytest.raises(InputError, match="--max-side 32 is below the generated crop's 64 px"):
        PasteBack(Portrait(cut(image, box), None, None, image, box), (64, 64), max_side=32)


@pytest.mark.parametrize("rule", ["release", "layout"])
def test_both_crop_rules_keep_their_inverse(rule, portrait_png):
    portrait = prepare_portrait(portrait_png, rule)
    assert portrait.box is not None and portrait.photo is not None
    paste = PasteBack(portrait, portrait.image.shape[:2], max_side=4096)
    out = paste.paste(portrait.image[None])[0]
    h, w = out.shape[:2]
    assert np.abs(out.astype(int) - portrait.photo[:h, :w].astype(int)).max() <= 1


def test_an_exif_rotated_rgba_photo_is_pasted_back_upright(portrait_png, tmp_path):
    upright = Image.open(portrait_png).convert("RGBA")
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = sideways.getexif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "phone.png", exif=exif)
    portrait = prepare_portrait(tmp_path / "phone.png", "release")
    assert portrait.photo.shape[:2] == (upright.height, upright.width)
    out = PasteBack(portrait, portrait.image.shape[:2], max_side=4096).paste(portrait.image[None])[0]
    np.testing.assert_allclose(out.astype(int), np.asarray(upright.convert("RGB"))[: out.shape[0], : out.shape[1]].astype(int), atol=1)


def _generate(portrait_png, speech_wav, tiny_weights, out, *extra):
    return main(["generate", str(portrait_png), str(speech_wav), "-o", str(out), "--weights", str(tiny_weights), "--steps", "1", "--device", "cpu", *extra])


def test_generate_writes_the_whole_photo_by_default_and_the_crop_when_asked(portrait_png, speech_wav, tiny_weights, tmp_path, capsys):
    assert _generate(portrait_png, speech_wav, tiny_weights, tmp_path / "full.mp4") == 0
    assert _generate(portrait_png, speech_wav, tiny_weights, tmp_path / "crop.mp4", "--frame", "crop") == 0
    full, crop = read_video(tmp_path / "full.mp4").frames, read_video(tmp_path / "crop.mp4").frames
    w, h = Image.open(portrait_png).size
    assert full.shape[1:3] == (h // 2 * 2, w // 2 * 2)
    assert crop.shape[1] < h and full.shape[0] == crop.shape[0]
    corner = np.asarray(Image.open(portrait_png).convert("RGB"))[:40, :40].astype(int)
    assert np.abs(full[:, :40, :40].astype(int) - corner).mean() < 4  # far from the face: the photo (through H.264)


@pytest.mark.parametrize("extra, message", [(["--frame", "both"], "unknown frame 'both'"), (["--max-side", "8"], "max_side must be a whole number 16..8192"),
                                            (["--max-side", "16"], "--max-side 16 is below the generated crop's 32 px")])  # fmt: skip
def test_bad_frame_options_are_one_line_and_leave_no_file(extra, message, portrait_png, speech_wav, tiny_weights, tmp_path, capsys):
    code = _generate(portrait_png, speech_wav, tiny_weights, tmp_path / "out.mp4", *extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err.strip().splitlines()[-1] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
