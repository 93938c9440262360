"""`dicetalk batch`: good and bad jobs, resuming after a kill, malformed jobs files, accelerate (issue 33)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dicetalk.cli.main import main
from dicetalk.utils.media import read_video, write_audio

FAST = {"crop": False, "steps": 1}


@pytest.fixture
def inputs(tmp_path, portrait_png, speech_wav):
    """A jobs folder with a portrait, a short speech and a silent recording."""
    folder = tmp_path / "jobs"
    folder.mkdir()
    shutil.copy(portrait_png, folder / "face.png")
    shutil.copy(speech_wav, folder / "speech.wav")
    write_audio(folder / "silent.wav", np.zeros(16000, np.float32), 16000)
    return folder


def write_jobs(folder, jobs, name="jobs.jsonl"):
    path = folder / name
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return path


def batch(jobs, out, weights, capsys=None, *extra):
    code = main(["batch", str(jobs), "--out", str(out), "--weights", str(weights), "--device", "cpu", "--no-progress", *extra])
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def records(out):
    return [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]


def test_good_and_bad_jobs(inputs, tiny_weights, tmp_path, capsys):
    jobs = write_jobs(inputs, [
        {"image": "face.png", "audio": "speech.wav", "emotion": "happy", "seed": 1, **FAST},
        {"image": "missing.png", "audio": "speech.wav", **FAST},
        {"image": "face.png", "audio": "silent.wav", **FAST},
        {"image": "face.png", "audio": "speech.wav", "emotion": "furious", **FAST},
        {"image": "face.png", "audio": "speech.wav", "output": "second.mp4", "seed": 2, **FAST},
    ])  # fmt: skip
    out = tmp_path / "out"
    code, err = batch(jobs, out, tiny_weights, capsys)
    assert code == 1  # a job failed
    states = {r["line"]: (r["state"], r["error"]) for r in records(out)}
    assert states[1] == ("done", None) and states[5] == ("done", None)
    assert states[2][0] == "failed" and "no such file" in states[2][1]
    assert states[3][0] == "failed" and "silent" in states[3][1]
    assert states[4][0] == "failed" and "unknown emotion" in states[4][1]
    assert sorted(p.name for p in out.iterdir()) == ["batch.jsonl", "face_speech_happy_1.mp4", "second.mp4", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"]) == (2, 3, 0)
    assert "line 2 (missing_speech_neutral_0.mp4) failed:" in err
    # A rerun skips what is done and tries the failed jobs again.
    code, _ = batch(jobs, out, tiny_weights, capsys)
    assert code == 1
    assert [r["state"] for r in records(out)[5:]] == ["skipped", "failed", "failed", "failed", "skipped"]


def test_all_good_exits_zero_and_csv_works(inputs, tiny_weights, tmp_path, capsys):
    (inputs / "jobs.csv").write_text("image,audio,emotion,seed,crop,steps\nface.png,speech.wav,sad,3,false,1\nface.png,speech.wav,,4,false,1\n")
    out = tmp_path / "out"
    code, _ = batch(inputs / "jobs.csv", out, tiny_weights, capsys)
    assert code == 0
    assert sorted(p.name for p in out.glob("*.mp4")) == ["face_speech_neutral_4.mp4", "face_speech_sad_3.mp4"]


def test_the_same_job_gives_the_same_video_as_generate(inputs, tiny_weights, tmp_path, capsys):
    jobs = write_jobs(inputs, [{"image": "face.png", "audio": "speech.wav", "emotion": "happy", "seed": 7, "output": "a.mp4", **FAST}])
    assert batch(jobs, tmp_path / "out", tiny_weights, capsys)[0] == 0
    single = tmp_path / "single.mp4"
    assert main(["generate", str(inputs / "face.png"), str(inputs / "speech.wav"), "-o", str(single), "--weights", str(tiny_weights),
                 "--emotion", "happy", "--seed", "7", "--no-crop", "--steps", "1", "--device", "cpu"]) == 0  # fmt: skip
    np.testing.assert_array_equal(read_video(tmp_path / "out" / "a.mp4").frames, read_video(single).frames)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"image": "face.png", "audio": "speech.wav"}\n{"image": "face.png", "audio": \n', "line 2: not valid JSON"),
        ('{"image": "face.png", "audio": "speech.wav", "colour": "red"}\n', "line 1: unknown field 'colour'"),
        ('{"audio": "speech.wav"}\n', "line 1: image is required"),
        ('\n\n{"image": "face.png", "audio": "speech.wav", "seed": -1}\n', "line 3: seed must be a whole number"),
        ('{"image": "face.png", "audio": "speech.wav", "output": "../x.mp4"}\n', "line 1: output '../x.mp4' must be a file name"),
        ('{"image": "a.png", "audio": "b.wav", "output": "x.mp4"}\n{"image": "c.png", "audio": "d.wav", "output": "x.mp4"}\n', "line 2: output x.mp4 is also line 1's"),
        ('["face.png", "speech.wav"]\n', "line 1: a job must be a JSON object"),
        ("", "no jobs"),
    ],
)
def test_a_malformed_jobs_file_is_refused_with_its_line_before_rendering(text, message, inputs, tiny_weights, tmp_path, capsys):
    (inputs / "jobs.jsonl").write_text(text)
    code, err = batch(inputs / "jobs.jsonl", tmp_path / "out", tiny_weights, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "out").exists()


def test_a_malformed_csv_row_is_refused_with_its_line(inputs, tiny_weights, tmp_path, capsys):
    (inputs / "jobs.csv").write_text("image,audio,steps\nface.png,speech.wav,2\nface.png,speech.wav,two\n")
    code, err = batch(inputs / "jobs.csv", tmp_path / "out", tiny_weights, capsys)
    assert code == 2 and "line 3" in err and "steps='two' is not a valid int" in err


def test_a_killed_batch_resumes_without_rendering_a_job_twice(inputs, tiny_weights, tmp_path):
    jobs = write_jobs(inputs, [{"image": "face.png", "audio": "speech.wav", "seed": s, "output": f"v{s}.mp4", **FAST} for s in range(4)])
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "dicetalk", "batch", str(jobs), "--out", str(out), "--weights", str(tiny_weights), "--device", "cpu", "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not ((out / "batch.jsonl").is_file() and (out / "batch.jsonl").read_text().strip()):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # after the first job is recorded, probably in the middle of the second
    proc.wait()
    first = records(out)
    assert first and all(r["state"] == "done" for r in first)
    done_before = {r["output"] for r in first}
    for video in out.glob("*.mp4"):
        if video.name.startswith("."):
            continue  # a temporary the kill interrupted (the next run removes it), not under an output's name
        assert read_video(video).frames.shape[0] > 0  # no half file under an output's name
    assert subprocess.run(argv, capture_output=True).returncode == 0
    second = records(out)[len(first):]
    assert {r["output"] for r in second if r["state"] == "done"}.isdisjoint(done_before)
    assert {r["output"] for r in second if r["state"] == "skipped"} >= done_before - {None}
    assert sorted(p.name for p in out.glob("*.mp4")) == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".batch.rank0.jsonl"]


def test_two_processes_under_accelerate_split_the_jobs(inputs, tiny_weights, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    jobs = write_jobs(inputs, [{"image": "face.png", "audio": "speech.wav", "seed": s, "output": f"v{s}.mp4", **FAST} for s in range(4)])
    out, alone = tmp_path / "two", tmp_path / "one"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}  # gloo on CPU, as tests/training
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
              "-m", "dicetalk", "batch", str(jobs), "--out", str(out), "--weights", str(tiny_weights), "--no-progress"]  # fmt: skip
    proc = subprocess.run(launch, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    entries = records(out)
    assert sorted(r["output"] for r in entries) == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]  # each job once
    assert all(r["state"] == "done" for r in entries)
    assert json.loads((out / "summary.json").read_text())["processes"] == 2
    assert not list(out.glob(".batch.rank*"))
    assert main(["batch", str(jobs), "--out", str(alone), "--weights", str(tiny_weights), "--device", "cpu", "--no-progress"]) == 0
    for name in ("v0.mp4", "v3.mp4"):
        np.testing.assert_array_equal(read_video(out / name).frames, read_video(alone / name).frames)
