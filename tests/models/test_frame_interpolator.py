"""FrameInterpolator: the release's RIFE HDv3 structure, its warp and blend, clips, save/load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from dicetalk.errors import InputError
from dicetalk.models.frame_interpolator import FrameInterpolator, backward_warp

# The released network (src/utils/RIFE/IFNet_HDv3.py): IFNet with block0..2 = IFBlock(7+4, c=90) and
# block_tea = IFBlock(10+4, c=90). An IFBlock is, with h = c // 2:
#   conv0       = [conv(in, h, stride 2), conv(h, c, stride 2)]      conv = [Conv2d 3x3 + bias, PReLU(out)]
#   convblock0..3 = [conv(c, c), conv(c, c)]
#   conv1       = [ConvTranspose2d(c, h, 4, 2, 1), PReLU(h), ConvTranspose2d(h, 4, 4, 2, 1)]   flow
#   conv2       = [ConvTranspose2d(c, h, 4, 2, 1), PReLU(h), ConvTranspose2d(h, 1, 4, 2, 1)]   mask
RELEASE_BLOCKS = {"block0": 11, "block1": 11, "block2": 11, "block_tea": 14}
C = 90


def release_block_shapes(in_channels: int, c: int = C) -> dict[str, tuple[int, ...]]:
    h = c // 2
    rows = [("conv0.0", in_channels, h), ("conv0.1", h, c)]
    rows += [(f"convblock{i}.{j}", c, c) for i in range(4) for j in range(2)]
    shapes: dict[str, tuple[int, ...]] = {}
    for name, c_in, c_out in rows:  # conv(c_in, c_out): Conv2d weight (out, in, 3, 3), bias, PReLU weight
        shapes[f"{name}.0.weight"] = (c_out, c_in, 3, 3)
        shapes[f"{name}.0.bias"] = (c_out,)
        shapes[f"{name}.1.weight"] = (c_out,)
    for head, out in (("conv1", 4), ("conv2", 1)):  # ConvTranspose2d weight is (in, out, k, k)
        shapes[f"{head}.0.weight"] = (c, h, 4, 4)
        shapes[f"{head}.0.bias"] = (h,)
        shapes[f"{head}.1.weight"] = (h,)
        shapes[f"{head}.2.weight"] = (h, out, 4, 4)
        shapes[f"{head}.2.bias"] = (out,)
    return shapes


def release_shapes() -> dict[str, tuple[int, ...]]:
    return {f"{block}.{k}": v for block, c_in in RELEASE_BLOCKS.items() for k, v in release_block_shapes(c_in).items()}


def small(seed: int = 0, **kw) -> FrameInterpolator:
    torch.manual_seed(seed)
    return FrameInterpolator(hidden_channels=16, **kw).eval()


def zero_output_layers(model: FrameInterpolator) -> FrameInterpolator:
    """Zero flow and zero mask logits from every block (the last transposed convolution of both heads)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".conv1.2." in name or ".conv2.2." in name:
                p.zero_()
    return model


def test_state_dict_names_and_shapes_are_the_releases():
    with torch.device("meta"):
        model = FrameInterpolator()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = release_shapes()
    assert sorted(set(got) - set(want)) == [] and sorted(set(want) - set(got)) == []
    assert got == want
    assert sum(v.numel() for v in model.state_dict().values()) == sum(torch.Size(s).numel() for s in want.values())


def test_zero_output_layers_give_the_mean_of_the_two_frames():
    model = zero_output_layers(small())
    for size in ((64, 64), (64, 128), (50, 70)):  # square, non-square, padded (not a multiple of 16)
        a, b = torch.rand(2, 3, *size), torch.rand(2, 3, *size)
        with torch.no_grad():
            middle = model(a, b)
        assert middle.shape == a.shape
        # Zero flow warps through grid_sample's normalised grid: identity up to float32 rounding of it.
        torch.testing.assert_close(middle, (a + b) / 2, atol=1e-5, rtol=0)


def test_warp_moves_an_image_by_a_constant_flow():
    image = torch.rand(1, 3, 16, 20)
    flow = torch.zeros(1, 2, 16, 20)
    flow[:, 0] = 2.0  # sample two pixels to the right: the content moves two pixels left
    out = backward_warp(image, flow)
    torch.testing.assert_close(out[..., :-2], image[..., 2:], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., -2:], image[..., -1:].expand(-1, -1, -1, 2), atol=1e-5, rtol=0)  # border: edge pixel
    flow = torch.zeros(1, 2, 16, 20)
    flow[:, 1] = -3.0
    out = backward_warp(image, flow)
    torch.testing.assert_close(out[..., 3:, :], image[..., :-3, :], atol=1e-5, rtol=0)
    half = torch.zeros(1, 2, 16, 20)
    half[:, 0] = 0.5  # bilinear between neighbours
    torch.testing.assert_close(backward_warp(image, half)[..., :-1], (image[..., :-1] + image[..., 1:]) / 2, atol=1e-5, rtol=0)


def test_middle_frame_is_symmetric_in_the_two_frames():
    model = small(seed=1)
    a, b = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        ab, ba = model(a, b), model(b, a)
    assert not torch.allclose(ab, (a + b) / 2, atol=1e-3)  # random weights do move pixels
    torch.testing.assert_close(ab, ba, atol=1e-5, rtol=0)


def test_sizes_off_the_stride_are_padded_by_repeating_edges_and_cropped():
    model = small(seed=2)
    assert model.multiple(1.0) == 4 * max(model.config.scales)  # a block works at 1/4 of its input
    a, b = torch.rand(1, 3, 50, 70), torch.rand(1, 3, 50, 70)
    pad = (0, -70 % 16, 0, -50 % 16)
    with torch.no_grad():
        got = model(a, b)
        want = model(F.pad(a, pad, mode="replicate"), F.pad(b, pad, mode="replicate"))[..., :50, :70]
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_interpolate_keeps_the_originals_and_batches_the_pairs():
    model = small(seed=3)
    frames = torch.rand(6, 3, 32, 32)
    out = model.interpolate(frames, batch_size=2)  # 5 pairs in chunks of 2, 2, 1
    assert out.shape == (2 * 6 - 1, 3, 32, 32)
    assert torch.equal(out[0::2], frames)
    with torch.no_grad():
        pairwise = torch.cat([model(frames[i : i + 1], frames[i + 1 : i + 2]) for i in range(5)])
    torch.testing.assert_close(out[1::2], pairwise, atol=1e-5, rtol=0)
    four = model.interpolate(frames, factor=4)
    assert four.shape == (4 * 5 + 1, 3, 32, 32) and torch.equal(four[0::4], frames)
    torch.testing.assert_close(four[2::4], pairwise, atol=1e-5, rtol=0)
    assert torch.equal(model.interpolate(frames[:1]), frames[:1])
    with pytest.raises(InputError, match="power of two"):
        model.interpolate(frames, factor=3)
    with pytest.raises(InputError, match="same shape"):
        model(frames[:1], frames[:1, :, :16])


def test_save_and_load_round_trip(tmp_path):
    model = small(seed=4, teacher=False)
    model.save_pretrained(tmp_path / "fi")
    assert (tmp_path / "fi" / "diffusion_pytorch_model.safetensors").is_file()
    assert not any(k.startswith("block_tea.") for k in load_file(tmp_path / "fi" / "diffusion_pytorch_model.safetensors"))
    loaded = FrameInterpolator.from_pretrained(tmp_path / "fi").eval()
    assert loaded.config.hidden_channels == 16 and tuple(loaded.config.scales) == (4, 2, 1)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(a, b), model(a, b))
