"""FID's InceptionV3: our features against torch-fidelity's, the Fréchet formula, safe loading and first-use fetching."""

import importlib
import importlib.util
import os
import sys
import types

import numpy as np
import pytest
import torch

from dicetalk.errors import InputError, UnsafeFileError, WeightsError
from dicetalk.evaluation.real.frechet import (
    INCEPTION_FILE,
    INCEPTION_URL,
    InceptionFID,
    convert_inception,
    fid_features,
    frechet_distance,
    inception_weights,
    load_inception,
    resize_bilinear_tf1,
)


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights with BatchNorm statistics far from (0, 1), so that running stats and eps matter.

    The convolutions are rescaled (He-style) so the activations stay O(1) through the 94 units.
    """
    torch.manual_seed(seed)
    model = InceptionFID()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, (2.0 / fan_in) ** 0.5)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.3, 3.0)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def state():
    return random_state_dict()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("fid") / INCEPTION_FILE
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    # Smooth-ish content (a gradient plus noise), not a size of 299: the resize matters.
    base = np.linspace(0, 200, 200)[None, :, None] + np.linspace(0, 40, 256)[:, None, None]
    noise = rng.integers(0, 56, (3, 256, 200, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)  # (N, H, W, 3)


@pytest.fixture
def fidelity(monkeypatch):
    """torch-fidelity's inception module, loaded without its package __init__ (which imports torchvision).

    A stub package stands in for ``torch_fidelity`` while the test runs; it and the submodules
    imported through it are taken out of ``sys.modules`` afterwards.
    """
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("torch-fidelity (test-only reference) is not installed: make setup installs it with --no-deps")
    pkg = types.ModuleType("torch_fidelity")
    pkg.__path__ = [spec.submodule_search_locations[0]]
    before = {name for name in sys.modules if name.startswith("torch_fidelity.")}
    monkeypatch.setitem(sys.modules, "torch_fidelity", pkg)
    try:
        yield importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")
    finally:
        for name in [n for n in sys.modules if n.startswith("torch_fidelity.") and n not in before]:
            del sys.modules[name]


def test_the_url_and_parameter_names_are_torch_fidelitys(fidelity, weights_file):
    assert INCEPTION_URL == fidelity.URL_INCEPTION_V3
    theirs = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_file))
    own = InceptionFID().state_dict()
    assert {k: tuple(v.shape) for k, v in own.items()} == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}


def test_the_resize_is_tensorflow_1s_bilinear_to_the_bit(fidelity):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x as reference

    x = torch.rand(2, 3, 256, 200) * 255
    for size in [(299, 299), (37, 120), (256, 200)]:
        assert torch.equal(resize_bilinear_tf1(x, size), reference(x, size=size, align_corners=False)), size
    # the edge repeats; a 2 -> 4 upsample samples at 0, 0.5, 1, 1.5 (no half-pixel offset)
    row = torch.tensor([[[[0.0, 10.0]]]])
    assert resize_bilinear_tf1(row, (1, 4)).flatten().tolist() == [0.0, 5.0, 10.0, 10.0]


def test_features_equal_torch_fidelitys_on_the_same_weights(fidelity, weights_file, images):
    theirs = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_file))
    ours = load_inception(weights_file)
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    with torch.inference_mode():
        (expected,) = theirs(nchw)
        got = ours(nchw)
    assert got.shape == (3, 2048) and got.dtype == torch.float32
    assert expected.abs().max() > 1e-2  # the random network is not dead
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    print(f"max relative error vs torch-fidelity: {error:.3g}")
    assert error <= 1e-4
    # fid_features: the same numbers, batched, as float64 rows; uint8 and float input agree
    feats = fid_features(ours, images, batch_size=2)
    assert feats.shape == (3, 2048) and feats.dtype == np.float64
    np.testing.assert_allclose(feats, expected.double().numpy(), rtol=0, atol=1e-4 * float(expected.abs().max()))
    with torch.inference_mode():
        torch.testing.assert_close(ours(nchw.float()), got, rtol=0, atol=0)


def test_frechet_distance_of_a_set_with_itself_and_of_shifted_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + 0.5) == pytest.approx(8 * 0.25, rel=1e-6)  # same covariance: |shift|^2

    # diagonal Gaussians, closed form sum (m1 - m2)^2 + (s1 - s2)^2, on samples whitened to exact moments
    def exact(n, mean, std):
        z = rng.normal(size=(n, len(mean)))
        z -= z.mean(axis=0)
        z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample covariance exactly I
        return mean + z * std

    m1, s1, m2, s2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 2.0, 0.5]), np.array([1.0, 1.0, 0.0]), np.array([3.0, 1.0, 0.5])
    closed = float(((m1 - m2) ** 2).sum() + ((s1 - s2) ** 2).sum())  # 1 + 0 + 4 + 4 + 1 + 0 = 10
    assert frechet_distance(exact(300, m1, s1), exact(500, m2, s2)) == pytest.approx(closed, rel=1e-9)
    assert frechet_distance(a, a + 0.1) > 0
    # the bootstrap's weighted Fréchet (evaluation/stats.py) with unit weights is the same number
    from dicetalk.evaluation.stats import weighted_frechet

    b = rng.normal(size=(300, 8)) * 1.5 + 0.2
    assert weighted_frechet(a, np.ones(len(a)), b, np.ones(len(b))) == pytest.approx(frechet_distance(a, b), rel=1e-9)
    with pytest.raises(ValueError):
        frechet_distance(a, a[:, :4])


def test_a_state_dict_loads_and_a_converted_folder_round_trips(weights_file, state, images, tmp_path):
    model = load_inception(weights_file)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    folder = convert_inception(weights_file, tmp_path / "fid")
    assert (folder / "config.json").is_file() and (folder / "diffusion_pytorch_model.safetensors").is_file()
    again = load_inception(folder)
    for key, value in state.items():
        assert torch.equal(again.state_dict()[key], value), key
    # a file without BatchNorm's batch counters (unused in eval) loads too
    no_counters = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(no_counters, tmp_path / "old.pth")
    load_inception(tmp_path / "old.pth")


def test_weights_are_converted_on_first_use_and_reused_after(weights_file, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / INCEPTION_FILE).write_bytes(weights_file.read_bytes())
    judges = tmp_path / "judges"
    first = inception_weights(judges, mirror=mirror, progress=lambda _: None)
    assert (judges / "fid" / "config.json").is_file() and (judges / "fid" / "source.json").is_file()
    (mirror / INCEPTION_FILE).unlink()
    mirror.rmdir()
    second = inception_weights(judges, mirror=mirror, progress=lambda _: None)  # the mirror is gone: not read
    for key, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[key], value), key
    with pytest.raises(InputError, match="has no"):
        inception_weights(tmp_path / "other", mirror=mirror, progress=lambda _: None)


def test_a_failed_download_is_a_one_line_input_error_naming_the_url(monkeypatch, tmp_path):
    import urllib.request

    def refuse(url, timeout=None):
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(InputError, match="cannot download") as info:
        inception_weights(tmp_path / "judges", progress=lambda _: None)
    assert INCEPTION_URL in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "judges" / "fid").exists()
    assert [p.name for p in (tmp_path / "judges").iterdir()] == []  # the scratch download is gone


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"fc.bias": torch.zeros(1008), "payload": _Marker(str(marker))}, tmp_path / INCEPTION_FILE)
    with pytest.raises(UnsafeFileError):
        load_inception(tmp_path / INCEPTION_FILE)
    with pytest.raises(UnsafeFileError):
        convert_inception(tmp_path / INCEPTION_FILE, tmp_path / "out")
    mirror = tmp_path
    with pytest.raises(UnsafeFileError):
        inception_weights(tmp_path / "judges", mirror=mirror, progress=lambda _: None)
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "judges" / "fid").exists()


def test_wrong_keys_or_shapes_are_one_line_weights_errors(tmp_path, state):
    missing = dict(state)
    del missing["Mixed_6c.branch7x7dbl_3.conv.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing") as info:
        load_inception(tmp_path / "missing.pth")
    assert "\n" not in str(info.value)

    wrong = dict(state)
    wrong["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(wrong, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match="shape") as info:
        load_inception(tmp_path / "shape.pth")
    assert "\n" not in str(info.value)

    extra = dict(state, **{"aux_logits.fc.weight": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match="unexpected"):
        load_inception(tmp_path / "extra.pth")
    with pytest.raises(WeightsError):
        load_inception(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no FID"):
        load_inception(tmp_path / "empty")
