"""Every command's help renders as written: no emoji or markup accidents (issue 35)."""

import re
import unicodedata

import pytest

from dicetalk.cli.main import _register_commands, app, main

_register_commands()
COMMANDS = sorted(c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands)


def help_of(command, capsys) -> str:
    code = main([command, "--help"] if command else ["--help"])
    out = capsys.readouterr().out
    assert code == 0
    return out


def test_every_command_is_covered():
    assert {"generate", "ui", "evaluate", "train", "synth"} <= set(COMMANDS)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_has_no_emoji_or_markup(command, capsys):
    text = help_of(command, capsys)
    symbols = sorted({ch for ch in text if unicodedata.category(ch) == "So" or ord(ch) >= 0x1F000})
    assert not symbols, f"{command} --help shows {symbols}"
    assert not re.search(r"\[/?(bold|italic|red|green|blue|dim|b|i|u)\]", text), text
    whole = [line for line in text.splitlines() if not line.rstrip().endswith("...")]  # click cuts a command list's lines
    flat = " ".join(" ".join(whole).split())
    for opening, closing in ("()", "[]", "{}"):
        assert flat.count(opening) == flat.count(closing), f"{command} --help: unbalanced {opening}{closing}"
    assert flat.count("`") % 2 == 0, f"{command} --help: unbalanced backticks"


def test_colon_separated_examples_survive(capsys):
    """The defect of issue 35: `time_ids (a:b:c)` rendered as `time_ids (a🅱c)`."""
    flat = " ".join(help_of("generate", capsys).split())
    assert "time_ids (a:b:c)" in flat
    assert "guidance_interval (lo:hi)" in flat


def test_the_command_reference_page_is_current():
    """docs/cli.md is made from the commands' help; regenerate with `python -m dicetalk.cli.reference`."""
    from dicetalk.cli.reference import PAGE, cli_reference

    assert PAGE.read_text(encoding="utf-8") == cli_reference(), "docs/cli.md is stale: run `python -m dicetalk.cli.reference`"
