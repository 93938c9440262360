"""EMO-AffectNet judge: the public weights' layout, safe loading, preprocessing, Emo-Score."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dicetalk.errors import UnsafeFileError, WeightsError
from dicetalk.evaluation.real.emotion import (
    AFFECTNET_CLASSES,
    EMOTION_WEIGHTS_FILE,
    EmoAffectNet,
    affectnet_state_dict,
    convert_emotion,
    emo_score,
    load_emotion_weights,
    mead_probabilities,
    preprocess,
)

# ---------------------------------------------------------------- the public layout, written out

# The authors' torch port (their HF Space's ResNet50(7, channels=3)), described independently of
# the module under test: a 7x7 stem `conv_layer_s2_same` + `batch_norm1`; `layer1..4` of
# 3/4/6/3 bottlenecks with `conv1..3` / `batch_norm1..3`, a projection `i_downsample.{0,1}` in each
# layer's first block; `fc1` 2048->512, `fc2` 512->7.
STAGES = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]


def _bn_keys(prefix, c):
    return [(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)), (f"{prefix}.running_mean", (c,)),
            (f"{prefix}.running_var", (c,)), (f"{prefix}.num_batches_tracked", ())]  # fmt: skip


def public_layout():
    keys = [("conv_layer_s2_same.weight", (64, 3, 7, 7)), *_bn_keys("batch_norm1", 64)]
    cin = 64
    for i, (w, blocks, _) in enumerate(STAGES, start=1):
        for b in range(blocks):
            p = f"layer{i}.{b}"
            keys += [(f"{p}.conv1.weight", (w, cin, 1, 1)), *_bn_keys(f"{p}.batch_norm1", w)]
            keys += [(f"{p}.conv2.weight", (w, w, 3, 3)), *_bn_keys(f"{p}.batch_norm2", w)]
            keys += [(f"{p}.conv3.weight", (4 * w, w, 1, 1)), *_bn_keys(f"{p}.batch_norm3", 4 * w)]
            if b == 0:
                keys += [(f"{p}.i_downsample.0.weight", (4 * w, cin, 1, 1)), *_bn_keys(f"{p}.i_downsample.1", 4 * w)]
            cin = 4 * w
    keys += [("fc1.weight", (512, 2048)), ("fc1.bias", (512,)), ("fc2.weight", (7, 512)), ("fc2.bias", (7,))]
    return keys


LANDMARKS = {  # a few keys spelled out by hand, so a mistake in public_layout() is caught too
    "conv_layer_s2_same.weight": (64, 3, 7, 7),
    "layer1.0.i_downsample.0.weight": (256, 64, 1, 1),
    "layer2.0.conv1.weight": (128, 256, 1, 1),
    "layer3.5.batch_norm3.running_var": (1024,),
    "layer4.2.conv2.weight": (512, 512, 3, 3),
    "fc1.weight": (512, 2048),
    "fc2.bias": (7,),
}


def public_state_dict(seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in public_layout():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean") or key.endswith(".bias"):
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("weight") and len(shape) == 1:  # BatchNorm gamma
            sd[key] = 0.5 + 0.5 * torch.rand(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:]))
            sd[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return sd


def reference_forward(sd, x):
    """The public architecture as plain functions: TF 'same' stem (pad 2 top/left, 3 bottom/right at 224),
    valid 3x3/2 max pool, stride on each stage's first 1x1 conv, BN eps 1e-3, ReLU between fc1 and fc2."""

    def bn(t, p):
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"], False, 0.0, 1e-3)

    x = F.pad(x, (2, 3, 2, 3))
    x = F.relu(bn(F.conv2d(x, sd["conv_layer_s2_same.weight"], stride=2), "batch_norm1"))
    x = F.max_pool2d(x, 3, 2)
    for i, (_, blocks, stride) in enumerate(STAGES, start=1):
        for b in range(blocks):
            p, s = f"layer{i}.{b}", (stride if b == 0 else 1)
            y = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=s), f"{p}.batch_norm1"))
            y = F.relu(bn(F.conv2d(y, sd[f"{p}.conv2.weight"], padding=1), f"{p}.batch_norm2"))
            y = bn(F.conv2d(y, sd[f"{p}.conv3.weight"]), f"{p}.batch_norm3")
            short = bn(F.conv2d(x, sd[f"{p}.i_downsample.0.weight"], stride=s), f"{p}.i_downsample.1") if b == 0 else x
            x = F.relu(y + short)
    x = x.mean(dim=(2, 3))
    x = F.relu(F.linear(x, sd["fc1.weight"], sd["fc1.bias"]))
    return F.linear(x, sd["fc2.weight"], sd["fc2.bias"])


@pytest.fixture(scope="module")
def public_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("emo") / EMOTION_WEIGHTS_FILE
    torch.save(public_state_dict(), path)
    return path


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (2, 180, 150, 3), dtype=np.uint8)


def test_the_layout_matches_the_hand_written_landmarks_and_the_model():
    layout = dict(public_layout())
    for key, shape in LANDMARKS.items():
        assert layout[key] == shape, key
    own = {k: tuple(v.shape) for k, v in EmoAffectNet().state_dict().items()}
    assert own == layout
    assert len(layout) == 322  # 53 convs, 53 BatchNorms (5 entries each), 2 linears


def test_public_weights_load_and_compute_the_reference_architecture(public_file, faces, tmp_path):
    model = load_emotion_weights(public_file)
    assert not model.training
    x = preprocess(faces)
    with torch.inference_mode():
        logits = model(x)
        feats = model.features(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    assert feats.shape == (2, 512) and (feats >= 0).all()
    expected = reference_forward(public_state_dict(), x)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)

    folder = convert_emotion(public_file, tmp_path / "emotion")
    assert (folder / "config.json").is_file() and (folder / "diffusion_pytorch_model.safetensors").is_file()
    again = load_emotion_weights(folder)
    with torch.inference_mode():
        assert torch.equal(again(x), logits)


def test_a_dataparallel_prefix_and_a_missing_batch_counter_are_tolerated(tmp_path, faces):
    sd = {f"module.{k}": v for k, v in public_state_dict(1).items() if not k.endswith("num_batches_tracked")}
    assert "fc1.weight" in affectnet_state_dict(sd)
    torch.save(sd, tmp_path / "w.pt")
    model = load_emotion_weights(tmp_path / "w.pt")
    with torch.inference_mode():
        torch.testing.assert_close(model(preprocess(faces)), reference_forward(public_state_dict(1), preprocess(faces)), rtol=1e-4, atol=1e-4)


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    sd = {"fc2.bias": torch.zeros(7), "payload": _Marker(str(marker))}
    torch.save(sd, tmp_path / EMOTION_WEIGHTS_FILE)
    with pytest.raises(UnsafeFileError):
        load_emotion_weights(tmp_path / EMOTION_WEIGHTS_FILE)
    with pytest.raises(UnsafeFileError):
        convert_emotion(tmp_path / EMOTION_WEIGHTS_FILE, tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_wrong_keys_or_shapes_are_one_line_weights_errors(tmp_path, public_file):
    good = public_state_dict()
    missing = dict(good)
    del missing["layer3.2.conv2.weight"]
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="missing") as info:
        load_emotion_weights(tmp_path / "missing.pt")
    assert "\n" not in str(info.value)

    wrong = dict(good)
    wrong["layer2.0.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    torch.save(wrong, tmp_path / "shape.pt")
    with pytest.raises(WeightsError, match="shape") as info:
        load_emotion_weights(tmp_path / "shape.pt")
    assert "\n" not in str(info.value)

    renamed = {k.replace("batch_norm", "bn"): v for k, v in good.items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(WeightsError):
        load_emotion_weights(tmp_path / "renamed.pt")

    # a failed conversion leaves an earlier folder as it was
    folder = convert_emotion(public_file, tmp_path / "emotion")
    before = (folder / "diffusion_pytorch_model.safetensors").read_bytes()
    with pytest.raises(WeightsError):
        convert_emotion(tmp_path / "shape.pt", folder)
    assert (folder / "diffusion_pytorch_model.safetensors").read_bytes() == before
    with pytest.raises(WeightsError):
        load_emotion_weights(tmp_path / "nothing-here")


def test_preprocess_flips_to_bgr_and_subtracts_the_vggface2_means():
    red = np.zeros((1, 50, 70, 3), np.uint8)
    red[..., 0] = 255
    x = preprocess(red)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([-91.4953, -103.8827, 255 - 131.0912]))
    assert torch.all(x[0] == x[0, :, :1, :1])


def test_preprocess_resizes_as_pil_nearest_and_takes_crops_of_any_size():
    from PIL import Image

    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (97, 61, 3), dtype=np.uint8), rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)]
    x = preprocess(crops)
    for crop, got in zip(crops, x):
        pil = np.asarray(Image.fromarray(crop).resize((224, 224), Image.Resampling.NEAREST), np.float32)
        expected = pil[..., ::-1] - np.array([91.4953, 103.8827, 131.0912], np.float32)
        np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected)


def test_mead_probabilities_is_a_per_frame_softmax_keyed_by_mead_names():
    logits = torch.tensor([[0.0, 3.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 5.0]])
    p = mead_probabilities(logits)
    assert tuple(p) == AFFECTNET_CLASSES and "contempt" not in p
    total = sum(p.values())
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)
    assert p["happy"][0] > 0.7 and p["angry"][1] > 0.9


def _frames(*rows):
    out = np.full((len(rows), 7), 0.01)
    for t, (cls, value) in enumerate(rows):
        out[t, AFFECTNET_CLASSES.index(cls)] = value
    return out


def test_emo_score_pools_frame_probabilities_and_splits_neutral_from_the_rest():
    videos = [
        # asked happy: argmax frame by frame is 2x neutral vs 1x happy, but the mean picks happy
        _frames(("neutral", 0.40), ("neutral", 0.40), ("happy", 0.99)),
        _frames(("neutral", 0.9)),  # asked neutral: correct
        _frames(("happy", 0.9)),  # asked neutral: wrong
        _frames(("sad", 0.9)),  # asked sad: correct, outside the 4 Emo-Score classes
        _frames(("angry", 0.9)),  # asked contempt: excluded
        _frames(("fear", 0.9)),  # asked surprised: wrong
        np.zeros((0, 7)),  # asked angry, no face read: wrong
    ]
    asked = ["happy", "neutral", "neutral", "sad", "contempt", "surprised", "angry"]
    r = emo_score(videos, asked)
    assert r["predicted"] == ["happy", "neutral", "happy", "sad", "angry", "fear", None]
    assert r["correct"] == [True, True, False, True, None, False, False]
    assert r["excluded"] == [4]
    assert r["counts"]["emo_score"] == {"accuracy": 2 / 5, "correct": 2, "n": 5}
    assert r["emo_score"] == pytest.approx(2 / 5)
    assert r["neutral"] == pytest.approx(1 / 2)
    assert r["non_neutral"] == pytest.approx(2 / 4)  # happy, sad, surprised, angry
    assert r["per_class"]["sad"] == {"accuracy": 1.0, "correct": 1, "n": 1}
    assert r["per_class"]["disgusted"]["accuracy"] is None
    assert emo_score(videos[:1], ["happy"], classes=("sad",))["emo_score"] is None


def test_the_model_is_batched_and_fast_enough_on_a_cpu():
    model = EmoAffectNet().eval()
    x = torch.randn(4, 3, 224, 224)
    with torch.inference_mode():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)
