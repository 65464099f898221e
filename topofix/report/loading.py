"""Reading a ``topofix correct`` JSON report and sorting its cases into the summary's outcomes.

The report is read as JSON, never unpickled. A case's outcome is not decided here:
:attr:`topofix.batch.CaseRecord.outcome` is the one classification (the run's summary
line, its tables and this report agree because they ask the same property).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from topofix.errors import InputError, TopofixError
from topofix.outputs import REPORT_HTML, REPORT_JSON

__all__ = ["OUTCOMES", "REPORT_HTML", "REPORT_JSON", "ReportSource", "case_outcome", "default_output",
           "load_report", "outcome_counts", "report_source"]

OUTCOMES = ("corrected", "already met", "not met", "error", "skipped")
"""The summary's buckets, in the order of its cards."""


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``topofix correct`` JSON report (a folder means its ``topofix_report.json``).

    JSON only (never pickle). Raises :class:`InputError` with one line when the file is
    missing, not JSON, or not a ``topofix correct`` report (no ``cases`` list).
    """
    target = Path(path)
    if target.is_dir():
        target = target / REPORT_JSON
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(target, "file does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(target, f"cannot be read ({error.__class__.__name__}: {error})") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise InputError(target, f"is not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise InputError(target, "is not a topofix correct report (no 'cases' list)")
    if not all(isinstance(c, dict) for c in data["cases"]):
        raise InputError(target, "is not a topofix correct report ('cases' must hold objects)")
    return data


class ReportSource:
    """A report as a dict, with where it came from (for the page's header and relative paths)."""

    def __init__(self, data: Mapping[str, Any], source: str | None, report_dir: Path | None) -> None:
        self.data = data
        self.source = source
        self.report_dir = report_dir


def report_source(report: Any, report_dir: str | os.PathLike[str] | None = None) -> ReportSource:
    """A :class:`topofix.batch.BatchReport`, a dict or a JSON path (or its folder) as a :class:`ReportSource`.

    A path's folder becomes ``report_dir`` unless one is given; a typed report is
    converted without re-reading anything.
    """
    from topofix.batch import BatchReport

    if isinstance(report, BatchReport):  # the typed report of a run that just finished: nothing re-read
        report = report.to_dict()
    if isinstance(report, Mapping):
        if not isinstance(report.get("cases"), list):
            raise TopofixError("not a topofix correct report (no 'cases' list)")
        return ReportSource(report, None, Path(report_dir) if report_dir is not None else None)
    target = Path(report)
    target = target / REPORT_JSON if target.is_dir() else target
    data = load_report(target)
    folder = Path(report_dir) if report_dir is not None else target.parent
    return ReportSource(data, str(target), folder)


def case_outcome(case: Mapping[str, Any]) -> str:
    """``corrected``, ``already met``, ``not met``, ``error`` or ``skipped`` (the summary's buckets).

    The classification is :attr:`topofix.batch.CaseRecord.outcome`'s (one home); ``skipped`` is
    kept for reports written before the journal existed.
    """
    from topofix.batch import CaseRecord

    if case.get("status") == "skipped":
        return "skipped"
    outcome = CaseRecord.from_flat(dict(case)).outcome
    return "not met" if outcome == "done" else outcome


def outcome_counts(cases: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many cases fall in each of :data:`OUTCOMES`."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for case in cases:
        counts[case_outcome(case)] += 1
    return counts


def default_output(report_json: str | os.PathLike[str]) -> Path:
    """``topofix_report.html`` beside the JSON (``<name>.html`` for another JSON name)."""
    target = Path(report_json)
    if target.is_dir():
        return target / REPORT_HTML
    return target.with_name(REPORT_HTML) if target.name == REPORT_JSON else target.with_suffix(".html")
