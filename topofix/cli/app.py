"""The ``topofix`` command line (Typer).

Kept import-light on purpose: ``topofix --help`` and ``topofix check`` never
import torch (seconds of start-up on a laptop); commands import what they need
inside their function body.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from topofix._version import __version__
from topofix.cli.check_cmd import check_command
from topofix.cli.correct_cmd import correct_command
from topofix.cli.evaluate_cmd import evaluate_command
from topofix.cli.predict_cmd import predict_command
from topofix.cli.repair_cmd import repair_command
from topofix.cli.report_cmd import report_command

app = typer.Typer(
    name="topofix",
    help="Correct and check the topology of medical image segmentations "
    "(persistent-homology loss with a Betti-number prior, Clough et al. TPAMI 2022).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"topofix {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", "-V", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """Correct and check the topology of medical image segmentations."""


app.command("correct", no_args_is_help=True)(correct_command)
app.command("repair", no_args_is_help=True)(repair_command)
app.command("check", no_args_is_help=True)(check_command)
app.command("predict", no_args_is_help=True)(predict_command)
app.command("evaluate", no_args_is_help=True)(evaluate_command)
app.command("report", no_args_is_help=True)(report_command)


def main() -> None:
    """Console-script entry point: exit statuses kept and no Python traceback, whatever happens.

    SIGINT and SIGTERM raise :class:`topofix.batch.Interrupted` (not KeyboardInterrupt, which
    click would turn into "Aborted!" and status 1, the status of "prior not met"): a batch stops
    after journaling and reports; elsewhere the command ends with one line and 130 / 143. Any
    other unexpected error is one line and status 2.
    """
    import signal
    import sys

    from topofix.batch import Interrupted, install_interrupt_handlers

    install_interrupt_handlers()
    try:
        app()
    except Interrupted as stop:
        sys.stderr.write(f"interrupted by {stop.args[0]}\n")
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted by SIGINT\n")
        sys.exit(128 + signal.SIGINT)
    except Exception as exc:  # a bug: one line, not a traceback
        from topofix.errors import exception_line

        line = exception_line(exc, limit=200, mark=False, fallback=False)
        detail = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
        sys.stderr.write(f"error: internal error ({detail}); please report it with the command line\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
