"""The --emotion grammar: labels, strengths, mixes, files, schedules, and their errors."""

import numpy as np
import pytest
import torch

from dicetalk.errors import InputError
from dicetalk.pipeline.emotion_condition import parse_emotion

PRIORS = {"neutral": torch.zeros(4), "happy": torch.tensor([1.0, 0, 0, 0]), "sad": torch.tensor([0, 1.0, 0, 0])}


def named(name, strength):
    if name not in PRIORS:
        raise InputError(f"unknown emotion {name!r}")
    return PRIORS["neutral"] + strength * (PRIORS[name] - PRIORS["neutral"])


def from_file(path):
    return torch.full((4,), 7.0)


def parse(spec, **kw):
    return parse_emotion(spec, named, from_file, **kw)


def test_label_and_strength():
    assert torch.equal(parse("happy").per_frame(3, 25)[0], PRIORS["happy"])
    torch.testing.assert_close(parse("happy:0.5").per_frame(3, 25), PRIORS["happy"].expand(3, 4) * 0.5)
    torch.testing.assert_close(parse("HAPPY").per_frame(1, 25)[0], PRIORS["happy"])


def test_mix_weights_normalised():
    torch.testing.assert_close(parse("happy*3+sad*1").per_frame(1, 25)[0], torch.tensor([0.75, 0.25, 0, 0]))
    torch.testing.assert_close(parse("happy+sad").per_frame(1, 25)[0], torch.tensor([0.5, 0.5, 0, 0]))


def test_files_go_to_the_file_resolver(tmp_path):
    f = tmp_path / "p.npy"
    np.save(f, np.zeros(4, np.float32))
    assert torch.equal(parse(str(f)).per_frame(1, 25)[0], torch.full((4,), 7.0))


def test_schedule_holds_and_blends_smoothly():
    sched = parse("0:neutral,2:happy,4:sad", transition=1.0)
    fps = 10
    p = sched.per_frame(60, fps)
    assert torch.equal(p[0], PRIORS["neutral"]) and torch.equal(p[14], PRIORS["neutral"])  # held before 1.5 s
    assert torch.equal(p[30], PRIORS["happy"])  # 3.0 s: fully happy
    assert torch.equal(p[59], PRIORS["sad"])
    happy_curve = p[14:27, 0]
    assert (happy_curve[1:] >= happy_curve[:-1]).all()  # monotone crossfade, no jumps
    assert (happy_curve[1:] - happy_curve[:-1]).max() < 0.3


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty"),
        ("angry", "unknown emotion"),
        ("happy:lots", "strength must be a number"),
        ("happy:9", "out of range"),
        ("happy*x+sad", "malformed emotion mix"),
        ("0:neutral,happy", "expected 'seconds:emotion'"),
        ("0:neutral,3:happy,2:sad", "must increase"),
        ("what?!", "malformed emotion"),
        ("missing.npy", "no such file"),
        ("missing.mp4", "no such file"),
    ],
)
def test_malformed_conditions_are_refused(spec, message):
    with pytest.raises(InputError, match=message):
        parse(spec)
