"""`dicetalk evaluate VIDEO --portrait IMG`: one video scored with no reference dataset."""

import json

import numpy as np
import pytest

from dicetalk import EMOTIONS
from dicetalk.cli.main import main


@pytest.mark.parametrize("emotion", ["surprised", "happy"])
def test_a_ground_truth_clip_reads_its_true_emotion(heldout_clips, heldout_portrait, tmp_path, capsys, emotion):
    out = tmp_path / "report.json"
    assert main(["evaluate", str(heldout_clips[emotion]), "--portrait", str(heldout_portrait), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["emotion"] == emotion
    probs = report["probabilities"]
    assert set(probs) == set(EMOTIONS) and abs(sum(probs.values()) - 1) < 1e-6
    assert probs[emotion] == max(probs.values()) > 0.5
    # The same person as the portrait, and lips in sync with the video's own speech.
    assert report["fsim"] > 0.9 and report["speech"] == "video"
    assert report["sync_c"] > 0.3 and abs(report["sync_offset"]) <= 1
    assert f"emotion                {emotion}" in capsys.readouterr().out


def test_another_person_scores_lower_fsim_and_shifted_speech_loses_sync(heldout_clips, heldout_portrait, tmp_path):
    from PIL import Image

    from dicetalk.evaluation.features import shift_audio
    from dicetalk.evaluation.single import score_video
    from dicetalk.utils.media import read_video, write_audio

    clip = read_video(heldout_clips["happy"])
    other = tmp_path / "other.png"
    Image.fromarray(np.ascontiguousarray(clip.frames[0][:, ::-1, ::-1])).save(other)  # colours swapped: not this person
    shifted = tmp_path / "shifted.wav"
    write_audio(shifted, shift_audio(clip.audio, 0.4), 16000)
    same = score_video(heldout_clips["happy"], heldout_portrait)
    assert score_video(heldout_clips["happy"], other)["fsim"] < same["fsim"] - 0.1
    late = score_video(heldout_clips["happy"], heldout_portrait, audio=shifted)
    assert late["speech"] == "file" and late["sync_c"] < same["sync_c"]


def test_a_silent_video_is_scored_without_lip_sync(heldout_portrait, heldout_clips, tmp_path, capsys):
    from dicetalk.utils.media import read_video, write_video

    clip = read_video(heldout_clips["neutral"])
    silent = tmp_path / "silent.mp4"
    write_video(silent, clip.frames, 25.0)
    assert main(["evaluate", str(silent), "--portrait", str(heldout_portrait), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["sync_c"] is None and report["speech"] is None
    assert "warning: no speech" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["{video}", "--portrait", "{video}"], "not a readable image"),
        (["{missing}", "--portrait", "{portrait}"], "is not one"),
        (["{video}", "--portrait", "{portrait}", "--reference", "{portrait}"], "needs no --reference"),
        (["{video}", "--audio", "{video}"], "--audio, --drift and --report go with"),
    ],
)
def test_bad_inputs_get_one_line(heldout_clips, heldout_portrait, tmp_path, capsys, args, message):
    names = {"video": str(heldout_clips["happy"]), "portrait": str(heldout_portrait), "missing": str(tmp_path / "none.mp4")}
    assert main(["evaluate", *[a.format(**names) for a in args]]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and message in err
