"""Terminal output shared by the commands: one console for results (stdout), one
for errors and progress (stderr), so that ``topofix check ... > table.txt`` keeps
errors visible and pipelines can parse stdout."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from topofix.atomic import atomic_write_text

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


# The library's messages name the Python API (``per_slice``, ``overwrite=True``...); on the
# command line the same hints must name the options. Each entry: the library's wording, the CLI's.
_CLI_WORDING: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bset per_slice to x, y or z"), "set --per-slice to x, y or z"),
    (re.compile(r"\bactivation='none'"), "--activation none"),
    (re.compile(r"\bdevice='cpu' or 'auto'"), "--device cpu or auto"),
    (re.compile(r"\buse patch_size or a smaller batch_size"), "use --patch-size"),
    (re.compile(r"\buse overwrite=True / --overwrite\b"), "use --overwrite"),
    (re.compile(r"\bin_channels is (\d+)"), r"the images have \1"),
)


def cli_wording(message: str) -> str:
    """``message`` with the library's Python names replaced by the command-line options."""
    for pattern, replacement in _CLI_WORDING:
        message = pattern.sub(replacement, message)
    return message


def print_error(message: str) -> None:
    """Print one error line (``error: <path>: <problem>``) to stderr, in the CLI's words.

    The message is escaped: file names may contain ``[...]``, which rich would
    read as markup.
    """
    err.print(f"[bold red]error:[/] {escape(cli_wording(message))}", markup=True, highlight=False)


def print_warning(message: str) -> None:
    """Print one warning line to stderr, in the CLI's words (escaped like :func:`print_error`)."""
    err.print(f"[yellow]warning:[/] {escape(cli_wording(message))}", markup=True, highlight=False)


def json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def csv_text(rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k) for k in fieldnames})
    return buffer.getvalue()


def write_json(path: Path, data: Any, overwrite: bool) -> Path:
    return atomic_write_text(path, json_text(data), overwrite=overwrite)


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str], overwrite: bool) -> Path:
    return atomic_write_text(path, csv_text(rows, fieldnames), overwrite=overwrite)


def write_reports(json_path: Path | None, data: Any, csv_path: Path | None,
                  rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str], overwrite: bool) -> bool:
    """Write the ``--json``/``--csv`` reports a batch command asked for.

    Returns False (after printing the one-line error) when one could not be
    written: the command then exits with status 2.
    """
    from topofix.errors import TopofixError

    try:
        if json_path is not None:
            write_json(json_path, data, overwrite)
            err.print(f"JSON report: {escape(str(json_path))}")
        if csv_path is not None:
            write_csv(csv_path, rows, fieldnames, overwrite)
            err.print(f"CSV report: {escape(str(csv_path))}")
    except (TopofixError, OSError) as error:
        print_error(str(error))
        return False
    return True
