"""The report page: each case's pictures and facts gathered, then rendered by Jinja2 templates.

Why templates: the page's HTML, CSS and script live in ``templates/`` as files an editor
and a linter understand, and Jinja2 escapes every value (autoescaping), so no string is
escaped by hand. This module decides *what* is shown (which pictures, which notes; the
plain data the templates get is built in :mod:`topofix.report.views`); the templates
decide *how*.

Line breaks and indentation in the ``.html.j2`` templates are not part of the page: the
loader joins each template's lines (see :class:`_JoinedLinesLoader`), so the page is as
compact as it was when it was built from strings.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from topofix.errors import OutputError
from topofix.report.loading import REPORT_JSON, case_outcome, default_output, report_source
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
from topofix.report.views import (
    COLUMNS,
    SORT_KEYS,
    CaseView,
    Figure,
    Overlays,
    Picture,
    Row,
    betti_text,
    diagram_dims,
    facts,
    no_diagrams_why,
    prior_ndim,
    prior_rows,
    summary,
    table_row,
)
from topofix.report.volumes import Volumes, load_volumes

__all__ = ["COLUMNS", "SORT_KEYS", "HtmlReport", "render_html_report", "write_html_report"]


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
        title = f"prior {entry.get('prior')} = ({betti_text(entry.get('expected'))})"
        if entry.get("slice") is not None:
            title += f", slice {entry.get('slice')}"
        picture = self.png(diagram_png(entry, diagram_dims(entry, ndim)), "persistence diagrams " + title)
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
        ndim = reference.ndim if reference is not None else prior_ndim(case)
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
        if view.outcome == "error":
            view.message = str(case.get("error") or "unknown error")
            return view
        if view.outcome == "skipped":
            view.message = str(case.get("stop_reason") or "output exists")
            return view
        view.priors, view.facts = prior_rows(case), facts(case)
        view.actions = [str(a) for a in case.get("repair_actions") or []]
        vol = load_volumes(case, self.masks_dir, self.report_dir)
        view.notes = vol.notes
        self.notes += [f"{path}: {note}" for note in vol.notes]
        diagrams = [d for d in case.get("diagrams") or [] if isinstance(d, dict)]
        drawn = self.picture_rows(case, vol, diagrams, view)
        view.hidden_diagrams = len(diagrams) - len(drawn)
        view.no_diagrams_why = "" if diagrams else no_diagrams_why(case)
        view.loss = self.loss(case)
        view.compact = len(view.rows) == 1 and not diagrams and view.loss is None  # untouched: facts beside it
        return view

    # -- page -------------------------------------------------------------

    def context(self, source: str | None) -> dict[str, Any]:
        sections = [self.case(i, c) for i, c in enumerate(self.cases, 1)]
        return {
            "stamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "source": source or "",
            "summary": summary(self.report, self.cases, self.settings), "notes": len(self.notes),
            "columns": COLUMNS, "rows": [table_row(i, c) for i, c in enumerate(self.cases, 1)],
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
