"""GenerateOptions checks itself, before torch: one validation layer for the CLI, the page and Python."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from dicetalk.errors import InputError
from dicetalk.pipeline.options import SEED_MAX, GenerateOptions


def options(tmp_path, **changes):
    files = {"image": tmp_path / "p.png", "audio": tmp_path / "s.wav", "output": tmp_path / "out.mp4"}
    return GenerateOptions(**{**files, **changes})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("seed", -1, "seed must be a whole number 0..9223372036854775807, got -1"),
        ("seed", 2**70, "seed must be a whole number"),
        ("seed", 1.5, "seed must be a whole number"),
        ("seed", True, "seed must be a whole number"),
        ("seed", "7", "seed must be a whole number"),
        ("size", 15, "size must be a whole number 16..4096, got 15"),
        ("size", 99999, "size must be a whole number 16..4096"),
        ("steps", 0, "steps must be a whole number 1..1000"),
        ("windows_per_batch", 0, "windows_per_batch must be a whole number 1..64"),
        ("max_seconds", math.nan, "max_seconds must be a finite number in (0, 86400], got nan"),
        ("max_seconds", 0.0, "max_seconds must be a finite number in (0, 86400]"),
        ("transition", -0.1, "transition must be a finite number in [0, 60]"),
        ("transition", math.inf, "transition must be a finite number"),
        ("identity_scale", math.inf, "identity scale must be in [0, 50], got inf"),
        ("emotion_scale", "2", "emotion scale must be a number"),
        ("fps", math.nan, "fps must be 1..60, got nan"),
        ("sampler", "ddim", "unknown sampler 'ddim'"),
        ("device", "tpu", "unknown device 'tpu'"),
        ("model", "sonic", "unknown model 'sonic'"),
        ("emotion", "  ", "emotion must be a non-empty text"),
        ("output", "out.gif", "must be an .mp4 file"),
    ],
)
def test_a_bad_value_is_refused_when_the_options_are_made(field, value, message, tmp_path):
    with pytest.raises(InputError) as caught:
        options(tmp_path, **{field: value})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_values_at_the_ends_of_their_ranges_are_accepted(tmp_path):
    opts = options(tmp_path, seed=SEED_MAX, size=4096, steps=1000, max_seconds=86400, transition=0, windows_per_batch=64, device="cuda:1")
    assert opts.seed == SEED_MAX
    assert options(tmp_path, seed=np.int64(5), size=np.int32(64)).seed == 5  # numpy integers are whole numbers too
    assert isinstance(options(tmp_path, seed=np.int64(5)).seed, int)
    assert options(tmp_path, image=str(tmp_path / "p.png")).image == tmp_path / "p.png"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"recipe": "steps=abc"}, "steps='abc' is not a valid int"),
        ({"recipe": "noise_aug=nan"}, "noise_aug must be in [0, 1]"),
        ({"performance": "bogus"}, "unknown field 'bogus'"),
        ({"emotion": "0:happy,0:sad"}, "emotion schedule times must increase"),
        ({"emotion": "happy:4"}, "emotion strength 4 out of range 0..3"),
        ({"emotion": "missing.npy"}, "emotion file missing.npy: no such file"),
    ],
)
def test_check_reads_the_recipe_switches_and_emotion_grammar(changes, message, tmp_path):
    (tmp_path / "p.png").write_bytes(b"x")
    (tmp_path / "s.wav").write_bytes(b"x")
    with pytest.raises(InputError) as caught:
        options(tmp_path, **changes).check()
    assert message in str(caught.value)


def test_check_reads_the_file_system(tmp_path):
    (tmp_path / "s.wav").write_bytes(b"x")
    (tmp_path / "p.png").mkdir()
    with pytest.raises(InputError, match="is a folder, not a file"):
        options(tmp_path).check()
    (tmp_path / "p.png").rmdir()
    with pytest.raises(InputError, match="no such file"):
        options(tmp_path).check()
    (tmp_path / "p.png").write_bytes(b"x")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        options(tmp_path, output=tmp_path / "file" / "out.mp4").check()
    (tmp_path / "out.mp4").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        options(tmp_path).check()


def test_a_bad_option_is_refused_without_importing_torch(tmp_path):
    """What makes the refusal fast: nothing heavy is imported before the options are checked."""
    script = (
        "import sys\n"
        "from dicetalk.cli.main import main\n"
        f"code = main(['generate', {str(tmp_path)!r}, 'speech.wav', '--seed', '-1'])\n"
        "print(code, 'torch' in sys.modules, 'diffusers' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["2", "False", "False"], proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: seed must be a whole number 0..9223372036854775807, got -1"]


def test_a_command_leaves_nothing_in_tmpdir(portrait_png, speech_wav, tiny_weights, tmp_path):
    """torch makes a compiler cache folder in $TMPDIR when diffusers imports torch._dynamo: it goes to the
    user's cache folder instead."""
    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    out = tmp_path / "out.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "dicetalk", "generate", str(portrait_png), str(speech_wav), "-o", str(out), "--weights", str(tiny_weights),
         "--steps", "1", "--no-crop", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    assert list(tmp.iterdir()) == []
    assert (cache / "dicetalk" / "torchinductor").is_dir()
