"""Entry point of the ``dicetalk`` command.

Commands are registered from their own modules; heavy imports (torch, diffusers) happen
inside the commands so that ``dicetalk --help`` stays fast. Errors a user can fix
(:class:`~dicetalk.errors.DiceTalkError`) print one line and exit non-zero.
"""

from __future__ import annotations

import sys

import typer

try:  # recent typer bundles its own click; its exceptions are not click's
    from typer._click.exceptions import ClickException, UsageError
    from typer.exceptions import Abort, Exit
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import Abort, ClickException, Exit, UsageError

from ..errors import DiceTalkError
from ..pipeline.options import SEED_MAX

app = typer.Typer(
    name="dicetalk",
    help="DICE-Talk: a talking-head video from one portrait, a speech recording and an emotion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is plain text: rich markup read ":b:" in "a:b:c" as an emoji and "[lo:hi]" as a tag
    context_settings={"help_option_names": ["-h", "--help"]},
)


def seed_option(help: str = "Random seed: the same seed gives the same result."):
    """``--seed``: one range, 0..2**63-1, in every command (and the page, and GenerateOptions)."""
    return typer.Option(0, min=0, max=SEED_MAX, help=f"{help} 0..2**63-1.")


@app.callback()
def _root() -> None:
    """DICE-Talk: a talking-head video from one portrait, a speech recording and an emotion."""


def _register_commands() -> None:
    # Each module adds its commands to `app` on import.
    from . import batch, convert, emotivetalk, evaluate, generate, info, render, synth, train, train_judges, ui  # noqa: F401


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that open outputs unwind (atomic writes leave no temp file)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    _register_commands()
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run(argv)
    except Terminated:
        print("error: terminated", file=sys.stderr)
        return 143
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str] | None) -> int:
    try:
        result = app(args=argv, prog_name="dicetalk", standalone_mode=False)
    except Exit as exc:
        return exc.exit_code
    except Abort:
        print("error: aborted", file=sys.stderr)
        return 130
    except UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "dicetalk"
        print(f"error: {exc.format_message()} (see '{where} --help')", file=sys.stderr)
        return exc.exit_code
    except ClickException as exc:
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
