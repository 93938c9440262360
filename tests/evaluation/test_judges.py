"""The judges shipped in the package: they load offline and judge people they never trained on sensibly.

Every test here scores the shipped judges on `heldout_world` (conftest): clips of `data/world`'s
held-out identities, never on the tiny world, whose people (seed 0, indices 0-3) are training
identities of the shipped judges.
"""

import json

import numpy as np
import pytest

from dicetalk import EMOTIONS
from dicetalk.evaluation import default_judges_dir, sync_scores
from dicetalk.evaluation.data import list_clips, load_video_arrays
from dicetalk.evaluation.features import shift_audio
from dicetalk.evaluation.scoring import score_frames, video_emotion_logits


@pytest.fixture(scope="module")
def heldout_clips(heldout_world):
    clips = list_clips(heldout_world, None)
    return [(c, load_video_arrays(c.video)) for c in clips]


def test_the_judges_are_scored_on_people_they_never_trained_on(heldout_world, heldout_clips, identity_index):
    from dicetalk.synthetic.identity import sample_identity

    # (world seed, identity index) of every person any shipped judge trained on, from the manifest.
    manifest = json.loads((default_judges_dir() / "judges.json").read_text())
    runs = [manifest, *manifest.get("added", [])]
    trained = {(run["data"]["world"]["seed"], identity_index(name)) for run in runs for name in run["data"]["train_identities"]}
    world = json.loads((heldout_world / "world.json").read_text())
    assert len(trained) == 22 and {seed for seed, _ in trained} == {world["seed"]}  # the same world's seed: only the people differ
    people = {(world["seed"], world["identities"][clip.identity]["index"]) for clip, _ in heldout_clips}
    assert len(people) == 6 and not people & trained
    # An identity is a pure function of (seed, index): the held-out people look like none of the trained ones.
    seen = {json.dumps(sample_identity(s, i).appearance.to_json()) for s, i in trained}
    assert not {json.dumps(sample_identity(s, i).appearance.to_json()) for s, i in people} & seen


def test_shipped_judges_are_small_and_say_how_to_retrain_them(shipped_judges):
    folder = default_judges_dir()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 6e6
    manifest = json.loads((folder / "judges.json").read_text())
    assert manifest["command"].startswith("dicetalk train-judges ") and "--seed" in manifest["command"]
    added = manifest["added"][-1]
    assert added["judges"] == ["mouth"] and added["command"].startswith("dicetalk train-judges ") and "--only mouth" in added["command"]
    assert added["data"]["train_identities"] == manifest["data"]["train_identities"]  # the same people
    assert all(name.split("_")[1] < "016" or name.startswith("hdtf") for name in manifest["data"]["train_identities"])
    assert shipped_judges.emotion.config.emotions == list(EMOTIONS)
    assert shipped_judges.mouth is not None and shipped_judges.mouth.config.measures == ["opening", "width"]


def test_shipped_emotion_judge_reads_heldout_clips(shipped_judges, heldout_clips):
    # The tiny preset renders at 64 px (the judges trained on 128 px frames): full-intensity emotions.
    correct = []
    for clip, arr in heldout_clips:
        if clip.emotion is None:
            continue
        scores = score_frames(shipped_judges.emotion, shipped_judges.identity, arr.faces)
        predicted = EMOTIONS[int(np.argmax(video_emotion_logits(scores.emotion_logits, 5)))]
        correct.append(predicted == clip.emotion)
    assert len(correct) == 32 and np.mean(correct) >= 0.9


def test_shipped_identity_judge_tells_people_apart(shipped_judges, heldout_clips):
    by_identity = {}
    for clip, arr in heldout_clips:
        by_identity.setdefault(clip.identity, []).append(arr)
    names = sorted(by_identity)
    refs = {n: score_frames(shipped_judges.emotion, shipped_judges.identity, by_identity[n][0].faces[:1]).identity_embeddings[0] for n in names}
    for name in names:
        emb = score_frames(shipped_judges.emotion, shipped_judges.identity, by_identity[name][-1].faces).identity_embeddings
        own = float(np.mean(emb @ refs[name]))
        others = max(float(np.mean(emb @ refs[o])) for o in names if o != name)
        assert own > others + 0.1, (name, own, others)


def test_shipped_sync_judge_prefers_the_true_audio(shipped_judges, heldout_clips):
    wins = []
    for clip, arr in heldout_clips:
        true = sync_scores(shipped_judges.sync, arr.mouths, arr.audio)
        late = sync_scores(shipped_judges.sync, arr.mouths, shift_audio(arr.audio, 0.5))
        wins.append(true.confidence > late.confidence)
        if clip.relative == "mead/mead_023/happy/level_3/001":
            assert true.confidence > late.confidence and abs(true.offset) <= 1
    assert np.mean(wins) >= 0.9
