"""The command line's contract: one error line and a non-zero exit for usage mistakes."""

import pytest

from dicetalk.cli.main import main


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuchcommand"], "No such command"),
        (["generate"], "Missing argument"),
        (["generate", "a.png", "b.wav", "--steps", "x"], "Invalid value for '--steps'"),
        (["info", "--config", "huge"], "unknown model configuration"),
    ],
)
def test_usage_errors_are_one_line(args, message, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("generate", "synth", "convert-official", "info"):
        assert command in out


def test_info_summarises_a_configuration(capsys):
    assert main(["info", "--config", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "DiceTalkUNet" in out and "EmotionBank" in out and "total" in out
