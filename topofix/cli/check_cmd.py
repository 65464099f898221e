"""``topofix check``: the CLI layer over :func:`topofix.checking.check`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from topofix.cli import options
from topofix.cli.console import out, print_error, write_reports
from topofix.errors import TopofixError

CSV_FIELDS = ("path", "slice", "prior", "b0", "b1", "b2", "expected", "status", "empty", "error")
EXAMPLES = """
[bold]Examples[/]

  Betti numbers of every mask in a folder (no prior: just measure):
    [cyan]topofix check masks/[/]

  A folder written by topofix correct (its <stem>_original / <stem>_prob<L> files are skipped):
    [cyan]topofix check fixed/ --per-slice z -p 2=1,1[/]

  Myocardium (label 2) must be one ring; exit 1 if any mask breaks it:
    [cyan]topofix check masks/*.nii.gz --label 2 --betti 1,1[/]

  ACDC priors (1 RV, 2 MYO, 3 LV) on every short-axis slice of 3D stacks, JSON for a pipeline:
    [cyan]topofix check stacks/ --per-slice z -p 1=1,0 -p 2=1,1 -p 3=1,0 -p 1+3=2,0 --json qa.json[/]

[bold]Exit status[/]: 0 every prior met, 1 some prior not met, 2 some input unreadable or a usage error
(the other inputs are still checked and reported).
"""


def _fmt(values: Optional[tuple[int, ...]]) -> str:
    return "-" if values is None else ",".join(map(str, values))


def _common_folder(paths: list[str]) -> str:
    """The folder shared by every input (shown once in the title), or ''."""
    try:
        folder = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    except ValueError:
        return ""
    return folder if all(os.path.dirname(os.path.abspath(p)) == folder for p in paths) else ""


def _display(path: str, folder: str) -> str:
    if folder:
        return os.path.basename(path)
    rel = os.path.relpath(path) if os.path.isabs(path) or not path.startswith("<") else path
    return path if rel.startswith("..") else rel


def _prior_header(prior) -> str:
    return prior.name if prior.betti is None else f"{prior.name} = {prior.betti_spec}"


def _whole_cell(result) -> str:
    text = _fmt(result.betti)
    return {"pass": f"[green]{text}[/]", "fail": f"[bold red]{text}[/]"}.get(result.status, text)


def _slices_cell(rows) -> str:
    if len(rows) == 1 and rows[0].slice_index == 0 and not rows[0].empty:  # a 2D input
        return _whole_cell(rows[0])
    if rows[0].status == "measured":
        return " ".join(f"{r.slice_index}:{_fmt(r.betti)}" for r in rows if not r.empty) or "empty"
    ok = sum(r.status == "pass" for r in rows)
    empty = sum(r.status == "empty" for r in rows)
    failing = [r for r in rows if r.status == "fail"]
    text = f"[green]{ok} ok[/]" + (f" [dim]{empty} empty[/]" if empty else "")
    if failing:
        text += " [bold red]fail " + ", ".join(f"{r.slice_index}:({_fmt(r.betti)})" for r in failing) + "[/]"
    return text


def results_table(report) -> Table:
    """One row per input, one column per structure (prior)."""
    paths = report.paths
    folder = _common_folder(paths) if len(paths) > 1 and not paths[0].startswith("<") else ""
    title = "topofix check" + (f" in {escape(_display_path(folder))}" if folder else "")
    caption = f"connectivity {report.connectivity}"
    if report.per_slice:
        caption += f"; 3D stacks checked per slice along {report.per_slice} (slice:(betti))"
    has_prior = any(p.betti is not None for p in report.priors)
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("input", overflow="fold")
    for prior in report.priors:
        table.add_column(_prior_header(prior), justify="right" if not report.per_slice else "left")
    if has_prior:
        table.add_column("status")
    grouped: dict[str, dict[str, list]] = {}
    for r in report.results:
        grouped.setdefault(r.path, {}).setdefault(r.prior.name, []).append(r)
    for path, by_prior in grouped.items():
        cells = []
        for prior in report.priors:
            rows = by_prior[prior.name]
            cells.append(_slices_cell(rows) if report.per_slice else _whole_cell(rows[0]))
        if has_prior:
            failed = any(r.status == "fail" for rows in by_prior.values() for r in rows)
            cells.append("[bold red]FAIL[/]" if failed else "[green]pass[/]")
        table.add_row(escape(_display(path, folder)), *cells)
    return table


def _display_path(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _summary_line(report) -> str:
    s = report.summary
    unit = "slices" if report.per_slice else "checks"
    parts = [f"{s['checked']} mask(s) checked"]
    if any(p.betti is not None for p in report.priors):
        parts.append(
            f"{s['files_passed']} met every prior, {s['files_failed']} did not "
            f"({s['passed']} {unit} passed, {s['failed']} failed"
            + (f", {s['empty']} empty" if report.per_slice else "") + ")"
        )
    if s["unreadable"]:
        parts.append(f"{s['unreadable']} input(s) could not be read")
    return "; ".join(parts) + "."


def _csv_rows(report):
    for r in report.results:
        b = list(r.betti) + [None] * (3 - len(r.betti))
        yield {"path": r.path, "slice": r.slice_index, "prior": r.prior.name, "b0": b[0], "b1": b[1],
               "b2": b[2], "expected": None if r.expected is None else _fmt(r.expected),
               "status": r.status, "empty": r.empty, "error": None}
    for e in report.errors:
        yield {"path": e.path, "status": "error", "error": e.message}


def check_command(
    inputs: Annotated[list[str], typer.Argument(help="Mask files (label maps: NIfTI, MHA/MHD, NRRD, PNG, DICOM-SEG .dcm), folders or glob patterns. " + options.FOLDER_NOTE, show_default=False)],
    betti: options.Betti = None,
    label: options.Label = None,
    prior: options.PriorSpecs = None,
    connectivity: options.Connectivity = options.ConnectivityChoice.full,
    per_slice: options.PerSlice = None,
    empty: Annotated[
        options.EmptyChoice,
        typer.Option("--empty", case_sensitive=False,
                     help="With --per-slice: 'skip' reports slices where the structure is absent as empty; 'fail' counts them as failures."),
    ] = options.EmptyChoice.skip,
    json_path: Annotated[Optional[Path], typer.Option("--json", metavar="FILE", help="Write the full report as JSON.", rich_help_panel="Reports")] = None,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", metavar="FILE", help="Write one CSV row per input x slice x structure.", rich_help_panel="Reports")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing report files.", rich_help_panel="Reports")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table and no progress bar; errors and the summary line only.")] = False,
) -> None:
    """Count Betti numbers of segmentation masks and check them against a topological prior.

    Betti numbers: b0 components, b1 loops (2D holes, 3D tunnels), b2 cavities (3D). Without a
    prior, they are only measured. The image border counts as outside (a hole touching it is not a hole).
    """
    from topofix.atomic import refuse_existing
    from topofix.checking import check

    try:
        for path in (json_path, csv_path):
            if path is not None:
                refuse_existing(path, overwrite)
        report = check(
            inputs,
            prior or [],
            betti=betti,
            label=label,
            connectivity=connectivity.value,
            per_slice=None if per_slice is None else per_slice.value,
            empty=empty.value,
            progress=not quiet,
        )
    except TopofixError as error:
        print_error(str(error))
        raise typer.Exit(2) from None

    for failure in report.errors:
        print_error(failure.message)
    if not quiet and report.results:
        out.print(results_table(report))
    out.print(_summary_line(report))
    if not write_reports(json_path, report.to_dict(), csv_path, _csv_rows(report), CSV_FIELDS, overwrite):
        raise typer.Exit(2)
    raise typer.Exit(report.exit_code)


check_command.__doc__ = (check_command.__doc__ or "") + EXAMPLES
