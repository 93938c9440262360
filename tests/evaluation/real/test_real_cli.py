"""`dicetalk evaluate --judges real` end to end: one video with its report page, a folder against
real reference clips, the synthetic world's ground truth, and `dicetalk download --judges`.

SyncNet and EMO-AffectNet carry random weights of the public architectures here (the public
weights cannot be fetched offline); identity and mouth landmarks are dlib's real models.
"""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dicetalk.cli.main import main

FACES = Path(__file__).resolve().parents[2] / "assets" / "faces"
HOPPER = FACES / "grace_hopper.jpg"
COLLINS = FACES / "eileen_collins.jpg"


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main([*map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def moving_clip(path: Path, photo: Path, seconds: float = 2.0, side: int = 256) -> Path:
    import cv2

    from dicetalk.utils.image import load_image
    from dicetalk.utils.media import write_video

    image = cv2.resize(load_image(photo), (side, side), interpolation=cv2.INTER_AREA)
    count = int(seconds * 25)
    frames = np.empty((count, side, side, 3), np.uint8)
    for i in range(count):
        m = cv2.getRotationMatrix2D((side / 2, side / 2), 2 * np.sin(i / 5), 1.0)
        m[:, 2] += (3 * np.sin(i / 4), 2 * np.cos(i / 6))
        frames[i] = cv2.warpAffine(image, m, (side, side), borderMode=cv2.BORDER_REFLECT)
    t = np.arange(int(seconds * 16000)) / 16000
    speech = (0.2 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return write_video(path, frames, 25, audio=speech)


@pytest.fixture(scope="module")
def judges_dir(tmp_path_factory) -> Path:
    from dicetalk.evaluation.real.emotion import EmoAffectNet
    from dicetalk.evaluation.real.frechet import InceptionFID
    from dicetalk.evaluation.real.i3d import I3D
    from dicetalk.evaluation.real.syncnet import SyncNet

    folder = tmp_path_factory.mktemp("real-judges")
    torch.manual_seed(0)
    for name, model in (("sync", SyncNet()), ("emotion", EmoAffectNet()), ("fid", InceptionFID()), ("fvd", I3D())):
        model.save_pretrained(folder / name)
    return folder


@pytest.fixture(scope="module")
def hopper_clip(tmp_path_factory) -> Path:
    return moving_clip(tmp_path_factory.mktemp("clips") / "hopper.mp4", HOPPER)


def test_one_video_with_the_real_judges_and_its_report_page(capsys, tmp_path, judges_dir, hopper_clip):
    out_json, page = tmp_path / "r.json", tmp_path / "page.html"
    rc, out, err = run(capsys, "evaluate", hopper_clip, "--portrait", HOPPER, "--judges", judges_dir, "--json", out_json, "--report", page)
    assert rc == 0, err
    assert out.startswith(f"judges: real (--judges {judges_dir})") and "real judges" in out
    report = json.loads(out_json.read_text())
    assert report["judges"]["kind"] == "real" and report["judges"]["missing"] == []
    assert report["fsim"] > 0.9, report["fsim"]  # the same person, moving a little
    assert report["sync_c"] is not None and report["sync_d"] > 0 and -15 <= report["sync_offset"] <= 15
    assert report["emotion"] in report["probabilities"] and abs(sum(report["probabilities"].values()) - 1) < 1e-4
    assert len(report["series"]["mouth_opening"]) == report["num_frames"] == 50
    text = page.read_text()
    assert text.count("data:image/jpeg;base64,") == 8 and text.count("<svg") == 4
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "<script" not in text


def test_a_stranger_scores_lower_than_the_person(capsys, tmp_path, judges_dir, hopper_clip):
    rc, out, err = run(capsys, "evaluate", hopper_clip, "--portrait", COLLINS, "--judges", judges_dir, "--json", tmp_path / "s.json")
    assert rc == 0, err
    stranger = json.loads((tmp_path / "s.json").read_text())["fsim"]
    rc, out, err = run(capsys, "evaluate", hopper_clip, "--portrait", HOPPER, "--judges", judges_dir, "--json", tmp_path / "p.json")
    person = json.loads((tmp_path / "p.json").read_text())["fsim"]
    assert person > stranger + 0.1, (person, stranger)


def test_real_is_the_default_and_missing_judges_are_named(capsys, tmp_path, hopper_clip, monkeypatch):
    monkeypatch.setenv("DICETALK_REAL_JUDGES", str(tmp_path / "empty"))
    rc, out, err = run(capsys, "evaluate", hopper_clip, "--portrait", HOPPER, "--json", tmp_path / "r.json")
    assert rc == 0, err
    assert out.startswith("judges: real (default: not a synthetic-world input)") and "dicetalk download --judges" in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["sync_c"] is None and report["emotion"] is None and report["fsim"] > 0.9
    assert sorted(report["judges"]["missing"]) == ["emotion", "fid", "fvd", "sync"]


def test_synthetic_judges_on_a_real_face_warn(capsys, hopper_clip):
    rc, out, err = run(capsys, "evaluate", hopper_clip, "--portrait", HOPPER, "--judges", "synthetic")
    assert rc == 0, err
    assert out.startswith("judges: synthetic (--judges synthetic)") and "mean nothing on real faces" in err


def test_a_folder_against_real_reference_clips(capsys, tmp_path, judges_dir, hopper_clip):
    reference, generated = tmp_path / "reference", tmp_path / "generated"
    (reference / "M003" / "happy").mkdir(parents=True)
    generated.mkdir()
    (reference / "M003" / "happy" / "001.mp4").write_bytes(hopper_clip.read_bytes())
    for name, clip in (("same", hopper_clip), ("other", moving_clip(tmp_path / "collins.mp4", COLLINS))):
        (generated / f"{name}.mp4").write_bytes(clip.read_bytes())
        (generated / f"{name}.json").write_text(json.dumps({"source": "M003/happy/001", "emotion": "happy"}))
    (generated / "orphan.mp4").write_bytes(hopper_clip.read_bytes())
    rc, out, err = run(capsys, "evaluate", generated, "--reference", reference, "--judges", judges_dir, "--json", tmp_path / "t.json", "--resamples", 200)
    assert rc == 0, err
    report = json.loads((tmp_path / "t.json").read_text())
    rows = {r["name"]: r for r in report["videos"]}
    assert set(rows) == {"same.mp4", "other.mp4"} and "skipping orphan.mp4" in err
    assert rows["same.mp4"]["lmd"] < 1e-6 < rows["other.mp4"]["lmd"]
    assert rows["same.mp4"]["fsim"] > rows["other.mp4"]["fsim"] + 0.1
    for key in ("emo_score", "sync_c", "sync_d", "fsim", "lmd"):
        ci = report[f"{key}_ci"]
        assert ci["low"] <= report[key] <= ci["high"], key
    assert report["emo_score_n"] == 2 and report["fid_n"] == report["fvd_n"] == 2
    for key in ("fid", "fvd"):  # one of the two videos is its source itself, the other a stranger
        assert report[key] > 0 and report[f"{key}_ci"]["low"] <= report[key] <= report[f"{key}_ci"]["high"], key


def test_the_synthetic_worlds_ground_truth_runs_on_the_real_judges(capsys, tmp_path, judges_dir, eval_world):
    import shutil

    world = tmp_path / "world"  # three of the tiny world's test clips: the real judges take ~10 s a clip here
    world.mkdir()
    for name in ("world.json", "splits.json"):
        shutil.copy(eval_world / name, world / name)
    picked = sorted(eval_world.glob("mead/*/happy/level_3/*.mp4"))[-1:] + sorted(eval_world.glob("mead/*/neutral/level_3/*.mp4"))[-1:] + sorted(eval_world.glob("hdtf/*/*.mp4"))[-1:]
    for clip in picked:
        for path in clip.parent.glob(clip.stem + ".*"):
            target = world / path.relative_to(eval_world)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    rc, out, err = run(capsys, "evaluate", "--ground-truth", "--reference", world, "--split", "test", "--judges", judges_dir, "--json", tmp_path / "g.json", "--resamples", 100, "-q")
    assert rc == 0, err
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["judges"]["kind"] == "real" and report["num_videos"] >= 2
    assert report["fsim"] is not None and report["sync_c"] is not None and report["emo_score"] is not None


class _Marker:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_download_judges_from_a_mirror_and_refuse_a_pickle_that_runs_code(capsys, tmp_path):
    from dicetalk.evaluation.real.emotion import EMOTION_WEIGHTS_FILE, EMOTION_WEIGHTS_REPO, EmoAffectNet
    from dicetalk.evaluation.real.frechet import INCEPTION_FILE, InceptionFID
    from dicetalk.evaluation.real.i3d import I3D, I3D_FILE
    from dicetalk.evaluation.real.judges import load_real_judges
    from dicetalk.evaluation.real.syncnet import SyncNet

    mirror = tmp_path / "mirror"
    (mirror / EMOTION_WEIGHTS_REPO).mkdir(parents=True)
    torch.manual_seed(1)
    syncnet, emotion = SyncNet().eval(), EmoAffectNet().eval()
    torch.save(syncnet.state_dict(), mirror / "syncnet_v2.model")
    torch.save(emotion.state_dict(), mirror / EMOTION_WEIGHTS_REPO / EMOTION_WEIGHTS_FILE)
    torch.save(InceptionFID().state_dict(), mirror / INCEPTION_FILE)
    torch.save(I3D().state_dict(), mirror / I3D_FILE)
    rc, out, err = run(capsys, "download", "--judges", tmp_path / "out", "--mirror", mirror)
    assert rc == 0, err
    manifest = json.loads((tmp_path / "out" / "judges.json").read_text())
    assert manifest["kind"] == "real" and "scientific" in manifest["licences"]["emotion"]
    judges = load_real_judges(tmp_path / "out")
    assert judges.missing == [] and judges.fid is not None and judges.fvd is not None
    x = torch.rand(2, 3, 224, 224) * 255
    assert torch.allclose(judges.emotion(x), emotion(x), atol=1e-5)

    marker = tmp_path / "ran"
    with open(mirror / EMOTION_WEIGHTS_REPO / EMOTION_WEIGHTS_FILE, "wb") as f:
        pickle.dump({"w": _Marker(str(marker))}, f)
    rc, out, err = run(capsys, "download", "--judges", tmp_path / "out2", "--mirror", mirror)
    assert rc != 0 and not marker.exists()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out2" / "emotion").exists()
