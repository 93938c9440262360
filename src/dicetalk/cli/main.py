"""Entry point of the ``dicetalk`` command.

Commands are registered from their own modules; heavy imports (torch, diffusers) happen
inside the commands so that ``dicetalk --help`` stays fast. Errors a user can fix
(:class:`~dicetalk.errors.DiceTalkError`) print one line and exit non-zero.
"""

from __future__ import annotations

import sys

import click
import typer

from ..errors import DiceTalkError

app = typer.Typer(
    name="dicetalk",
    help="DICE-Talk: a talking-head video from one portrait, a speech recording and an emotion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """DICE-Talk: a talking-head video from one portrait, a speech recording and an emotion."""


def _register_commands() -> None:
    # Each module adds its commands to `app` on import.
    from . import convert, generate, info  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    _register_commands()
    try:
        result = app(args=argv, prog_name="dicetalk", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        print("error: aborted", file=sys.stderr)
        return 130
    except click.exceptions.ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except DiceTalkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
