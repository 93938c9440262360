"""``dicetalk train-judges``: atomic output, loadable judges, determinism with a seed."""

import json

import pytest

from dicetalk.cli.main import main
from dicetalk.evaluation import load_judges
from dicetalk.evaluation.judges import JUDGE_NAMES, WEIGHTS_NAME


def test_train_judges_writes_four_loadable_judges_and_a_manifest(quick_judges):
    names = sorted(p.name for p in quick_judges.iterdir())
    assert names == ["emotion", "identity", "judges.json", "mouth", "sync"]
    assert not [p for p in quick_judges.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    manifest = json.loads((quick_judges / "judges.json").read_text())
    assert manifest["command"].startswith("dicetalk train-judges")
    assert manifest["options"]["seed"] == 0
    assert all(i.split("_")[0] in ("mead", "hdtf") for i in manifest["data"]["train_identities"])
    # Only training identities: the tiny world trains mead_000, mead_001 and hdtf_000.
    assert manifest["data"]["train_identities"] == ["hdtf_000", "mead_000", "mead_001"]
    judges = load_judges(quick_judges)
    assert judges.identity.config.identities == ["hdtf_000", "mead_000", "mead_001"]
    assert judges.mouth is not None and manifest["validation"]["mouth"]["clips"] == 8  # mead_002, the val identity: 8 emotions
    # The mouth judge's output scale comes from the training targets (percent of the frame side).
    assert 0 < judges.mouth.config.target_mean[0] < judges.mouth.config.target_mean[1] < 40


def test_only_trains_some_judges_and_keeps_the_others(eval_world, quick_judges, tmp_path, capsys):
    import shutil

    folder = tmp_path / "judges"
    shutil.copytree(quick_judges, folder)
    before = {n: (folder / n / WEIGHTS_NAME).read_bytes() for n in JUDGE_NAMES}
    args = ["--epochs", "1", "--max-steps", "2", "--quiet", "--seed", "5"]
    assert main(["train-judges", str(eval_world), "--out", str(folder), "--only", "mouth", *args]) == 0
    assert "4 judges (emotion, identity, mouth, sync)" in capsys.readouterr().out
    for name in ("emotion", "identity", "sync"):
        assert (folder / name / WEIGHTS_NAME).read_bytes() == before[name], name
    assert (folder / "mouth" / WEIGHTS_NAME).read_bytes() != before["mouth"]
    manifest = json.loads((folder / "judges.json").read_text())
    original = json.loads((quick_judges / "judges.json").read_text())
    assert manifest["command"] == original["command"] and manifest["options"] == original["options"]  # the first run's record stays
    added = manifest["added"][0]
    assert added["judges"] == ["mouth"] and "--only mouth" in added["command"] and added["options"]["seed"] == 5
    assert set(added["validation"]) == {"clips", "mouth"}
    assert sorted(manifest["files"]) == sorted(original["files"])
    # Without judges to keep, a partial run has nothing to add to.
    code = main(["train-judges", str(eval_world), "--out", str(tmp_path / "fresh"), "--only", "mouth", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no emotion, identity, sync judge to keep" in err[0], err
    assert not (tmp_path / "fresh").exists()


def test_training_is_deterministic_with_a_seed(eval_world, quick_judges, tmp_path):
    # (conftest shares the decoded clips between runs: only training is under test here)
    again, other = tmp_path / "again", tmp_path / "other"
    args = ["--epochs", "1", "--max-steps", "3", "--quiet", "--no-validate"]
    assert main(["train-judges", str(eval_world), "--out", str(again), "--seed", "0", *args]) == 0
    assert main(["train-judges", str(eval_world), "--out", str(other), "--seed", "1", *args]) == 0
    for name in JUDGE_NAMES:
        same = (again / name / WEIGHTS_NAME).read_bytes() == (quick_judges / name / WEIGHTS_NAME).read_bytes()
        assert same, f"{name} judge differs between two runs with seed 0"
        assert (other / name / WEIGHTS_NAME).read_bytes() != (again / name / WEIGHTS_NAME).read_bytes()


def test_a_failed_training_leaves_the_previous_output_untouched(eval_world, tmp_path, monkeypatch, capsys):
    from dicetalk.evaluation import training

    out = tmp_path / "judges"
    out.mkdir()
    (out / "keep.txt").write_text("previous")

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(training, "train_sync", boom)
    with pytest.raises(RuntimeError):
        main(["train-judges", str(eval_world), "--out", str(out), "--max-steps", "1", "--quiet", "--no-validate"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["judges"]
    assert (out / "keep.txt").read_text() == "previous"


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}", "--out", "{out}"], "no such dataset folder"),
        (["{world}/mead", "--out", "{out}"], "no splits.json"),
        (["{world}", "--out", "{out}", "--epochs", "0"], "must be at least 1"),
        (["{world}", "--out", "{out}", "--only", "mouth,lips"], "judges to train must come from"),
        (["{world}", "--out", "{world}/judges"], "outside the dataset folder"),
        (["{world}"], "Missing option '--out'"),
    ],
)
def test_bad_training_inputs_give_one_line(eval_world, tmp_path, capsys, args, message):
    fill = {"world": eval_world, "out": tmp_path / "out", "missing": tmp_path / "nowhere"}
    code = main(["train-judges", *[a.format(**fill) for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_the_mouth_judge_needs_the_worlds_description(eval_world, tmp_path, capsys):
    import shutil

    world = tmp_path / "world"
    shutil.copytree(eval_world, world)
    (world / "world.json").unlink()
    code = main(["train-judges", str(world), "--out", str(tmp_path / "out"), "--max-steps", "1", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no world.json" in err[0] and "--only emotion,identity,sync" in err[0], err
    assert not (tmp_path / "out").exists()
