"""``dicetalk convert-official`` on a fake release at the ``tiny`` size."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dicetalk import EMOTIONS
from dicetalk.cli.main import main
from dicetalk.convert.official import TensorEntry, write_safetensors

SVD = "stable-video-diffusion-img2vid-xt"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(["convert-official", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *fragments: str) -> str:
    assert rc != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_nothing_written(dst: Path) -> None:
    assert not dst.exists()
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}.")]  # no temporary leftovers


def release_state(release: Path, name: str) -> dict[str, torch.Tensor]:
    return torch.load(release / "DICE-Talk" / name, weights_only=True)


def assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key].dtype == dtype, key
        assert torch.equal(actual[key], value.to(dtype)), key


def test_convert_writes_layout_and_every_component_loads_back(release, tmp_path, capsys):
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionModelWithProjection, WhisperModel

    from dicetalk.models.audio_encoder import load_audio_encoder
    from dicetalk.models.discriminator import EmotionDiscriminator
    from dicetalk.models.emotion_bank import EmotionBank
    from dicetalk.models.emotion_priors import EmotionPriors
    from dicetalk.models.mask_encoder import FaceMaskEncoder
    from dicetalk.models.token_projection import TokenProjection
    from dicetalk.models.unet import DiceTalkUNet

    dst = tmp_path / "weights"
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    assert rc == 0, err
    assert f"wrote {dst}" in out and "priors: 8 (angry, contempt" in out
    for line in ("unet", "mask_encoder", "audio_projection", "emotion_bank", "discriminator", "vae", "image_encoder", "audio_encoder"):
        assert f"  {line} " in out

    expected_dirs = {
        "unet", "mask_encoder", "audio_projection", "emotion_bank", "discriminator", "priors",
        "vae", "image_encoder", "feature_extractor", "scheduler", "audio_encoder", "audio_feature_extractor",
        "model_index.json",  # a complete release becomes a DiceTalkPipeline folder
    }  # fmt: skip
    assert {p.name for p in dst.iterdir()} == expected_dirs
    umask = os.umask(0o022)
    os.umask(umask)
    assert dst.stat().st_mode & 0o777 == 0o777 & ~umask  # readable like any folder, not a private temp dir
    assert (dst / "priors" / "happy.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask

    unet = DiceTalkUNet.from_pretrained(dst / "unet", torch_dtype=torch.float16)
    assert_same(unet.state_dict(), release_state(release, "unet.pth"), torch.float16)  # default: unet in float16
    pairs = [
        (FaceMaskEncoder, "mask_encoder", release_state(release, "pose_guider.pth")),
        (TokenProjection, "audio_projection", release_state(release, "audio_linear.pth")),
    ]
    emo = release_state(release, "emo_model.pth")
    pairs.append((EmotionBank, "emotion_bank", {k: v for k, v in emo.items() if not k.startswith("classifier.")}))
    pairs.append((EmotionDiscriminator, "discriminator", {k[len("classifier.") :]: v for k, v in emo.items() if k.startswith("classifier.")}))
    for cls, name, state in pairs:
        assert_same(cls.from_pretrained(dst / name).state_dict(), state, torch.float32)  # the rest: float32
        assert json.loads((dst / name / "config.json").read_text())["_class_name"] == cls.__name__
    assert unet.config.cross_attention_dim == 32 and tuple(unet.config.block_out_channels) == (32, 64)

    # Priors: one safetensors per emotion plus the pipeline's EmotionPriors table.
    table = EmotionPriors.from_pretrained(dst / "priors")
    assert table.emotions == EMOTIONS
    for i, emotion in enumerate(EMOTIONS):
        original = np.load(release / "examples" / "emo" / f"{emotion}.npy", allow_pickle=True).item()["mu"]  # trusted: we wrote it
        mu = load_file(dst / "priors" / f"{emotion}.safetensors")["mu"]
        assert mu.dtype == torch.float32 and mu.shape == (16,)
        assert torch.equal(mu, torch.from_numpy(original.reshape(16)))
        assert torch.equal(table.mu[i], mu)

    # Base components from the SVD and whisper folders.
    svd = release / SVD
    vae = AutoencoderKLTemporalDecoder.from_pretrained(dst / "vae", torch_dtype=torch.float16)
    assert_same(vae.state_dict(), AutoencoderKLTemporalDecoder.from_pretrained(svd / "vae").state_dict(), torch.float16)
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(dst / "image_encoder", dtype=torch.float16)
    assert_same(image_encoder.state_dict(), CLIPVisionModelWithProjection.from_pretrained(svd / "image_encoder").state_dict(), torch.float16)
    for folder, name in (("feature_extractor", "preprocessor_config.json"), ("scheduler", "scheduler_config.json")):
        assert (dst / folder / name).read_bytes() == (svd / folder / name).read_bytes()
    encoder = load_audio_encoder(dst / "audio_encoder")
    assert_same(encoder.state_dict(), WhisperModel.from_pretrained(release / "whisper-tiny").encoder.state_dict(), torch.float32)
    for folder in ("audio_encoder", "audio_feature_extractor"):
        written = json.loads((dst / folder / "preprocessor_config.json").read_text())
        assert written == json.loads((release / "whisper-tiny" / "preprocessor_config.json").read_text())


def test_check_writes_nothing(release, tmp_path, capsys):
    dst = tmp_path / "weights"
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny", "--check")
    assert rc == 0, err
    assert "check passed; nothing written" in out and "unet" in out and "priors: 8" in out
    assert_nothing_written(dst)
    rc, out, err = run_cli(capsys, release, "--config", "tiny", "--check")  # DST is optional with --check
    assert rc == 0 and "check passed" in out
    rc, out, err = run_cli(capsys, release, "--config", "tiny")
    assert_one_line_error(rc, err, "missing output folder DST")


def test_dtype_option_and_overwrite(release, tmp_path, capsys):
    from dicetalk.models.unet import DiceTalkUNet

    dst = tmp_path / "weights"
    dst.mkdir()
    (dst / "old.txt").write_text("old")
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny", "--dtype", "float32")
    assert_one_line_error(rc, err, "already exists", "--overwrite")
    assert (dst / "old.txt").exists()
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny", "--dtype", "float32", "--overwrite")
    assert rc == 0, err
    assert not (dst / "old.txt").exists()
    assert_same(DiceTalkUNet.from_pretrained(dst / "unet").state_dict(), release_state(release, "unet.pth"), torch.float32)
    vae = load_file(dst / "vae" / "diffusion_pytorch_model.safetensors")
    assert all(t.dtype == torch.float32 for t in vae.values())
    rc, out, err = run_cli(capsys, release, tmp_path / "bf", "--config", "tiny", "--dtype", "bfloat16", "--check")
    assert rc == 0, err
    rc, out, err = run_cli(capsys, release, tmp_path / "x", "--config", "tiny", "--dtype", "int8")
    assert_one_line_error(rc, err, "unknown dtype 'int8'")
    rc, out, err = run_cli(capsys, release, release / "DICE-Talk" / "..", "--config", "tiny", "--overwrite")
    assert_one_line_error(rc, err, "contains the release folder")
    assert (release / "DICE-Talk" / "unet.pth").exists()


def test_partial_unet_is_completed_from_the_base_svd_unet(release, tmp_path, capsys):
    from dicetalk.models.unet import DiceTalkUNet

    full = release_state(release, "unet.pth")
    processors = {k: v for k, v in full.items() if ".processor." in k}
    assert len(processors) == 32  # to_{k,v}_ip.{0,1} of the tiny UNet's 8 attn2 layers (128 at full size)
    # Any subset works; a weight present in unet.pth wins over the base.
    overridden = "conv_in.weight"
    partial = {**processors, overridden: full[overridden] + 1.0}
    torch.save(partial, release / "DICE-Talk" / "unet.pth")
    dst = tmp_path / "weights"
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    assert rc == 0, err
    n = len(partial)
    assert f"{n} from DICE-Talk/unet.pth, {len(full) - n} from {SVD}/unet/diffusion_pytorch_model.fp16.safetensors" in out
    expected = dict(full)
    expected[overridden] = partial[overridden]
    assert_same(DiceTalkUNet.from_pretrained(dst / "unet", torch_dtype=torch.float16).state_dict(), expected, torch.float16)

    # Without the base UNet the conversion stops, saying what is missing and where the base was looked for.
    shutil.rmtree(release / SVD / "unet")
    dst2 = tmp_path / "weights2"
    rc, out, err = run_cli(capsys, release, dst2, "--config", "tiny")
    assert_one_line_error(rc, err, f"holds {n} of the {len(full)} UNet weights", f"{len(full) - n} missing", "no base SVD UNet was found", "--svd")
    assert_nothing_written(dst2)


def test_base_unet_missing_weights_or_wrong_config(release, tmp_path, capsys):
    full = release_state(release, "unet.pth")
    torch.save({k: v for k, v in full.items() if ".processor." in k}, release / "DICE-Talk" / "unet.pth")
    base_file = release / SVD / "unet" / "diffusion_pytorch_model.fp16.safetensors"
    base = load_file(base_file)
    dropped = "mid_block.resnets.0.spatial_res_block.conv1.weight"
    assert dropped in base
    save_file({k: v for k, v in base.items() if k != dropped}, str(base_file))
    dst = tmp_path / "weights"
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    assert_one_line_error(rc, err, "1 UNet weights are in neither", repr(dropped))
    assert_nothing_written(dst)

    save_file({**base, dropped: torch.zeros(3, 3)}, str(base_file))
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    assert_one_line_error(rc, err, str(base_file), repr(dropped), "has shape (3, 3)")
    assert_nothing_written(dst)

    save_file(base, str(base_file))
    config_file = release / SVD / "unet" / "config.json"
    config = json.loads(config_file.read_text())
    config["cross_attention_dim"] = 1024
    config_file.write_text(json.dumps(config))
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    assert_one_line_error(rc, err, str(config_file), "cross_attention_dim is 1024", "tiny configuration needs 32")
    assert_nothing_written(dst)


def _drop(name, key):
    def edit(release):
        sd = release_state(release, name)
        del sd[key]
        torch.save(sd, release / "DICE-Talk" / name)

    return edit


def _add(name, key, value):
    def edit(release):
        sd = release_state(release, name)
        sd[key] = value
        torch.save(sd, release / "DICE-Talk" / name)

    return edit


def _reshape(name, key):
    def edit(release):
        sd = release_state(release, name)
        sd[key] = torch.zeros(sd[key].shape[0] + 1, *sd[key].shape[1:])
        torch.save(sd, release / "DICE-Talk" / name)

    return edit


def _retype(name, key):
    def edit(release):
        sd = release_state(release, name)
        sd[key] = sd[key].long()
        torch.save(sd, release / "DICE-Talk" / name)

    return edit


def _delete(name):
    return lambda release: (release / "DICE-Talk" / name).unlink()


def _truncate(name):
    def edit(release):
        path = release / "DICE-Talk" / name
        path.write_bytes(path.read_bytes()[:200])

    return edit


def _bad_prior(release):
    np.save(release / "examples" / "emo" / "happy.npy", {"mu": np.zeros((1, 32), np.float32)})


def _nan_prior(release):
    np.save(release / "examples" / "emo" / "sad.npy", {"mu": np.full((1, 16), np.nan, np.float32)})


def _duplicate_prior(release):
    shutil.copy(release / "examples" / "emo" / "fear.npy", release / "fear.npy")


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (_delete("audio_linear.pth"), ["audio_linear.pth is missing"]),
        (_reshape("pose_guider.pth", "conv_in.weight"), ["pose_guider.pth does not match", "'conv_in.weight' has shape (9, 3, 3, 3), expected (8, 3, 3, 3)", "1 wrong shape"]),
        (_add("emo_model.pth", "classifier.fc4.weight", torch.zeros(2)), ["emo_model.pth does not match", "unexpected key 'classifier.fc4.weight'", "1 unexpected"]),
        (_drop("emo_model.pth", "codebook.codebook.weight"), ["emo_model.pth does not match", "missing key 'codebook.codebook.weight'", "1 missing"]),
        (_drop("emo_model.pth", "classifier.fc3.bias"), ["missing key 'classifier.fc3.bias'"]),
        (_add("unet.pth", "conv_in.extra", torch.zeros(1)), ["unet.pth does not match", "unexpected key 'conv_in.extra'"]),
        (_add("audio_linear.pth", "epoch", 3), ["audio_linear.pth: entry 'epoch' is a int, not a tensor"]),
        (_retype("audio_linear.pth", "proj1.weight"), ["'proj1.weight' has dtype int64, expected floating point", "1 wrong dtype"]),
        (_truncate("emo_model.pth"), ["emo_model.pth: not a readable PyTorch checkpoint"]),
        (_bad_prior, ["happy.npy: 'mu' has shape (1, 32), expected (16,) or (1, 16)"]),
        (_nan_prior, ["sad.npy: 'mu' contains NaN"]),
        (_duplicate_prior, ["two priors for 'fear'"]),
    ],
    ids=["missing-file", "wrong-shape", "extra-key", "missing-key", "missing-classifier-key", "extra-unet-key",
         "non-tensor", "int-tensor", "truncated", "prior-size", "prior-nan", "prior-duplicate"],  # fmt: skip
)
def test_bad_release_gives_one_clear_line_and_writes_nothing(release, tmp_path, capsys, edit, fragments):
    edit(release)
    dst = tmp_path / "weights"
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    assert_one_line_error(rc, err, *fragments)
    assert_nothing_written(dst)


class _SystemCall:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Exec:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        import builtins

        return (builtins.exec, (self.code,))


@pytest.mark.parametrize("kind", ["system", "exec"])
def test_malicious_prior_in_release_is_refused(release, tmp_path, capsys, kind):
    sentinel = tmp_path / "SENTINEL"
    payload = _SystemCall(f"touch {sentinel}") if kind == "system" else _Exec(f"open({str(sentinel)!r}, 'w').close()")
    np.save(release / "examples" / "emo" / "angry.npy", {"mu": payload}, allow_pickle=True)
    dst = tmp_path / "weights"
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    line = assert_one_line_error(rc, err, "angry.npy", "refusing to unpickle")
    assert ("system" in line) if kind == "system" else ("builtins.exec" in line)
    assert not sentinel.exists()
    assert_nothing_written(dst)


def test_malicious_checkpoint_is_refused(release, tmp_path, capsys):
    sentinel = tmp_path / "SENTINEL"
    sd = release_state(release, "pose_guider.pth")
    sd["conv_in.weight"] = _SystemCall(f"touch {sentinel}")
    torch.save(sd, release / "DICE-Talk" / "pose_guider.pth")
    dst = tmp_path / "weights"
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    assert_one_line_error(rc, err, "pose_guider.pth: refusing to load", "system")
    assert not sentinel.exists()
    assert_nothing_written(dst)


def test_unrecognised_prior_names_are_reported_not_read(release, tmp_path, capsys):
    sentinel = tmp_path / "SENTINEL"
    np.save(release / "examples" / "emo" / "calm.npy", {"mu": _SystemCall(f"touch {sentinel}")}, allow_pickle=True)
    (release / "examples" / "emo" / "surprised.npy").rename(release / "examples" / "emo" / "Surprise.npy")  # alias
    (release / "examples" / "emo" / "contempt.npy").unlink()
    rc, out, err = run_cli(capsys, release, "--config", "tiny", "--check")
    assert rc == 0, err
    assert "calm.npy: 'calm' is not an emotion name" in out
    assert "no prior for contempt" in out
    assert "priors: 7 (angry, disgusted, fear, happy, neutral, sad, surprised)" in out
    assert not sentinel.exists()


def test_release_files_directly_in_src_and_extra_priors_folder(release, tmp_path, capsys):
    """SRC may also be the DICE-Talk folder itself, with SVD, whisper and priors given explicitly."""
    extra = tmp_path / "emo"
    shutil.move(release / "examples" / "emo", extra)
    (extra / "happy.npy").unlink()
    (extra / "happy.json").write_text(json.dumps({"mu": [0.5] * 16}))
    dst = tmp_path / "weights"
    rc, out, err = run_cli(
        capsys, release / "DICE-Talk", dst, "--config", "tiny",
        "--svd", release / SVD, "--whisper", release / "whisper-tiny", "--priors", extra,
    )  # fmt: skip
    assert rc == 0, err
    assert "32 from unet.pth" not in out and "456 from unet.pth" in out
    assert load_file(dst / "priors" / "happy.safetensors")["mu"].tolist() == [0.5] * 16
    assert (dst / "vae").is_dir() and (dst / "audio_encoder").is_dir()


def test_missing_optional_folders_are_noted(release, tmp_path, capsys):
    shutil.rmtree(release / SVD)
    shutil.rmtree(release / "whisper-tiny")
    dst = tmp_path / "weights"
    rc, out, err = run_cli(capsys, release, dst, "--config", "tiny")
    assert rc == 0, err
    assert "note: no base SVD folder" in out and "note: no Whisper folder" in out
    # Without SVD and whisper: the DICE-Talk parts and a default scheduler, but no pipeline index.
    assert {p.name for p in dst.iterdir()} == {"unet", "mask_encoder", "audio_projection", "emotion_bank", "discriminator", "priors", "scheduler"}
    rc, out, err = run_cli(capsys, release, "--check", "--config", "tiny", "--svd", tmp_path / "nowhere")
    assert_one_line_error(rc, err, "--svd folder", "nowhere does not exist")
    rc, out, err = run_cli(capsys, tmp_path / "absent", "--check", "--config", "tiny")
    assert_one_line_error(rc, err, "release folder", "absent does not exist")
    rc, out, err = run_cli(capsys, release, "--check", "--config", "huge")
    assert_one_line_error(rc, err, "unknown model configuration 'huge'")


def test_streaming_writer_round_trips_every_dtype(tmp_path):
    tensors = {
        "a": torch.randn(3, 5),
        "b": torch.randn(7).to(torch.bfloat16),
        "c": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "d": torch.tensor(2.5, dtype=torch.float64),
        "e": torch.randn(4, 6)[:, ::2],  # not contiguous
        "f": torch.zeros(0, 3),
    }
    entries = [TensorEntry(k, tuple(v.shape), v.dtype, (lambda v=v: v), "test") for k, v in tensors.items()]
    entries.append(TensorEntry("g", (3, 5), torch.float16, lambda: tensors["a"], "test"))
    path = tmp_path / "x.safetensors"
    write_safetensors(path, entries)
    loaded = load_file(path)
    assert set(loaded) == set(tensors) | {"g"}
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v), k
    assert torch.equal(loaded["g"], tensors["a"].half())


def test_generate_loads_the_release_folder_directly(release, tmp_path, monkeypatch):
    """--weights may point at the authors' layout: it is converted once (cached) and loaded."""
    import numpy as np

    from dicetalk.pipeline.loading import load_pipeline

    monkeypatch.setenv("DICETALK_CACHE", str(tmp_path / "cache"))
    pipe = load_pipeline(release)
    pipe.set_progress_bar_config(disable=True)
    assert sorted(pipe.priors.emotions) == sorted(["angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised"])
    rng = np.random.default_rng(0)
    from dicetalk.pipeline.recipe import RELEASE

    assert pipe.recipe == RELEASE.replace(fps=12.5, interpolation=1)  # the release's recipe; no RIFE here: 12.5 fps out
    assert pipe.unet.config.masked_condition_attention is False  # a tiny-configuration release: the tiny UNet's layout
    out = pipe(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), rng.standard_normal(4000).astype(np.float32),
               pipe.priors.prior("angry")[None].expand(5, -1), num_inference_steps=1, height=32, width=32)
    assert out.frames.shape == (5, 32, 32, 3) and out.fps == 12.5
    converted = list((tmp_path / "cache" / "converted").iterdir())
    assert len(converted) == 1 and (converted[0] / "model_index.json").is_file()
    load_pipeline(release)  # the second load reuses the conversion
    assert list((tmp_path / "cache" / "converted").iterdir()) == converted
