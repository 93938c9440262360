"""``dicetalk evaluate``: generated videos with sidecars, ground truth, embeddings, bad inputs.

The shipped judges score clips of `heldout_world` (conftest): people they never trained on.
"""

import json

import numpy as np
import pytest

from dicetalk.cli.main import main
from dicetalk.evaluation.evaluate import MOUTH_KEYS, REPORT_KEYS
from dicetalk.utils.media import read_video, write_video

SOURCES = ["mead/mead_023/happy/level_3/001", "mead/mead_023/surprised/level_3/001", "mead/mead_023/neutral/level_1/001"]


@pytest.fixture(scope="module")
def eval_world(heldout_world):
    return heldout_world


@pytest.fixture(scope="module")
def generated(eval_world, tmp_path_factory):
    """Three "generated" videos: test clips of the held-out world re-encoded at 96 px, with sidecars."""
    import cv2

    out = tmp_path_factory.mktemp("generated")
    for k, source in enumerate(SOURCES):
        clip = read_video(eval_world / f"{source}.mp4")
        frames = np.stack([cv2.resize(f, (96, 96), interpolation=cv2.INTER_LINEAR) for f in clip.frames])
        write_video(out / f"video_{k}.mp4", frames, 25, clip.audio)
        emotion = source.split("/")[2]
        (out / f"video_{k}.json").write_text(json.dumps({"source": source, "emotion": emotion, "level": 3 if emotion != "neutral" else 1, "seed": 0}))
    return out


def _one_line_error(capsys, code):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_evaluate_writes_every_key(eval_world, generated, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    assert main(["evaluate", str(generated), "--reference", str(eval_world), "--json", str(report_path), "--quiet"]) == 0
    report = json.loads(report_path.read_text())
    assert set(REPORT_KEYS) <= set(report)
    assert report["num_videos"] == 3 and len(report["videos"]) == 3
    for key in ("emo_score", "emo_score_all8", "fsim", "sync_c", "sync_d", "fid", "fvd", *MOUTH_KEYS):
        assert isinstance(report[key], float), key
        ci = report[f"{key}_ci"]
        assert ci["value"] == report[key] and ci["low"] <= ci["high"], key
        if key not in ("emo_score", "emo_score_all8", "fid", "fvd"):  # a mean lies inside its interval
            assert ci["low"] <= ci["value"] <= ci["high"], key
    assert report["split"] == "test" and report["bootstrap"]["resamples"] == 1000 and report["bootstrap"]["seed"] == 0
    row = report["videos"][0]
    assert row["resolution"] == [96, 96] and row["audio"] == "video" and row["source"] == SOURCES[0]
    assert row["emotion"] == "happy" and row["predicted"] in ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
    # The videos are their sources re-encoded at another size: the mouth stays where the truth has it.
    assert all(r["mouth_error"] < 1.0 and r["mouth_open_corr"] > 0.8 for r in report["videos"]), [(r["mouth_error"], r["mouth_open_corr"]) for r in report["videos"]]
    out = capsys.readouterr().out
    assert "Emo-Score" in out and "Sync-C" in out and "video_0.mp4" in out
    assert "F-SIM" in out and f"{report['fsim']:.3f} [{report['fsim_ci']['low']:.3f}, {report['fsim_ci']['high']:.3f}]" in out
    assert "mouth error, LMD-style" in out and "95 % bootstrap over 3 clips" in out


def test_intervals_are_seeded_and_follow_the_number_of_resamples(eval_world, generated, tmp_path):
    paths = [tmp_path / f"r{k}.json" for k in range(3)]
    for path, extra in zip(paths, (["--seed", "3"], ["--seed", "3"], ["--seed", "4", "--resamples", "50"])):
        assert main(["evaluate", str(generated), "--reference", str(eval_world), "--json", str(path), "--quiet", *extra]) == 0
    a, b, c = (json.loads(p.read_text()) for p in paths)
    assert a["sync_c_ci"] == b["sync_c_ci"] and a["fvd_ci"] == b["fvd_ci"]
    assert c["sync_c_ci"] != a["sync_c_ci"] and c["bootstrap"]["resamples"] == 50 and c["bootstrap"]["frechet_resamples"] == 50
    assert c["sync_c"] == a["sync_c"]  # the figures themselves do not depend on the resampling


def test_sources_outside_the_split_are_skipped(eval_world, generated, tmp_path, capsys):
    line = _one_line_error(capsys, main(["evaluate", str(generated), "--reference", str(eval_world), "--split", "val", "--quiet"]))
    assert "no usable generated videos" in line and "not val" in line


def test_missing_sidecars_and_sources_are_skipped_with_a_warning(eval_world, generated, tmp_path, capsys):
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(generated, folder)
    (folder / "video_1.json").unlink()
    (folder / "video_2.json").write_text(json.dumps({"source": "mead/mead_999/happy/level_3/001"}))
    (folder / "broken.mp4").write_bytes(b"not a video")
    (folder / "broken.json").write_text(json.dumps({"source": SOURCES[0]}))
    report_path = tmp_path / "report.json"
    assert main(["evaluate", str(folder), "--reference", str(eval_world), "--json", str(report_path), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "video_1.mp4: no sidecar video_1.json" in err
    assert "mead_999" in err and "broken.mp4" in err
    report = json.loads(report_path.read_text())
    assert report["num_videos"] == 1 and len(report["warnings"]) == 3


def test_ground_truth_mode_scores_reference_clips_and_checks_the_judges(eval_world, tmp_path, capsys):
    report_path = tmp_path / "gt.json"
    assert main(["evaluate", "--ground-truth", "--reference", str(eval_world), "--split", "test", "--json", str(report_path), "--quiet"]) == 0
    report = json.loads(report_path.read_text())
    assert report["num_videos"] == 9 and report["split"] == "test"  # mead_023: 8 emotions at level 3, and one clip of hdtf_007
    assert report["fid"] == pytest.approx(0.0, abs=1e-6) and report["fvd"] == pytest.approx(0.0, abs=1e-6)
    assert report["fid_ci"]["high"] == pytest.approx(0.0, abs=1e-6)
    assert report["fsim"] > 0.8
    checks = report["judge_checks"]
    assert set(checks) >= {"emotion", "sync", "mouth"} and checks["sync"]["clips"] == 9
    assert checks["mouth"]["clips"] == 9 and checks["mouth"]["opening_r2"] > 0.5 and checks["mouth"]["opening_mae"] == pytest.approx(report["mouth_open_error"], rel=0.2)
    assert "check: mouth opening R^2" in capsys.readouterr().out


def test_embeddings_report_clustering_strength(tmp_path, capsys):
    from safetensors.numpy import save_file

    path = tmp_path / "emb.safetensors"
    save_file({"embeddings": np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 4.0]], np.float32), "labels": np.array([0, 0, 1, 1], np.int64)}, str(path))
    (tmp_path / "emb.json").write_text(json.dumps({"names": ["calm", "loud"]}))
    out = tmp_path / "clusters.json"
    assert main(["evaluate", "--embeddings", str(path), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["strength"] == pytest.approx(np.sqrt(85.0) / 1.5, rel=1e-6)
    assert result["names"] == ["calm", "loud"]
    assert "clustering strength" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate"], "exactly one of"),
        (["evaluate", "{generated}"], "--reference"),
        (["evaluate", "{empty}", "--reference", "{world}"], "no .mp4 videos"),
        (["evaluate", "{generated}", "--reference", "{empty}", "--judges", "synthetic"], "no splits.json"),
        (["evaluate", "{generated}", "--reference", "{empty}"], "no reference clip 'mead/"),  # not a world: the real judges' layout
        (["evaluate", "{nowhere}", "--reference", "{world}"], "no such folder"),
        (["evaluate", "--ground-truth", "--reference", "{world}", "--split", "dev"], "split must be"),
        (["evaluate", "--ground-truth", "--reference", "{world}", "--split", "train"], "split must be val or test"),
        (["evaluate", "{generated}", "--compare", "{generated}", "{generated}"], "exactly one of"),
        (["evaluate", "--embeddings", "{nowhere}"], "no such file"),
        (["evaluate", "--embeddings", "{bad_embeddings}"], "needs tensors 'embeddings'"),
        (["evaluate", "{generated}", "--reference", "{world}", "--judges", "{empty}"], "no emotion judge"),
    ],
)
def test_bad_inputs_give_one_clear_line(eval_world, generated, tmp_path, capsys, args, message):
    from safetensors.numpy import save_file

    (tmp_path / "empty").mkdir()
    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "bad.safetensors"))
    fill = {"world": eval_world, "generated": generated, "empty": tmp_path / "empty", "nowhere": tmp_path / "nowhere", "bad_embeddings": tmp_path / "bad.safetensors"}
    line = _one_line_error(capsys, main([a.format(**fill) for a in args]))
    assert message in line, line


def test_no_usable_video_is_an_error(eval_world, tmp_path, capsys):
    (tmp_path / "a.mp4").write_bytes(b"")
    line = _one_line_error(capsys, main(["evaluate", str(tmp_path), "--reference", str(eval_world), "--quiet"]))
    assert "no usable" in line and "a.mp4: no sidecar" in line
