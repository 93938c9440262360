"""`dicetalk download`: the authors' layout from hub repositories (a local mirror here, never the network)."""

from pathlib import Path


from dicetalk.cli.main import main
from dicetalk.convert.download import SOURCES, download_release


def _mirror(root: Path) -> Path:
    files = {
        "EEEELY/DICE-Talk": ["DICE-Talk/unet.pth", "DICE-Talk/pose_guider.pth", "DICE-Talk/audio_linear.pth", "DICE-Talk/emo_model.pth", "RIFE/flownet.pkl", "yoloface_v5m.pt"],
        "stabilityai/stable-video-diffusion-img2vid-xt": [
            "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
            "image_encoder/config.json", "image_encoder/model.fp16.safetensors", "feature_extractor/preprocessor_config.json",
            "scheduler/scheduler_config.json", "svd_xt.safetensors",
        ],
        "openai/whisper-tiny": ["config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5"],
    }  # fmt: skip
    for repo, names in files.items():
        for name in names:
            path = root / repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{repo}/{name}")
    return root


def test_download_from_a_mirror_writes_the_authors_layout_and_only_what_is_needed(tmp_path, capsys):
    mirror = _mirror(tmp_path / "mirror")
    assert main(["download", str(tmp_path / "ckpt"), "--mirror", str(mirror)]) == 0
    got = sorted(p.relative_to(tmp_path / "ckpt").as_posix() for p in (tmp_path / "ckpt").rglob("*") if p.is_file())
    assert "DICE-Talk/unet.pth" in got and "DICE-Talk/emo_model.pth" in got
    assert "stable-video-diffusion-img2vid-xt/unet/diffusion_pytorch_model.fp16.safetensors" in got
    assert "whisper-tiny/model.safetensors" in got
    assert "RIFE/flownet.pkl" in got  # the frame interpolator: a torch pickle, read only with weights_only=True
    # Nothing else unsafe or unneeded: no other pickles (face detector), no full-precision duplicates, no other frameworks.
    assert [g for g in got if g.endswith((".pkl", ".pt", ".bin", ".h5"))] == ["RIFE/flownet.pkl"]
    assert "stable-video-diffusion-img2vid-xt/unet/diffusion_pytorch_model.safetensors" not in got
    assert "stable-video-diffusion-img2vid-xt/svd_xt.safetensors" not in got


def test_download_calls_huggingface_hub_for_each_repository(tmp_path, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, local_dir, allow_patterns, revision):
        calls.append((repo_id, Path(local_dir), tuple(allow_patterns), revision))
        return local_dir

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    download_release(tmp_path / "ckpt", revision="main", progress=lambda *_: None)
    assert [c[0] for c in calls] == [s.repo_id for s in SOURCES]
    assert calls[0][1] == tmp_path / "ckpt" and calls[1][1] == tmp_path / "ckpt" / "stable-video-diffusion-img2vid-xt"
    assert all(c[3] == "main" for c in calls)
    assert "RIFE/flownet.pkl" in calls[0][2] and "DICE-Talk/*.pth" in calls[0][2]


def test_download_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["download", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["download", str(tmp_path / "ckpt"), "--mirror", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mirror has no repository folder" in err[0]
