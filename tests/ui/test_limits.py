"""The page bounds what a job costs, whichever field asks for it (issue 37): checked on the final recipe."""

from types import SimpleNamespace

import pytest

from dicetalk.pipeline.recipe import SamplingRecipe
from dicetalk.ui.app import CostLimits, DiceTalkUI, Rejected, UISettings

OWN = SamplingRecipe(steps=8, overlap=0, fps=25.0, decode_chunk=8)  # the embedded default model's kind of recipe


def page(**settings):
    """What DiceTalkUI._check_recipe reads, around a fake pipeline of native size 64 and 16-frame windows."""
    pipe = SimpleNamespace(recipe=OWN, native_size=64, window=16)
    ui = SimpleNamespace(pipe=pipe, limits=CostLimits.of(UISettings(**settings), pipe))
    return lambda spec, steps=8: DiceTalkUI._check_recipe(ui, spec, steps)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("size=4096,decode_chunk=100000", "recipe: size 4096 is over this server's limit of 64 pixels (--max-size)"),
        ("decode_chunk=100000", "recipe: decode_chunk 100000 is over this server's limit of 8 frames (--max-decode-chunk)"),
        ("fps=60", "recipe: fps 60 is over this server's limit of 25 frames per second (--max-fps)"),
        ("release", "recipe: size 512 is over this server's limit of 64 pixels (--max-size)"),
        ("overlap=15", "recipe: overlap 15 is over this server's limit of 8 frames (half a window)"),
    ],
)
def test_a_recipe_over_a_limit_is_refused(spec, message):
    with pytest.raises(Rejected) as caught:
        page()(spec)
    assert caught.value.message == message and caught.value.field == "recipe"


def test_steps_in_the_recipe_box_do_not_pass_the_limit():
    """The slider's steps override the recipe's; what runs is checked, so steps=500 in the box is harmless."""
    check = page(max_steps=10)
    assert check("steps=500", steps=8) == "steps=500"
    with pytest.raises(Rejected, match=r"steps 12 is over this server's limit of 10 \(--max-steps\)"):
        check("", steps=12)


def test_the_model_recipe_itself_is_checked_against_an_operator_limit_below_it():
    with pytest.raises(Rejected, match="size 64 is over this server's limit of 32 pixels"):
        page(max_size=32)("")


def test_recipes_within_the_limits_pass_and_operators_can_raise_them():
    assert page()("") is None
    assert page()("size=48,fps=12.5,decode_chunk=4,overlap=8,interpolation=2") == "size=48,fps=12.5,decode_chunk=4,overlap=8,interpolation=2"
    assert page(max_size=512, max_fps=30, max_decode_chunk=16)("release,decode_chunk=16,fps=30") == "release,decode_chunk=16,fps=30"


def test_the_limits_are_documented_in_ui_help(capsys):
    from dicetalk.cli.main import main

    assert main(["ui", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--max-size", "--max-fps", "--max-decode-chunk", "--max-steps", "--max-audio-seconds", "--max-upload-mb"):
        assert flag in text
    assert "checked on the job's final recipe before it joins the queue" in text


def test_the_page_states_the_limits():
    limits = CostLimits(steps=50, size=64, native_size=64, fps=25.0, decode_chunk=8, window=16)
    assert limits.describe() == "at most 50 steps, 64 px frames, 25 frames per second, decoding 8 frames at a time"
