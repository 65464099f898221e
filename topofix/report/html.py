"""The report page: plain data for each part of the page, rendered by Jinja2 templates.

Why templates: the page's HTML, CSS and script live in ``templates/`` as files an editor
and a linter understand, and Jinja2 escapes every value (autoescaping), so no string is
escaped by hand. This module only decides *what* is shown (numbers formatted, pictures
encoded, notes gathered); the templates decide *how*.

Line breaks and indentation in the ``.html.j2`` templates are not part of the page: the
loader joins each template's lines (see :class:`_JoinedLinesLoader`), so the page is as
compact as it was when it was built from strings.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from topofix.errors import OutputError
from topofix.report.loading import REPORT_JSON, case_outcome, default_output, outcome_counts, report_source
from topofix.report.pictures import (
    ADDED,
    REMOVED,
    chosen_slices,
    diagram_png,
    label_colour,
    loss_png,
    matplotlib_parts,
    overlay_panels,
    rgb_png,
    slice_axis,
)
from topofix.report.volumes import Volumes, load_volumes

__all__ = ["COLUMNS", "SORT_KEYS", "HtmlReport", "render_html_report", "write_html_report"]

COLUMNS = (
    ("index", "#", "num", "order of the scans in the report"),
    ("scan", "scan", "text", "input scan; click to see its pictures"),
    ("outcome", "outcome", "text", "corrected / already met / not met / error / skipped"),
    ("before", "before", "text", "Betti numbers of the original mask (per prior)"),
    ("after", "after", "text", "Betti numbers of the corrected mask (per prior)"),
    ("steps", "steps", "num", "optimisation steps run"),
    ("stop", "stop reason / error", "text", "why the optimisation stopped, or the error"),
    ("seconds", "seconds", "num", "time spent on the scan"),
    ("changed", "changed %", "num", "share of voxels whose label changed"),
    ("dice", "Dice", "num", "mean Dice between the original and the corrected mask"),
    ("topo", "topo loss", "num", "topological loss of the returned output"),
)
"""The scan table's columns: ``(key, header, type, tooltip)``; ``type`` ``num`` sorts as numbers."""

SORT_KEYS = tuple(key for key, _, _, _ in COLUMNS)
"""Column keys of the scan table, for ``?sort=KEY`` (``-KEY`` descending) and ``topofixSort(key)``."""

_CARDS = (("corrected", "corrected", "corrected (broken before, met after)"),
          ("already met", "alreadymet", "already met (left untouched)"),
          ("not met", "notmet", "still not met"),
          ("error", "error", "failed (could not be processed)"))
_SKIPPED_CARD = ("skipped", "skipped", "skipped (output existed)")


@dataclass
class HtmlReport:
    """A rendered report: the HTML text and what could not be shown.

    Attributes
    ----------
    html:
        The whole page.
    notes:
        One line per problem (``"<scan>: input scan not found at ..."``), also shown
        in the page; empty when everything was found.
    scans:
        Number of cases in the report.
    images:
        Number of embedded PNG pictures.
    path:
        Where it was written (:func:`write_html_report`), else ``None``.
    """

    html: str
    notes: list[str] = field(default_factory=list)
    scans: int = 0
    images: int = 0
    path: Path | None = None


# --------------------------------------------------------------------------- #
# Templates
# --------------------------------------------------------------------------- #


class _JoinedLinesLoader(PackageLoader):
    """Loads ``.html.j2`` templates with every line stripped and the lines joined.

    The templates stay readable (one element per line, indented) while the page keeps
    no whitespace between elements that the old string-built page did not have; a
    space a line must end with is written ``{{ " " }}``.
    """

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool] | None]:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html.j2"):
            source = "".join(line.strip() for line in source.splitlines())
        return source, filename, uptodate


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(loader=_JoinedLinesLoader("topofix.report", "templates"), autoescape=True,
                       undefined=StrictUndefined, keep_trailing_newline=True)


@lru_cache(maxsize=None)
def _asset(name: str) -> str:
    """A stylesheet or script of ``templates/``, inlined in the page as it is."""
    return resources.files("topofix.report").joinpath("templates", name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- #
# What the templates are given
# --------------------------------------------------------------------------- #


@dataclass
class Picture:
    """An embedded PNG: ``<img class=cls src=data:... alt=...>`` (width/height for pixel art)."""

    uri: str
    alt: str
    cls: str = "plot"
    width: int | None = None
    height: int | None = None


@dataclass
class Figure:
    """A picture with its caption (``kind`` tells the template how to draw a row's items)."""

    picture: Picture
    caption: str
    kind: str = "figure"


@dataclass
class Overlays:
    """Mask overlays of one scan or slice: panels, their colour legend and the crop."""

    figures: list[Figure]
    legend: list[tuple[str, str]]  # (CSS colour, text)
    crop_note: str
    kind: str = "overlays"


@dataclass
class Row:
    """One row of pictures in a scan's section, under a heading (none when empty)."""

    title: str
    items: list[Any]


@dataclass
class CaseView:
    """One scan's section, ready to render."""

    index: int
    name: str
    path: str
    outcome: str
    message: str = ""  # error / skipped
    priors: list[dict[str, Any]] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    where: str = ""
    rows: list[Row] = field(default_factory=list)
    loss: Figure | None = None
    hidden_diagrams: int = 0
    no_diagrams_why: str = ""  # set when the case has no diagrams at all
    compact: bool = False


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    number = _num(value)
    return "–" if number is None else f"{number * scale:{spec}}{suffix}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _betti(values: Any) -> str:
    return "–" if not values else ",".join(str(v) for v in values)


def _prior_state(prior: Mapping[str, Any], when: str) -> tuple[str, bool]:
    """Short text of one prior's Betti numbers (``1,0`` or ``3/10 slices fail``) and whether met."""
    rows = prior.get(f"betti_{when}") or []
    failing = prior.get(f"failing_slices_{when}") or []
    met = bool(prior.get(f"met_{when}"))
    if len(rows) <= 1:
        return (_betti(rows[0]) if rows else "–"), met
    return (f"{len(failing)}/{len(rows)} slices fail" if failing else f"{len(rows)} slices ok"), met


def _absent_where(prior: Mapping[str, Any]) -> str:
    """``"2=1,1"`` for a whole scan, ``"2=1,1 (slices 0, 9)"`` for slices of a stack."""
    slices = prior.get("absent_slices") or []
    return prior.get("prior", "?") + (f" (slices {', '.join(map(str, slices))})" if slices else "")


def _setting_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


def _summary(report: Mapping[str, Any], cases: Sequence[Mapping[str, Any]],
             settings: Mapping[str, Any]) -> dict[str, Any]:
    counts = outcome_counts(cases)
    cards = list(_CARDS) + ([_SKIPPED_CARD] if counts["skipped"] else [])
    return {"cards": [{"key": key, "cls": cls, "text": text, "count": counts[key]} for key, cls, text in cards],
            "model": _text(report.get("model", "–")), "priors": [_text(p) for p in report.get("priors") or []],
            "scans": len(cases), "settings": [(k, _setting_text(v)) for k, v in settings.items()]}


def _priors_cell(case: Mapping[str, Any], when: str) -> dict[str, Any]:
    """A scan's before/after column (every prior): its parts and its sort value."""
    parts, sort = [], []
    priors = case.get("priors") or []
    for prior in priors:
        text, met = _prior_state(prior, when)
        name = str(prior.get("prior", "")).split("=")[0]
        parts.append({"label": f"{name}: " if len(priors) > 1 else "", "text": text, "met": met})
        sort.append(text)
    return {"parts": parts, "sort": "; ".join(sort)}


def _number_cell(value: Any, spec: str, scale: float = 1.0) -> dict[str, str]:
    number = _num(value)
    return {"value": "" if number is None else repr(number), "text": _fmt(value, spec, scale)}


def _table_row(i: int, case: Mapping[str, Any]) -> dict[str, Any]:
    outcome = case_outcome(case)
    error = outcome == "error"  # the message where the stop reason goes
    return {
        "index": i, "outcome": outcome, "name": os.path.basename(str(case.get("path", f"scan {i}"))),
        "before": _priors_cell(case, "before"), "after": _priors_cell(case, "after"),
        "stop": str(case.get("error") or "error") if error else str(case.get("stop_reason") or ""),
        "stop_failed": error,
        "steps": _number_cell(case.get("steps"), ".0f"), "seconds": _number_cell(case.get("seconds"), ".1f"),
        "changed": _number_cell(case.get("changed_fraction"), ".2f", 100.0),
        "dice": _number_cell(case.get("dice_original_corrected"), ".3f"),
        "topo": _number_cell(case.get("topo_loss"), ".3g"),
    }


def _prior_rows(case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-scan table of priors: expected Betti numbers, before and after (failing slices named)."""
    rows = []
    for prior in case.get("priors") or []:
        cells = []
        for when in ("before", "after"):
            text, met = _prior_state(prior, when)
            failing = prior.get(f"failing_slices_{when}") or []
            if len(prior.get(f"betti_{when}") or []) <= 1:
                failing = []  # a 2D image checked "per slice": its one slice
            cells.append({"text": text, "met": met, "slices": ", ".join(map(str, failing))})
        rows.append({"prior": _text(prior.get("prior")), "expected": _betti(prior.get("expected")), "cells": cells})
    return rows


def _facts(case: Mapping[str, Any]) -> list[tuple[str, str]]:
    items = [("steps", case.get("steps")), ("stop reason", case.get("stop_reason")),
             ("chosen step", case.get("chosen_step")), ("seconds", _fmt(case.get("seconds"), ".2f")),
             ("voxels changed", _fmt(case.get("changed_fraction"), ".3f", 100.0, " %")),
             ("Dice original/corrected", _fmt(case.get("dice_original_corrected"), ".4f")),
             ("topological loss", _fmt(case.get("topo_loss"), ".4g")),
             ("similarity loss", _fmt(case.get("similarity_loss"), ".3g"))]
    if case.get("absent"):
        items.append(("absent (no evidence)", ", ".join(_absent_where(p) for p in case.get("priors") or []
                                                        if p.get("absent"))))
    if case.get("repaired"):
        items.append(("repair stage", f"{case.get('repair_changed')} voxels"))
    return [(k, str(v) if v is not None else "–") for k, v in items]


def _diagram_dims(entry: Mapping[str, Any], ndim: int) -> int:
    """Homology dimensions a diagram shows: those in its bars, at least H0, H1 and the image's."""
    dims = max(2, 1 + max([int(b[0]) for key in ("before", "after") for b in entry.get(key) or []
                            if isinstance(b, (list, tuple)) and b and isinstance(b[0], int)] or [0]))
    return min(max(dims, ndim), 3)


def _prior_ndim(case: Mapping[str, Any]) -> int:
    """3 when a prior lists three Betti numbers (a volume), else 2: the dimension when no mask is there."""
    return 3 if any(len(p.get("expected") or []) == 3 for p in case.get("priors") or []) else 2


def _no_diagrams_why(case: Mapping[str, Any]) -> str:
    return ("the original mask already met the prior: no optimisation"
            if case.get("stop_reason") == "already met" else "none in the report")


class _Pages:
    """Builds the page's data case by case, counting pictures and gathering notes."""

    def __init__(self, report: Mapping[str, Any], masks_dir: Path, report_dir: Path | None) -> None:
        self.report = report
        self.masks_dir = masks_dir
        self.report_dir = report_dir
        self.cases: list[Mapping[str, Any]] = list(report.get("cases") or [])
        settings = report.get("settings")
        self.settings: Mapping[str, Any] = settings if isinstance(settings, dict) else {}
        self.notes: list[str] = []
        self.images = 0

    def png(self, data: bytes, alt: str, cls: str = "plot", width: int | None = None,
            height: int | None = None) -> Picture:
        self.images += 1
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return Picture(uri, alt, cls, width, height)

    # -- pictures ---------------------------------------------------------

    def overlays(self, vol: Volumes, index: int | None, axis: int) -> Overlays:
        drawn = overlay_panels(vol, index, axis)
        where = "" if index is None else f" slice {index}"
        figures = [Figure(self.png(rgb_png(rgb), f"{title}{where}", "px", drawn.width, drawn.height), title)
                   for title, rgb in drawn.panels]
        legend = [(f"rgb{label_colour(k)}", f"label {k}") for k in drawn.labels]
        if drawn.shows_changes:
            legend += [(f"rgb{ADDED}", "added / relabelled"), (f"rgb{REMOVED}", "removed")]
        return Overlays(figures, legend, drawn.crop_note)

    def diagram(self, entry: Mapping[str, Any], ndim: int) -> Figure:
        title = f"prior {entry.get('prior')} = ({_betti(entry.get('expected'))})"
        if entry.get("slice") is not None:
            title += f", slice {entry.get('slice')}"
        picture = self.png(diagram_png(entry, _diagram_dims(entry, ndim)), "persistence diagrams " + title)
        return Figure(picture, f"persistence diagrams, {title}")

    # -- one case ---------------------------------------------------------

    def stack_rows(self, case: Mapping[str, Any], vol: Volumes, diagrams: list[dict[str, Any]],
                   view: CaseView) -> list[dict[str, Any]]:
        """Rows of a 3D stack: the chosen slices (with their diagrams), then whole-volume diagrams."""
        axis = slice_axis(self.settings)
        slices, why, total = chosen_slices(case, vol, axis)
        more = f" ({len(slices)} of {total} shown)" if total > len(slices) else ""
        view.where = f"3D stack, slices along {'zyx'[axis]}: {why}{more}"
        drawn = []
        for index in slices:
            here = [d for d in diagrams if d.get("slice") == index]
            drawn += here
            view.rows.append(Row(f"slice {index}", [self.overlays(vol, index, axis)]
                                 + [self.diagram(d, 2) for d in here]))
        whole = [d for d in diagrams if d.get("slice") is None]  # 3D diagrams of the whole volume
        if whole:
            drawn += whole
            view.rows.append(Row("whole volume", [self.diagram(d, 3) for d in whole]))
        return drawn

    def picture_rows(self, case: Mapping[str, Any], vol: Volumes, diagrams: list[dict[str, Any]],
                     view: CaseView) -> list[dict[str, Any]]:
        """Fill ``view.rows`` with the overlays and diagrams; return the diagrams drawn."""
        reference = vol.reference
        if reference is not None and reference.ndim == 3:
            return self.stack_rows(case, vol, diagrams, view)
        ndim = reference.ndim if reference is not None else _prior_ndim(case)
        if reference is not None:
            here = [d for d in diagrams if d.get("slice") is None]
            view.rows.append(Row("", [self.overlays(vol, None, 0)] + [self.diagram(d, ndim) for d in here]))
            return here
        if diagrams:  # no mask to draw: the diagrams alone
            per_slice = bool(self.settings.get("per_slice"))
            view.rows.append(Row("", [self.diagram(d, 2 if (d.get("slice") is not None or per_slice) else ndim)
                                      for d in diagrams]))
        return diagrams

    def loss(self, case: Mapping[str, Any]) -> Figure | None:
        curve = [v for v in case.get("loss_curve") or [] if isinstance(v, (list, tuple)) and len(v) >= 2]
        if not curve:
            return None
        chosen = case.get("chosen_step") if isinstance(case.get("chosen_step"), int) else None
        return Figure(self.png(loss_png(curve, chosen), "loss curve"),
                      "dotted line: the step whose output was kept")

    def case(self, i: int, case: Mapping[str, Any]) -> CaseView:
        path = str(case.get("path", ""))
        view = CaseView(i, os.path.basename(path) or f"scan {i}", path, case_outcome(case))
        if view.outcome in ("error", "skipped"):  # a message, nothing to draw
            view.message = str(case.get("error") or "unknown error") if view.outcome == "error" else str(
                case.get("stop_reason") or "output exists")
            return view
        view.priors, view.facts = _prior_rows(case), _facts(case)
        view.actions = [str(a) for a in case.get("repair_actions") or []]
        vol = load_volumes(case, self.masks_dir, self.report_dir)
        view.notes = vol.notes
        self.notes += [f"{path}: {note}" for note in vol.notes]
        diagrams = [d for d in case.get("diagrams") or [] if isinstance(d, dict)]
        drawn = self.picture_rows(case, vol, diagrams, view)
        view.hidden_diagrams = len(diagrams) - len(drawn)
        view.no_diagrams_why = "" if diagrams else _no_diagrams_why(case)
        view.loss = self.loss(case)
        view.compact = len(view.rows) == 1 and not diagrams and view.loss is None  # untouched: facts beside it
        return view

    # -- page -------------------------------------------------------------

    def context(self, source: str | None) -> dict[str, Any]:
        sections = [self.case(i, c) for i, c in enumerate(self.cases, 1)]
        return {
            "stamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "source": source or "",
            "summary": _summary(self.report, self.cases, self.settings), "notes": len(self.notes),
            "columns": COLUMNS, "rows": [_table_row(i, c) for i, c in enumerate(self.cases, 1)],
            "cases": sections, "css": "\n" + _asset("report.css"), "script": "\n" + _asset("report.js"),
        }


def render_html_report(
    report: Any,
    *,
    masks_dir: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
) -> HtmlReport:
    """Render a ``topofix correct`` report as one self-contained HTML page.

    Parameters
    ----------
    report:
        The typed :class:`topofix.batch.BatchReport` of a run (what ``topofix correct
        --html`` passes), the report as a dict (``json.load`` of ``topofix_report.json``)
        or the path of that JSON file (or of its folder).
    masks_dir:
        Folder of the corrected masks (and ``<stem>_original<ext>``). Default: the
        report's folder (the current folder for a dict).
    report_dir:
        Where relative input paths are also looked for when they are not found from
        the current folder. Default: the report's folder.

    Returns
    -------
    HtmlReport
        ``.html`` the page, ``.notes`` what could not be shown.
    """
    matplotlib_parts()
    loaded = report_source(report, report_dir)
    base = loaded.report_dir
    masks = Path(masks_dir) if masks_dir is not None else (base if base is not None else Path("."))
    pages = _Pages(loaded.data, masks, base)
    text = _environment().get_template("report.html.j2").render(pages.context(loaded.source))
    return HtmlReport(html=text, notes=pages.notes, scans=len(pages.cases), images=pages.images)


def write_html_report(
    report_json: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    masks_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> HtmlReport:
    """Render ``report_json`` (see :func:`render_html_report`) and write it atomically.

    ``output`` defaults to ``topofix_report.html`` beside the JSON. An existing file is
    never replaced unless ``overwrite`` (:class:`OutputError`, checked before rendering).
    """
    from topofix.atomic import atomic_write_text, refuse_existing

    source = Path(report_json)
    target = Path(output) if output is not None else default_output(source)
    refuse_existing(target, overwrite)
    json_file = source / REPORT_JSON if source.is_dir() else source
    try:
        if target.exists() and target.resolve() == json_file.resolve():
            raise OutputError(target, "is the JSON report itself; choose another output file")
    except OSError:
        pass
    result = render_html_report(source, masks_dir=masks_dir)
    atomic_write_text(target, result.html, overwrite=overwrite)
    result.path = target
    return result
