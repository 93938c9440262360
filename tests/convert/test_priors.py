"""Emotion prior files: every accepted format, and refusal of unsafe or malformed ones."""

from __future__ import annotations

import builtins
import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dicetalk.convert.priors import load_prior, read_prior
from dicetalk.convert.safe_pickle import read_npy
from dicetalk.errors import InputError, UnsafeFileError

DIM = 16


@pytest.fixture
def mu():
    return np.random.default_rng(0).standard_normal(DIM).astype(np.float32)


class _SystemCall:
    """Pickles as a call to os.system: loading it with np.load(allow_pickle=True) would run a shell."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Exec:
    """Pickles as a call to builtins.exec."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


@pytest.mark.parametrize("shape", [(DIM,), (1, DIM)])
def test_plain_npy(tmp_path, mu, shape):
    path = tmp_path / "p.npy"
    np.save(path, mu.reshape(shape))
    out = load_prior(path, DIM)
    assert out.dtype == np.float32 and out.shape == (DIM,)
    np.testing.assert_array_equal(out, mu)


def test_release_style_dict_npy(tmp_path, mu):
    path = tmp_path / "happy.npy"
    np.save(path, {"mu": mu.reshape(1, DIM)})  # what the authors ship: a pickled dict
    with pytest.raises(ValueError):  # really a pickle: NumPy's safe mode refuses it
        np.load(path, allow_pickle=False)
    out = load_prior(path, DIM)
    assert out.dtype == np.float32 and out.shape == (DIM,)
    np.testing.assert_array_equal(out, mu)


def test_release_style_with_variance_and_float64(tmp_path, mu):
    path = tmp_path / "sad.npy"
    var = np.linspace(0.1, 1.0, DIM)
    np.save(path, {"mu": mu.astype(np.float64).reshape(1, DIM), "var": var.reshape(1, DIM)})
    prior = read_prior(path, DIM)
    np.testing.assert_array_equal(prior.mu, mu)
    np.testing.assert_allclose(prior.var, var.astype(np.float32))
    path2 = tmp_path / "sigma.npy"
    np.save(path2, {"mu": mu, "sigma": np.full(DIM, 2.0, np.float32)})
    np.testing.assert_array_equal(read_prior(path2, DIM).var, np.full(DIM, 4.0, np.float32))


def test_safetensors_and_json(tmp_path, mu):
    st = tmp_path / "p.safetensors"
    save_file({"mu": torch.from_numpy(mu).reshape(1, DIM), "var": torch.ones(DIM)}, str(st))
    np.testing.assert_array_equal(load_prior(st, DIM), mu)
    assert read_prior(st, DIM).var.tolist() == [1.0] * DIM
    as_dict = tmp_path / "d.json"
    as_dict.write_text(json.dumps({"mu": mu.tolist()}))
    np.testing.assert_array_equal(load_prior(as_dict, DIM), mu)
    as_list = tmp_path / "l.json"
    as_list.write_text(json.dumps([mu.tolist()]))
    np.testing.assert_array_equal(load_prior(as_list, DIM), mu)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"mu": np.full((1, DIM), np.nan, np.float32)}, "NaN or infinite"),
        ({"mu": np.full((1, DIM), np.inf, np.float32)}, "NaN or infinite"),
        ({"mu": np.zeros((1, DIM + 1), np.float32)}, f"shape (1, {DIM + 1}), expected ({DIM},) or (1, {DIM})"),
        ({"mu": np.zeros((2, DIM), np.float32)}, "shape (2, 16)"),
        ({"mu": np.zeros((1, DIM), np.int64)}, "dtype int64, expected floating point"),
        ({"mu": np.zeros(DIM, np.float32), "extra": 1}, "unexpected key 'extra'"),
        ({"sigma": np.zeros(DIM, np.float32)}, "no 'mu' entry"),
        ({"mu": "hello"}, "'mu' is a str"),
        ({"mu": np.zeros(DIM, np.float32), "var": -np.ones(DIM, np.float32)}, "negative"),
        (np.zeros(DIM + 3, np.float32), "shape (19,)"),
        (np.zeros(DIM, np.int32), "dtype int32"),
        (np.array([np.zeros(DIM)] * 2, dtype=object), "dtype object"),
    ],
)
def test_npy_refusals(tmp_path, content, message):
    path = tmp_path / "bad.npy"
    np.save(path, content, allow_pickle=True)
    with pytest.raises(InputError) as info:
        load_prior(path, DIM)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


@pytest.mark.parametrize(
    "payload",
    [
        lambda sentinel: _SystemCall(f"touch {sentinel}"),
        lambda sentinel: {"mu": _SystemCall(f"touch {sentinel}")},
        lambda sentinel: {"mu": _Exec(f"open({str(sentinel)!r}, 'w').close()")},
        lambda sentinel: [_Exec(f"open({str(sentinel)!r}, 'w').close()")],
    ],
    ids=["os.system", "os.system-in-dict", "builtins.exec-in-dict", "builtins.exec-in-list"],
)
def test_malicious_npy_never_runs(tmp_path, payload):
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "happy.npy"
    np.save(path, payload(sentinel), allow_pickle=True)
    with pytest.raises(UnsafeFileError) as info:
        load_prior(path, DIM)
    text = str(info.value)
    assert str(path) in text and "refusing to unpickle" in text and ("system" in text or "exec" in text)
    assert not sentinel.exists()


def test_raw_pickle_truncated_and_unknown_files(tmp_path, mu):
    sentinel = tmp_path / "SENTINEL"
    raw = tmp_path / "raw.npy"  # a bare pickle with an .npy name: refused without unpickling
    raw.write_bytes(pickle.dumps(_SystemCall(f"touch {sentinel}")))
    with pytest.raises(InputError, match="not a NumPy .npy file"):
        load_prior(raw, DIM)
    assert not sentinel.exists()

    good = tmp_path / "good.npy"
    np.save(good, {"mu": mu.reshape(1, DIM)})
    data = good.read_bytes()
    for cut in (5, 100, len(data) - 10):
        truncated = tmp_path / f"cut{cut}.npy"
        truncated.write_bytes(data[:cut])
        with pytest.raises(InputError, match=str(truncated.name)):
            load_prior(truncated, DIM)
    plain = tmp_path / "plain.npy"
    np.save(plain, mu)
    short = tmp_path / "short.npy"
    short.write_bytes(plain.read_bytes()[:-8])
    with pytest.raises(InputError, match="truncated or malformed"):
        load_prior(short, DIM)

    for name, content in (("p.pkl", b"x"), ("p.pt", b"x"), ("p", b"x")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match="unsupported emotion prior format"):
            load_prior(tmp_path / name, DIM)
    with pytest.raises(InputError, match="not found"):
        load_prior(tmp_path / "absent.npy", DIM)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_prior(bad_st, DIM)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"mu": [1, 2,')
    with pytest.raises(InputError, match="not valid JSON"):
        load_prior(bad_json, DIM)
    nan_json = tmp_path / "nan.json"
    nan_json.write_text("[" + ", ".join(["NaN"] * DIM) + "]")
    with pytest.raises(InputError, match="NaN"):
        load_prior(nan_json, DIM)
    bool_json = tmp_path / "bool.json"
    bool_json.write_text(json.dumps([True] * DIM))
    with pytest.raises(InputError, match="list of numbers"):
        load_prior(bool_json, DIM)


def test_read_npy_keeps_plain_structures(tmp_path):
    path = tmp_path / "nested.npy"
    value = {"mu": np.arange(3, dtype=np.float32), "meta": [1, 2.5, "x", (True, None)], "b": b"\x00"}
    np.save(path, value)
    out = read_npy(path)
    assert out["meta"] == [1, 2.5, "x", (True, None)] and out["b"] == b"\x00"
    np.testing.assert_array_equal(out["mu"], value["mu"])
