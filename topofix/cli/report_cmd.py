"""``topofix report``: the HTML report of a ``topofix correct`` run, from its JSON report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from topofix.cli.console import err, out, print_error
from topofix.errors import TopofixError

EXAMPLES = """
[bold]Examples[/]

  The report of a finished run, beside its JSON (fixed/topofix_report.html):
    [cyan]topofix report fixed/topofix_report.json[/]

  The shards of a cluster run (topofix correct ... --shard K/N), merged into one report:
    [cyan]topofix report fixed/ --merge[/]

  Elsewhere, replacing an earlier one; the masks are read from fixed/:
    [cyan]topofix report fixed/topofix_report.json -o qa/run3.html --overwrite[/]

[bold]What it reads[/]: the JSON report (never anything but JSON), the input scans at the paths it records (as given, else relative to the JSON's folder), the corrected masks (the input's name) and <stem>_original<ext> masks in --masks DIR (default: the JSON's folder). Anything missing is drawn without (the scan's section says what), with one warning line per problem.

[bold]Exit status[/]: 0 the HTML file was written (warnings included), 2 it was not (unreadable or invalid JSON, an existing output without --overwrite, a write error).
"""


def report_command(
    report_json: Annotated[Path, typer.Argument(help="topofix_report.json of a topofix correct run (or its folder).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="HTML file to write (default: topofix_report.html beside the JSON).", show_default=False)] = None,
    masks: Annotated[Optional[Path], typer.Option("--masks", metavar="DIR", help="Folder of the corrected and <stem>_original masks (default: the JSON's folder).", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing HTML file.")] = False,
    merge: Annotated[bool, typer.Option("--merge", help="REPORT_JSON is an output folder: merge every journal in it (the shards' of a --shard run, an interrupted run's) into its topofix_report.json and .csv first, then the HTML.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No warnings; errors and the result line only.")] = False,
) -> None:
    """Write a self-contained HTML report of a topofix correct run, from its JSON report.

    Summary, sortable table of the scans, and per scan the mask before/after on the image, the persistence diagrams and the loss curve. Works offline: pictures are embedded PNGs, no external scripts, fonts or styles.
    """
    from topofix.report import write_html_report

    try:
        if merge:
            from topofix.batch import report_from_journals
            from topofix.files import write_reports
            from topofix.outputs import report_paths

            folder = report_json if report_json.is_dir() else report_json.parent
            merged = report_from_journals(folder)
            json_file, csv_file, _ = report_paths(folder)
            write_reports(merged, json_file, csv_file, overwrite=overwrite)
            for warning in merged.warnings:
                err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
            out.print(f"merged {len(merged.cases)} case(s) from {merged.journal} into {json_file} and {csv_file}",
                      markup=False)
            report_json = json_file
        result = write_html_report(report_json, output, masks_dir=masks, overwrite=overwrite)
    except (TopofixError, OSError) as error:
        print_error(str(error))
        raise typer.Exit(2) from None
    if not quiet:
        for note in result.notes:
            err.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
    size = result.path.stat().st_size / 1e6 if result.path is not None else 0.0
    out.print(f"HTML report: {result.path} ({result.scans} scan(s), {result.images} picture(s), {size:.2f} MB)",
              markup=False)
    raise typer.Exit(0)


report_command.__doc__ = (report_command.__doc__ or "") + EXAMPLES
