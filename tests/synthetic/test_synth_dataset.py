"""The synthetic world on disk: layout, consistency, splits, determinism, resuming, bad options, CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from dicetalk import EMOTIONS
from dicetalk.cli.main import main
from dicetalk.errors import DiceTalkError, InputError
from dicetalk.synthetic import EXPRESSION_NAMES, POSE_NAMES, PRESETS, SENTENCES, generate_dataset
from dicetalk.utils.media import probe, read_video


def clip_stems(root: Path) -> list[Path]:
    """Every clip of a world, as paths without suffix (world.json and splits.json sit above)."""
    return sorted(p.with_suffix("") for p in root.glob("*/**/*.json"))


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def data_files(root: Path) -> dict[str, bytes]:
    """Bytes of every .json and .safetensors file, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.suffix in (".json", ".safetensors")}


# ---- layout and contents ---------------------------------------------------------------------


def test_tiny_preset_writes_the_mead_and_hdtf_layout(tiny_world):
    preset = PRESETS["tiny"]
    expected = set()
    for i in range(preset.identities):
        for emotion in EMOTIONS:
            for level in (1,) if emotion == "neutral" else preset.levels:
                expected.add(f"mead/mead_{i:03d}/{emotion}/level_{level}/001")
    for i in range(preset.hdtf_identities):
        expected.add(f"hdtf/hdtf_{i:03d}/001")
    stems = clip_stems(tiny_world)
    assert {str(s.relative_to(tiny_world)) for s in stems} == expected
    for stem in stems:
        for suffix in (".mp4", ".safetensors", ".json"):
            assert stem.with_suffix(suffix).is_file(), stem
    assert (tiny_world / "world.json").is_file() and (tiny_world / "splits.json").is_file()
    # Atomic writes leave no temporary file behind.
    assert not [p for p in tiny_world.rglob(".*")]


def test_every_clip_has_matching_frames_coefficients_and_metadata(tiny_world):
    splits = load_json(tiny_world / "splits.json")
    split_of = {name: s for s in ("train", "val", "test") for name in splits[s]}
    for stem in clip_stems(tiny_world):
        meta = load_json(stem.with_suffix(".json"))
        tensors = load_file(stem.with_suffix(".safetensors"))
        t = meta["num_frames"]
        assert t > 25
        assert tensors["expression"].shape == (t, len(EXPRESSION_NAMES))
        assert tensors["pose"].shape == (t, 3)
        assert tensors["face_box"].shape == (t, 4)
        assert all(v.dtype == np.float32 for v in tensors.values())
        assert meta["expression_names"] == list(EXPRESSION_NAMES) and meta["pose_names"] == list(POSE_NAMES)
        assert meta["fps"] == 25 and meta["sample_rate"] == 16000 and meta["size"] == 64 and meta["seed"] == 0
        assert meta["num_samples"] == t * 640  # the speech spans whole frames
        assert meta["split"] == split_of[meta["identity"]]
        assert stem.parts[-3 if meta["dataset"] == "hdtf" else -5] == meta["dataset"]
        assert meta["sentence"] == " ".join(SENTENCES[i] for i in meta["sentence_ids"])
        if meta["dataset"] == "mead":
            assert (meta["emotion"], f"level_{meta['level']}") == (stem.parts[-3], stem.parts[-2])
        else:
            assert meta["emotion"] is None and meta["level"] is None
            assert t > 100  # HDTF-like clips are longer: several sentences
        box = tensors["face_box"]
        assert np.all(box[:, 0] < box[:, 2]) and np.all(box[:, 1] < box[:, 3])
        assert box.min() >= 0 and box.max() <= 64
        assert meta["voice"]["name"].startswith("en-")


def test_videos_are_25_fps_with_a_speech_track_as_long_as_the_video(tiny_world):
    stems = clip_stems(tiny_world)
    for stem in stems[::4] + [s for s in stems if "hdtf" in s.parts]:
        meta = load_json(stem.with_suffix(".json"))
        info = probe(stem.with_suffix(".mp4"))
        assert info.has_audio
        assert info.fps == 25
        assert info.num_frames == meta["num_frames"]
        assert abs(info.audio_duration - info.duration) <= 1 / 25
    clip = read_video(stems[0].with_suffix(".mp4"))
    assert clip.frames.shape[1:] == (64, 64, 3)
    assert clip.audio is not None and np.abs(clip.audio).max() > 0.05  # real speech, not silence


def test_world_json_describes_the_world(tiny_world):
    world = load_json(tiny_world / "world.json")
    assert world["preset"] == "tiny" and world["seed"] == 0
    assert world["expression_names"] == list(EXPRESSION_NAMES)
    assert set(world["emotion_targets"]) == set(EMOTIONS)
    assert world["options"]["size"] == 64
    assert world["dicetalk_version"]
    assert len(world["identities"]) == PRESETS["tiny"].identities + PRESETS["tiny"].hdtf_identities


def test_splits_are_by_identity_and_disjoint(tiny_world):
    splits = load_json(tiny_world / "splits.json")
    train, val, test = (set(splits[s]) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    on_disk = {p.name for p in (tiny_world / "mead").iterdir()} | {p.name for p in (tiny_world / "hdtf").iterdir()}
    assert train | val | test == on_disk
    mead = splits["datasets"]["mead"]
    assert [len(mead[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert splits["datasets"]["hdtf"]["train"] and splits["datasets"]["hdtf"]["test"]
    # Every clip of an identity carries that identity's split.
    for stem in clip_stems(tiny_world):
        meta = load_json(stem.with_suffix(".json"))
        assert meta["identity"] in splits[meta["split"]]


# ---- determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_whatever_the_workers(tmp_path, small_options):
    generate_dataset(tmp_path / "a", "tiny", seed=3, workers=1, progress=False, **small_options)
    generate_dataset(tmp_path / "b", "tiny", seed=3, workers=2, progress=False, **small_options)
    a, b = data_files(tmp_path / "a"), data_files(tmp_path / "b")
    assert len(a) == 2 + 2 * 5  # world.json, splits.json, and 5 clips
    assert a == b


def test_different_seed_gives_a_different_world(tmp_path, tiny_world, small_options):
    generate_dataset(tmp_path / "other", "tiny", seed=1, workers=1, progress=False, **small_options)
    other = data_files(tmp_path / "other")
    reference = data_files(tiny_world)
    shared = [k for k in other if k.endswith(".safetensors")]
    assert shared and all(k in reference for k in shared)
    assert all(other[k] != reference[k] for k in shared)


# ---- re-running -------------------------------------------------------------------------------------


def test_rerun_skips_finished_clips_and_resumes_a_killed_run(tmp_path, small_options):
    out = tmp_path / "world"
    first = generate_dataset(out, "tiny", seed=0, workers=1, progress=False, **small_options)
    assert first.generated == first.clips == 5
    before = data_files(out)
    again = generate_dataset(out, "tiny", seed=0, workers=1, progress=False, **small_options)
    assert (again.generated, again.skipped) == (0, 5)
    # A run killed mid-clip leaves no JSON (written last) and perhaps a temporary file.
    stem = clip_stems(out)[0]
    stem.with_suffix(".json").unlink()
    stale = stem.parent / f".{stem.name}.abc123.tmp.mp4"
    stale.write_bytes(b"half a video")
    resumed = generate_dataset(out, "tiny", seed=0, workers=1, progress=False, **small_options)
    assert (resumed.generated, resumed.skipped) == (1, 4)
    assert not stale.exists()
    assert data_files(out) == before


def test_a_different_world_in_out_is_refused(tmp_path, small_options):
    out = tmp_path / "world"
    generate_dataset(out, "tiny", seed=0, workers=1, progress=False, **small_options)
    with pytest.raises(InputError, match="different synthetic world"):
        generate_dataset(out, "tiny", seed=1, workers=1, progress=False, **small_options)


# ---- bad options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=32), "size must be 64..256"),
        (dict(size=512), "size must be 64..256"),
        (dict(preset="huge"), "unknown preset 'huge'"),
        (dict(identities=0), "at least 1 MEAD identity"),
        (dict(sentences=0), "sentences must be"),
        (dict(workers=0), "workers must be at least 1"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(colour="blue"), "unknown option"),
    ],
)
def test_bad_options_raise_one_clear_error(tmp_path, kwargs, message):
    with pytest.raises(DiceTalkError, match=message):
        generate_dataset(tmp_path / "out", **{"progress": False, **kwargs})
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_folder_for_this_world(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        generate_dataset(a_file, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        generate_dataset(tmp_path / "busy", progress=False)


def test_missing_espeak_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to execute there
    with pytest.raises(InputError, match="espeak-ng is not installed"):
        generate_dataset(tmp_path / "out", progress=False)


# ---- command line -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [(["--size", "300"], "size must be 64..256"), (["--preset", "huge"], "unknown preset")],
)
def test_cli_bad_option_exits_non_zero_with_one_line(tmp_path, capsys, args, message):
    code = main(["synth", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("error:") and message in err


def test_cli_out_is_a_file(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code = main(["synth", str(a_file)])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "is a file" in err


def test_cli_generates_a_world(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["synth", str(out), "--seed", "2", "--identities", "1", "--hdtf-identities", "0", "--sentences", "1", "--workers", "1", "--quiet"])
    assert code == 0
    assert "8 clips (8 written" in capsys.readouterr().out
    assert len(clip_stems(out)) == len(EMOTIONS)
    assert load_json(out / "world.json")["seed"] == 2
