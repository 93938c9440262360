"""The release's RIFE ``flownet.pkl``: safe conversion to ``frame_interpolator/``, alone and in convert-official."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dicetalk.cli.main import main
from dicetalk.convert.rife import convert_frame_interpolator
from dicetalk.errors import InputError, UnsafeFileError, WeightsError
from dicetalk.models.frame_interpolator import FrameInterpolator


@pytest.fixture(scope="module")
def release_state() -> dict[str, torch.Tensor]:
    """Random weights of the release's network, named as its DataParallel-saved checkpoint names them."""
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        names = {k: v.shape for k, v in FrameInterpolator().state_dict().items()}
    return {f"module.{k}": torch.randn(shape, generator=g) for k, shape in names.items()}


def write_pkl(path: Path, state) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir())


def test_fake_flownet_converts_and_loads_strictly(tmp_path, release_state):
    pkl = write_pkl(tmp_path / "RIFE" / "flownet.pkl", release_state)
    folder = convert_frame_interpolator(pkl, tmp_path / "out")
    assert folder == tmp_path / "out" / "frame_interpolator"
    assert {p.name for p in folder.iterdir()} == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert json.loads((folder / "config.json").read_text())["_class_name"] == "FrameInterpolator"
    written = load_file(folder / "diffusion_pytorch_model.safetensors")
    assert set(written) == {k[len("module.") :] for k in release_state}
    fresh = FrameInterpolator()
    fresh.load_state_dict(written, strict=True)
    loaded = FrameInterpolator.from_pretrained(folder)
    for key, value in release_state.items():
        assert written[key[len("module.") :]].dtype == torch.float32
        assert torch.equal(loaded.state_dict()[key[len("module.") :]], value), key
    with pytest.raises(InputError, match="already exists"):
        convert_frame_interpolator(pkl, tmp_path / "out")
    assert convert_frame_interpolator(pkl, tmp_path / "out", dtype=torch.float16, overwrite=True) == folder
    assert all(t.dtype == torch.float16 for t in load_file(folder / "diffusion_pytorch_model.safetensors").values())


class _Touch:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump", "system"])
def test_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path, release_state, how):
    sentinel = tmp_path / "SENTINEL"
    pkl = tmp_path / "flownet.pkl"
    if how == "torch.save":
        torch.save({**release_state, "module.block0.conv0.0.0.weight": _Touch(sentinel)}, pkl)
    elif how == "pickle.dump":  # a bare pickle, not torch's format
        pkl.write_bytes(pickle.dumps({"module.x": _Touch(sentinel)}))
    else:
        torch.save({"module.x": _System(f"touch {sentinel}")}, pkl)
    with pytest.raises(UnsafeFileError, match="refusing to load"):
        convert_frame_interpolator(pkl, tmp_path / "out")
    assert not sentinel.exists()
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    "content, fragment",
    [
        (lambda sd: {**sd, "module.epoch": 3}, "entry 'module.epoch' is a int, not a tensor"),
        (lambda sd: list(sd.values()), "holds a list, expected a state dict"),
        (lambda sd: {**sd, "module.block0.conv1.2.bias": torch.zeros(5)}, "'block0.conv1.2.bias' has shape (5,), expected (4,)"),
        (lambda sd: {k: v for k, v in sd.items() if k != "module.block2.conv2.1.weight"}, "missing key 'block2.conv2.1.weight'"),
        (lambda sd: {**sd, "module.contextnet.conv.weight": torch.zeros(1)}, "unexpected key 'contextnet.conv.weight'"),
        (lambda sd: {**sd, "module.block0.conv0.0.1.weight": torch.zeros(45, dtype=torch.int64)}, "'block0.conv0.0.1.weight' has dtype int64"),
        (lambda sd: {**sd, "block1.conv1.0.bias": torch.zeros(45)}, "two entries are named 'block1.conv1.0.bias'"),
    ],
    ids=["non-tensor", "not-a-dict", "wrong-shape", "missing", "extra", "int", "duplicate"],
)
def test_wrong_content_is_a_weights_error_naming_the_key(tmp_path, release_state, content, fragment):
    pkl = write_pkl(tmp_path / "flownet.pkl", content(dict(release_state)))
    with pytest.raises(WeightsError) as info:
        convert_frame_interpolator(pkl, tmp_path / "out")
    message = str(info.value)
    assert fragment in message and "\n" not in message and str(pkl) in message
    assert_nothing_written(tmp_path / "out")


def test_legacy_torch_format_is_read(tmp_path, release_state):
    pkl = tmp_path / "flownet.pkl"
    torch.save(release_state, pkl, _use_new_zipfile_serialization=False)  # what torch < 1.6 wrote
    folder = convert_frame_interpolator(pkl, tmp_path / "out")
    written = load_file(folder / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(written[k[len("module.") :]], v) for k, v in release_state.items())


def test_unprefixed_names_are_accepted(tmp_path, release_state):
    pkl = write_pkl(tmp_path / "flownet.pkl", {k[len("module.") :]: v for k, v in release_state.items()})
    folder = convert_frame_interpolator(pkl, tmp_path / "out")
    assert len(load_file(folder / "diffusion_pytorch_model.safetensors")) == len(release_state)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(["convert-official", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_convert_official_converts_the_releases_interpolator(release, tmp_path, capsys, release_state):
    rc, out, err = run_cli(capsys, release, "--config", "tiny", "--check")
    assert rc == 0, err
    assert f"note: no frame interpolator {release / 'RIFE' / 'flownet.pkl'}: frame_interpolator/ not written" in out

    write_pkl(release / "RIFE" / "flownet.pkl", release_state)
    rc, out, err = run_cli(capsys, release, "--config", "tiny", "--check")
    assert rc == 0, err
    n = sum(v.numel() for v in release_state.values())
    assert f"  frame_interpolator  {n:,}  float32  {len(release_state)} from RIFE/flownet.pkl" in out
    assert "no frame interpolator" not in out

    dst = tmp_path / "weights"
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    assert rc == 0, err
    loaded = FrameInterpolator.from_pretrained(dst / "frame_interpolator")
    for key, value in release_state.items():
        assert torch.equal(loaded.state_dict()[key[len("module.") :]], value), key
    assert (dst / "model_index.json").is_file()  # the pipeline folder is complete with or without it

    # The folder samples as the release does: 12.5 fps doubled by the interpolator, 2N - 1 frames at 25 fps.
    import numpy as np

    from dicetalk.pipeline.loading import load_pipeline
    from dicetalk.pipeline.recipe import RELEASE

    pipe = load_pipeline(dst)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.recipe == RELEASE and pipe.frame_interpolator is not None
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(6 * 1280).astype(np.float32)
    assert RELEASE.generated_frames(len(audio)) == 6
    out = pipe(rng.integers(0, 255, (40, 32, 3), dtype=np.uint8), audio, pipe.priors.prior("sad")[None].expand(6, -1),
               num_inference_steps=1, height=32, width=32)  # fmt: skip
    assert out.frames.shape == (11, 32, 32, 3) and out.fps == 25.0 and out.num_frames == 11


def test_convert_official_check_refuses_a_bad_interpolator(release, tmp_path, capsys, release_state):
    sentinel = tmp_path / "SENTINEL"
    write_pkl(release / "RIFE" / "flownet.pkl", {**release_state, "module.block0.conv0.0.0.bias": _Touch(sentinel)})
    rc, out, err = run_cli(capsys, release, "--config", "tiny", "--check")
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0 and len(lines) == 1 and "flownet.pkl: refusing to load" in lines[0]
    assert not sentinel.exists()

    write_pkl(release / "RIFE" / "flownet.pkl", {**release_state, "module.block_tea.conv1.2.weight": torch.zeros(45, 4, 3, 3)})
    dst = tmp_path / "weights"
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0 and len(lines) == 1 and "'block_tea.conv1.2.weight' has shape (45, 4, 3, 3), expected (45, 4, 4, 4)" in lines[0]
    assert not dst.exists()
