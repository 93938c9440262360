"""The page bounds what a job costs, whichever field asks for it (issue 37): checked on the final recipe."""

from types import SimpleNamespace

import pytest

from dicetalk.pipeline.recipe import SamplingRecipe
from dicetalk.ui.app import CostLimits, DiceTalkUI, Rejected, UISettings

OWN = SamplingRecipe(steps=8, overlap=0, fps=25.0, decode_chunk=8)  # the embedded default model's kind of recipe


def page(interpolator=True, **settings):
    """What DiceTalkUI._check_recipe reads, around a fake pipeline of native size 64 and 16-frame windows."""
    pipe = SimpleNamespace(recipe=OWN, native_size=64, window=16, frame_interpolator=object() if interpolator else None)
    ui = SimpleNamespace(pipe=pipe, limits=CostLimits.of(UISettings(**settings), pipe))
    return lambda spec, steps=8: DiceTalkUI._check_recipe(ui, spec, steps)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("size=4096,decode_chunk=100000", "recipe: size 4096 is over this server's limit of 64 pixels (--max-size)"),
        ("decode_chunk=100000", "recipe: decode_chunk 100000 is over this server's limit of 8 frames (--max-decode-chunk)"),
        ("fps=60", "recipe: fps 60 is over this server's limit of 25 frames per second (--max-fps)"),
        ("fps=50,interpolation=2", "recipe: fps 50 is over this server's limit of 25 frames per second (--max-fps)"),  # output frames count
        ("release", "recipe: size 512 is over this server's limit of 64 pixels (--max-size)"),
        ("overlap=15", "recipe: overlap 15 is over this server's limit of 8 frames (half a window)"),
        # circular windows start window - overlap apart: overlap 15 would be a window per frame, 16 times the work
        ("windows=circular,overlap=15", "recipe: overlap 15 is over this server's limit of 8 frames (half a window)"),
        ("steps=500", "recipe: steps 500 is over this server's limit of 50 (--max-steps)"),
    ],
)
def test_a_recipe_over_a_limit_is_refused(spec, message):
    with pytest.raises(Rejected) as caught:
        page()(spec)
    assert caught.value.message == message and caught.value.field == "recipe"


def test_steps_in_the_recipe_box_are_refused_though_the_slider_is_within_the_limit():
    """The slider's steps override the box's, yet steps=500 there is refused: the visitor learns the limit."""
    check = page(max_steps=10)
    with pytest.raises(Rejected, match=r"^recipe: steps 500 is over this server's limit of 10 \(--max-steps\)$"):
        check("steps=500", steps=8)
    with pytest.raises(Rejected, match=r"steps 12 is over this server's limit of 10 \(--max-steps\)"):
        check("", steps=12)
    assert check("steps=10", steps=8) == "steps=10"


def test_the_limit_is_checked_on_the_merged_recipe():
    """A named recipe brings its own fields: `release` asks for 25 steps and 512 px."""
    check = page(max_steps=10, max_size=512, max_decode_chunk=10, max_fps=25)
    with pytest.raises(Rejected, match=r"^recipe: steps 25 is over this server's limit of 10 \(--max-steps\)$"):
        check("release")
    assert check("release,steps=8") == "release,steps=8"  # the slider's 8 steps run
    with pytest.raises(Rejected, match="size 512 is over this server's limit of 256 pixels"):
        page(max_size=256)("release,steps=8")


def test_heun_steps_count_twice():
    """Heun runs the model twice a step (once on the last): 30 of them cost 59 passes."""
    message = r"^recipe: 30 heun steps are 59 denoiser passes, over this server's limit of 50 \(--max-steps; heun's steps count twice\)$"
    with pytest.raises(Rejected, match=message):
        page()("sampler=heun", steps=30)
    assert page()("sampler=heun", steps=25) == "sampler=heun"  # 49 passes


def test_interpolation_without_an_interpolator_is_refused_before_the_queue():
    with pytest.raises(Rejected, match=r"interpolation 2 needs a frame interpolator, and this server's model has none"):
        page(interpolator=False)("interpolation=2")


def test_the_model_recipe_itself_is_checked_against_an_operator_limit_below_it():
    with pytest.raises(Rejected, match="size 64 is over this server's limit of 32 pixels"):
        page(max_size=32)("")


def test_recipes_within_the_limits_pass_and_operators_can_raise_them():
    assert page()("") is None
    assert page()("size=48,fps=12.5,decode_chunk=4,overlap=8,interpolation=2") == "size=48,fps=12.5,decode_chunk=4,overlap=8,interpolation=2"
    assert page()("windows=circular,overlap=8,fps=25,interpolation=2") == "windows=circular,overlap=8,fps=25,interpolation=2"
    assert page(max_size=512, max_fps=30, max_decode_chunk=16)("release,decode_chunk=16,fps=30") == "release,decode_chunk=16,fps=30"


def test_the_limits_are_documented_in_ui_help(capsys):
    from dicetalk.cli.main import main

    assert main(["ui", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--max-size", "--max-fps", "--max-decode-chunk", "--max-steps", "--max-audio-seconds", "--max-upload-mb"):
        assert flag in text
    assert "checked on the job's final recipe before it joins the queue" in text
    assert "default: the model's own size" in text and "default: the model's own fps" in text
    assert "a heun step counts twice" in text


def test_the_page_states_the_limits():
    limits = CostLimits(steps=50, size=64, native_size=64, fps=25.0, decode_chunk=8, window=16)
    expected = "at most 50 steps (heun's count twice), 64 px frames, 25 frames per second, decoding 8 frames at a time, windows overlapping by 8 frames"
    assert limits.describe() == expected


def test_the_defaults_are_the_models_own():
    pipe = SimpleNamespace(recipe=SamplingRecipe(fps=12.5, decode_chunk=4), native_size=64, window=16)
    assert CostLimits.of(UISettings(), pipe) == CostLimits(steps=50, size=64, native_size=64, fps=12.5, decode_chunk=4, window=16)
    release = SimpleNamespace(recipe=SamplingRecipe(size=512, decode_chunk=10), native_size=576, window=25)
    assert (CostLimits.of(UISettings(), release).size, CostLimits.of(UISettings(), release).decode_chunk) == (512, 10)


def test_launch_passes_the_limits_through(monkeypatch):
    from dicetalk.ui import app

    monkeypatch.setattr(app.UIServer, "start", lambda self: self)  # no model, no server
    server = app.launch(block=False, max_steps=12, max_size=48, max_fps=20.0, max_decode_chunk=4, max_audio_seconds=9.0)
    assert (server.settings.max_steps, server.settings.max_size, server.settings.max_fps) == (12, 48, 20.0)
    assert (server.settings.max_decode_chunk, server.settings.max_audio_seconds) == (4, 9.0)
