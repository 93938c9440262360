"""The web UI's EmotiveTalk choice: the system and the emotion source, checked as `generate` checks them."""

import shutil

import numpy as np
import pytest


@pytest.fixture
def page(emotive_weights, tmp_path):
    from dicetalk.ui.app import DiceTalkUI, UISettings
    from dicetalk.ui.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    ui = DiceTalkUI(emotive_weights, "cpu", UISettings(max_steps=3, max_audio_seconds=10), workspace)
    yield ui
    ui.blocks.close(verbose=False)
    workspace.close()


def _uploaded(ui, *paths):
    folder = ui.workspace.gradio / "upload1"
    folder.mkdir(exist_ok=True)
    return [str(shutil.copy(p, folder / p.name)) for p in paths]


def _values(ui, image, audio, **changes):
    values = dict(
        image=image, audio=audio, emotion="happy", strength=1.0, reference=None, identity_scale=2.0, emotion_scale=4.0, steps=2, seed=0,
        crop=True, recipe="", model="EmotiveTalk", source="speech",
    )  # fmt: skip
    values.update(changes)
    return values


def test_the_page_maps_model_and_source_onto_generate(page, portrait_png, speech_wav, tmp_path):
    from dicetalk.ui.app import Rejected
    from dicetalk.utils.media import write_audio

    assert page.emotive is not None and page.emotive.vae is page.pipe.vae  # one set of components, two systems
    image, audio = _uploaded(page, portrait_png, speech_wav)
    checked = page.check(_values(page, image, audio), decode=True)
    assert (checked.model, checked.emotion) == ("emotivetalk", "speech")
    assert page.check(_values(page, image, audio, source="label", strength=0.5), decode=False).emotion == "happy:0.5"
    dice = page.check(_values(page, image, audio, model="DICE-Talk"), decode=False)
    assert (dice.model, dice.emotion) == ("dicetalk", "happy")
    quiet = tmp_path / "quiet.wav"
    write_audio(quiet, np.zeros(16000, np.float32) + 1e-4 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    (quiet_upload,) = _uploaded(page, quiet)
    for change, field, message in (
        (dict(source="video"), "reference", "upload a reference video"),
        (dict(source="vision"), "source", "unknown emotion source"),
        (dict(model="Other"), "model", "unknown model"),
        (dict(audio=quiet_upload), "audio", "from the voice"),
    ):
        with pytest.raises(Rejected) as info:
            page.check(_values(page, image, change.pop("audio", audio), **change), decode=True)
        assert info.value.field == field and message in info.value.message and "\n" not in info.value.message
    assert page.check(_values(page, image, quiet_upload, source="label"), decode=True).emotion == "happy"  # a label needs no voice


def test_the_page_renders_emotivetalk_from_the_speech(page, portrait_png, speech_wav):
    from dicetalk.utils.media import read_video

    image, audio = _uploaded(page, portrait_png, speech_wav)
    checked = page.check(_values(page, image, audio), decode=True)
    stages = []
    out = page._render(checked, None, lambda fraction, desc="": stages.append(desc))
    clip = read_video(out)
    assert len(clip.frames) == 50 and clip.audio is not None  # 2 s at 25 fps, with the speech
    assert stages[-1] == "done"


def test_a_model_without_emotivetalk_parts_offers_dice_talk_only(tiny_weights, portrait_png, speech_wav, tmp_path):
    from dicetalk.ui.app import DiceTalkUI, Rejected, UISettings
    from dicetalk.ui.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    ui = DiceTalkUI(tiny_weights, "cpu", UISettings(max_steps=3), workspace)
    try:
        assert ui.emotive is None
        image, audio = _uploaded(ui, portrait_png, speech_wav)
        assert ui.check(_values(ui, image, audio, model="DICE-Talk"), decode=False).model == "dicetalk"
        with pytest.raises(Rejected, match="no EmotiveTalk parts"):
            ui.check(_values(ui, image, audio), decode=False)
    finally:
        ui.blocks.close(verbose=False)
        workspace.close()
