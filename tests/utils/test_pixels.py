"""The one definition of image <-> model-input conversions, against what the release computes."""

import numpy as np
import torch
from PIL import Image

from dicetalk.utils.pixels import clip_input, resize, resize_mask, to_pixels, to_uint8


def test_clip_input_is_the_releases_clip_processor_on_a_lanczos_224_image():
    from transformers import CLIPImageProcessor

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (512, 384, 3), dtype=np.uint8)  # a portrait resized to 512 on its short side, non-square
    theirs = CLIPImageProcessor()(images=Image.fromarray(image).resize((224, 224), Image.LANCZOS), return_tensors="pt").pixel_values
    ours = clip_input(image, 224)
    assert ours.shape == theirs.shape == (1, 3, 224, 224)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_pixels_round_trip_and_lanczos_resizing():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    x = to_pixels(frames)
    assert x.shape == (3, 3, 20, 24) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert np.array_equal(to_uint8(x).numpy(), frames)
    expected = np.asarray(Image.fromarray(frames[0]).resize((12, 10), Image.LANCZOS))
    assert np.array_equal(resize(frames[0], 10, 12), expected)
    assert resize(frames[0], 20, 24) is not frames[0] and np.array_equal(resize(frames[0], 20, 24), frames[0])


def test_a_face_mask_resizes_with_soft_edges_as_the_releases():
    mask = np.zeros((100, 80), np.uint8)
    mask[20:70, 10:60] = 255
    out = resize_mask(mask, 64, 48)
    assert out.shape == (64, 48) and out.dtype == np.float32
    assert out.max() == 1.0 and out.min() == 0.0
    assert ((out > 0.05) & (out < 0.95)).any()  # LANCZOS on the 8-bit mask: soft edges, as the release's
    assert np.array_equal(resize_mask(mask.astype(np.float32) / 255, 64, 48), out)  # float masks in [0, 1] alike
