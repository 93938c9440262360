"""Fixtures of the EmotiveTalk tests: a few ground-truth clips of people no shipped model or judge saw."""

import shutil
from pathlib import Path

import pytest

# `data/world` (seed 0) keeps mead_020..mead_023 out of every training run; an identity is a pure
# function of (world seed, index), so these clips show a held-out person of that world.
HELDOUT_SEED, HELDOUT_NAME, HELDOUT_INDEX = 0, "mead_023", 23
CLIPS = (("surprised", 3), ("happy", 3), ("neutral", 1))


@pytest.fixture(scope="session")
def heldout_clips(tmp_path_factory) -> dict[str, Path]:
    """emotion -> the mp4 of one 64 px clip of the held-out person (level 3; neutral at level 1)."""
    from dicetalk.synthetic.dataset import ClipJob, make_clip

    out = tmp_path_factory.mktemp("heldout_clips")
    clips = {}
    for k, (emotion, level) in enumerate(CLIPS):
        job = ClipJob(
            out_dir=str(out), relative=f"mead/{HELDOUT_NAME}/{emotion}/level_{level}/001", dataset="mead", seed=HELDOUT_SEED, size=64,
            identity_index=HELDOUT_INDEX, identity=HELDOUT_NAME, split="test", emotion=emotion, level=level, clip_number=1, sentence_ids=(k,),
        )  # fmt: skip
        make_clip(job)
        clips[emotion] = job.stem.with_suffix(".mp4")
    return clips


@pytest.fixture(scope="session")
def heldout_portrait(heldout_clips, tmp_path_factory) -> Path:
    """The first frame of the held-out person's neutral clip, as a png."""
    from PIL import Image

    from dicetalk.utils.media import read_video

    path = tmp_path_factory.mktemp("portrait") / "neutral.png"
    Image.fromarray(read_video(heldout_clips["neutral"], max_frames=1).frames[0]).save(path)
    return path


@pytest.fixture(scope="session")
def emotive_weights(tiny_weights, tmp_path_factory):
    """The tiny random DICE-Talk folder with random EmotiveTalk parts in emotivetalk/."""
    import torch

    from dicetalk.pipeline.emotivetalk import random_parts, save_parts
    from dicetalk.pipeline.loading import load_pipeline

    folder = tmp_path_factory.mktemp("emotive") / "tiny"
    shutil.copytree(tiny_weights, folder)
    parts = random_parts(load_pipeline(folder), seed=0)
    torch.nn.init.normal_(parts["edi"].delta_out.weight, std=0.05)  # a live injection, as after training
    save_parts(folder, **parts, settings={"trajectory_steps": 3}, dtype=torch.float32)
    return folder
