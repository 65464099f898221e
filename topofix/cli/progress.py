"""Progress of a batch on the terminal: one tqdm bar, errors printed above it as they happen."""

from __future__ import annotations

import os
import sys
from typing import Any

from topofix.batch import CaseRecord, _flat_case
from topofix.cli.console import print_error, print_warning

__all__ = ["BatchProgress", "check_reports", "flat_case", "print_interrupted", "print_threshold_warning", "write_run_reports"]


def flat_case(record: CaseRecord) -> dict[str, Any]:
    """A case as the tables and the JSON report show it."""
    return _flat_case(record)


class BatchProgress:
    """Callbacks for :func:`topofix.batch.run_batch` (``on_start``/``on_case``/``on_step``)."""

    def __init__(self, what: str, quiet: bool) -> None:
        self.what = what
        self.quiet = quiet
        self.bar = None

    def start(self, path: str, index: int, total: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.what, unit="scan", disable=True if self.quiet else None,
                            file=sys.stderr, leave=False)
        bar = self.bar
        assert bar is not None  # made just above
        bar.set_postfix_str(os.path.basename(path))

    def step(self, path: str, step: int, topo: float, sim: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{os.path.basename(path)} step {step} topo {topo:.3f} sim {sim:.2e}")

    def case(self, record: CaseRecord) -> None:
        if record.status == "error" and record.error:
            if self.bar is not None:
                from tqdm.auto import tqdm

                with tqdm.external_write_mode(file=sys.stderr):
                    print_error(record.error)
            else:
                print_error(record.error)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def print_threshold_warning(report: Any, given: bool) -> None:
    """``--threshold`` given for a model read with an argmax: say once that it changes nothing."""
    if not given:
        return
    from topofix.cli.options import threshold_warning

    for case in report.cases:
        activation, channels = case.result.get("activation"), case.result.get("channels")
        if activation and channels:
            message = threshold_warning(activation, int(channels))
            if message:
                print_warning(message)
            return


def check_reports(paths: list[Any], overwrite: bool, resume: bool) -> None:
    """Up front, before any scan: every report path writable, and none replaced unless asked."""
    from topofix.batch import check_report_path
    from topofix.errors import OutputError

    for path in paths:
        check_report_path(path, overwrite)
    if not (overwrite or resume):
        for path in paths:
            if path.exists():
                raise OutputError(path, "already exists (use --overwrite to replace it, or --skip-existing to resume)")


def write_run_reports(report: Any, json_file: Any, csv_file: Any, html_file: Any | None, masks_dir: Any,
                      quiet: bool) -> None:
    """JSON and CSV reports of a finished (or interrupted) run, and the HTML page from the typed report."""
    from rich.markup import escape

    from topofix.cli.console import err
    from topofix.files import write_reports

    write_reports(report, json_file, csv_file)
    if not quiet:
        err.print(f"reports: {escape(str(json_file))}, {escape(str(csv_file))}; journal: {escape(report.journal)}")
    if html_file is not None:
        from topofix.atomic import atomic_write_text
        from topofix.report import render_html_report

        page = render_html_report(report, masks_dir=masks_dir, report_dir=json_file.parent)
        atomic_write_text(html_file, page.html, overwrite=True)
        if not quiet:
            err.print(f"HTML report: {escape(str(html_file))}")


def print_interrupted(report: Any, what: str, reported: bool = True) -> None:
    """The one line an interrupted run ends with (``reported``: its report was written, say so)."""
    from topofix.cli.console import err

    if report.interrupted:
        done = "finished and reported" if reported else "finished (journaled)"
        err.print(f"interrupted by {report.interrupted}: {len(report.cases)} {what}(s) {done}; "
                  "rerun with --skip-existing to resume", highlight=False)
