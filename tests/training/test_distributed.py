"""Distributed training: ``dicetalk train`` under ``accelerate launch`` with two CPU processes (gloo).

accelerate 1.15's ``--cpu`` flag runs a single process whatever ``--num_processes`` says (its
simple launcher), so two CPU processes are launched as accelerate documents multi-process runs
(``--multi_gpu --num_processes 2``, i.e. torchrun) with ``ACCELERATE_USE_CPU=1``: each process
then sets up ``MULTI_CPU`` with the gloo backend. ``DICETALK_LOG_SAMPLES=1`` has every process
record the dataset indices its sampler drew (``RUN/logs/samples_rank<R>.jsonl``).
"""

import json
import os
import subprocess
import sys

import pytest

from dicetalk.training.common import SAMPLE_LOG_ENV


@pytest.fixture(scope="module")
def parts(tiny_world, tmp_path_factory):
    """Backbone and embedder of the tiny configuration (a few steps each) and their frozen features, cached."""
    from dicetalk.data.cache import build_frame_cache
    from dicetalk.data.index import scan
    from dicetalk.training.assemble import load_backbone, load_embedder, prepare_features
    from dicetalk.training.backbone import BackboneOptions, pretrain_backbone
    from dicetalk.training.embedder import EmbedderOptions, train_embedder

    root = tmp_path_factory.mktemp("distributed")
    cache = build_frame_cache(scan(tiny_world, splits=("train",)), 32, root / "cache", progress=False)
    steps = {"vae": 1, "audio_encoder": 1, "image_encoder": 1, "expression_encoder": 1}
    pretrain_backbone(BackboneOptions(str(tiny_world), str(root / "backbone"), config="tiny", steps=steps), cache)
    backbone = load_backbone(root / "backbone")
    from dicetalk.data.features import audio_hidden_states
    from dicetalk.models.audio_encoder import whisper_feature_extractor

    hidden = audio_hidden_states(cache, backbone["audio_encoder"], whisper_feature_extractor(backbone["audio_encoder"].config), progress=False)
    train_embedder(EmbedderOptions(str(tiny_world), str(root / "embedder"), str(root / "backbone"), config="tiny", steps=1, groups=4, window=16), cache, hidden)
    embedder, _ = load_embedder(root / "embedder")
    prepare_features(cache, backbone, embedder, progress=False)  # cached beside the frames: both processes read them
    return root


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world, parts, out, steps: int, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", SAMPLE_LOG_ENV: "1", "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "dicetalk", "train", str(world), "--backbone", str(parts / "backbone"), "--embedder", str(parts / "embedder"),
        "--config", "tiny", "--out", str(out), "--steps", str(steps), "--batch", "2", "--frames", "4", "--warmup", "1",
        "--save-every", "2", "--cache-dir", str(parts / "cache"), "--threads", "1", *extra,
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _draws(out) -> dict[int, dict[int, list[int]]]:
    """rank -> step -> the dataset indices that process drew."""
    draws: dict[int, dict[int, list[int]]] = {}
    for rank in (0, 1):
        for line in (out / "run" / "logs" / f"samples_rank{rank}.jsonl").read_text().splitlines():
            entry = json.loads(line)
            assert entry["rank"] == rank and entry["world"] == 2
            draws.setdefault(rank, {})[entry["step"]] = entry["indices"]
    return draws


def test_two_processes_train_on_different_data_checkpoint_and_resume(tiny_world, parts, tmp_path):
    out = tmp_path / "ddp"
    first = _launch(tiny_world, parts, out, 2)
    assert first.returncode == 0, first.stderr[-3000:]
    run = out / "run"
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000002"
    assert (run / "checkpoints" / "step_0000002" / "unet").is_dir() and (run / "checkpoints" / "step_0000002" / "optimizer.safetensors").is_file()
    draws = _draws(out)
    assert sorted(draws[0]) == sorted(draws[1]) == [0, 1]
    for step in (0, 1):  # each step, the two processes read different windows: together, one global batch
        assert len(draws[0][step]) == len(draws[1][step]) == 2
        assert not set(draws[0][step]) & set(draws[1][step])
        assert sorted(draws[0][step] + draws[1][step]) == list(range(4 * step, 4 * step + 4))

    again = _launch(tiny_world, parts, out, 4, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000004"
    draws = _draws(out)
    assert sorted(draws[0]) == sorted(draws[1]) == [0, 1, 2, 3]  # resumed at step 2, not from the start
    all_indices = [i for rank in (0, 1) for step in draws[rank].values() for i in step]
    assert len(all_indices) == len(set(all_indices)) == 16  # no window drawn twice, by either process, across the resume
    assert (out / "model" / "model_index.json").is_file()
