"""--judges real|synthetic|DIR, and the default told from the inputs."""

import json

import pytest

from dicetalk.errors import InputError
from dicetalk.evaluation.choose import choose_judges, synthetic_on_real_warning, world_root


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "world"
    clip = root / "mead" / "mead_020" / "happy" / "level_3"
    clip.mkdir(parents=True)
    (root / "world.json").write_text("{}")
    (clip / "001.mp4").write_bytes(b"")
    return root


def test_default_is_synthetic_inside_a_world_and_real_elsewhere(world, tmp_path):
    video = world / "mead" / "mead_020" / "happy" / "level_3" / "001.mp4"
    assert world_root(video) == world.resolve()
    assert choose_judges(None, [video, None]).kind == "synthetic"
    assert choose_judges(None, [world]).kind == "synthetic"
    loose = tmp_path / "clip.mp4"  # a world clip outside its world folder: its sidecar says what it is
    loose.write_bytes(b"")
    loose.with_suffix(".json").write_text(json.dumps({"identity": "mead_020", "expression_names": ["jaw_drop"]}))
    assert choose_judges(None, [loose]).kind == "synthetic"
    loose.with_suffix(".json").write_text(json.dumps({"source": "mead/mead_020/happy/level_3/001"}))
    assert choose_judges(None, [loose]).kind == "real"
    outside = tmp_path / "mine.mp4"
    outside.write_bytes(b"")
    choice = choose_judges(None, [outside, tmp_path / "me.jpg"])
    assert choice.kind == "real" and choice.real and "default" in choice.reason


def test_named_kinds_and_folders(tmp_path):
    assert choose_judges("synthetic", [tmp_path]).kind == "synthetic"
    assert choose_judges("real", [tmp_path]).kind == "real"
    real = tmp_path / "real"
    (real / "sync").mkdir(parents=True)
    assert choose_judges(str(real), []).kind == "real"
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / "judges.json").write_text(json.dumps({"kind": "real"}))
    assert choose_judges(str(marked), []).kind == "real"
    synthetic = tmp_path / "synthetic"
    for name in ("identity", "emotion", "sync"):
        (synthetic / name).mkdir(parents=True)
    choice = choose_judges(str(synthetic), [])
    assert choice.kind == "synthetic" and choice.folder == synthetic
    with pytest.raises(InputError, match="real, synthetic or a judges folder"):
        choose_judges(str(tmp_path / "nope"), [])


def test_synthetic_judges_on_a_real_face_warn(world, tmp_path):
    synthetic = choose_judges("synthetic", [])
    assert "mean nothing on real faces" in synthetic_on_real_warning(synthetic, [tmp_path / "me.mp4"])
    assert synthetic_on_real_warning(synthetic, [world / "mead"]) is None
    assert synthetic_on_real_warning(choose_judges("real", []), [tmp_path / "me.mp4"]) is None
