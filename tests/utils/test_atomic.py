"""Writes that cannot lose data: a fault at any step leaves the earlier file byte for byte (issue 37)."""

import errno
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dicetalk.errors import DiskFullError
from dicetalk.utils import atomic
from dicetalk.utils.media import VideoWriter, read_video, write_video

EARLIER = b"the earlier, good file\n" * 100


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p != path)


def _earlier(tmp_path, name="out.bin"):
    path = tmp_path / name
    path.write_bytes(EARLIER)
    return path


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = _earlier(tmp_path)

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])  # half of it lands, then the disk is full
            _disk_full()

    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: FullDisk(real_open(*a, **k)))
    with pytest.raises(DiskFullError) as caught:
        atomic.write_bytes(path, b"x" * 10_000)
    monkeypatch.undo()
    assert str(caught.value) == f"disk full while writing {path}; the earlier file is untouched"
    assert "\n" not in str(caught.value)
    assert path.read_bytes() == EARLIER
    assert _siblings(path) == []


def test_disk_full_with_no_earlier_file_says_nothing_was_written(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "fsync_file", _disk_full)  # ENOSPC may come as late as the fsync
    path = tmp_path / "new.json"
    with pytest.raises(DiskFullError, match=r"new\.json; nothing was written$"):
        atomic.write_json(path, {"a": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("step", ["fsync_file", "replace"])
def test_a_failing_step_before_the_rename_keeps_the_earlier_file(step, tmp_path, monkeypatch):
    path = _earlier(tmp_path)

    def fail(*args, **kwargs):
        raise OSError(errno.EIO, "input/output error")

    if step == "replace":
        monkeypatch.setattr(atomic.os, "replace", fail)
    else:
        monkeypatch.setattr(atomic, step, fail)
    with pytest.raises(OSError, match="input/output error"):
        atomic.write_text(path, "new text")
    monkeypatch.undo()
    assert path.read_bytes() == EARLIER
    assert _siblings(path) == []


def test_the_file_is_fsynced_before_it_is_renamed_and_the_folder_after(tmp_path, monkeypatch):
    order = []
    monkeypatch.setattr(atomic, "fsync_file", lambda p: order.append(("fsync", os.path.basename(p))))
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (order.append(("rename", os.path.basename(b))), real_replace(a, b)))
    monkeypatch.setattr(atomic, "fsync_dir", lambda p: order.append(("fsync dir", str(p))))
    atomic.write_text(tmp_path / "out.txt", "hello")
    assert [o[0] for o in order] == ["fsync", "rename", "fsync dir"]
    assert order[0][1] != "out.txt" and order[1][1] == "out.txt" and order[2][1] == str(tmp_path)
    assert (tmp_path / "out.txt").read_text() == "hello"


def test_a_kill_between_write_and_rename_keeps_the_earlier_file(tmp_path):
    """SIGKILL after the temporary file is complete, before the rename: the target is as it was, and
    the next write removes the dead writer's temporary file."""
    path = _earlier(tmp_path)
    script = textwrap.dedent(
        f"""
        import os, signal
        from dicetalk.utils import atomic
        atomic.os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL)
        atomic.write_bytes({str(path)!r}, b"new" * 1000)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    assert path.read_bytes() == EARLIER
    assert len(_siblings(path)) == 1  # the killed writer's temporary file: nobody was left to remove it
    atomic.write_bytes(path, b"next")
    assert path.read_bytes() == b"next"
    assert _siblings(path) == []


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    path = tmp_path / "out.mp4"
    other = tmp_path / f".out.{os.getppid()}.abc.mp4.tmp.mp4"  # a running process's file
    other.write_bytes(b"in progress")
    atomic.write_bytes(path, b"mine")
    assert other.read_bytes() == b"in progress"


def test_atomic_dir_brings_the_earlier_folder_back_after_a_kill_between_its_renames(tmp_path):
    dst = tmp_path / "weights"
    old = tmp_path / ".weights.old"
    old.mkdir()
    (old / "model.safetensors").write_bytes(EARLIER)  # the state a kill between the two renames leaves
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(dst) as tmp:
            (tmp / "model.safetensors").write_bytes(b"half")
            raise RuntimeError("conversion failed")
    assert (dst / "model.safetensors").read_bytes() == EARLIER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]


# ------------------------------------------------------------------------------------------ videos


def _frames(n=6, value=100):
    return np.full((n, 32, 32, 3), value, np.uint8)


@pytest.fixture
def earlier_video(tmp_path):
    path = tmp_path / "out.mp4"
    write_video(path, _frames(value=200), fps=25)
    return path, path.read_bytes()


def test_a_failing_close_keeps_the_earlier_video(earlier_video, monkeypatch):
    """The defect of issue 37: closing the container failed on a full disk and the truncated file was
    renamed over the user's video anyway."""
    import av

    path, before = earlier_video
    real_open = av.open

    def open_failing_on_close(*args, **kwargs):
        container = real_open(*args, **kwargs)

        class Failing:
            def __getattr__(self, name):
                return getattr(container, name)

            def close(self):
                container.close()
                raise av.error.OSError(errno.ENOSPC, "No space left on device")

        return Failing()

    monkeypatch.setattr(av, "open", open_failing_on_close)
    with pytest.raises(DiskFullError) as caught:
        with VideoWriter(path, 25) as writer:
            writer.write(_frames())
            writer.finish()
    monkeypatch.undo()
    assert str(caught.value) == f"disk full while writing {path}; the earlier file is untouched"
    assert path.read_bytes() == before
    assert _siblings(path) == []
    assert read_video(path).frames.shape[0] == 6


def test_disk_full_while_encoding_keeps_the_earlier_video(earlier_video, monkeypatch):
    import av

    path, before = earlier_video
    monkeypatch.setattr(av.container.OutputContainer, "mux", lambda self, packet: _disk_full())
    with pytest.raises(DiskFullError, match="the earlier file is untouched"):
        with VideoWriter(path, 25) as writer:
            writer.write(_frames(30))
            writer.finish()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _siblings(path) == []


def test_a_writer_that_cannot_open_leaves_no_temporary_file(tmp_path, monkeypatch):
    import av

    monkeypatch.setattr(av, "open", _disk_full)
    with pytest.raises(DiskFullError, match="nothing was written"):
        with VideoWriter(tmp_path / "out.mp4", 25):
            pass
    assert list(tmp_path.iterdir()) == []


def test_generate_on_a_full_disk_is_one_line_and_keeps_the_earlier_video(portrait_png, speech_wav, tiny_weights, earlier_video, capsys, monkeypatch):
    import av

    from dicetalk.cli.main import main

    path, before = earlier_video
    monkeypatch.setattr(av.container.OutputContainer, "mux", lambda self, packet: _disk_full())
    code = main(["generate", str(portrait_png), str(speech_wav), "-o", str(path), "--weights", str(tiny_weights), "--steps", "1", "--no-crop"])
    err = capsys.readouterr().err
    assert code == 28
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"error: disk full while writing {path}; the earlier file is untouched"
    assert err.count("error:") == 1
    assert path.read_bytes() == before
    assert _siblings(path) == []


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path):
    from dicetalk.errors import InputError

    (tmp_path / "file.txt").write_text("x")
    for dst in (tmp_path / "file.txt" / "out.mp4", "/proc/dicetalk-test/out.mp4"):
        with pytest.raises(InputError, match=r"^cannot write .*out\.mp4: "):
            atomic.write_bytes(dst, b"x")
