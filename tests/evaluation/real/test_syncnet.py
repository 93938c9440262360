"""SyncNet judge: the network and protocol against the reference (joonson/syncnet_python), offsets, weights."""

from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from scipy.io import wavfile

from dicetalk.errors import InputError, UnsafeFileError, WeightsError
from dicetalk.evaluation.real.syncnet import (
    SyncNet,
    convert_syncnet,
    face_crops_for_sync,
    load_syncnet_weights,
    mfcc,
    sync_scores,
)

FRAMES = 50


def _reference_dir() -> Path:
    # find_spec of a top-level package locates it without running its __init__ (which needs
    # torchvision and scenedetect, not installed).
    spec = importlib.util.find_spec("syncnet_python")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(sysconfig.get_paths()["purelib"]) / "syncnet_python"


def _load_reference(name: str):
    path = _reference_dir() / f"{name}.py"
    if not path.is_file():
        pytest.fail(f"reference syncnet_python not installed (make setup does: pip install --no-deps syncnet-python==0.2.3): no {path}")
    spec = importlib.util.spec_from_file_location(f"_syncnet_reference_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference_net():
    """The reference's ``S`` with random weights and random BatchNorm statistics (so they matter), eval mode."""
    torch.manual_seed(0)
    net = _load_reference("SyncNetModel").S()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def ours(reference_net):
    model = SyncNet()
    model.load_state_dict(reference_net.state_dict())
    return model.eval()


def _synthetic_clip(num: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(num, 224, 224, 3) BGR frames with moving shapes and a mouth that opens, and int16 16 kHz speech-like audio."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:224, :224]
    frames = []
    for t in range(num):
        frame = np.stack([(xx + 3 * t) % 256, (yy * 0.8 + 40).astype(int), (xx + yy + 5 * t) % 256], -1).astype(np.uint8)
        cv2.circle(frame, (60 + 2 * t, 80), 30, (30, 200, 90), -1)
        opening = int(8 + 20 * abs(np.sin(0.5 * t)))
        cv2.rectangle(frame, (80, 150), (150, 150 + opening), (20, 20, 160), -1)
        frames.append(np.clip(frame + rng.normal(0, 6, frame.shape), 0, 255).astype(np.uint8))
    t = np.arange(num * 640) / 16000
    envelope = 0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 2.3 * t))
    audio = envelope * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t)) + 0.05 * rng.normal(size=t.shape)
    return np.stack(frames), (np.clip(audio, -1, 1) * 20000).astype(np.int16)


def test_mfcc_float_input_matches_int16():
    _, pcm = _synthetic_clip(10)
    feats = mfcc(pcm)
    assert feats.shape == (13, 1 + int(np.ceil((len(pcm) - 400) / 160)))  # 25 ms windows, 10 ms apart
    np.testing.assert_array_equal(mfcc(pcm.astype(np.float32) / 32768), feats)
    np.testing.assert_array_equal(mfcc(pcm.astype(np.float64) / 32768), feats)


def test_matches_reference_evaluate(tmp_path, reference_net, ours):
    instance_module = _load_reference("SyncNetInstance")
    frames, pcm = _synthetic_clip(FRAMES)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i + 1:06d}.jpg"), frame)
    wavfile.write(tmp_path / "audio.wav", 16000, pcm)
    decoded = np.stack([cv2.imread(str(p)) for p in sorted(tmp_path.glob("*.jpg"))])  # the pixels the reference sees

    # Catch the reference's internals: its distances and its filtered per-frame confidence.
    seen = {}
    calc_pdist, medfilt = instance_module.calc_pdist, instance_module.signal.medfilt
    instance_module.calc_pdist = lambda *a, **k: seen.setdefault("dists", calc_pdist(*a, **k))
    instance_module.signal = SimpleNamespace(medfilt=lambda x, kernel_size: seen.setdefault("fconf", medfilt(x, kernel_size=kernel_size)))
    opt = SimpleNamespace(tmp_dir=str(tmp_path), batch_size=20, vshift=15)
    with np.printoptions():  # it sets numpy's print format for the whole process
        offset, conf, minval = instance_module.SyncNetInstance(reference_net, device="cpu").evaluate(opt)

    result = sync_scores(ours, decoded, pcm.astype(np.float32) / 32768, vshift=15, batch_size=20)
    assert result.offset == offset
    assert result.sync_c == pytest.approx(conf, rel=1e-5)
    assert result.sync_d == pytest.approx(minval, rel=1e-5)
    curve = torch.stack(seen["dists"], 1).mean(1).numpy()
    np.testing.assert_allclose(result.curve, curve, rtol=1e-5)
    np.testing.assert_allclose(result.frame_confidence, seen["fconf"], rtol=1e-4, atol=1e-5 * abs(conf))
    assert result.curve.shape == result.offsets.shape == (31,)
    assert result.offsets[0] == 15 and result.offsets[-1] == -15
    assert result.curve[result.offsets == result.offset][0] == pytest.approx(result.sync_d)
    assert result.frame_confidence.shape == (FRAMES - 5,)
    assert conf > 1e-3 * minval  # the curve is not flat: the relative check of Sync-C means something


class LevelSync(SyncNet):
    """A SyncNet whose embeddings read the clip's loudness level directly: video brightness <-> MFCC energy.

    Frame ``t`` is a uniform grey of ``60 * level[t]``, its 40 ms of audio a tone whose amplitude
    is set by the same level. Both towers return, for each of a window's 5 frames, the level's log
    energy (MFCC ``c0``; video: the calibrated value of the level, audio: the mean of the frame's
    first two MFCC frames, the 35 ms inside it), centred, so the distance is smallest where audio
    and video line up and the zero padding beyond the ends costs about as much as a mismatch.
    """

    c0_of_level: torch.Tensor

    def embed_video(self, frames):
        level = torch.round(frames.mean(dim=(1, 3, 4)) / 60).long()  # (N, 5)
        table = self.c0_of_level.to(frames.device)
        return table[level] - table.mean()

    def embed_audio(self, mfcc_patches):
        c0 = mfcc_patches[:, 0, 0, :].reshape(-1, 5, 4)[:, :, :2].mean(-1)  # (N, 5)
        return c0 - self.c0_of_level.to(c0.device).mean()


AMPLITUDES = np.array([0.01, 0.03, 0.09, 0.27])


def _tone(levels: np.ndarray) -> np.ndarray:
    amplitude = np.repeat(AMPLITUDES[levels], 640)
    t = np.arange(len(amplitude)) / 16000
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def test_offset_follows_an_audio_shift():
    torch.manual_seed(0)
    model = LevelSync(embed_dim=8).eval()
    model.c0_of_level = torch.tensor([np.median(mfcc(_tone(np.full(25, k)))[0]) for k in range(4)], dtype=torch.float32)
    levels = np.random.default_rng(1).integers(0, 4, 60)
    faces = np.repeat((60 * levels).astype(np.uint8), 224 * 224 * 3).reshape(60, 224, 224, 3)
    audio = _tone(levels)
    base = sync_scores(model, faces, audio)
    assert base.offset == 0
    assert base.sync_c > 5 * base.sync_d  # one sharp minimum
    for k in (-3, 2, 5):
        # Audio advanced by k frames (k > 0: its first k frames cut; k < 0: |k| frames of silence
        # in front, i.e. delayed): video frame i now matches audio frame i - k, the offset is k.
        shifted = audio[640 * k :] if k > 0 else np.concatenate([np.zeros(640 * -k, np.float32), audio])
        result = sync_scores(model, faces, shifted)
        assert result.offset == base.offset + k, (k, result.offset)


def test_too_short_clip_or_audio(ours):
    faces = np.zeros((5, 224, 224, 3), np.uint8)
    with pytest.raises(InputError, match="at least 6"):
        sync_scores(ours, faces, np.zeros(16000, np.float32))
    with pytest.raises(InputError, match="0.24 s"):
        sync_scores(ours, np.zeros((30, 224, 224, 3), np.uint8), np.zeros(5 * 640 + 639, np.float32))


def _embeddings(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(3, 1, 13, 20, generator=g) * 10
    video = torch.rand(1, 3, 5, 224, 224, generator=g) * 255
    with torch.inference_mode():
        if isinstance(model, SyncNet):
            return model.embed_audio(audio), model.embed_video(video)
        return model.forward_aud(audio), model.forward_lip(video)


def test_torch_state_dict_and_converted_folder(tmp_path, reference_net):
    expected = _embeddings(reference_net)
    state = reference_net.state_dict()
    torch.save(state, tmp_path / "new.pt")
    # The public file is older than BatchNorm's num_batches_tracked and than torch's zip format.
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "syncnet_v2.model", _use_new_zipfile_serialization=False)
    for path in (tmp_path / "new.pt", tmp_path / "syncnet_v2.model"):
        model = load_syncnet_weights(path)
        assert not model.training
        for got, want in zip(_embeddings(model), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=0)

    folder = convert_syncnet(tmp_path / "syncnet_v2.model", tmp_path / "sync")
    assert (folder / "config.json").is_file() and (folder / "diffusion_pytorch_model.safetensors").is_file()
    for got, want in zip(_embeddings(load_syncnet_weights(folder)), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    for got, want in zip(_embeddings(load_syncnet_weights(folder / "diffusion_pytorch_model.safetensors")), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)

    # A failed conversion leaves the earlier folder as it was.
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    del old["netfclip.3.bias"]
    torch.save(old, tmp_path / "broken.pt")
    with pytest.raises(WeightsError):
        convert_syncnet(tmp_path / "broken.pt", folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_missing_or_misshapen_weights(tmp_path, reference_net):
    state = dict(reference_net.state_dict())
    missing = {k: v for k, v in state.items() if k != "netcnnlip.18.weight"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="missing.*netcnnlip.18.weight"):
        load_syncnet_weights(tmp_path / "missing.pt")
    torch.save({**state, "netcnnaud.0.weight": torch.zeros(64, 1, 5, 5)}, tmp_path / "shape.pt")
    with pytest.raises(WeightsError, match="shape"):
        load_syncnet_weights(tmp_path / "shape.pt")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(WeightsError, match="unexpected.*extra.weight"):
        load_syncnet_weights(tmp_path / "extra.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no SyncNet"):
        load_syncnet_weights(tmp_path / "empty")


class _WritesAFile:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).touch()",)


def test_pickle_with_code_is_refused_before_it_runs(tmp_path, reference_net):
    marker = tmp_path / "MARKER"
    evil = tmp_path / "syncnet_v2.model"
    torch.save({"netcnnaud.0.weight": _WritesAFile(marker)}, evil)
    with pytest.raises(UnsafeFileError):
        load_syncnet_weights(evil)
    assert not marker.exists()
    folder = convert_syncnet(_save(reference_net.state_dict(), tmp_path / "good.pt"), tmp_path / "sync")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(UnsafeFileError):
        convert_syncnet(evil, folder)
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    torch.load(evil, weights_only=False)  # the file really is malicious: a plain load runs its code
    assert marker.exists()


def _save(state, path: Path) -> Path:
    torch.save(state, path)
    return path


def _reference_crop(frame_bgr: np.ndarray, box, cs: float = 0.4) -> np.ndarray:
    """run_pipeline.py's crop, written out: pad by bsi with grey 110, slice around the box centre, resize."""
    x0, y0, x1, y1 = box
    bs = max(y1 - y0, x1 - x0) / 2
    bsi = int(bs * (1 + 2 * cs))
    padded = np.pad(frame_bgr, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=(110, 110))
    my, mx = (y0 + y1) / 2 + bsi, (x0 + x1) / 2 + bsi
    face = padded[int(my - bs) : int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs))]
    return cv2.resize(face, (224, 224))


def test_face_crops_match_the_reference_crop():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 240, 320, 3), dtype=np.uint8)
    boxes = np.array([[100.3, 60.7, 190.2, 170.9], [5.0, 2.0, 80.5, 95.0], [250.0, 150.0, 318.0, 236.0]])  # centre, corner, edge
    crops = face_crops_for_sync(frames, boxes)
    assert crops.shape == (3, 224, 224, 3) and crops.dtype == np.uint8
    for frame, box, crop in zip(frames, boxes, crops):
        np.testing.assert_array_equal(crop, _reference_crop(frame[..., ::-1], box))
    whole = face_crops_for_sync(frames, None)
    np.testing.assert_array_equal(whole[0], cv2.resize(np.ascontiguousarray(frames[0][..., ::-1]), (224, 224)))
    with pytest.raises(InputError, match="NaN"):
        face_crops_for_sync(frames, np.full((3, 4), np.nan))
