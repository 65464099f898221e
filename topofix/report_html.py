"""A self-contained HTML report of a ``topofix correct`` run (``topofix report``, ``correct --html``).

One HTML file, readable offline and mailable: every picture is a PNG embedded as a
``data:`` URI, the CSS and the small table-sorting script are inline, nothing refers
to another file or to the network. It is built from the run's ``topofix_report.json``
(read as JSON, never unpickled), the input scans at the ``path`` each case records,
and the masks beside the report: the corrected mask under the input's name and, when
present, ``<stem>_original<ext>`` (``--save-original`` or ``--html``).

What it shows:

* a summary: scans corrected / already meeting the prior / still not meeting it /
  failed (/ skipped), the model, the priors and every optimisation setting;
* a table of all scans (click a header to sort, numbers sort as numbers), each row
  linking to the scan's section;
* per scan: the mask before and after on the image (grey, labels as translucent
  colours, a legend) and the voxels the correction changed, cropped to the masks;
  for 3D stacks on the slices whose topology was wrong before or after
  (``failing_slices_before`` + ``failing_slices_after``), else on the slice the
  correction changed most, else the middle slice; the persistence diagrams of each
  prior's probability map before and after (filled: the ``beta*`` bars the prior
  keeps and pushes to ``(1, 0)``; hollow: bars it pushes to the diagonal); the loss
  curve (topological and similarity terms).

Anything missing (an input scan moved, an original mask not saved, a failed or
skipped scan) is said in that scan's section, and listed in :attr:`HtmlReport.notes`.

The page's script also makes it testable in a browser: ``<body data-images-loaded=N>``
once every image has decoded, ``?sort=dice`` / ``?sort=-dice`` (or ``#sort=...``)
sorts the table on load, and ``window.topofixSort(key, descending)`` sorts it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from topofix.errors import InputError, OutputError, TopofixError

REPORT_JSON = "topofix_report.json"
REPORT_HTML = "topofix_report.html"

MAX_SLICES = 6
"""At most this many slices of a 3D stack are drawn per scan (evenly chosen among the candidates)."""

MAX_SIDE = 320
"""Overlay crops larger than this (pixels) are shown subsampled, to keep the file small."""

DISPLAY_WIDTH = 180
"""Width (CSS pixels) each overlay panel is shown at; pixels are scaled without smoothing."""

DPI = 88
ALPHA = 0.45

SORT_KEYS = ("index", "scan", "outcome", "before", "after", "steps", "stop", "seconds", "changed", "dice", "topo")
"""Column keys of the scan table, for ``?sort=KEY`` (``-KEY`` descending) and ``topofixSort(key)``."""

# label k -> colour; ITK-SNAP-like first colours, then a cycle
_LABEL_COLOURS = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40),
)
_ADDED = (0, 200, 255)
_REMOVED = (255, 0, 200)
_DIM_COLOURS = ("#1f77b4", "#d62728", "#2ca02c")
_DIM_MARKERS = ("o", "^", "s")

OUTCOMES = ("corrected", "already met", "not met", "error", "skipped")


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
# Reading the JSON report
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Pictures
# --------------------------------------------------------------------------- #


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise TopofixError("the HTML report needs matplotlib: python -m pip install matplotlib") from None
    return Figure, FigureCanvasAgg


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _rgb_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an ``(h, w, 3)`` uint8 array (no metadata: smaller, and no URLs inside)."""
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, np.ascontiguousarray(rgb), format="png", metadata={"Software": None})
    return buffer.getvalue()


def _figure_png(fig) -> bytes:
    _, FigureCanvasAgg = _matplotlib()
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def label_colour(label: int) -> tuple[int, int, int]:
    """RGB colour of a label in the overlays (label 1 red, 2 green, 3 blue, ...)."""
    return _LABEL_COLOURS[(int(label) - 1) % len(_LABEL_COLOURS)]


def _grey(image: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Image slice scaled to [0, 1] between its 1st and 99th percentiles (zeros if absent)."""
    if image is None:
        return np.zeros(shape, np.float32)
    values = image.astype(np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(shape, np.float32)
    lo, hi = np.percentile(finite, [1, 99])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.full(shape, 0.5, np.float32)
    return np.clip((np.nan_to_num(values, nan=lo) - lo) / (hi - lo), 0.0, 1.0)


def _overlay(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None] * 255.0, 3, axis=-1)
    for label in np.unique(labels):
        if label == 0:
            continue
        where = labels == label
        rgb[where] = (1 - ALPHA) * rgb[where] + ALPHA * np.asarray(label_colour(label), np.float32)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _changes(grey: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None] * 255.0 * 0.8, 3, axis=-1)
    added = (before != after) & (after != 0)
    removed = (before != after) & (after == 0)
    rgb[added] = _ADDED
    rgb[removed] = _REMOVED
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _crop_box(masks: Sequence[np.ndarray]) -> tuple[slice, slice]:
    """Bounding box of the foreground of every mask, plus a margin; the whole slice if empty."""
    shape = masks[0].shape
    union = np.zeros(shape, bool)
    for m in masks:
        union |= m != 0
    if not union.any():
        return slice(0, shape[0]), slice(0, shape[1])
    box = []
    for axis in (0, 1):
        hits = np.flatnonzero(union.any(axis=1 - axis))
        lo, hi = int(hits[0]), int(hits[-1]) + 1
        margin = max(4, round(0.15 * (hi - lo)))
        box.append(slice(max(0, lo - margin), min(shape[axis], hi + margin)))
    return box[0], box[1]


def _diagram_png(entry: Mapping[str, Any], dims: int) -> bytes:
    """Before/after persistence diagrams of one prior (and slice): birth (x) vs death (y)."""
    Figure, _ = _matplotlib()
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(4.4, 2.5))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, key, title in ((axes[0], "before", "before"), (axes[1], "after", "after")):
        ax.plot([0, 1], [0, 1], color="#888888", lw=0.8, ls="--", zorder=1)
        ax.plot([1], [0], marker="*", color="#444444", ms=7, zorder=1, ls="none")
        bars = [b for b in entry.get(key) or [] if isinstance(b, (list, tuple)) and len(b) >= 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b[:3])]
        for dim in range(dims):
            colour, marker = _DIM_COLOURS[dim % 3], _DIM_MARKERS[dim % 3]
            kept = [(b[1], b[2]) for b in bars if b[0] == dim and b[3]]
            gone = [(b[1], b[2]) for b in bars if b[0] == dim and not b[3]]
            if gone:
                x, y = zip(*gone)
                ax.scatter(x, y, s=26, marker=marker, facecolors="none", edgecolors=colour, linewidths=1.1, zorder=2)
            if kept:
                x, y = zip(*kept)
                ax.scatter(x, y, s=34, marker=marker, color=colour, edgecolors="black", linewidths=0.5, zorder=3)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("birth (probability)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("death", fontsize=8)
    handles = [Line2D([], [], ls="none", marker=_DIM_MARKERS[d], color=_DIM_COLOURS[d], label=f"H{d}")
               for d in range(dims)]
    handles += [
        Line2D([], [], ls="none", marker="o", color="#555555", markeredgecolor="black", label="kept (β*)"),
        Line2D([], [], ls="none", marker="o", markerfacecolor="none", markeredgecolor="#555555", label="removed"),
    ]
    axes[0].legend(handles=handles, loc="upper left", fontsize=7, frameon=False, handletextpad=0.2,
                   borderaxespad=0.2, labelspacing=0.25)
    fig.subplots_adjust(left=0.1, right=0.99, bottom=0.155, top=0.92, wspace=0.1)
    return _figure_png(fig)


def _loss_png(curve: Sequence[Sequence[float]], chosen_step: int | None) -> bytes:
    """Topological and similarity terms per step, in two panels (log scale where useful)."""
    Figure, _ = _matplotlib()
    fig = Figure(figsize=(5.6, 2.1))
    axes = fig.subplots(1, 2)
    steps = np.arange(len(curve))
    for ax, column, title, colour in ((axes[0], 0, "topological loss", "#d62728"),
                                      (axes[1], 1, "similarity (MSE to original)", "#1f77b4")):
        values = np.array([float(v[column]) if v[column] is not None else np.nan for v in curve], float)
        positive = values[np.isfinite(values) & (values > 0)]
        log = positive.size >= 2 and positive.max() / positive.min() > 30
        if log:
            keep = np.isfinite(values) & (values > 0)
            ax.semilogy(steps[keep], values[keep], marker=".", ms=4, lw=1.2, color=colour)
        else:
            ax.plot(steps, values, marker=".", ms=4, lw=1.2, color=colour)
        if chosen_step is not None and 0 <= chosen_step <= len(curve):  # == len: met, no loss computed
            ax.axvline(chosen_step, color="#444444", lw=0.8, ls=":")
        ax.set_title(title + (" (log)" if log else ""), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, lw=0.3, alpha=0.5)
        if len(curve) <= 12:
            ax.set_xticks(np.arange(max(len(curve), (chosen_step or 0) + 1)))
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.19, top=0.89, wspace=0.28)
    return _figure_png(fig)


# --------------------------------------------------------------------------- #
# Files of one case
# --------------------------------------------------------------------------- #


def _stem_ext(path: str) -> tuple[str, str]:
    """As ``topofix correct`` names ``<stem>_original<ext>`` (lower-case extension)."""
    from topofix.io import image_extension

    name = os.path.basename(path)
    ext = image_extension(name) or ""
    return (name[: len(name) - len(ext)] if ext else name), ext


def _find_input(path: str, report_dir: Path | None) -> Path | None:
    """The input scan: as recorded (absolute, or relative to the current folder), else
    relative to the report's folder."""
    from topofix.dicom import is_dicom_address

    candidates = [Path(path)]
    if not os.path.isabs(path) and report_dir is not None:
        candidates.append(report_dir / path)
    for candidate in candidates:
        if candidate.is_file() or is_dicom_address(candidate):  # a file, or a DICOM series
            return candidate
    return None


@dataclass
class _Volumes:
    image: np.ndarray | None
    spacing: tuple[float, ...] | None  # numpy axis order
    before: np.ndarray | None
    after: np.ndarray | None
    notes: list[str]


def _scalar(array: np.ndarray, ndim: int) -> np.ndarray:
    return array.mean(axis=-1) if array.ndim == ndim + 1 else array


def _load_volumes(case: Mapping[str, Any], masks_dir: Path, report_dir: Path | None) -> _Volumes:
    from topofix.io import read_image, read_mask

    path = str(case.get("path", ""))
    notes: list[str] = []
    image = spacing = None
    found = _find_input(path, report_dir)
    if found is None:
        notes.append(f"input scan not found at {path} (moved or deleted?): the masks are drawn without it")
    else:
        try:
            img = read_image(found, allow_vector=True)
            image = _scalar(img.array, img.geometry.ndim)
            spacing = tuple(reversed(img.geometry.spacing))
        except TopofixError as error:
            notes.append(f"input scan cannot be read ({error}): the masks are drawn without it")
    from topofix.outputs import CaseOutputs

    key = str(case.get("key") or os.path.basename(path))  # where the batch wrote it (topofix.outputs)
    plan = CaseOutputs(key, masks_dir / key)
    after_path, original_path = plan.mask, plan.original
    after = before = None
    after_missing = not after_path.is_file()
    if not after_missing:
        try:
            after = np.asarray(read_mask(after_path).array)
        except TopofixError as error:
            notes.append(f"corrected mask cannot be read ({error})")
    original_missing = not original_path.is_file()
    if not original_missing:
        try:
            before = np.asarray(read_mask(original_path).array)
        except TopofixError as error:
            notes.append(f"original mask cannot be read ({error})")
    if after_missing and original_missing:
        notes.append(f"no mask found in {masks_dir} (neither {after_path.name} nor {original_path.name}): "
                     "nothing to draw")
    elif after_missing:
        notes.append(f"corrected mask not found at {after_path}: only the original mask is shown")
    elif original_missing:
        if after is not None and not case.get("changed_fraction") and case.get("stop_reason") == "already met":
            before = after  # untouched: the corrected mask is the original, byte for byte
        else:
            notes.append(f"original mask {original_path.name} not found (run topofix correct with "
                         "--save-original or --html to keep it): only the corrected mask is shown")
    reference = after if after is not None else before
    if image is not None and reference is not None and image.shape != reference.shape:
        if image.size == reference.size and np.squeeze(image).shape == np.squeeze(reference).shape:
            image = image.reshape(reference.shape)
        else:
            notes.append(f"input scan has shape {image.shape}, the masks {reference.shape}: drawn without it")
            image = None
    if before is not None and after is not None and before.shape != after.shape:
        notes.append(f"original mask has shape {before.shape}, the corrected one {after.shape}: "
                     "only the corrected mask is shown")
        before = None
    return _Volumes(image, spacing, before, after, notes)


def _slice_axis(settings: Mapping[str, Any]) -> int:
    from topofix.checking import SLICE_AXES

    return SLICE_AXES.get(str(settings.get("per_slice") or "z"), 0)


def _chosen_slices(case: Mapping[str, Any], vol: _Volumes, axis: int) -> tuple[list[int], str, int]:
    """Slices to draw for a 3D case, why, and how many candidates there were."""
    reference = vol.after if vol.after is not None else vol.before
    n = reference.shape[axis]
    failing = sorted({int(i) for p in case.get("priors") or []
                      for i in list(p.get("failing_slices_before") or []) + list(p.get("failing_slices_after") or [])
                      if isinstance(i, int) and 0 <= i < n})
    if failing:
        why = "slices whose topology was wrong before or after"
        candidates = failing
    elif vol.before is not None and vol.after is not None and (vol.before != vol.after).any():
        other = tuple(a for a in range(reference.ndim) if a != axis)
        changed = (vol.before != vol.after).sum(axis=other)
        candidates = [int(np.argmax(changed))]
        why = "the slice the correction changed most"
    else:
        candidates = [n // 2]
        why = "the middle slice"
    if len(candidates) <= MAX_SLICES:
        return candidates, why, len(candidates)
    picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, MAX_SLICES)).astype(int))
    return [candidates[i] for i in picks], why, len(candidates)


# --------------------------------------------------------------------------- #
# HTML
# --------------------------------------------------------------------------- #

_CSS = """
:root { --ok:#1a7f37; --bad:#c62828; --warn:#9a6700; --muted:#666; --line:#d0d7de; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; padding: 16px 24px 48px; max-width: 1180px; color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
h3 { font-size: 16px; margin: 0; } h4 { font-size: 13px; margin: 12px 0 4px; color: #333; }
.meta { color: var(--muted); margin: 0 0 12px; word-break: break-all; }
.cards { display: flex; gap: 10px; flex-wrap: wrap; margin: 10px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 130px; background: var(--bg); }
.card b { display: block; font-size: 24px; line-height: 1.1; }
.card.corrected b { color: var(--ok); } .card.notmet.some b, .card.error.some b { color: var(--bad); }
.card.skipped b { color: var(--warn); }
details { margin: 6px 0; } summary { cursor: pointer; color: #0550ae; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.settings td:first-child { color: var(--muted); }
#scan-table { width: 100%; }
#scan-table th { background: var(--bg); position: sticky; top: 0; white-space: nowrap; }
#scan-table td { white-space: nowrap; } #scan-table td.stop { white-space: normal; word-break: break-word; }
#scan-table th button { all: unset; cursor: pointer; font-weight: 600; }
#scan-table th button::after { content: " \\2195"; color: #aaa; font-weight: 400; }
#scan-table th[aria-sort=ascending] button::after { content: " \\25B2"; color: #333; }
#scan-table th[aria-sort=descending] button::after { content: " \\25BC"; color: #333; }
#scan-table tbody tr:hover { background: #f0f6ff; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600;
         color: #fff; background: #888; white-space: nowrap; }
.badge.corrected { background: var(--ok); } .badge.already-met { background: #57606a; }
.badge.not-met, .badge.error { background: var(--bad); } .badge.skipped { background: var(--warn); }
.fail { color: var(--bad); font-weight: 600; } .pass { color: var(--ok); }
section.case { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; margin: 16px 0; }
.case-head { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.case-head a.top { margin-left: auto; font-size: 12px; }
.path { color: var(--muted); font-size: 12px; word-break: break-all; margin: 2px 0 8px; }
.facts { display: flex; gap: 8px 24px; flex-wrap: wrap; align-items: flex-start; margin-bottom: 6px; }
.kv { display: flex; flex-wrap: wrap; gap: 2px 16px; font-size: 13px; max-width: 720px; }
.kv.settings { max-width: none; font-size: 12px; }
.kv span i { font-style: normal; color: var(--muted); margin-right: 4px; }
.note { background: #fff8c5; border: 1px solid #eac54f; border-radius: 6px; padding: 4px 10px; margin: 6px 0; }
.error-msg { background: #ffebe9; border: 1px solid #ff8182; border-radius: 6px; padding: 4px 10px; margin: 6px 0;
             word-break: break-word; }
.slice { display: flex; gap: 14px; flex-wrap: wrap; align-items: flex-start; margin: 6px 0 10px; }
figure { margin: 0; } figcaption { font-size: 12px; color: var(--muted); text-align: center; }
img.px { image-rendering: pixelated; border: 1px solid var(--line); display: block; }
img.plot { display: block; max-width: 100%; height: auto; }
.legend { font-size: 12px; margin: 2px 0 6px; display: flex; gap: 12px; flex-wrap: wrap; }
.sw { display: inline-block; width: 11px; height: 11px; border: 1px solid #0006; vertical-align: -1px; margin-right: 4px; }
.muted { color: var(--muted); } .small { font-size: 12px; }
.side { max-width: 560px; } .side p { margin: 6px 0; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var table = document.getElementById("scan-table");
  function keyOf(th) { return th.getAttribute("data-key"); }
  function value(row, index, type) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
    if (type === "num") { var x = parseFloat(raw); return isNaN(x) ? null : x; }
    return raw === "" ? null : raw;
  }
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  function sortTable(key, descending) {
    if (!table) return false;
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var index = -1;
    heads.forEach(function (th, i) { if (keyOf(th) === key) index = i; });
    if (index < 0) return false;
    var type = heads[index].getAttribute("data-type");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, index, type), y = value(b, index, type);
      var order = 0;
      if (x === null || y === null) {
        order = x === null && y === null ? 0 : (x === null ? 1 : -1);  // missing values last, both ways
      } else {
        order = type === "num" ? x - y : collator.compare(x, y);
        if (descending) order = -order;
      }
      return order || (+a.getAttribute("data-index") - +b.getAttribute("data-index"));
    });
    rows.forEach(function (row) { body.appendChild(row); });
    heads.forEach(function (th) { th.removeAttribute("aria-sort"); });
    heads[index].setAttribute("aria-sort", descending ? "descending" : "ascending");
    table.setAttribute("data-sort", (descending ? "-" : "") + key);
    return true;
  }
  window.topofixSort = sortTable;
  if (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var button = th.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        sortTable(keyOf(th), th.getAttribute("aria-sort") === "ascending");
      });
    });
  }
  function requested() {
    var match = /[?&]sort=([^&#]*)/.exec(window.location.search) || /[#&]sort=([^&]*)/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }
  var wanted = requested();
  if (wanted) {
    var descending = wanted.charAt(0) === "-";
    sortTable(descending ? wanted.slice(1) : wanted, descending);
  }
  function markImages() {
    var images = Array.prototype.slice.call(document.images);
    var loaded = images.filter(function (im) { return im.complete && im.naturalWidth > 0; }).length;
    document.body.setAttribute("data-images-total", String(images.length));
    document.body.setAttribute("data-images-loaded", String(loaded));
  }
  if (document.readyState === "complete") markImages();
  else window.addEventListener("load", markImages);
})();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    number = _num(value)
    return "–" if number is None else f"{number * scale:{spec}}{suffix}"


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


def _priors_cell(case: Mapping[str, Any], when: str) -> tuple[str, str]:
    """HTML and sort value of a scan's before/after column (every prior)."""
    parts, sort = [], []
    priors = case.get("priors") or []
    for prior in priors:
        text, met = _prior_state(prior, when)
        name = str(prior.get("prior", "")).split("=")[0]
        label = f"{_e(name)}: " if len(priors) > 1 else ""
        parts.append(f'<span class="{"pass" if met else "fail"}">{label}{_e(text)}</span>')
        sort.append(text)
    return "<br>".join(parts), "; ".join(sort)


def _img(uri: str, alt: str, cls: str, width: int | None = None, height: int | None = None) -> str:
    size = "" if width is None else f' width="{width}" height="{height}"'
    return f'<img class="{cls}" src="{uri}" alt="{_e(alt)}"{size}>'


class _Renderer:
    def __init__(self, report: Mapping[str, Any], masks_dir: Path, report_dir: Path | None, source: str | None):
        self.report = report
        self.masks_dir = masks_dir
        self.report_dir = report_dir
        self.source = source
        self.cases: list[Mapping[str, Any]] = list(report.get("cases") or [])
        self.settings: Mapping[str, Any] = report.get("settings") if isinstance(report.get("settings"), dict) else {}
        self.notes: list[str] = []
        self.images = 0

    # -- pieces -----------------------------------------------------------

    def png(self, data: bytes, alt: str, cls: str = "plot", width: int | None = None, height: int | None = None) -> str:
        self.images += 1
        return _img(_png_data_uri(data), alt, cls, width, height)

    def summary(self) -> str:
        counts = outcome_counts(self.cases)
        cards = [("corrected", "corrected", "corrected (broken before, met after)"),
                 ("already met", "alreadymet", "already met (left untouched)"),
                 ("not met", "notmet", "still not met"),
                 ("error", "error", "failed (could not be processed)")]
        if counts["skipped"]:
            cards.append(("skipped", "skipped", "skipped (output existed)"))
        card_html = "".join(
            f'<div class="card {cls}{" some" if counts[key] else ""}" data-count="{_e(key)}"><b>{counts[key]}</b>'
            f'{_e(text)}</div>'
            for key, cls, text in cards)
        priors = ", ".join(f"<code>{_e(p)}</code>" for p in self.report.get("priors") or []) or "–"
        spans = "".join(f'<span data-setting="{_e(k)}"><i>{_e(k)}</i>'
                        f"{_e(json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else v)}</span>"
                        for k, v in self.settings.items())
        settings = f'<div class="kv settings"><b>settings</b>{spans}</div>' if spans else ""
        return (f'<section id="summary"><div class="cards">{card_html}</div>'
                f'<p>model <code>{_e(self.report.get("model", "–"))}</code> · priors {priors} · '
                f'{len(self.cases)} scan(s)</p>{settings}</section>')

    def table(self) -> str:
        heads = [("index", "#", "num", "order of the scans in the report"),
                 ("scan", "scan", "text", "input scan; click to see its pictures"),
                 ("outcome", "outcome", "text", "corrected / already met / not met / error / skipped"),
                 ("before", "before", "text", "Betti numbers of the original mask (per prior)"),
                 ("after", "after", "text", "Betti numbers of the corrected mask (per prior)"),
                 ("steps", "steps", "num", "optimisation steps run"),
                 ("stop", "stop reason / error", "text", "why the optimisation stopped, or the error"),
                 ("seconds", "seconds", "num", "time spent on the scan"),
                 ("changed", "changed %", "num", "share of voxels whose label changed"),
                 ("dice", "Dice", "num", "mean Dice between the original and the corrected mask"),
                 ("topo", "topo loss", "num", "topological loss of the returned output")]
        head = "".join(
            f'<th data-key="{k}" data-type="{t}" title="{_e(tip)}"{" class=num" if t == "num" else ""}>'
            f'<button type="button">{_e(label)}</button></th>' for k, label, t, tip in heads)
        body = []
        for i, case in enumerate(self.cases, 1):
            outcome = case_outcome(case)
            name = os.path.basename(str(case.get("path", f"scan {i}")))
            before, before_sort = _priors_cell(case, "before")
            after, after_sort = _priors_cell(case, "after")
            stop = _e(case.get("stop_reason") or "")
            stop_sort = str(case.get("stop_reason") or "")
            if outcome == "error":  # the message where the stop reason goes
                stop_sort = str(case.get("error") or "error")
                stop = f'<span class="fail">{_e(stop_sort)}</span>'

            def num(value: Any, spec: str, scale: float = 1.0) -> str:
                number = _num(value)
                data = "" if number is None else repr(number)
                return f'<td class="num" data-value="{data}">{_fmt(value, spec, scale)}</td>'

            body.append(
                f'<tr id="row-{i}" data-index="{i}" data-outcome="{_e(outcome)}">'
                f'<td class="num" data-value="{i}">{i}</td>'
                f'<td data-value="{_e(name)}"><a href="#scan-{i}">{_e(name)}</a></td>'
                f'<td data-value="{_e(outcome)}"><span class="badge {outcome.replace(" ", "-")}">{_e(outcome)}</span></td>'
                f'<td data-value="{_e(before_sort)}">{before}</td><td data-value="{_e(after_sort)}">{after}</td>'
                + num(case.get("steps"), ".0f")
                + f'<td class="stop" data-value="{_e(stop_sort)}">{stop}</td>'
                + num(case.get("seconds"), ".1f") + num(case.get("changed_fraction"), ".2f", 100.0)
                + num(case.get("dice_original_corrected"), ".3f") + num(case.get("topo_loss"), ".3g")
                + "</tr>")
        return (f'<section id="scans"><h2>Scans</h2><p class="muted">Click a column header to sort; '
                f'a scan\'s name leads to its pictures.</p><table id="scan-table"><thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table></section>')

    def prior_table(self, case: Mapping[str, Any]) -> str:
        rows = []
        for prior in case.get("priors") or []:
            cells = []
            for when in ("before", "after"):
                text, met = _prior_state(prior, when)
                failing = prior.get(f"failing_slices_{when}") or []
                if len(prior.get(f"betti_{when}") or []) <= 1:
                    failing = []  # a 2D image checked "per slice": its one slice
                extra = f' <span class="muted">(slices {", ".join(map(str, failing))})</span>' if failing else ""
                cells.append(f'<td class="{"pass" if met else "fail"}">{_e(text)}{extra}</td>')
            rows.append(f'<tr><td><code>{_e(prior.get("prior"))}</code></td><td>{_e(_betti(prior.get("expected")))}'
                        f'</td>{"".join(cells)}</tr>')
        if not rows:
            return ""
        return ('<table class="priors"><thead><tr><th>prior</th><th>expected</th><th>before</th><th>after</th>'
                f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')

    def facts(self, case: Mapping[str, Any]) -> str:
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
        spans = "".join(f"<span><i>{_e(k)}</i>{_e(v if v is not None else '–')}</span>" for k, v in items)
        actions = "".join(f"<li>{_e(a)}</li>" for a in case.get("repair_actions") or [])
        return f'<div class="kv">{spans}</div>' + (f'<ul class="repair">{actions}</ul>' if actions else "")

    def legend(self, labels: Sequence[int], changes: bool) -> str:
        parts = [f'<span><span class="sw" style="background:rgb{label_colour(k)}"></span>label {k}</span>'
                 for k in labels]
        if changes:
            parts.append(f'<span><span class="sw" style="background:rgb{_ADDED}"></span>added / relabelled</span>')
            parts.append(f'<span><span class="sw" style="background:rgb{_REMOVED}"></span>removed</span>')
        return f'<div class="legend">{"".join(parts)}</div>'

    def overlays(self, vol: _Volumes, index: int | None, axis: int) -> str:
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            return a if index is None else np.take(a, index, axis=axis)

        before, after, image = cut(vol.before), cut(vol.after), cut(vol.image)
        masks = [m for m in (before, after) if m is not None]
        rows, cols = _crop_box(masks)
        step = max(1, math.ceil(max(rows.stop - rows.start, cols.stop - cols.start) / MAX_SIDE))

        def crop(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows, cols][::step, ::step]

        grey = _grey(crop(image), crop(masks[0]).shape)
        before, after = crop(before), crop(after)
        h, w = grey.shape
        spacing = vol.spacing
        if spacing is not None and index is not None:
            spacing = tuple(s for a, s in enumerate(spacing) if a != axis)
        aspect = 1.0 if not spacing or len(spacing) != 2 or spacing[1] <= 0 else spacing[0] / spacing[1]
        aspect = min(max(aspect, 0.2), 5.0)
        width = DISPLAY_WIDTH
        height = max(8, round(width * h * aspect / max(w, 1)))
        if height > 2 * DISPLAY_WIDTH:
            width, height = round(width * 2 * DISPLAY_WIDTH / height), 2 * DISPLAY_WIDTH
        panels = []
        same = before is not None and after is not None and np.array_equal(before, after)
        where = "" if index is None else f" slice {index}"
        if same:
            panels.append(("mask (unchanged)", _overlay(grey, after)))
        else:
            if before is not None:
                panels.append(("before", _overlay(grey, before)))
            if after is not None:
                panels.append(("after", _overlay(grey, after)))
            if before is not None and after is not None:
                panels.append(("changed voxels", _changes(grey, before, after)))
        figures = "".join(
            f"<figure>{self.png(_rgb_png(rgb), f'{title}{where}', 'px', width, height)}"
            f"<figcaption>{_e(title)}</figcaption></figure>" for title, rgb in panels)
        present = np.unique(np.concatenate([np.unique(m) for m in (before, after) if m is not None]))
        labels = [int(v) for v in present if v != 0]
        crop_note = (f"rows {rows.start}–{rows.stop - 1}, columns {cols.start}–{cols.stop - 1}"
                     + (f", every {step}th pixel" if step > 1 else ""))
        return (f'<div><div class="slice">{figures}</div>{self.legend(labels, len(panels) == 3)}'
                f'<div class="muted" style="font-size:11px">cropped to the masks: {_e(crop_note)}</div></div>')

    def diagram(self, entry: Mapping[str, Any], ndim: int) -> str:
        dims = max(2, 1 + max([int(b[0]) for key in ("before", "after") for b in entry.get(key) or []
                                if isinstance(b, (list, tuple)) and b and isinstance(b[0], int)] or [0]))
        dims = min(max(dims, ndim), 3)
        title = f"prior {entry.get('prior')} = ({_betti(entry.get('expected'))})"
        if entry.get("slice") is not None:
            title += f", slice {entry.get('slice')}"
        return (f"<figure>{self.png(_diagram_png(entry, dims), 'persistence diagrams ' + title)}"
                f"<figcaption>persistence diagrams, {_e(title)}</figcaption></figure>")

    def case(self, i: int, case: Mapping[str, Any]) -> str:
        outcome = case_outcome(case)
        path = str(case.get("path", ""))
        name = os.path.basename(path) or f"scan {i}"
        head = (f'<div class="case-head"><h3>{i}. {_e(name)}</h3>'
                f'<span class="badge {outcome.replace(" ", "-")}">{_e(outcome)}</span>'
                f'<a class="top" href="#scans">↑ table</a></div><div class="path">{_e(path)}</div>')
        if outcome == "error":
            message = f'<div class="error-msg">error: {_e(case.get("error") or "unknown error")}</div>'
            return f'<section class="case" id="scan-{i}" data-outcome="error">{head}{message}</section>'
        if outcome == "skipped":
            message = (f'<div class="note">skipped: {_e(case.get("stop_reason") or "output exists")} '
                       "(no earlier report entry for it)</div>")
            return f'<section class="case" id="scan-{i}" data-outcome="skipped">{head}{message}</section>'
        facts = f'<div class="facts">{self.prior_table(case)}{self.facts(case)}</div>'
        vol = _load_volumes(case, self.masks_dir, self.report_dir)
        notes = ""
        for note in vol.notes:
            self.notes.append(f"{path}: {note}")
            notes += f'<div class="note">{_e(note)}</div>'
        diagrams = [d for d in case.get("diagrams") or [] if isinstance(d, dict)]
        curve = [v for v in case.get("loss_curve") or [] if isinstance(v, (list, tuple)) and len(v) >= 2]
        reference = vol.after if vol.after is not None else vol.before
        ndim = reference.ndim if reference is not None else (3 if any(
            len(p.get("expected") or []) == 3 for p in case.get("priors") or []) else 2)
        per_slice = bool(self.settings.get("per_slice"))
        rows: list[tuple[str, str]] = []  # (heading, row of pictures)
        drawn: list[Mapping[str, Any]] = []
        where = ""
        if reference is not None and reference.ndim == 3:
            axis = _slice_axis(self.settings)
            slices, why, total = _chosen_slices(case, vol, axis)
            more = f" ({len(slices)} of {total} shown)" if total > len(slices) else ""
            where = f'<p class="muted">3D stack, slices along {"zyx"[axis]}: {_e(why)}{_e(more)}.</p>'
            for index in slices:
                here = [d for d in diagrams if d.get("slice") == index]
                drawn += here
                rows.append((f"slice {index}", self.overlays(vol, index, axis)
                             + "".join(self.diagram(d, 2) for d in here)))
            whole = [d for d in diagrams if d.get("slice") is None]  # 3D diagrams of the whole volume
            if whole:
                drawn += whole
                rows.append(("whole volume", "".join(self.diagram(d, 3) for d in whole)))
        elif reference is not None:
            here = [d for d in diagrams if d.get("slice") is None]
            drawn += here
            rows.append(("", self.overlays(vol, None, 0) + "".join(self.diagram(d, ndim) for d in here)))
        elif diagrams:  # no mask to draw: the diagrams alone
            drawn = diagrams
            rows.append(("", "".join(self.diagram(d, 2 if (d.get("slice") is not None or per_slice) else ndim)
                                     for d in diagrams)))
        texts = []
        if len(diagrams) > len(drawn):
            texts.append(f'<p class="muted">{len(diagrams) - len(drawn)} more persistence diagram(s) '
                         "of slices not drawn here are in the JSON report.</p>")
        if not diagrams:
            why = ("the original mask already met the prior: no optimisation"
                   if case.get("stop_reason") == "already met" else "none in the report")
            texts.append(f'<p class="muted">Persistence diagrams: {_e(why)}.</p>')
        else:
            texts.append('<p class="muted small">Persistence diagrams: each bar of the super-level filtration '
                         "of the prior's probability map is a point (birth, death). Filled: the β* longest bars, "
                         "which the loss pushes to (1, 0) (★); hollow: the others, pushed to the diagonal.</p>")
        if curve:
            chosen = case.get("chosen_step") if isinstance(case.get("chosen_step"), int) else None
            picture = (f'<figure>{self.png(_loss_png(curve, chosen), "loss curve")}'
                       "<figcaption>dotted line: the step whose output was kept</figcaption></figure>"
                       f'<div class="side">{"".join(texts)}</div>')
            rows.append(("loss per step", picture))
            texts = []
        body = [head]
        if len(rows) == 1 and not diagrams and not curve:  # untouched: one picture, facts beside it
            body.append(f'<div class="slice">{rows[0][1]}<div class="side">{facts}{notes}{where}'
                        f'{"".join(texts)}</div></div>')
        else:
            body += [facts, notes, where]
            for title, row in rows:
                body.append((f"<h4>{_e(title)}</h4>" if title else "") + f'<div class="slice">{row}</div>')
            body += texts
        return f'<section class="case" id="scan-{i}" data-outcome="{_e(outcome)}">{"".join(body)}</section>'

    # -- page -------------------------------------------------------------

    def page(self) -> str:
        sections = "".join(self.case(i, c) for i, c in enumerate(self.cases, 1))
        summary, table = self.summary(), self.table()
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        source = f" from <code>{_e(self.source)}</code>" if self.source else ""
        notes = ""
        if self.notes:
            notes = (f'<div class="note">{len(self.notes)} thing(s) could not be shown; see the scans\' sections.'
                     "</div>")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>topofix report</title><style>{_CSS}</style></head>\n<body>"
                f'<header><h1>topofix correct report</h1><p class="meta">{_e(stamp)}{source}</p></header>'
                f"{summary}{notes}{table}<h2>Scans in detail</h2>{sections}"
                f"<script>{_SCRIPT}</script></body></html>\n")


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
    _matplotlib()
    source = None
    from topofix.batch import BatchReport

    if isinstance(report, BatchReport):  # the typed report of a run that just finished: nothing re-read
        report = report.to_dict()
    if isinstance(report, Mapping):
        data = report
        if not isinstance(data.get("cases"), list):
            raise TopofixError("not a topofix correct report (no 'cases' list)")
    else:
        target = Path(report)
        target = target / REPORT_JSON if target.is_dir() else target
        data = load_report(target)
        source = str(target)
        report_dir = report_dir if report_dir is not None else target.parent
    base = Path(report_dir) if report_dir is not None else None
    masks = Path(masks_dir) if masks_dir is not None else (base if base is not None else Path("."))
    renderer = _Renderer(data, masks, base, source)
    text = renderer.page()
    return HtmlReport(html=text, notes=renderer.notes, scans=len(renderer.cases), images=renderer.images)


def default_output(report_json: str | os.PathLike[str]) -> Path:
    """``topofix_report.html`` beside the JSON (``<name>.html`` for another JSON name)."""
    target = Path(report_json)
    if target.is_dir():
        return target / REPORT_HTML
    return target.with_name(REPORT_HTML) if target.name == REPORT_JSON else target.with_suffix(".html")


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


def _absent_where(prior: Mapping[str, Any]) -> str:
    """``"2=1,1"`` for a whole scan, ``"2=1,1 (slices 0, 9)"`` for slices of a stack."""
    slices = prior.get("absent_slices") or []
    return prior.get("prior", "?") + (f" (slices {', '.join(map(str, slices))})" if slices else "")
