"""I3D for FVD: the public state dict's layout, TF-"SAME" padding, the forward, VideoGPT's preprocessing, weights."""

from __future__ import annotations

import math
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dicetalk.errors import InputError, UnsafeFileError, WeightsError
from dicetalk.evaluation.real import i3d as i3d_module
from dicetalk.evaluation.real.i3d import (
    I3D,
    I3D_FILE,
    I3D_GDRIVE_ID,
    Mixed,
    SamePool3d,
    Unit3D,
    clip_starts,
    convert_i3d,
    fvd_features,
    git_blob_id,
    i3d_weights,
    load_i3d,
    preprocess_clips,
    same_padding,
)

# ------------------------------------------------------------------ the public file, independently

# i3d_pretrained_400.pt is built by VideoGPT's videogpt/fvd/convert_tf_pretrained.py from TF-Hub's
# deepmind/i3d-kinetics-400/1: per conv unit `conv3d.weight` (TF w, permuted to out, in, t, h, w),
# `bn.bias` (beta), `bn.weight` (ones: Sonnet has no scale), `bn.running_mean`, `bn.running_var`;
# the Logits conv has `logits.conv3d.weight` and `.bias`. No `num_batches_tracked`.
PUBLIC_LANDMARKS = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.running_mean": (64,),
    "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Conv3d_2c_3x3.bn.running_var": (192,),
    "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
    "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
    "Mixed_3c.b3b.conv3d.weight": (64, 256, 1, 1, 1),
    "Mixed_4b.b2a.conv3d.weight": (16, 480, 1, 1, 1),
    "Mixed_4f.b1b.bn.bias": (320,),
    "Mixed_5b.b2a.conv3d.weight": (32, 832, 1, 1, 1),  # TF's `Conv3d_0a_3x3` typo, renamed by the converter
    "Mixed_5b.b2b.conv3d.weight": (128, 32, 3, 3, 3),
    "Mixed_5c.b0.bn.weight": (384,),
    "Mixed_5c.b3b.conv3d.weight": (128, 832, 1, 1, 1),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}
# 3 stem units + 9 Inception blocks x 6 units, 5 entries each, plus the 2 of the logits.
PUBLIC_ENTRIES = (3 + 9 * 6) * 5 + 2  # 287


def _public_state(model: I3D) -> dict[str, torch.Tensor]:
    """The model's weights in the public file's layout (no num_batches_tracked), as a fresh dict."""
    return {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm statistics and affine terms (so that they matter), eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def model() -> I3D:
    torch.manual_seed(0)
    return _randomise_bn(I3D()).requires_grad_(False)


@pytest.fixture(scope="module")
def small_clip() -> torch.Tensor:
    """The smallest input the network takes: 9 frames of 193 x 193 (pooled to one position)."""
    return torch.rand(1, 3, 9, 193, 193, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_state_dict_has_the_public_layout(model):
    state = model.state_dict()
    for key, shape in PUBLIC_LANDMARKS.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    public = [k for k in state if not k.endswith("num_batches_tracked")]
    assert len(public) == PUBLIC_ENTRIES == 287
    assert len(state) == 287 + 57  # our BatchNorms add num_batches_tracked
    # Only the converter's families of names.
    suffixes = {".conv3d.weight", ".bn.weight", ".bn.bias", ".bn.running_mean", ".bn.running_var"}
    assert all(any(k.endswith(s) for s in suffixes) for k in public if not k.startswith("logits."))
    units = {k.rsplit(".", 2)[0] for k in public if not k.startswith("logits.")}
    assert len(units) == 57
    blocks = {u.split(".")[0] for u in units if u.startswith("Mixed_")}
    assert blocks == {"Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "Mixed_5b", "Mixed_5c"}
    assert {u.split(".")[1] for u in units if u.startswith("Mixed_")} == {"b0", "b1a", "b1b", "b2a", "b2b", "b3b"}
    assert not any(k.endswith("conv3d.bias") for k in public if not k.startswith("logits."))


# --------------------------------------------------------------------------------------- padding


def _tf_same(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (tf.nn.conv3d docs): out = ceil(n / s), total = max((out - 1) s + k - n, 0)."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def test_same_padding_is_tensorflows():
    for n in range(1, 30):
        for k in range(1, 8):
            for s in (1, 2, 3):
                pads = same_padding((n, n + 1, 2 * n), (k, k, 1), (s, 1, s))
                assert pads[4:6] == _tf_same(n, k, s), (n, k, s)
                assert pads[2:4] == _tf_same(n + 1, k, 1)
                assert pads[0:2] == _tf_same(2 * n, 1, s)
                # hence the output has ceil(n / s) positions
                assert (n + sum(pads[4:6]) - k) // s + 1 == math.ceil(n / s)


def _reference_unit(x: torch.Tensor, unit: Unit3D) -> torch.Tensor:
    """The unit written out: TF pads, conv, BatchNorm by its formula, ReLU."""
    k, s = unit.conv3d.kernel_size, unit.conv3d.stride
    pads = []
    for n, kk, ss in reversed(list(zip(x.shape[2:], k, s))):
        pads += list(_tf_same(n, kk, ss))
    y = F.conv3d(F.pad(x, pads), unit.conv3d.weight, None, s)
    bn = unit.bn
    shape = (1, -1, 1, 1, 1)
    y = (y - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + 1e-5) * bn.weight.view(shape) + bn.bias.view(shape)
    return y.clamp_min(0)


def test_unit3d_and_pools_match_a_direct_computation():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    for shape, kernel, stride in [((1, 3, 9, 15, 16), (7, 7, 7), (2, 2, 2)), ((2, 4, 5, 8, 7), (3, 3, 3), (1, 1, 1)), ((1, 4, 4, 6, 5), (1, 1, 1), (1, 1, 1))]:
        unit = _randomise_bn(Unit3D(shape[1], 6, kernel, stride))
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            got, want = unit(x), _reference_unit(x, unit)
        assert got.shape == want.shape
        assert got.shape[2:] == tuple(math.ceil(n / s) for n, s in zip(shape[2:], stride))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # Max pools pad with zeros; on the (post-ReLU) non-negative inputs this equals TF's -inf padding.
    x = torch.rand(1, 2, 7, 9, 10, generator=gen)
    for kernel, stride in [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2)), ((3, 3, 3), (1, 1, 1))]:
        pads = []
        for n, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
            pads += list(_tf_same(n, k, s))
        want = F.max_pool3d(F.pad(x, pads, value=-math.inf), kernel, stride)
        torch.testing.assert_close(SamePool3d(kernel, stride)(x), want, rtol=0, atol=0)


def test_inception_block_matches_a_direct_computation():
    torch.manual_seed(0)
    block = _randomise_bn(Mixed(8, (2, 3, 4, 2, 3, 5)))
    x = torch.rand(1, 8, 4, 6, 5)
    with torch.no_grad():
        pooled = F.max_pool3d(F.pad(x, (1, 1, 1, 1, 1, 1), value=-math.inf), 3, 1)
        want = torch.cat([
            _reference_unit(x, block.b0),
            _reference_unit(_reference_unit(x, block.b1a), block.b1b),
            _reference_unit(_reference_unit(x, block.b2a), block.b2b),
            _reference_unit(pooled, block.b3b),
        ], dim=1)  # fmt: skip
        torch.testing.assert_close(block(x), want, rtol=1e-5, atol=1e-5)
    assert block(x).shape == (1, 2 + 4 + 3 + 5, 4, 6, 5)


# --------------------------------------------------------------------------------------- forward


def test_full_forward_at_224_is_finite(model):
    x = torch.rand(2, 3, 16, 224, 224, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (2, 400) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # the input matters


def test_logits_are_averaged_over_time(model):
    # 24 frames: Mixed_5c has 3 time steps, the 2-frame average pool leaves 2; forward averages their logits.
    x = torch.rand(1, 3, 24, 193, 193, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.inference_mode():
        out = model(x)
        mixed = model.features_5c(x)
        assert mixed.shape == (1, 1024, 3, 7, 7)
        pooled = torch.stack([mixed[:, :, t : t + 2].mean(dim=(2, 3, 4)) for t in range(2)], dim=2)  # (1, 1024, 2)
        logits = torch.einsum("oc,nct->not", model.logits.conv3d.weight.flatten(1), pooled) + model.logits.conv3d.bias[None, :, None]
    torch.testing.assert_close(out, logits.mean(dim=2), rtol=1e-4, atol=1e-4)


def test_forward_rejects_inputs_the_pool_cannot_take(model):
    for shape in [(1, 3, 8, 224, 224), (1, 3, 16, 192, 224), (1, 3, 16, 225, 224), (1, 1, 16, 224, 224), (3, 16, 224, 224)]:
        with pytest.raises(ValueError, match="I3D"):
            model(torch.zeros(shape))


# --------------------------------------------------------------------------------- preprocessing


def test_preprocessing_shape_range_and_constant_grey():
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (2, 3, 90, 150, 3), dtype=np.uint8)
    clips[0, 0, :5] = 0
    clips[0, 0, -5:] = 255
    out = preprocess_clips(clips)
    assert out.shape == (2, 3, 3, 224, 224) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    for grey in (0, 128, 255):
        out = preprocess_clips(np.full((1, 2, 120, 200, 3), grey, np.uint8))
        expected = (grey / 255 - 0.5) * 2
        torch.testing.assert_close(out, torch.full_like(out, expected), rtol=0, atol=1e-6)


def test_preprocessing_resizes_the_short_side_and_crops_the_centre():
    rng = np.random.default_rng(1)
    # Short side already 224: no resampling, the centre 224 columns of 448 (112 .. 335).
    clip = rng.integers(0, 256, (1, 2, 224, 448, 3), dtype=np.uint8)
    want = torch.from_numpy(clip[0, :, :, 112:336].astype(np.float32)).permute(3, 0, 1, 2) / 255
    torch.testing.assert_close(preprocess_clips(clip)[0], (want - 0.5) * 2, rtol=0, atol=1e-6)
    # Tall frames: rows 112 .. 335 of 448.
    tall = np.ascontiguousarray(clip.transpose(0, 1, 3, 2, 4))
    want = torch.from_numpy(tall[0, :, 112:336].astype(np.float32)).permute(3, 0, 1, 2) / 255
    torch.testing.assert_close(preprocess_clips(tall)[0], (want - 0.5) * 2, rtol=0, atol=1e-6)
    # Exactly 2x down (448 x 672 -> 224 x 336, then 56 columns off each side): bilinear without
    # align_corners samples between pixel pairs, i.e. each output is the mean of a 2 x 2 block.
    big = rng.integers(0, 256, (1, 1, 448, 672, 3), dtype=np.uint8)
    blocks = big[0].astype(np.float64).reshape(1, 224, 2, 336, 2, 3).mean(axis=(2, 4))[:, :, 56:280]
    want = torch.from_numpy(blocks.astype(np.float32)).permute(3, 0, 1, 2) / 255
    torch.testing.assert_close(preprocess_clips(big)[0], (want - 0.5) * 2, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        preprocess_clips(np.zeros((2, 224, 224, 3), np.uint8))
    with pytest.raises(ValueError):
        preprocess_clips(np.zeros((1, 2, 224, 224, 3), np.float32))


def test_fvd_features_of_consecutive_clips(model):
    assert clip_starts(40) == [0, 16]
    assert clip_starts(48) == [0, 16, 32]
    assert clip_starts(40, stride=8) == [0, 8, 16, 24]
    assert clip_starts(40, max_clips=1) == [0]
    assert clip_starts(15) == []
    rng = np.random.default_rng(2)
    video = rng.integers(0, 256, (40, 60, 70, 3), dtype=np.uint8)  # 2 clips (0-15, 16-31), 8 frames dropped
    feats = fvd_features(model, video, batch_size=2)
    assert feats.shape == (2, 400) and feats.dtype == np.float64
    with torch.inference_mode():
        want = torch.cat([model(preprocess_clips(video[None, s : s + 16])) for s in (0, 16)]).double().numpy()
    np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fvd_features(model, video, max_clips=1, batch_size=1), want[:1], rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="15 frames"):
        fvd_features(model, video[:15])
    with pytest.raises(ValueError):
        fvd_features(model, video, clip_len=8)


# --------------------------------------------------------------------------------------- weights


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = _public_state(a), _public_state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


@pytest.fixture(scope="module")
def public_file(tmp_path_factory, model) -> Path:
    """The model saved as the public file is: a plain torch state dict of 287 entries."""
    path = tmp_path_factory.mktemp("i3d") / I3D_FILE
    torch.save(_public_state(model), path)
    return path


def test_state_dict_file_and_converted_folder(tmp_path, model, public_file, small_clip):
    with torch.inference_mode():
        expected = model(small_clip)
    loaded = load_i3d(public_file)
    assert not loaded.training and loaded.config.num_classes == 400
    _same_weights(loaded, model)
    folder = convert_i3d(public_file, tmp_path / "fvd", source="test")
    assert {p.name for p in folder.iterdir()} == {"config.json", "diffusion_pytorch_model.safetensors", "source.json"}
    for path in (folder, folder / "diffusion_pytorch_model.safetensors"):
        again = load_i3d(path)
        _same_weights(again, model)
        with torch.inference_mode():
            torch.testing.assert_close(again(small_clip), expected, rtol=0, atol=0)


def test_missing_misshapen_or_foreign_weights(tmp_path, model):
    state = _public_state(model)
    torch.save({k: v for k, v in state.items() if k != "Mixed_4d.b1b.bn.running_var"}, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="missing.*Mixed_4d.b1b.bn.running_var"):
        load_i3d(tmp_path / "missing.pt")
    torch.save({**state, "Mixed_3b.b0.conv3d.weight": torch.zeros(64, 192, 3, 3, 3)}, tmp_path / "shape.pt")
    with pytest.raises(WeightsError, match="shape"):
        load_i3d(tmp_path / "shape.pt")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(WeightsError, match="unexpected.*extra.weight"):
        load_i3d(tmp_path / "extra.pt")
    torch.save({"netcnnaud.0.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not I3D"):
        load_i3d(tmp_path / "other.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no I3D"):
        load_i3d(tmp_path / "empty")


class _WritesAFile:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).touch()",)


def test_pickle_with_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "MARKER"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    evil = mirror / I3D_FILE
    torch.save({"logits.conv3d.bias": _WritesAFile(marker)}, evil)
    with pytest.raises(UnsafeFileError):
        load_i3d(evil)
    assert not marker.exists()
    with pytest.raises(UnsafeFileError):
        i3d_weights(tmp_path / "judges", mirror=mirror, progress=lambda _: None)
    assert not marker.exists()
    assert not (tmp_path / "judges" / "fvd").exists()
    torch.load(evil, weights_only=False)  # the file really is malicious: a plain load runs its code
    assert marker.exists()


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("no network in tests")


def test_i3d_weights_from_a_mirror_converts_once(tmp_path, monkeypatch, model, public_file):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(public_file, mirror / I3D_FILE)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    judges = tmp_path / "judges"
    first = i3d_weights(judges, mirror=mirror, progress=lambda _: None)
    _same_weights(first, model)
    assert (judges / "fvd" / "config.json").is_file()
    assert sorted(p.name for p in judges.iterdir()) == ["fvd"]  # nothing else left behind
    assert (mirror / I3D_FILE).is_file()  # the user's file is theirs
    # Second call: only the converted folder is read (no mirror, no network).
    shutil.rmtree(mirror)
    second = i3d_weights(judges, progress=lambda _: pytest.fail("nothing should be fetched"))
    _same_weights(second, model)


def test_i3d_weights_download_is_checked_and_the_raw_file_deleted(tmp_path, monkeypatch, model, public_file):
    monkeypatch.delenv("DICETALK_I3D_URL", raising=False)
    url = public_file.as_uri()
    blob = git_blob_id(public_file)
    git = shutil.which("git")
    if git:  # our blob id is git's
        assert subprocess.run([git, "hash-object", str(public_file)], capture_output=True, text=True, check=True).stdout.strip() == blob
    monkeypatch.setattr(i3d_module, "I3D_WEIGHTS_URL", "https://invalid.example/nothing.pt")
    monkeypatch.setattr(i3d_module, "I3D_WEIGHTS_MIRRORS", (url,))
    # The right blob id: the first URL fails, the second is kept, converted, and the download removed.
    monkeypatch.setattr(i3d_module, "I3D_WEIGHTS_GIT_BLOB", blob)
    real_urlopen = urllib.request.urlopen
    monkeypatch.setattr(urllib.request, "urlopen", lambda u, *a, **k: _no_network() if u.startswith("https:") else real_urlopen(u, *a, **k))
    judges = tmp_path / "judges"
    _same_weights(i3d_weights(judges, progress=lambda _: None), model)
    assert sorted(p.name for p in judges.iterdir()) == ["fvd"]
    assert url in (judges / "fvd" / "source.json").read_text()
    # A file whose blob id differs is not kept: one line naming where to get the file.
    monkeypatch.setattr(i3d_module, "I3D_WEIGHTS_GIT_BLOB", "0" * 40)
    with pytest.raises(InputError, match=f"git blob id.*{I3D_GDRIVE_ID}.*mirror") as info:
        i3d_weights(tmp_path / "other", progress=lambda _: None)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == []
    # $DICETALK_I3D_URL replaces the sources (the user's choice: not checked).
    monkeypatch.setenv("DICETALK_I3D_URL", url)
    _same_weights(i3d_weights(tmp_path / "env", progress=lambda _: None), model)


def test_i3d_weights_offline_without_mirror_says_where_to_get_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("DICETALK_I3D_URL", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with pytest.raises(InputError, match=f"cannot download {I3D_FILE}.*{I3D_GDRIVE_ID}") as info:
        i3d_weights(tmp_path / "judges", progress=lambda _: None)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="has no i3d_pretrained_400.pt"):
        i3d_weights(tmp_path / "judges", mirror=tmp_path, progress=lambda _: None)
