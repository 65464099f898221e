"""``topofix evaluate``: the CLI layer over :func:`topofix.evaluation.evaluate`."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from topofix.cli import options
from topofix.cli.console import out, print_error, write_reports
from topofix.errors import TopofixError

CSV_FIELDS = (
    "path", "gt", "source", "slice", "structure", "empty", "pred_voxels", "gt_voxels",
    "dice", "hd", "hd95", "assd",
    "b0_pred", "b1_pred", "b2_pred", "b0_gt", "b1_gt", "b2_gt",
    "betti_error_0", "betti_error_1", "betti_error_2", "betti_error",
    "betti_matching_error_0", "betti_matching_error_1", "betti_matching_error_2", "betti_matching_error",
    "vi", "error",
)
TABLE_METRICS = ("dice", "hd95", "assd", "betti_error", "betti_matching_error")
HEADERS = {"dice": "Dice", "hd": "HD", "hd95": "HD95", "assd": "ASSD", "betti_error": "Betti err",
           "betti_matching_error": "BM err", "vi": "VI"}

EXAMPLES = """
[bold]Examples[/]

  Every label of every prediction against the ground truth of the same name:
    [cyan]topofix evaluate preds/ --gt labels/[/]

  Myocardium and MYO+LV of ACDC (2 MYO, 3 LV), slice by slice, reports for a pipeline:
    [cyan]topofix evaluate preds/*.nii.gz --gt labels/ -p 2 -p 2+3 --per-slice z --json eval.json --csv eval.csv[/]

  Did topofix correct help? Corrected masks against the originals, paired (Wilcoxon):
    [cyan]topofix evaluate corrected/ --baseline original/ --gt labels/ --label 2[/]

[bold]Metrics[/]: Dice; HD, HD95 (max of the two directed 95th percentiles) and ASSD in the spacing's units
(surface = boundary voxels, exact Euclidean distance transform); Betti numbers, Betti error |b_k(pred) - b_k(gt)|
and Betti matching error (unmatched features, induced matching through the union, Stucki et al. ICML 2023; every
dimension, 2D and 3D); VI between the label maps (nats). Surface distances are inf when
one mask is empty; structures absent from both masks are left out of the summaries.

[bold]Exit status[/]: 0 every case evaluated, 2 some case failed (unreadable, no ground truth of that name,
shape or geometry mismatch; the other cases are still evaluated and reported) or a usage error.
"""


def _num(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _digits(metric: str) -> int:
    return 3 if metric in ("dice", "vi") else 2


def _dims(values) -> str:
    return ",".join("-" if v is None else str(v) for v in values)


def _common_folder(paths: list[str]) -> str:
    try:
        folder = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    except ValueError:
        return ""
    return folder if all(os.path.dirname(os.path.abspath(p)) == folder for p in paths) else ""


def _display_path(path: str) -> str:
    if path.startswith("<"):
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _mean(values) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return float("inf") if any(v is not None and math.isinf(v) for v in values) else float("nan")
    return sum(finite) / len(finite)


def cases_table(report) -> Table:
    """One row per case x structure; with --per-slice, means over the slices where the structure is present."""
    paths = report.paths
    folder = _common_folder(paths) if len(paths) > 1 and not paths[0].startswith("<") else ""
    table = _cases_table_frame(report, folder)
    vi = _vi_by_path(report)
    for path, by_structure in _pred_rows(report).items():
        name = os.path.basename(path) if folder else _display_path(path)
        first = True
        for structure in report.structures:
            rows = by_structure.get(structure.name)
            if not rows:
                continue
            # the case's name and its label maps' VI on its first row only
            lead = escape(name) if first else ""
            vi_cell = _num(_mean(vi.get(path, [])), 3) if first else ""
            table.add_row(*_case_cells(report, structure, rows, lead, vi_cell))
            first = False
    return table


def _cases_table_frame(report, folder: str) -> Table:
    """The cases table without rows: title, caption and the columns this report's mode has.

    Per slice, a "slices" column (how many hold the structure) replaces the Betti numbers, which
    have no single value over many slices.
    """
    title = "topofix evaluate" + (f" in {escape(_display_path(folder))}" if folder else "")
    caption = f"against {escape(_display_path(report.gt or '-'))}; connectivity {report.connectivity}; " \
              "HD95, ASSD in spacing units; "
    if report.per_slice:
        caption += f"per slice along {report.per_slice}: means over the slices holding the structure"
    else:
        caption += "Betti: prediction/ground truth; errors per dimension (-: not computed)"
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD)
    names = [os.path.basename(p) if folder else _display_path(p) for p in report.paths]
    table.add_column("case", overflow="fold", min_width=min(max(map(len, names), default=4), 12))
    table.add_column("structure", no_wrap=True)
    if report.per_slice:
        table.add_column("slices", justify="right")
    for metric in ("dice", "hd95", "assd"):
        table.add_column(HEADERS[metric], justify="right", no_wrap=True)
    if not report.per_slice:
        table.add_column("Betti", justify="right", no_wrap=True)
    table.add_column("Betti\nerr", justify="right", no_wrap=True)
    table.add_column("BM\nerr", justify="right", no_wrap=True)
    table.add_column("VI", justify="right", no_wrap=True)
    return table


def _vi_by_path(report) -> dict[str, list[float]]:
    """The VI of each prediction's non-empty label maps, by path (the baseline's are not this table's)."""
    vi: dict[str, list[float]] = {}
    for m in report.label_maps:
        if m.source == "pred" and not m.empty:
            vi.setdefault(m.path, []).append(m.vi)
    return vi


def _pred_rows(report) -> dict[str, dict[str, list]]:
    """The prediction's results by path, then by structure name (every slice's row of a structure)."""
    grouped: dict[str, dict[str, list]] = {}
    for r in report.results:
        if r.source == "pred":
            grouped.setdefault(r.path, {}).setdefault(r.structure.name, []).append(r)
    return grouped


def _case_cells(report, structure, rows: list, lead: str, vi_cell: str) -> list[str]:
    """One row's cells: the case (``lead``), the structure, overlap and distances, topology, VI.

    Metrics are means over the slices where the structure is present (the one row of a whole scan).
    """
    present = [r for r in rows if not r.empty]
    cells = [lead, escape(structure.name)]
    if report.per_slice:
        cells.append(str(len(present)))
    for metric in ("dice", "hd95", "assd"):
        cells.append(_num(_mean([r.metric(metric) for r in present]), _digits(metric)))
    return cells + _topology_cells(report, rows, present) + [vi_cell]


def _topology_cells(report, rows: list, present: list) -> list[str]:
    """Per slice: the mean Betti and Betti matching errors. Whole scans: the Betti numbers
    (prediction/ground truth) and the errors per dimension, in bold red when not zero."""
    if report.per_slice:
        return [_num(_mean([r.betti_error for r in present])), _num(_mean([r.betti_matching_error for r in present]))]
    r = rows[0]
    be, bm = _dims(r.betti_errors), _dims(r.betti_matching_errors)
    be = f"[bold red]{be}[/]" if r.betti_error else be
    bm = f"[bold red]{bm}[/]" if r.betti_matching_error else bm
    return [f"{_dims(r.betti_pred)}/{_dims(r.betti_gt)}", be, bm]


def summary_table(report) -> Table:
    """One row per structure x metric (and the VI of the label maps): n, mean, sd."""
    unit = "slices" if report.per_slice else "cases"
    table = Table(title=f"summary over {unit}", title_justify="left", box=box.SIMPLE_HEAD,
                  caption="sd: sample standard deviation; inf: surface distances to an empty mask, "
                  "left out of n, mean and sd", caption_justify="left")
    for name, justify in (("structure", "left"), ("metric", "left"), ("n", "right"), ("mean", "right"),
                          ("sd", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]  # literals above
    summaries = report.summary()
    any_inf = any(s.n_inf for s in summaries)
    if any_inf:
        table.add_column("inf", justify="right", no_wrap=True)
    wanted = set(TABLE_METRICS) | {"vi"}
    previous = None
    for s in summaries:
        if s.metric not in wanted:
            continue
        d = _digits(s.metric)
        row = [escape(s.structure) if s.structure != previous else "", HEADERS[s.metric], str(s.n),
               _num(s.mean if s.n else None, d), _num(s.sd, d)]
        if any_inf:
            row.append(str(s.n_inf) if s.n_inf else "")
        table.add_row(*row)
        previous = s.structure
    return table


def paired_table(report) -> Table:
    table = Table(title="prediction - baseline (paired; Wilcoxon signed-rank, two-sided)", title_justify="left",
                  box=box.SIMPLE_HEAD,
                  caption="means over pairs; pred - baseline: mean ± sd of the differences; green: better than the "
                  "baseline (Dice up; distances, errors, VI down); bold: p < 0.05",
                  caption_justify="left")
    for name, justify in (("structure", "left"), ("metric", "left"), ("n", "right"), ("pred", "right"),
                          ("baseline", "right"), ("pred - baseline", "right"), ("p", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]  # literals above
    wanted = set(TABLE_METRICS) | {"vi"}
    previous = None
    for c in report.paired():
        if c.metric not in wanted:
            continue
        d = _digits(c.metric)
        diff = "-" if c.n == 0 else _num(c.mean_diff, d) + ("" if math.isnan(c.sd_diff) else f" ± {_num(c.sd_diff, d)}")
        if c.improved is not None:
            diff = f"[{'green' if c.improved else 'red'}]{diff}[/]"
        p = "-" if c.p_value is None else f"{c.p_value:.3g}"
        if c.p_value is not None and c.p_value < 0.05:
            p, diff = f"[bold]{p}[/]", f"[bold]{diff}[/]"
        elif c.note and c.n:
            p = "[dim]n<2[/]" if c.n < 2 else "[dim]same[/]" if "zero" in c.note else "-"
        table.add_row(escape(c.structure) if c.structure != previous else "", HEADERS.get(c.metric, c.metric),
                      str(c.n), _num(c.mean_pred, d), _num(c.mean_baseline, d), diff, p)
        previous = c.structure
    return table


def _summary_line(report) -> str:
    c = report.counts
    parts = [f"{c['evaluated']} case(s) evaluated"]
    if report.per_slice:
        parts[0] += f" ({c['slices']} slices along {report.per_slice})"
    vi = [s for s in report.summary() if s.metric == "vi"]
    if vi and vi[0].n:
        sd = "" if math.isnan(vi[0].sd) else f" ± {vi[0].sd:.3f}"
        parts.append(f"VI between label maps {vi[0].mean:.3f}{sd} nats")
    if c["failed"]:
        parts.append(f"{c['failed']} case(s) failed")
    return "; ".join(parts) + "."


def _csv_rows(report):
    vi = {(m.path, m.source, m.slice_index): m.vi for m in report.label_maps}
    for r in report.results:
        bp = list(r.betti_pred) + [None] * (3 - len(r.betti_pred))
        bg = list(r.betti_gt) + [None] * (3 - len(r.betti_gt))
        be = list(r.betti_errors) + [None] * (3 - len(r.betti_errors))
        bm = list(r.betti_matching_errors) + [None] * (3 - len(r.betti_matching_errors))
        row = {"path": r.path, "gt": r.gt_path, "source": r.source, "slice": r.slice_index,
               "structure": r.structure.name, "empty": r.empty, "pred_voxels": r.pred_voxels,
               "gt_voxels": r.gt_voxels, "dice": r.dice, "hd": r.hd, "hd95": r.hd95, "assd": r.assd,
               "betti_error": r.betti_error, "betti_matching_error": r.betti_matching_error,
               "vi": vi.get((r.path, r.source, r.slice_index))}
        for k in range(3):
            row.update({f"b{k}_pred": bp[k], f"b{k}_gt": bg[k], f"betti_error_{k}": be[k],
                        f"betti_matching_error_{k}": bm[k]})
        yield row
    for e in report.errors:
        yield {"path": e.path, "source": "error", "error": e.message}


Structures = Annotated[
    Optional[list[str]],
    typer.Option(
        "--prior",
        "-p",
        metavar="LABELS[=B0,B1]",
        help="A structure to evaluate, repeatable; unions with '+' (2+3). The --prior syntax of check is "
        "accepted (2=1,1: its Betti numbers are not used). Default: every label present, plus the foreground.",
        rich_help_panel=options.PRIORS_PANEL,
    ),
]
Label = Annotated[
    Optional[str],
    typer.Option(
        "--label",
        "-l",
        metavar="L[+L...]",
        help="Evaluate only this label (or union of labels, 2+3).",
        rich_help_panel=options.PRIORS_PANEL,
    ),
]


def evaluate_command(
    inputs: Annotated[list[str], typer.Argument(metavar="PRED...", help="Predicted masks (label maps: NIfTI, MHA/MHD, NRRD, PNG, DICOM-SEG .dcm), folders or glob patterns. " + options.FOLDER_NOTE, show_default=False)],
    gt: Annotated[Path, typer.Option("--gt", metavar="DIR", help="Folder of ground-truth masks, matched to the predictions by file name (or by stem across formats: case_01.dcm pairs with case_01.nii.gz).", show_default=False)],
    baseline: Annotated[Optional[Path], typer.Option("--baseline", metavar="DIR", help="A second prediction folder (e.g. the masks before correction), matched by file name: per-metric differences and a paired Wilcoxon test.", show_default=False)] = None,
    label: Label = None,
    prior: Structures = None,
    connectivity: options.Connectivity = options.ConnectivityChoice.full,
    per_slice: options.PerSlice = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", metavar="FILE", help="Write the full report (every row, summaries, paired tests) as JSON.", rich_help_panel="Reports")] = None,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", metavar="FILE", help="Write one CSV row per case x slice x structure (and baseline).", rich_help_panel="Reports")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing report files.", rich_help_panel="Reports")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-case table and no progress bar; errors, summaries and the summary line only.")] = False,
) -> None:
    """Evaluate predicted masks against ground truths: Dice, HD95, ASSD, Betti and Betti matching errors, VI.

    Each prediction is compared with the ground truth of the same file name in --gt, per structure (label).
    """
    from topofix.atomic import refuse_existing
    from topofix.evaluation import evaluate

    try:
        for path in (json_path, csv_path):
            if path is not None:
                refuse_existing(path, overwrite)
        report = evaluate(
            inputs,
            gt,
            baseline=baseline,
            label=label,
            priors=prior or [],
            connectivity=connectivity.value,
            per_slice=None if per_slice is None else per_slice.value,
            progress=not quiet,
        )
    except TopofixError as error:
        print_error(str(error))
        raise typer.Exit(2) from None

    for failure in report.errors:
        print_error(failure.message)
    if report.results:
        if not quiet:
            out.print(cases_table(report))
        out.print(summary_table(report))
        if report.baseline is not None:
            out.print(paired_table(report))
    out.print(_summary_line(report))
    if not write_reports(json_path, report.to_dict(), csv_path, _csv_rows(report), CSV_FIELDS, overwrite):
        raise typer.Exit(2)
    raise typer.Exit(report.exit_code)


evaluate_command.__doc__ = (evaluate_command.__doc__ or "") + EXAMPLES
