"""What the page's templates are given: plain data, numbers already formatted.

Why a separate layer: the templates (``templates/*.html.j2``) then hold no logic beyond
loops and ``if``s, and what a cell shows (``–`` for a missing number, ``3/10 slices fail``)
is decided here, in Python, where it can be read and tested.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from topofix.report.loading import case_outcome, outcome_counts

__all__ = ["COLUMNS", "SORT_KEYS", "CaseView", "Figure", "Overlays", "Picture", "Row", "betti_text", "diagram_dims",
           "facts", "fmt", "no_diagrams_why", "prior_ndim", "prior_rows", "summary", "table_row"]

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


def fmt(value: Any, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    number = _num(value)
    return "–" if number is None else f"{number * scale:{spec}}{suffix}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def betti_text(values: Any) -> str:
    return "–" if not values else ",".join(str(v) for v in values)


def _prior_state(prior: Mapping[str, Any], when: str) -> tuple[str, bool]:
    """Short text of one prior's Betti numbers (``1,0`` or ``3/10 slices fail``) and whether met."""
    rows = prior.get(f"betti_{when}") or []
    failing = prior.get(f"failing_slices_{when}") or []
    met = bool(prior.get(f"met_{when}"))
    if len(rows) <= 1:
        return (betti_text(rows[0]) if rows else "–"), met
    return (f"{len(failing)}/{len(rows)} slices fail" if failing else f"{len(rows)} slices ok"), met


def _absent_where(prior: Mapping[str, Any]) -> str:
    """``"2=1,1"`` for a whole scan, ``"2=1,1 (slices 0, 9)"`` for slices of a stack."""
    slices = prior.get("absent_slices") or []
    return prior.get("prior", "?") + (f" (slices {', '.join(map(str, slices))})" if slices else "")


def _setting_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


def summary(report: Mapping[str, Any], cases: Sequence[Mapping[str, Any]],
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
    return {"value": "" if number is None else repr(number), "text": fmt(value, spec, scale)}


def table_row(i: int, case: Mapping[str, Any]) -> dict[str, Any]:
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


def prior_rows(case: Mapping[str, Any]) -> list[dict[str, Any]]:
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
        rows.append({"prior": _text(prior.get("prior")), "expected": betti_text(prior.get("expected")), "cells": cells})
    return rows


def facts(case: Mapping[str, Any]) -> list[tuple[str, str]]:
    items = [("steps", case.get("steps")), ("stop reason", case.get("stop_reason")),
             ("chosen step", case.get("chosen_step")), ("seconds", fmt(case.get("seconds"), ".2f")),
             ("voxels changed", fmt(case.get("changed_fraction"), ".3f", 100.0, " %")),
             ("Dice original/corrected", fmt(case.get("dice_original_corrected"), ".4f")),
             ("topological loss", fmt(case.get("topo_loss"), ".4g")),
             ("similarity loss", fmt(case.get("similarity_loss"), ".3g"))]
    if case.get("absent"):
        items.append(("absent (no evidence)", ", ".join(_absent_where(p) for p in case.get("priors") or []
                                                        if p.get("absent"))))
    if case.get("repaired"):
        items.append(("repair stage", f"{case.get('repair_changed')} voxels"))
    return [(k, str(v) if v is not None else "–") for k, v in items]


def diagram_dims(entry: Mapping[str, Any], ndim: int) -> int:
    """Homology dimensions a diagram shows: those in its bars, at least H0, H1 and the image's."""
    dims = max(2, 1 + max([int(b[0]) for key in ("before", "after") for b in entry.get(key) or []
                            if isinstance(b, (list, tuple)) and b and isinstance(b[0], int)] or [0]))
    return min(max(dims, ndim), 3)


def prior_ndim(case: Mapping[str, Any]) -> int:
    """3 when a prior lists three Betti numbers (a volume), else 2: the dimension when no mask is there."""
    return 3 if any(len(p.get("expected") or []) == 3 for p in case.get("priors") or []) else 2


def no_diagrams_why(case: Mapping[str, Any]) -> str:
    return ("the original mask already met the prior: no optimisation"
            if case.get("stop_reason") == "already met" else "none in the report")


