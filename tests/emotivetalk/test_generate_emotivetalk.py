"""`dicetalk generate ... --model emotivetalk` end to end on the tiny configuration, and its bad inputs."""

import json

import numpy as np
import pytest
import torch

from dicetalk.cli.main import main


@pytest.fixture(scope="module")
def reference_video(tmp_path_factory, speech_wav):
    from dicetalk.utils.media import read_audio, write_video

    path = tmp_path_factory.mktemp("ref") / "reference.mp4"
    frames = np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    write_video(path, frames, 25.0, audio=read_audio(speech_wav)[:16000])
    return path


def frames_of(path):
    from dicetalk.utils.media import read_video

    return read_video(path).frames


@pytest.mark.parametrize("emotion", [None, "happy:0.5", "video"])
def test_generate_emotivetalk_writes_the_video_with_its_speech(emotive_weights, portrait_png, speech_wav, reference_video, tmp_path, emotion):
    out = tmp_path / "out.mp4"
    args = ["generate", str(portrait_png), str(speech_wav), "-o", str(out), "--model", "emotivetalk", "--weights", str(emotive_weights), "--steps", "2"]
    if emotion is not None:
        args += ["--emotion", str(reference_video) if emotion == "video" else emotion]
    assert main(args) == 0
    from dicetalk.utils.media import read_video

    clip = read_video(out)
    assert len(clip.frames) == 50 and clip.audio is not None  # 2 s at 25 fps, with the speech muxed in


def test_same_seed_same_video_other_seed_other_trajectory(emotive_weights, portrait_png, speech_wav, tmp_path):
    base = ["generate", str(portrait_png), str(speech_wav), "--model", "emotivetalk", "--weights", str(emotive_weights), "--steps", "2"]
    paths = [tmp_path / f"{k}.mp4" for k in range(3)]
    for path, seed in zip(paths, (3, 3, 4)):
        assert main([*base, "-o", str(path), "--seed", str(seed)]) == 0
    a, b, c = (frames_of(p) for p in paths)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_pipeline_returns_its_trajectory_and_the_injection_changes_the_frames(emotive_weights, portrait_png):
    from dicetalk.pipeline.emotivetalk import load_emotivetalk_pipeline
    from dicetalk.pipeline.generate import portrait_for

    pipe = load_emotivetalk_pipeline(emotive_weights)
    pipe.set_progress_bar_config(disable=True)
    image = portrait_for(portrait_png, True, None).image
    t = np.arange(16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    recipe = pipe.recipe.replace(steps=2)
    run = lambda: pipe(image, audio, "surprised", recipe=recipe, generator=torch.Generator().manual_seed(0), output_type="latent")  # noqa: E731
    out = run()
    assert out.trajectory.shape == (25, 12) and out.lip_motion.shape == (25, 2) and out.portrait_expression.shape == (12,)
    assert out.frames.shape[0] == 25 and torch.isfinite(out.trajectory).all()
    pipe.register_to_config(emotivetalk={**pipe.config.emotivetalk, "injection": False})
    plain = run()
    torch.testing.assert_close(plain.trajectory, out.trajectory)  # the same trajectory, only the tokens differ
    assert not torch.equal(plain.frames, out.frames)


def test_unknown_model_is_one_line(emotive_weights, portrait_png, speech_wav, tmp_path, capsys):
    args = ["generate", str(portrait_png), str(speech_wav), "-o", str(tmp_path / "o.mp4"), "--model", "emotive", "--weights", str(emotive_weights)]
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown model 'emotive'" in err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("level, message", [(0.0, "audio is silent"), (3e-4, "takes the emotion from the voice")])
def test_speech_with_silent_audio_is_one_line(emotive_weights, portrait_png, tmp_path, capsys, level, message):
    from dicetalk.utils.media import write_audio

    quiet = tmp_path / "quiet.wav"
    write_audio(quiet, (level * np.random.default_rng(0).standard_normal(32000)).astype(np.float32), 16000)
    out = tmp_path / "o.mp4"
    assert main(["generate", str(portrait_png), str(quiet), "-o", str(out), "--model", "emotivetalk", "--weights", str(emotive_weights)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not out.exists()


def test_weights_without_emotivetalk_parts_and_bad_emotions_are_one_line(tiny_weights, emotive_weights, portrait_png, speech_wav, tmp_path, capsys):
    base = ["generate", str(portrait_png), str(speech_wav), "-o", str(tmp_path / "o.mp4"), "--model", "emotivetalk"]
    for args, message in (
        (["--weights", str(tiny_weights)], "no EmotiveTalk parts"),
        (["--weights", str(emotive_weights), "--emotion", "happy*0.5+sad"], "EmotiveTalk takes 'speech'"),
        (["--weights", str(emotive_weights), "--emotion", "happy:9"], "out of range"),
        (["--weights", str(emotive_weights), "--stream"], "--stream is not available with --model emotivetalk"),
        (["--weights", str(emotive_weights), "--performance", "warp_speed"], "unknown field 'warp_speed'"),
    ):
        assert main([*base, *args]) != 0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err


def test_the_embedded_model_ships_trained_emotivetalk_parts_in_float16(tmp_path, capsys):
    """The default model's emotivetalk/ folder: small, float16, loaded with no --weights, and it generates
    from the voice alone, saying what it read."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    from dicetalk.pipeline.emotivetalk import has_emotivetalk, parts_folder
    from dicetalk.utils.media import read_audio, read_video, write_audio

    folder = parts_folder(None)
    assert has_emotivetalk(None)
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 15 * 10**6
    for name in ("vaid", "dicte", "edi", "voice", "decoupler"):
        (weights,) = (folder / name).glob("*.safetensors")
        with safe_open(str(weights), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    settings = json.loads((folder / "emotivetalk.json").read_text())
    assert settings["decouple"]  # EDI's reference decoupler is on
    examples = Path(__file__).resolve().parents[2] / "examples"
    speech = tmp_path / "speech.wav"
    write_audio(speech, read_audio(examples / "speech.wav")[:16000], 16000)
    out = tmp_path / "out.mp4"
    args = ["generate", str(examples / "portrait.png"), str(speech), "-o", str(out), "--model", "emotivetalk", "--steps", "2", "--no-crop"]
    assert main(args) == 0, settings
    assert len(read_video(out).frames) == 25
    assert settings["speech_emotion"] == "read" and "the voice reads as" in capsys.readouterr().err


def _speech_pipe(weights, **settings):
    from dicetalk.pipeline.emotivetalk import load_emotivetalk_pipeline

    pipe = load_emotivetalk_pipeline(weights)
    pipe.set_progress_bar_config(disable=True)
    pipe.register_to_config(emotivetalk={**pipe.config.emotivetalk, **settings})
    return pipe


def _tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_speech_read_by_the_voice_renders_as_that_label_would(emotive_weights, portrait_png):
    """`speech_emotion=read`: the read-out names an emotion, and the video is exactly the one asked
    for that emotion at `speech_strength` with the same seed."""
    from dicetalk.pipeline.generate import portrait_for

    pipe = _speech_pipe(emotive_weights, speech_emotion="read", speech_strength=0.8)
    image, audio = portrait_for(portrait_png, True, None).image, _tone()
    recipe = pipe.recipe.replace(steps=2)
    run = lambda emotion: pipe(image, audio, emotion, recipe=recipe, generator=torch.Generator().manual_seed(3), output_type="latent")  # noqa: E731
    heard = run("speech")
    assert heard.voice_emotion in heard.voice_probabilities
    assert abs(sum(heard.voice_probabilities.values()) - 1) < 1e-4
    assert heard.voice_emotion == max(heard.voice_probabilities, key=heard.voice_probabilities.get)
    asked = run(f"{heard.voice_emotion}:0.8")
    assert asked.voice_emotion is None
    torch.testing.assert_close(heard.trajectory, asked.trajectory)
    torch.testing.assert_close(heard.frames, asked.frames)
    generated = _speech_pipe(emotive_weights, speech_emotion="generate")(image, audio, "speech", recipe=recipe, generator=torch.Generator().manual_seed(3), output_type="latent")
    assert generated.voice_emotion is None and not torch.equal(generated.trajectory, heard.trajectory)


def test_anchored_priors_hold_the_labels_prompt_prior_and_move_with_the_trajectory(emotive_weights):
    from dicetalk.pipeline.pipeline_emotivetalk import parse_request

    pipe = _speech_pipe(emotive_weights, anchor=True, motion_scale=1.0)
    trajectory = torch.randn(30, 12, generator=torch.Generator().manual_seed(0))
    request = parse_request("happy:0.6")
    priors = pipe.frame_priors(request, trajectory)
    level = pipe.priors.prior("happy", 0.6).float()
    torch.testing.assert_close(priors.mean(0), level, atol=1e-5, rtol=1e-5)
    assert priors.std(0).max() > 1e-3  # the trajectory moves it
    still = _speech_pipe(emotive_weights, anchor=True, motion_scale=0.0).frame_priors(request, trajectory)
    torch.testing.assert_close(still, level.expand_as(still))  # motion 0: DICE-Talk's prior on every frame
    free = _speech_pipe(emotive_weights, anchor=False).frame_priors(request, trajectory)
    torch.testing.assert_close(free, pipe.edi.emotion_prior(trajectory[None])[0].float())  # EDI's own priors


def test_settings_overrides_and_a_missing_voice_read_out_are_one_line_errors(emotive_weights, portrait_png, speech_wav, tmp_path, capsys):
    import shutil

    from dicetalk.errors import InputError
    from dicetalk.pipeline.pipeline_emotivetalk import EmotiveTalkSettings

    base = EmotiveTalkSettings()
    changed = base.overridden("anchor=true, motion_scale=0.5,speech_emotion=read")
    assert (changed.anchor, changed.motion_scale, changed.speech_emotion) == (True, 0.5, "read")
    for bad in ("anchr=true", "motion_scale=lots", "speech_emotion=guess", "speech_strength=9"):
        with pytest.raises(InputError):
            base.overridden(bad)
    weights = tmp_path / "novoice"
    shutil.copytree(emotive_weights, weights)
    shutil.rmtree(weights / "emotivetalk" / "voice")
    settings = weights / "emotivetalk" / "emotivetalk.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "speech_emotion": "read"}))
    out = tmp_path / "out.mp4"
    code = main(["generate", str(portrait_png), str(speech_wav), "-o", str(out), "--model", "emotivetalk", "--weights", str(weights), "--steps", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and not out.exists() and len(err) == 1 and "voice read-out" in err[0]
