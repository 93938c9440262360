"""EmotiveTalk's training commands on the tiny world: run conventions, resume, learning, export."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from dicetalk.cli.main import main


def weights_of(folder):
    return load_file(str(next(folder.glob("*.safetensors"))))


@pytest.fixture(scope="module")
def vaid_run(tiny_world, tiny_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("vaid") / "run"
    args = ["train-vaid", str(tiny_world), "--out", str(out), "--weights", str(tiny_weights), "--steps", "160", "--batch", "8", "--save-every", "80"]
    assert main(args) == 0
    return out


def test_train_vaid_learns_the_lips_and_keeps_train_conventions(vaid_run, tiny_world, tiny_weights, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert json.loads((vaid_run / "run" / "options.json").read_text())["steps"] == 160
    assert (vaid_run / "vaid" / "config.json").is_file() and (vaid_run / "run" / "checkpoints" / "latest").is_file()
    events = EventAccumulator(str(next((vaid_run / "run" / "logs").rglob("events*")))).Reload()
    lip = [e.value for e in events.Scalars("lip")]
    assert lip[-1] < lip[0]  # the lip read-out learns the mouth's motion
    # Killed after its checkpoint at 80 steps, then resumed: the same weights as the uninterrupted run.
    from dicetalk.training import vaid as vaid_training

    original = vaid_training.vaid_loss

    def interrupted(opts, features):
        loss_fn = original(opts, features)

        def wrapped(step, *args):
            if step == 80:
                raise KeyboardInterrupt
            return loss_fn(step, *args)

        return wrapped

    out = tmp_path / "resumed"
    base = ["train-vaid", str(tiny_world), "--out", str(out), "--weights", str(tiny_weights), "--batch", "8", "--save-every", "80", "--steps", "160"]
    with monkeypatch.context() as patch:
        patch.setattr(vaid_training, "vaid_loss", interrupted)
        assert main(base) == 130
    assert main(base) != 0  # an existing run needs --resume
    assert main([*base, "--resume"]) == 0
    a, b = weights_of(vaid_run / "vaid"), weights_of(out / "vaid")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dry_runs_train_nothing(tiny_world, tiny_weights, vaid_run, tmp_path, capsys):
    for command in (["train-vaid"], ["train-dicte", "--vaid", str(vaid_run / "vaid")], ["train-edi"]):
        out = tmp_path / command[0]
        assert main([command[0], str(tiny_world), *command[1:], "--out", str(out), "--weights", str(tiny_weights), "--dry-run"]) == 0
        assert "total" in capsys.readouterr().out
        assert not (out / "run" / "checkpoints").exists()


def test_dicte_and_edi_train_and_export_into_a_model_that_generates(tiny_world, tiny_weights, vaid_run, tmp_path, portrait_png, speech_wav):
    dicte, edi = tmp_path / "dicte", tmp_path / "edi"
    common = ["--weights", str(tiny_weights), "--save-every", "2"]
    assert main(["train-dicte", str(tiny_world), "--vaid", str(vaid_run / "vaid"), "--out", str(dicte), "--steps", "4", "--batch", "4", *common]) == 0
    assert main(["train-edi", str(tiny_world), "--out", str(edi), "--prior-steps", "3", "--steps", "2", "--frames", "4", *common]) == 0
    for run in ("run_prior", "run"):
        assert (edi / run / "checkpoints" / "latest").is_file()
    trained = weights_of(edi / "edi")
    assert trained["delta_out.weight"].abs().sum() > 0  # stage 2 moved the zero-initialised offsets
    voice = tmp_path / "voice"
    assert main(["train-voice-emotion", str(tiny_world), "--vaid", str(vaid_run / "vaid"), "--out", str(voice), "--steps", "4", *common]) == 0
    scores = json.loads((voice / "val.json").read_text())
    assert 0 <= scores["val_whole_clips"] <= 1 and scores["val_clips"] > 0 and (voice / "run" / "options.json").is_file()
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    args = ["export-emotivetalk", "--into", str(weights), "--vaid", str(vaid_run / "vaid"), "--dicte", str(dicte / "dicte"), "--edi", str(edi / "edi")]
    assert main([*args, "--speech-emotion", "read"]) == 2  # reading the voice needs its read-out
    assert main([*args, "--voice", str(voice / "voice"), "--speech-emotion", "read", "--anchor"]) == 0
    settings = json.loads((weights / "emotivetalk" / "emotivetalk.json").read_text())
    assert (settings["trajectory_steps"], settings["speech_emotion"], settings["anchor"]) == (16, "read", True)
    assert (weights / "emotivetalk" / "voice" / "config.json").is_file()
    out = tmp_path / "out.mp4"
    gen = ["generate", str(portrait_png), str(speech_wav), "-o", str(out), "--model", "emotivetalk", "--weights", str(weights), "--steps", "2"]
    assert main([*gen, "--emotion", "sad"]) == 0 and out.is_file()
    assert main([*gen, "--emotion", "speech", "-o", str(tmp_path / "heard.mp4")]) == 0 and (tmp_path / "heard.mp4").is_file()


def test_render_emotive_renders_one_clip_per_emotion_from_another_emotion_and_resumes(tiny_world, emotive_weights, tmp_path, capsys):
    """render-emotive --portrait emotional --identities 1 --max-frames 10: the EDI evaluation set, resumable."""
    from dicetalk.evaluation.emotivetalk import evaluation_clips
    from dicetalk.utils.media import read_video

    out = tmp_path / "set"
    args = ["render-emotive", str(tiny_world), "--out", str(out), "--weights", str(emotive_weights), "--request", "label"]
    args += ["--portrait", "emotional", "--split", "test", "--identities", "1", "--max-frames", "10"]
    assert main(args) == 0
    clips, _ = evaluation_clips(str(tiny_world), "test")
    first = sorted({r.identity for r in clips})[0]
    videos = sorted(out.glob("*.mp4"))
    assert len(videos) == len([r for r in clips if r.identity == first]) > 1
    for video in videos:
        sidecar = json.loads(video.with_suffix(".json").read_text())
        assert first in sidecar["source"] and first in sidecar["portrait"] and sidecar["request"] == sidecar["emotion"]
        assert f"/{sidecar['emotion']}/" not in sidecar["portrait"]  # the portrait shows another emotion
        assert len(read_video(video, with_audio=False).frames) == 10
    stamps = [v.stat().st_mtime_ns for v in videos]
    assert main(args) == 0  # finished videos are kept
    assert [v.stat().st_mtime_ns for v in videos] == stamps


def test_evaluation_sets_take_the_first_clips_of_each_person_and_emotion_at_level_three():
    from types import SimpleNamespace

    from dicetalk.evaluation.emotivetalk import choose_clips

    records = [
        SimpleNamespace(identity=who, emotion=emotion, level=level, rel=f"{who}/{emotion}/{level}/{k}")
        for who in ("a", "b") for emotion, levels in (("happy", (1, 2, 3)), ("neutral", (1,))) for level in levels for k in range(3)
    ]  # fmt: skip
    one = choose_clips(records)
    assert [r.rel for r in one] == ["a/happy/3/0", "a/neutral/1/0", "b/happy/3/0", "b/neutral/1/0"]
    two = choose_clips(records, per_group=2)
    assert len(two) == 8 and all(r.level == 3 or r.emotion == "neutral" for r in two)
    assert [r.rel for r in two][:2] == ["a/happy/3/0", "a/happy/3/1"]
    assert len(choose_clips(records, per_group=5)) == 12  # as many as there are
