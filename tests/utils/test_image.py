"""Images the way phones and editors write them: EXIF orientation, every colour mode, animations (issue 37)."""

import numpy as np
import pytest
from PIL import Image

from dicetalk.errors import InputError
from dicetalk.utils.image import load_image

# What the viewer does for each EXIF orientation (PIL's exif_transpose) and how a camera stores it (the inverse).
STORED_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright() -> np.ndarray:
    """40 x 24, with a different colour in each corner, so that every flip and turn shows."""
    pixels = np.full((24, 40, 3), 90, np.uint8)
    pixels[:6, :6] = (255, 0, 0)
    pixels[:6, -6:] = (0, 255, 0)
    pixels[-6:, :6] = (0, 0, 255)
    pixels[-6:, -6:] = (255, 255, 0)
    return pixels


def stored(pixels: np.ndarray, orientation: int) -> Image.Image:
    img = Image.fromarray(pixels)
    return img if STORED_AS[orientation] is None else img.transpose(STORED_AS[orientation])


def with_orientation(img: Image.Image, orientation: int) -> Image.Exif:
    exif = img.getexif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_every_exif_orientation_is_turned_upright(orientation, tmp_path):
    img = stored(upright(), orientation)
    path = tmp_path / "photo.png"
    img.save(path, exif=with_orientation(img, orientation))
    np.testing.assert_array_equal(load_image(path), upright())


def test_a_sideways_phone_photo_has_its_face_found(portrait_png, tmp_path):
    """The defect of issue 37: a phone JPEG stored sideways (orientation 6) gave "no face found"."""
    from dicetalk.utils.faces import detect_face

    photo = Image.open(portrait_png).convert("RGB")
    sideways = photo.transpose(Image.Transpose.ROTATE_90)
    path = tmp_path / "IMG_0001.jpg"
    sideways.save(path, quality=92, exif=with_orientation(sideways, 6))
    pixels = load_image(path)
    assert pixels.shape == (photo.height, photo.width, 3)
    assert detect_face(pixels) is not None


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:10] = (255, 0, 0, 255)  # opaque red above, fully transparent below
    rgba[10:15, :, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pixels = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(pixels[:10], np.broadcast_to((255, 0, 0), (10, 20, 3)))
    np.testing.assert_array_equal(pixels[15:], np.full((5, 20, 3), 255))
    assert 120 <= int(pixels[12, 0, 0]) <= 135  # black at half opacity on white


@pytest.mark.parametrize("mode", ["L", "1", "P", "LA", "PA", "CMYK", "I;16", "F"])
def test_other_colour_modes_read_as_rgb(mode, tmp_path):
    gray = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    rgb = Image.fromarray(gray, "L").convert("RGB")
    img = rgb.convert("P", palette=Image.Palette.ADAPTIVE) if mode in ("P", "PA") else rgb.convert(mode)
    if mode == "PA":
        img = img.convert("PA")
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.tiff" if mode in ("PA", "F") else "x.png")
    img.save(path)
    pixels = load_image(path)
    assert pixels.shape == (24, 32, 3) and pixels.dtype == np.uint8
    if mode != "1":
        assert np.abs(pixels.astype(int).mean(axis=2) - gray).max() <= 16, mode


def test_premultiplied_gray_alpha_is_composited_on_white():
    from dicetalk.utils.image import _as_rgb

    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 1] = (0, 128, 255, 255)  # alpha per column; premultiplied gray 0: black at that opacity
    la[3, 3] = (200, 255)
    pixels = _as_rgb(Image.frombytes("La", (4, 4), la.tobytes()))
    assert pixels[0, :, 0].tolist() == [255, 127, 0, 0] and pixels[3, 3].tolist() == [200, 200, 200]


def test_a_palette_image_with_a_transparent_colour_is_white_there(tmp_path):
    img = Image.new("P", (16, 16), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 16, 8))
    img.save(tmp_path / "p.png", transparency=0)
    pixels = load_image(tmp_path / "p.png")
    assert (pixels[:8] == (255, 0, 0)).all() and (pixels[8:] == 255).all()


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    deep = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (24, 1))
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    pixels = load_image(tmp_path / "deep.png")
    np.testing.assert_allclose(pixels[..., 0], deep / 257.0, atol=1)


def test_an_animated_file_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    pixels = load_image(tmp_path / "a.gif")
    assert pixels.shape == (20, 20, 3)
    assert pixels[..., 0].mean() > 150 and pixels[..., 1].mean() < 80


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), "is a folder, not an image file"),
        (lambda p: p.write_bytes(b""), "not a readable image"),
        (lambda p: p.write_text("hello, I am text"), "not a readable image"),
        (lambda p: p.write_bytes(_png_bytes()[:200]), "not a readable image"),
        (lambda p: Image.new("RGB", (10, 40)).save(p, "PNG"), "too small"),
    ],
    ids=["folder", "empty", "text", "truncated", "tiny"],
)
def test_broken_images_are_one_clear_line(make, message, tmp_path):
    path = tmp_path / "photo.png"
    make(path)
    with pytest.raises(InputError, match=message) as caught:
        load_image(path)
    assert "\n" not in str(caught.value)


def test_an_image_over_pils_warning_size_is_refused_without_a_warning(tmp_path, recwarn):
    """12000 x 12000 (144 Mpx) is past PIL's decompression-bomb warning: the warning went to stderr as a
    second and third line before our own one-line refusal."""
    import warnings

    Image.new("1", (12000, 12000)).save(tmp_path / "big.png")
    warnings.simplefilter("always")
    with pytest.raises(InputError, match="image of 12000x12000 pixels is too large"):
        load_image(tmp_path / "big.png")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def _png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()
