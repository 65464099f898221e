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
app.command("check", no_args_is_help=True)(check_command)
app.command("predict", no_args_is_help=True)(predict_command)
app.command("evaluate", no_args_is_help=True)(evaluate_command)
app.command("report", no_args_is_help=True)(report_command)


def main() -> None:
    """Console-script entry point."""
    app()
