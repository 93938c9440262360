"""render-eval and embed: a model's outputs on held-out clips, in the form `evaluate` reads."""

import json

import numpy as np
import pytest

from dicetalk.cli.main import main
from dicetalk.errors import InputError
from dicetalk.evaluation.render import RenderOptions, embed_clips, render_autoencoder_set, render_evaluation_set


@pytest.fixture(scope="module")
def two_clip_world(tmp_path_factory):
    """Two identities, two emotions, two clips each: every clip has a same-emotion partner."""
    from dicetalk.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("world") / "w"
    generate_dataset(out, "tiny", seed=1, identities=2, hdtf_identities=0, emotions=("happy", "sad"), sentences=2, progress=False)
    return out


@pytest.fixture(scope="module")
def pipe():
    from dicetalk.pipeline.loading import build_random_pipeline

    p = build_random_pipeline("tiny")
    p.set_progress_bar_config(disable=True)
    return p


@pytest.mark.parametrize("mode", ["label", "reference", "other-identity"])
def test_render_writes_videos_with_sidecars(two_clip_world, pipe, tmp_path, mode):
    tiny_world = two_clip_world
    opts = RenderOptions(str(tiny_world), str(tmp_path), split=None, emotions=("happy", "sad"), mode=mode, recipe="steps=1", max_frames=12)
    videos = render_evaluation_set(opts, pipe=pipe, progress=False)
    assert len(videos) >= 2
    for v in videos:
        side = json.loads(v.with_suffix(".json").read_text())
        assert side["mode"] == mode and side["emotion"] in ("happy", "sad") and (tiny_world / f"{side['source']}.mp4").is_file()
        if mode != "label":
            ref = side["emotion_reference"]
            assert ref != side["source"] and f"/{side['emotion']}/" in ref
            same_person = ref.split("/")[1] == side["source"].split("/")[1]
            assert same_person == (mode == "reference")
    # Finished videos are kept on a second run (resumable).
    stamp = videos[0].stat().st_mtime_ns
    render_evaluation_set(opts, pipe=pipe, progress=False)
    assert videos[0].stat().st_mtime_ns == stamp


def test_autoencoder_round_trip_writes_the_clips_through_the_vae(two_clip_world, pipe, tmp_path):
    from dicetalk.evaluation.evaluate import collect_generated
    from dicetalk.utils.media import read_video

    opts = RenderOptions(str(two_clip_world), str(tmp_path), split=None, emotions=("happy",), max_frames=12)
    videos = render_autoencoder_set(opts, pipe=pipe, progress=False)
    assert len(videos) == 2  # one clip per (identity, emotion, level)
    for v in videos:
        side = json.loads(v.with_suffix(".json").read_text())
        assert side["mode"] == "autoencoder" and side["emotion"] == "happy"
        out = read_video(v)
        source = read_video(two_clip_world / f"{side['source']}.mp4", max_frames=12)
        assert out.frames.shape == (12, pipe.native_size, pipe.native_size, 3)
        assert out.audio is not None and abs(len(out.audio) - 12 / source.fps * 16000) < 1600
        # The random VAE does not reproduce the face: the frames are its decoding, not a copy.
        assert np.abs(out.frames.astype(float).mean() - source.frames.astype(float).mean()) > 1
    items, warnings = collect_generated(tmp_path, two_clip_world)
    assert len(items) == 2 and not warnings


def test_neutral_reference_frame_animates_the_persons_neutral_frame(tiny_world, pipe, tmp_path):
    from dicetalk.utils.media import read_video

    seen = []

    class Spy:  # the pipeline, recording the reference image of every call
        def __getattr__(self, name):
            return getattr(pipe, name)

        def __call__(self, image, *args, **kwargs):
            seen.append(np.asarray(image))
            return pipe(image, *args, **kwargs)

    opts = RenderOptions(str(tiny_world), str(tmp_path), split="train", emotions=("happy",), reference_frame="neutral", recipe="steps=1", max_frames=8)
    videos = render_evaluation_set(opts, pipe=Spy(), progress=False)
    assert videos and len(seen) == len(videos)
    for video, image in zip(videos, seen):
        side = json.loads(video.with_suffix(".json").read_text())
        person = side["source"].split("/")[1]
        assert side["reference_frame"].split("/")[1] == person and "/neutral/" in f"/{side['reference_frame']}/"
        neutral_first = read_video(tiny_world / f"{side['reference_frame']}.mp4", max_frames=1, with_audio=False).frames[0]
        own_first = read_video(tiny_world / f"{side['source']}.mp4", max_frames=1, with_audio=False).frames[0]
        assert np.array_equal(image, neutral_first) and not np.array_equal(image, own_first)
    with pytest.raises(InputError, match="reference frame"):
        render_evaluation_set(RenderOptions(str(tiny_world), str(tmp_path / "x"), reference_frame="smiling"), pipe=pipe, progress=False)


def test_rendered_set_is_scored_by_evaluate(tiny_world, pipe, tmp_path, capsys):
    render_evaluation_set(RenderOptions(str(tiny_world), str(tmp_path / "gen"), split="test", emotions=("happy",), recipe="steps=1", max_frames=12), pipe=pipe, progress=False)
    assert main(["evaluate", str(tmp_path / "gen"), "--reference", str(tiny_world), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["num_videos"] >= 1 and report["fsim"] is not None and report["sync_c"] is not None


def test_embed_modalities(tiny_world, pipe, tmp_path, capsys):
    both = embed_clips(str(tiny_world), pipe, split="train", modalities="both")
    video = embed_clips(str(tiny_world), pipe, split="train", modalities="video")
    assert both["embeddings"].shape == (len(both["labels"]), 16)
    assert not np.allclose(both["embeddings"], video["embeddings"])
    from dicetalk.evaluation.render import save_embeddings

    save_embeddings(both, tmp_path / "e.safetensors")
    assert main(["evaluate", "--embeddings", str(tmp_path / "e.safetensors"), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())
