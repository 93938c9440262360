"""`dicetalk generate` end to end with tiny weights, and every kind of bad input it must refuse."""

import os
import pickle
import re

import numpy as np
import pytest
from PIL import Image

from dicetalk.cli.main import main
from dicetalk.utils.media import SPEECH_SAMPLE_RATE, probe, read_audio, write_audio, write_video


def run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


def base_args(portrait_png, speech_wav, out, tiny_weights, *extra):
    return ["generate", str(portrait_png), str(speech_wav), "-o", str(out), "--weights", str(tiny_weights), "--steps", "1", *extra]


def test_generate_writes_a_video_with_the_speech(portrait_png, speech_wav, tiny_weights, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    code, err = run(base_args(portrait_png, speech_wav, out, tiny_weights, "--emotion", "0:neutral,1:happy:0.8", "--size", "48"), capsys)
    assert code == 0, err
    info = probe(out)
    audio_seconds = read_audio(speech_wav).size / SPEECH_SAMPLE_RATE
    assert info.has_audio
    assert abs(info.duration - audio_seconds) <= 1 / 25 + 1e-6
    assert abs(info.audio_duration - audio_seconds) <= 1 / 25
    assert [f for f in os.listdir(tmp_path) if f != "out.mp4"] == []  # no temporary leftovers


def test_same_seed_same_video(portrait_png, speech_wav, tiny_weights, tmp_path, capsys):
    from dicetalk.utils.media import read_video

    frames = []
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        out = tmp_path / f"{name}.mp4"
        assert run(base_args(portrait_png, speech_wav, out, tiny_weights, "--seed", seed), capsys)[0] == 0
        frames.append(read_video(out, with_audio=False).frames)
    assert np.array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[2])


def _write_bad_inputs(tmp_path):
    files = {}
    files["text.png"] = tmp_path / "text.png"
    files["text.png"].write_text("not an image")
    files["noise.png"] = tmp_path / "noise.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(files["noise.png"])
    files["empty.wav"] = tmp_path / "empty.wav"
    files["empty.wav"].write_bytes(b"")
    files["silent.wav"] = tmp_path / "silent.wav"
    write_audio(files["silent.wav"], np.zeros(16000, np.float32))
    files["corrupt.wav"] = tmp_path / "corrupt.wav"
    files["corrupt.wav"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + os.urandom(200))
    files["long.wav"] = tmp_path / "long.wav"
    write_audio(files["long.wav"], (rng.standard_normal(16000 * 4) * 0.1).astype(np.float32))
    files["video_no_audio.mp4"] = tmp_path / "video_no_audio.mp4"
    write_video(files["video_no_audio.mp4"], np.zeros((5, 16, 16, 3), np.uint8), 25)
    files["prior_wrong.npy"] = tmp_path / "prior_wrong.npy"
    np.save(files["prior_wrong.npy"], np.zeros(5, np.float32))

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    files["evil.npy"] = tmp_path / "evil.npy"
    np.save(files["evil.npy"], np.array([Evil()], dtype=object), allow_pickle=True)
    files["evil_dict.npy"] = tmp_path / "evil_dict.npy"
    with open(files["evil_dict.npy"], "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump({"mu": Evil()}, f)
    files["no_weights"] = tmp_path / "no_weights"
    files["no_weights"].mkdir()
    files["a_folder"] = tmp_path / "a_folder"
    files["a_folder"].mkdir()
    return files


CASES = [
    ("image", "text.png", [], "not a readable image"),
    ("image", "missing.png", [], "no such file"),
    ("image", "noise.png", [], "no face found"),
    ("audio", "empty.wav", [], "audio"),
    ("audio", "silent.wav", [], "silent"),
    ("audio", "corrupt.wav", [], "cannot be read"),
    ("audio", "long.wav", ["--max-seconds", "2"], "longer than the limit"),
    ("audio", "video_no_audio.mp4", [], "no audio stream"),
    (None, None, ["--emotion", "furious"], "unknown emotion"),
    (None, None, ["--emotion", "0:happy,x:sad"], "malformed emotion schedule"),
    (None, None, ["--emotion", "{prior_wrong.npy}"], "256|16|shape|size"),
    (None, None, ["--emotion", "{evil.npy}"], "refus|unsafe|not allowed|pickle"),
    (None, None, ["--emotion", "{evil_dict.npy}"], "refus|unsafe|not allowed|pickle"),
    (None, None, ["--weights", "{no_weights}"], "not a dicetalk weights folder"),
    (None, None, ["--weights", "{missing_dir}"], "does not exist"),
    (None, None, ["--steps", "0"], "steps"),
    ("image", "a_folder", [], "is a folder, not a file"),
    (None, None, ["--seed", "-1"], r"seed must be a whole number 0\.\.9223372036854775807, got -1"),
    (None, None, ["--seed", str(2**70)], "seed must be a whole number 0..9223372036854775807"),
    (None, None, ["--size", "0"], "size must be a whole number 16..4096"),
    (None, None, ["--transition", "nan"], "transition must be a finite number"),
    (None, None, ["--max-seconds", "inf"], "max_seconds must be a finite number"),
    (None, None, ["--max-seconds", "0"], r"max_seconds must be a finite number in \(0, 86400\]"),
    (None, None, ["--fps", "inf"], "fps must be 1..60, got inf"),
    (None, None, ["--recipe", "size=4097"], "size must be 16..4096"),
    (None, None, ["--emotion", "happy:1e999"], "strength"),
    (None, None, ["--emotion", "happy*nan+sad"], "malformed emotion mix"),
    (None, None, ["--device", "tpu"], "device"),
    (None, None, ["--sampler", "ddim"], "unknown sampler"),
    (None, None, ["--identity-scale", "-1"], "identity scale must be in"),
    (None, None, ["--emotion-scale", "nan"], "emotion scale must be in"),
]


@pytest.mark.parametrize("slot, name, extra, message", CASES, ids=[f"{c[1] or c[2][-1]}" for c in CASES])
def test_bad_input_gives_one_clear_line(slot, name, extra, message, portrait_png, speech_wav, tiny_weights, tmp_path, capsys):
    files = _write_bad_inputs(tmp_path)
    files["missing_dir"] = tmp_path / "missing_dir"
    image, audio = portrait_png, speech_wav
    if slot == "image":
        image = files.get(name, tmp_path / name)
    elif slot == "audio":
        audio = files[name]
    extra = [str(files[e[1:-1]]) if e.startswith("{") else e for e in extra]
    out = tmp_path / "out.mp4"
    args = ["generate", str(image), str(audio), "-o", str(out), "--steps", "1", *extra]
    if "--weights" not in extra:
        args += ["--weights", str(tiny_weights)]
    code, err = run(args, capsys)
    assert code != 0
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert re.search(message, err[0], re.IGNORECASE), err[0]
    assert not out.exists()
    assert not (tmp_path / "PWNED").exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".out")]


def test_sigterm_mid_job_leaves_no_file(portrait_png, tiny_weights, tmp_path):
    """A terminated `generate` unwinds: exit 143, one line, no output and no temporary file."""
    import signal
    import subprocess
    import sys
    import time

    sr = 16000
    t = np.arange(20 * sr) / sr
    write_audio(tmp_path / "long.wav", (0.2 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32), sr)
    out = tmp_path / "out" / "video.mp4"
    out.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dicetalk", "generate", str(portrait_png), str(tmp_path / "long.wav"), "-o", str(out), "--weights", str(tiny_weights),
         "--steps", "20", "--device", "cpu"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not any(out.parent.iterdir()):  # the writer's temporary file appears when rendering starts
        time.sleep(0.1)
    assert any(out.parent.iterdir()), "the job never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "error: terminated"
    assert list(out.parent.iterdir()) == []


def test_speed_switches_reach_the_pipeline_and_bad_ones_are_one_line(portrait_png, speech_wav, tiny_weights, tmp_path, capsys, monkeypatch):
    from dicetalk.pipeline import DiceTalkPipeline

    code, err = run(base_args(portrait_png, speech_wav, tmp_path / "bad.mp4", tiny_weights, "--performance", "warp_drive"), capsys)
    assert code != 0 and len(err) == 1 and "unknown field 'warp_drive'" in err[0]
    assert not (tmp_path / "bad.mp4").exists()
    seen = []
    original = DiceTalkPipeline.__call__
    monkeypatch.setattr(DiceTalkPipeline, "__call__", lambda self, *a, **k: (seen.append(self.performance), original(self, *a, **k))[1])
    code, err = run(base_args(portrait_png, speech_wav, tmp_path / "ok.mp4", tiny_weights, "--performance", "fuse_qkv,channels_last"), capsys)
    assert code == 0, err
    assert seen[0].fuse_qkv and seen[0].channels_last
