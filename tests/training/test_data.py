"""Loaders of the MEAD/HDTF layouts: labels, splits, seeded windows, mixing, workers."""

import numpy as np
import pytest
import torch

from dicetalk.data.cache import build_frame_cache
from dicetalk.data.datasets import WindowDataset, contrastive_batch, face_mask
from dicetalk.data.index import scan
from dicetalk.errors import InputError


@pytest.fixture(scope="module")
def cache(tiny_world, tmp_path_factory):
    return build_frame_cache(scan(tiny_world, splits=("train",)), 32, tmp_path_factory.mktemp("cache"), progress=False)


def test_scan_reads_labels_and_splits(tiny_world):
    train = scan(tiny_world, splits=("train",))
    test = scan(tiny_world, splits=("test",))
    assert {r.dataset for r in train} == {"mead", "hdtf"}
    assert not {r.identity for r in train} & {r.identity for r in test}
    happy = next(r for r in train if r.emotion == "happy")
    assert happy.level == 3 and happy.class_id == 1 + 3 * 4 + 2  # 1 + 3 x (happy is non-neutral #4) + (level 3 - 1)
    assert all(r.emotion is None and r.class_id == -1 for r in train if r.dataset == "hdtf")
    with pytest.raises(InputError, match="does not exist"):
        scan(tiny_world / "nope")


def test_cache_holds_every_frame_and_sample(cache):
    assert cache.frames.shape[1:] == (32, 32, 3) and cache.frames.dtype == np.uint8
    assert cache.lengths.sum() == len(cache.frames) == len(cache.expression)
    c = 0
    audio = cache.clip_audio(c)
    assert abs(len(audio) - cache.lengths[c] / cache.fps * 16000) <= 16000 / cache.fps
    assert ((cache.face_box >= 0) & (cache.face_box <= 1)).all()


def test_windows_are_seeded_and_complete(cache):
    ds = WindowDataset(cache, num_frames=4, seed=3)
    a, b, other = ds[17], WindowDataset(cache, num_frames=4, seed=3)[17], ds[18]
    assert a["clip"] == b["clip"] and a["start"] == b["start"] and torch.equal(a["frames"], b["frames"])
    assert (a["clip"], a["start"]) != (other["clip"], other["start"]) or not torch.equal(a["frames"], other["frames"])
    assert a["frames"].shape == (4, 3, 32, 32) and a["reference"].shape == (3, 32, 32)
    assert a["expression"].shape == (4, 12) and a["mask"].shape == (32, 32)
    for k in range(40):
        item = ds[k]
        rec, ref = cache.records[item["clip"]], cache.records[item["emotion_ref"]]
        if rec.labelled:  # emotion reference: same identity, emotion and level
            assert (ref.identity, ref.emotion, ref.level) == (rec.identity, rec.emotion, rec.level)
        else:  # talking data without labels: the same video
            assert item["emotion_ref"] == item["clip"]


def test_reference_frame_comes_from_the_same_video_or_a_neutral_clip_of_the_person(cache):
    def source(item):
        return cache.records[int(np.searchsorted(cache.starts, item["reference_frame"], side="right")) - 1]

    same, neutral = WindowDataset(cache, num_frames=4, seed=1), WindowDataset(cache, num_frames=4, seed=1, neutral_reference=True)
    emotional = 0
    for k in range(60):
        a, b = same[k], neutral[k]
        assert a["clip"] == b["clip"] and a["start"] == b["start"]  # the same windows either way
        rec = cache.records[a["clip"]]
        assert source(a) is rec
        if rec.labelled:
            assert source(b).identity == rec.identity and source(b).emotion == "neutral"
            assert torch.equal(b["reference"], WindowDataset.__getitem__(neutral, k)["reference"])
            emotional += rec.emotion != "neutral"
        else:
            assert source(b) is rec
    assert emotional > 10


def test_emotion_and_talking_data_mix_one_to_one(cache):
    ds = WindowDataset(cache, num_frames=4, seed=0, mix=0.5)
    labelled = np.mean([ds[k]["labelled"] for k in range(400)])
    assert 0.4 < labelled < 0.6


def test_workers_do_not_change_the_data(cache):
    from dicetalk.training.common import StepIndices, step_loader
    from dicetalk.training.diffusion import _collate

    ds = WindowDataset(cache, num_frames=4, seed=1)

    def batches(workers):
        loader = step_loader(ds, StepIndices(2, 5, 3), 3, _collate, workers)
        assert workers == 0 or loader.multiprocessing_context.get_start_method() == "spawn"  # forked workers can deadlock
        return [b["frames"] for b in loader]

    for x, y in zip(batches(0), batches(2), strict=True):
        assert torch.equal(x, y)
    with pytest.raises(InputError, match="--workers"):
        batches(-1)


def test_a_cache_reaches_a_worker_as_its_files_not_a_copy(cache):
    import pickle

    payload = pickle.dumps(cache)
    assert len(payload) < cache.frames.nbytes // 10  # the frames travel as a path
    again = pickle.loads(payload)
    assert isinstance(again.frames, np.memmap) and np.array_equal(again.frames, cache.frames)
    assert np.array_equal(again.clip_audio(1), cache.clip_audio(1))
    window = pickle.loads(pickle.dumps(cache.frames[2:5]))  # a view travels by value
    assert np.array_equal(window, cache.frames[2:5])


def test_face_mask_covers_the_boxes():
    boxes = np.array([[0.25, 0.25, 0.5, 0.5], [0.3, 0.2, 0.6, 0.55]], np.float32)
    m = face_mask(boxes, 40, expand=1.0)
    assert m[10:22, 10:24].all() and m[0, 0] == 0 and m[39, 39] == 0


def test_contrastive_batch_has_positive_pairs(cache):
    hidden = np.zeros((int(sum(2 * n for n in cache.lengths)), 3, 8), np.float16)
    from dicetalk.data.features import audio_row_offsets

    b = contrastive_batch(cache, hidden, audio_row_offsets(cache), step=0, seed=0, groups=6, window=20)
    labels = b["labels"]
    assert b["expression"].shape == (12, 20, 12) and b["audio"].shape == (12, 20, 8)
    assert torch.equal(labels[0::2], labels[1::2])  # consecutive items are positives
    assert b["padding_mask"].dtype == torch.bool
