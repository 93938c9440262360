"""The judges shipped in the package: they load offline and judge the tiny world sensibly."""

import json
import time

import numpy as np
import pytest

from dicetalk import EMOTIONS
from dicetalk.evaluation import default_judges_dir, sync_scores
from dicetalk.evaluation.data import list_clips, load_video_arrays
from dicetalk.evaluation.features import shift_audio
from dicetalk.evaluation.scoring import score_frames, video_emotion_logits


@pytest.fixture(scope="module")
def tiny_clips(eval_world):
    clips = list_clips(eval_world, None)
    return [(c, load_video_arrays(c.video)) for c in clips]


def test_shipped_judges_are_small_and_say_how_to_retrain_them(shipped_judges):
    folder = default_judges_dir()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 6e6
    manifest = json.loads((folder / "judges.json").read_text())
    assert manifest["command"].startswith("dicetalk train-judges ") and "--seed" in manifest["command"]
    assert all(name.split("_")[1] < "016" or name.startswith("hdtf") for name in manifest["data"]["train_identities"])
    assert shipped_judges.emotion.config.emotions == list(EMOTIONS)


def test_shipped_emotion_judge_reads_tiny_world_clips(shipped_judges, tiny_clips):
    # The tiny world renders at 64 px (the judges trained on 128 px frames): full-intensity emotions.
    correct = []
    for clip, arr in tiny_clips:
        if clip.emotion is None:
            continue
        scores = score_frames(shipped_judges.emotion, shipped_judges.identity, arr.faces)
        predicted = EMOTIONS[int(np.argmax(video_emotion_logits(scores.emotion_logits, 5)))]
        correct.append(predicted == clip.emotion)
    assert len(correct) == 32 and np.mean(correct) >= 0.9


def test_shipped_identity_judge_tells_people_apart(shipped_judges, tiny_clips):
    by_identity = {}
    for clip, arr in tiny_clips:
        by_identity.setdefault(clip.identity, []).append(arr)
    names = sorted(by_identity)
    refs = {n: score_frames(shipped_judges.emotion, shipped_judges.identity, by_identity[n][0].faces[:1]).identity_embeddings[0] for n in names}
    for name in names:
        emb = score_frames(shipped_judges.emotion, shipped_judges.identity, by_identity[name][-1].faces).identity_embeddings
        own = float(np.mean(emb @ refs[name]))
        others = max(float(np.mean(emb @ refs[o])) for o in names if o != name)
        assert own > others + 0.1, (name, own, others)


def test_shipped_sync_judge_prefers_the_true_audio(shipped_judges, tiny_clips):
    wins = []
    for clip, arr in tiny_clips:
        true = sync_scores(shipped_judges.sync, arr.mouths, arr.audio)
        late = sync_scores(shipped_judges.sync, arr.mouths, shift_audio(arr.audio, 0.5))
        wins.append(true.confidence > late.confidence)
        if clip.relative == "mead/mead_003/happy/level_3/001":
            assert true.confidence > late.confidence and abs(true.offset) <= 1
    assert np.mean(wins) >= 0.9


def test_judging_a_five_second_clip_is_fast(shipped_judges, tiny_clips):
    arr = max((a for _, a in tiny_clips), key=lambda a: a.num_frames)
    reps = -(-125 // arr.num_frames)
    faces, mouths = np.concatenate([arr.faces] * reps)[:125], np.concatenate([arr.mouths] * reps)[:125]
    audio = np.tile(arr.audio, reps)[: 125 * 640]
    started = time.perf_counter()
    score_frames(shipped_judges.emotion, shipped_judges.identity, faces)
    sync_scores(shipped_judges.sync, mouths, audio)
    assert time.perf_counter() - started < 3.0
