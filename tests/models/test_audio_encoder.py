"""Whisper encoder: building, loading (ours and whisper-tiny layouts), chunked encoding, per-frame windows."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from dicetalk.configs import CONFIG_NAMES, get_config
from dicetalk.errors import WeightsError
from dicetalk.models.audio_encoder import (
    encode_audio,
    feature_length,
    frame_features,
    frame_windows,
    load_audio_encoder,
    whisper_feature_extractor,
)
from dicetalk.models.registry import build_component

SR = 16_000


@pytest.fixture
def encoder(tiny_config):
    torch.manual_seed(0)
    return build_component("audio_encoder", tiny_config).eval()


@pytest.fixture
def extractor(tiny_config):
    return whisper_feature_extractor(tiny_config.audio_encoder)


def _speechlike(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    voiced = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (voiced + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


def _encode_chunk(encoder, extractor, samples):
    """Reference: one chunk through the extractor and the encoder, hidden states stacked (positions, L+1, C)."""
    mel = extractor(samples, sampling_rate=SR, return_tensors="pt").input_features
    with torch.no_grad():
        return torch.stack(encoder(mel, output_hidden_states=True).hidden_states, dim=2)[0]


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_feature_extractor_chunks_match_the_encoder(name):
    config = get_config(name).audio_encoder
    fe = whisper_feature_extractor(config)
    expected_seconds = {"tiny": 2, "synthetic": 5, "svd-xt": 30}[name]
    assert fe.chunk_length == expected_seconds
    assert fe.nb_max_frames == 2 * config["max_source_positions"]
    assert fe.feature_size == config["num_mel_bins"]


def test_feature_extractor_rejects_fractional_chunks():
    with pytest.raises(ValueError, match="multiple of 50"):
        whisper_feature_extractor(dict(get_config("tiny").audio_encoder, max_source_positions=125))


def test_build_gives_a_random_whisper_encoder(tiny_config, encoder):
    assert isinstance(encoder, WhisperEncoder)
    assert encoder.config.d_model == 32 and len(encoder.layers) == 2
    assert all(p.requires_grad for name, p in encoder.named_parameters() if name != "embed_positions.weight")


def test_encode_audio_shapes_layers_and_no_grad(encoder, extractor):
    wav = _speechlike(1.0)
    hidden = encode_audio(encoder, extractor, wav, num_frames=25)
    assert hidden.shape == (50, 3, 32)  # 2 feature frames per video frame, embedding + 2 layers, d_model
    assert hidden.dtype == torch.float32
    assert not hidden.requires_grad
    reference = _encode_chunk(encoder, extractor, wav)[:50]
    torch.testing.assert_close(hidden, reference)
    # The last hidden state is the encoder's (layer-normed) output, as in the released recipe.
    mel = extractor(wav, sampling_rate=SR, return_tensors="pt").input_features
    with torch.no_grad():
        torch.testing.assert_close(hidden[:, -1], encoder(mel).last_hidden_state[0, :50])
    # A tensor waveform, (1, samples), gives the same.
    torch.testing.assert_close(encode_audio(encoder, extractor, torch.from_numpy(wav)[None], 25), hidden)


def test_encode_audio_can_keep_gradients(encoder, extractor):
    hidden = encode_audio(encoder, extractor, _speechlike(0.5), num_frames=10, requires_grad=True)
    assert hidden.requires_grad
    hidden.square().mean().backward()
    assert encoder.conv1.weight.grad is not None and encoder.conv1.weight.grad.abs().sum() > 0


def test_encode_audio_longer_than_a_chunk(encoder, extractor):
    wav = _speechlike(5.0, seed=1)  # 2 s chunks: two full and a half one
    hidden = encode_audio(encoder, extractor, wav, num_frames=125)
    assert hidden.shape == (250, 3, 32)
    chunk = 2 * SR
    for k, start in enumerate(range(0, len(wav), chunk)):
        expected = _encode_chunk(encoder, extractor, wav[start : start + chunk])
        rows = hidden[k * 100 : (k + 1) * 100]
        torch.testing.assert_close(rows, expected[: len(rows)], atol=1e-5, rtol=1e-5)
    # Chunks batched into one forward == one chunk at a time.
    torch.testing.assert_close(encode_audio(encoder, extractor, wav, 125, chunk_batch_size=1), hidden, atol=1e-5, rtol=1e-5)
    # A shorter video keeps whole chunks (never cuts one short), so its rows are a prefix.
    torch.testing.assert_close(encode_audio(encoder, extractor, wav, 30), hidden[:60], atol=1e-5, rtol=1e-5)


def test_encode_audio_very_short_audio_is_padded_with_silence(encoder, extractor):
    wav = _speechlike(0.05)  # 800 samples, under two video frames
    hidden = encode_audio(encoder, extractor, wav, num_frames=60)  # 2.4 s of video: two chunks
    assert hidden.shape == (120, 3, 32)
    assert torch.isfinite(hidden).all()
    silence = _encode_chunk(encoder, extractor, np.zeros(2 * SR, np.float32))
    torch.testing.assert_close(hidden[100:], silence[:20], atol=1e-5, rtol=1e-5)
    # Empty audio is silence throughout.
    torch.testing.assert_close(encode_audio(encoder, extractor, np.zeros(0, np.float32), 5), silence[:10], atol=1e-5, rtol=1e-5)


def test_encode_audio_other_frame_rates_and_bad_inputs(encoder, extractor):
    assert feature_length(30, 30.0) == 50 and feature_length(3, 30.0) == 5 and feature_length(25, 24.0) == 53
    assert encode_audio(encoder, extractor, _speechlike(1.0), 30, fps=30.0).shape == (50, 3, 32)
    with pytest.raises(ValueError, match="mono"):
        encode_audio(encoder, extractor, np.zeros((2, 100), np.float32), 5)
    with pytest.raises(ValueError, match="do not match"):
        encode_audio(encoder, whisper_feature_extractor(get_config("synthetic").audio_encoder), _speechlike(0.5), 5)
    with pytest.raises(ValueError, match="positive"):
        encode_audio(encoder, extractor, _speechlike(0.5), 0)


def _naive_windows(hidden, num_frames, fps, window=10, left=4):
    rest = hidden.shape[1:]
    padded = torch.cat([hidden.new_zeros(left, *rest), hidden, hidden.new_zeros(64, *rest)])  # plenty after
    out = []
    for i in range(num_frames):
        r = round(i * 50 / fps)
        out.append(padded[r : r + window])
    return torch.stack(out)


@pytest.mark.parametrize("fps", [25.0, 30.0, 24.0, 12.5])
def test_frame_windows_match_a_naive_loop(fps):
    num_frames = 13
    rows = feature_length(num_frames, fps)
    hidden = torch.arange(rows * 3 * 2, dtype=torch.float32).view(rows, 3, 2) + 1  # no zero inside
    windows = frame_windows(hidden, num_frames, fps)
    assert windows.shape == (num_frames, 10, 3, 2)
    assert torch.equal(windows, _naive_windows(hidden, num_frames, fps))


def test_frame_windows_pick_the_documented_rows_and_pad_with_zeros():
    num_frames = 6
    hidden = (torch.arange(12, dtype=torch.float32) + 1)[:, None, None]  # row t holds t + 1
    windows = frame_windows(hidden, num_frames)[..., 0, 0]
    for i in range(num_frames):
        for j in range(10):
            t = 2 * i - 4 + j  # feature frames 2i-4 .. 2i+5
            expected = t + 1 if 0 <= t < 12 else 0.0
            assert windows[i, j].item() == expected, (i, j)
    assert torch.count_nonzero(windows[0, :4]) == 0  # left edge
    assert torch.count_nonzero(windows[-1, -4:]) == 0  # right edge (rows 12..15 do not exist)
    # Shorter features than the video: the missing rows read as zeros too.
    short = frame_windows(hidden[:5], num_frames)
    assert short.shape == (num_frames, 10, 1, 1) and torch.count_nonzero(short[-1]) == 0


def test_frame_features_average_each_frames_rows():
    hidden = torch.randn(50, 3, 8, dtype=torch.float64)
    feats = frame_features(hidden, 25)
    assert feats.shape == (25, 8)
    torch.testing.assert_close(feats, (hidden[0::2, -1] + hidden[1::2, -1]) / 2)
    torch.testing.assert_close(frame_features(hidden, 25, layer=0), (hidden[0::2, 0] + hidden[1::2, 0]) / 2)
    # Other frame rates: rows [round(i*50/fps), round((i+1)*50/fps)), at least one.
    for fps, n in ((30.0, 30), (60.0, 50)):
        feats = frame_features(hidden, n, fps)
        for i in range(n):
            a, b = round(i * 50 / fps), round((i + 1) * 50 / fps)
            b = max(b, a + 1)
            expected = hidden[a:b, -1].mean(0) if a < 50 else torch.zeros(8, dtype=torch.float64)
            torch.testing.assert_close(feats[i], expected)


def test_round_trip_of_our_encoder_folder(tmp_path, encoder, extractor):
    torch.nn.init.normal_(encoder.conv1.weight)  # not just the defaults
    encoder.save_pretrained(tmp_path / "enc")
    loaded = load_audio_encoder(tmp_path / "enc")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    wav = _speechlike(2.5)
    assert torch.equal(encode_audio(loaded, extractor, wav, 40), encode_audio(encoder, extractor, wav, 40))
    assert load_audio_encoder(tmp_path / "enc", freeze=False).conv1.weight.requires_grad


@pytest.mark.parametrize("model_class", [WhisperModel, WhisperForConditionalGeneration])
def test_loading_a_full_whisper_checkpoint_takes_its_encoder(tmp_path, tiny_config, extractor, model_class):
    torch.manual_seed(1)
    full = model_class(WhisperConfig(**tiny_config.audio_encoder)).eval()
    full.save_pretrained(tmp_path / "whisper-tiny")
    loaded = load_audio_encoder(tmp_path / "whisper-tiny")
    assert isinstance(loaded, WhisperEncoder)
    wav = _speechlike(1.0)
    assert torch.equal(encode_audio(loaded, extractor, wav, 25), encode_audio(full.get_encoder(), extractor, wav, 25))


def test_missing_or_malformed_folders_raise_weights_error(tmp_path, encoder):
    cases = {}
    cases["missing"] = tmp_path / "nowhere"
    (tmp_path / "empty").mkdir()
    cases["no config"] = tmp_path / "empty"
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text(json.dumps({"model_type": "clip_vision_model"}))
    cases["other model"] = tmp_path / "clip"
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "config.json").write_text("{not json")
    cases["bad json"] = tmp_path / "badjson"
    encoder.config.save_pretrained(tmp_path / "noweights")
    cases["no weights"] = tmp_path / "noweights"
    encoder.save_pretrained(tmp_path / "corrupt")
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"garbage, not safetensors")
    cases["corrupt weights"] = tmp_path / "corrupt"
    # Weights of a different model under a Whisper config: nothing of the encoder is covered.
    encoder.save_pretrained(tmp_path / "foreign")
    save_file({"something.else": torch.zeros(2)}, str(tmp_path / "foreign" / "model.safetensors"))
    cases["foreign weights"] = tmp_path / "foreign"
    # An encoder with one tensor missing would otherwise be silently re-initialised there.
    encoder.save_pretrained(tmp_path / "partial")
    partial = {k: v.contiguous() for k, v in encoder.state_dict().items() if k != "layer_norm.weight"}
    save_file(partial, str(tmp_path / "partial" / "model.safetensors"), metadata={"format": "pt"})
    cases["partial weights"] = tmp_path / "partial"
    # Weights of another size than the config says.
    build_component("audio_encoder", get_config("synthetic")).save_pretrained(tmp_path / "mismatch")
    encoder.config.save_pretrained(tmp_path / "mismatch")
    cases["mismatched shapes"] = tmp_path / "mismatch"
    for what, path in cases.items():
        with pytest.raises(WeightsError) as info:
            load_audio_encoder(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message, (what, message)
