"""The report's pictures as PNG bytes: masks over the scan, changed voxels, persistence
diagrams, loss curves; and which slices of a 3D stack to draw.

Drawn with matplotlib's Agg canvas (no display, no global pyplot state, so safe in
worker threads); PNGs carry no metadata, which keeps them small and free of URLs.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from topofix.errors import TopofixError
from topofix.report.volumes import Volumes

__all__ = ["ADDED", "DISPLAY_WIDTH", "MAX_SIDE", "MAX_SLICES", "REMOVED", "OverlayPanels", "chosen_slices",
           "diagram_png", "label_colour", "loss_png", "matplotlib_parts", "overlay_panels", "rgb_png",
           "slice_axis"]

MAX_SLICES = 6
"""At most this many slices of a 3D stack are drawn per scan (evenly chosen among the candidates)."""

MAX_SIDE = 320
"""Overlay crops larger than this (pixels) are shown subsampled, to keep the file small."""

DISPLAY_WIDTH = 180
"""Width (CSS pixels) each overlay panel is shown at; pixels are scaled without smoothing."""

DPI = 88
ALPHA = 0.45

# label k -> colour; ITK-SNAP-like first colours, then a cycle
_LABEL_COLOURS = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40),
)
ADDED = (0, 200, 255)
"""Colour of voxels the correction added or relabelled."""
REMOVED = (255, 0, 200)
"""Colour of voxels the correction set to background."""
_DIM_COLOURS = ("#1f77b4", "#d62728", "#2ca02c")
_DIM_MARKERS = ("o", "^", "s")
_NO_METADATA: dict[str, Any] = {"Software": None}
"""PNG metadata: None drops matplotlib's default ``Software`` entry (smaller files, no URL inside)."""


def matplotlib_parts() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``; a one-line :class:`TopofixError` when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise TopofixError("the HTML report needs matplotlib: python -m pip install matplotlib") from None
    return Figure, FigureCanvasAgg


def rgb_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an ``(h, w, 3)`` uint8 array (no metadata: smaller, and no URLs inside)."""
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, np.ascontiguousarray(rgb), format="png", metadata=_NO_METADATA)
    return buffer.getvalue()


def _figure_png(fig: Any) -> bytes:
    _, FigureCanvasAgg = matplotlib_parts()
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata=_NO_METADATA)
    return buffer.getvalue()


def label_colour(label: int) -> tuple[int, int, int]:
    """RGB colour of a label in the overlays (label 1 red, 2 green, 3 blue, ...)."""
    return _LABEL_COLOURS[(int(label) - 1) % len(_LABEL_COLOURS)]


# --------------------------------------------------------------------------- overlays


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
    rgb[added] = ADDED
    rgb[removed] = REMOVED
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


@dataclass
class OverlayPanels:
    """The overlay pictures of one scan (or slice), cropped to the masks, before PNG encoding.

    ``panels`` holds ``(title, rgb)``: "mask (unchanged)" alone, or "before", "after" and
    "changed voxels" as far as the masks exist; ``width`` x ``height`` is the display size
    (CSS pixels, the scan's pixel spacing respected); ``crop_note`` says which part is shown.
    """

    panels: list[tuple[str, np.ndarray]]
    labels: list[int]
    width: int
    height: int
    crop_note: str

    @property
    def shows_changes(self) -> bool:
        """Whether the changed-voxels panel is there (its colours then join the legend)."""
        return len(self.panels) == 3


def _display_size(shape: tuple[int, ...], spacing: tuple[float, ...] | None) -> tuple[int, int]:
    """Panel size in CSS pixels: :data:`DISPLAY_WIDTH` wide, the pixel aspect respected (clamped)."""
    h, w = shape
    aspect = 1.0 if not spacing or len(spacing) != 2 or spacing[1] <= 0 else spacing[0] / spacing[1]
    aspect = min(max(aspect, 0.2), 5.0)
    width = DISPLAY_WIDTH
    height = max(8, round(width * h * aspect / max(w, 1)))
    if height > 2 * DISPLAY_WIDTH:
        width, height = round(width * 2 * DISPLAY_WIDTH / height), 2 * DISPLAY_WIDTH
    return width, height


def _panels(grey: np.ndarray, before: np.ndarray | None, after: np.ndarray | None) -> list[tuple[str, np.ndarray]]:
    if before is not None and after is not None and np.array_equal(before, after):
        return [("mask (unchanged)", _overlay(grey, after))]
    panels = []
    if before is not None:
        panels.append(("before", _overlay(grey, before)))
    if after is not None:
        panels.append(("after", _overlay(grey, after)))
    if before is not None and after is not None:
        panels.append(("changed voxels", _changes(grey, before, after)))
    return panels


def overlay_panels(vol: Volumes, index: int | None, axis: int) -> OverlayPanels:
    """The masks of ``vol`` over its scan: the whole 2D image (``index`` None) or one slice along ``axis``."""

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

    reference = crop(masks[0])
    assert reference is not None
    grey = _grey(crop(image), reference.shape)
    before, after = crop(before), crop(after)
    spacing = vol.spacing
    if spacing is not None and index is not None:
        spacing = tuple(s for a, s in enumerate(spacing) if a != axis)
    width, height = _display_size(grey.shape, spacing)
    present = np.unique(np.concatenate([np.unique(m) for m in (before, after) if m is not None]))
    crop_note = (f"rows {rows.start}–{rows.stop - 1}, columns {cols.start}–{cols.stop - 1}"
                 + (f", every {step}th pixel" if step > 1 else ""))
    return OverlayPanels(_panels(grey, before, after), [int(v) for v in present if v != 0], width, height, crop_note)


# --------------------------------------------------------------------------- plots


def _valid_bars(entry: Mapping[str, Any], key: str) -> list[Sequence[Any]]:
    """``[dim, birth, death, kept]`` bars of one side of a diagram entry, malformed ones dropped."""
    return [b for b in entry.get(key) or [] if isinstance(b, (list, tuple)) and len(b) >= 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b[:3])]


def _diagram_axes(ax: Any, bars: Sequence[Sequence[Any]], dims: int, title: str) -> None:
    ax.plot([0, 1], [0, 1], color="#888888", lw=0.8, ls="--", zorder=1)
    ax.plot([1], [0], marker="*", color="#444444", ms=7, zorder=1, ls="none")
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


def diagram_png(entry: Mapping[str, Any], dims: int) -> bytes:
    """Before/after persistence diagrams of one prior (and slice): birth (x) vs death (y)."""
    Figure, _ = matplotlib_parts()
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(4.4, 2.5))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, key in ((axes[0], "before"), (axes[1], "after")):
        _diagram_axes(ax, _valid_bars(entry, key), dims, key)
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


def _loss_axes(ax: Any, values: np.ndarray, title: str, colour: str, chosen_step: int | None) -> None:
    steps = np.arange(len(values))
    positive = values[np.isfinite(values) & (values > 0)]
    log = positive.size >= 2 and positive.max() / positive.min() > 30
    if log:
        keep = np.isfinite(values) & (values > 0)
        ax.semilogy(steps[keep], values[keep], marker=".", ms=4, lw=1.2, color=colour)
    else:
        ax.plot(steps, values, marker=".", ms=4, lw=1.2, color=colour)
    if chosen_step is not None and 0 <= chosen_step <= len(values):  # == len: met, no loss computed
        ax.axvline(chosen_step, color="#444444", lw=0.8, ls=":")
    ax.set_title(title + (" (log)" if log else ""), fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, lw=0.3, alpha=0.5)
    if len(values) <= 12:
        ax.set_xticks(np.arange(max(len(values), (chosen_step or 0) + 1)))


def loss_png(curve: Sequence[Sequence[float]], chosen_step: int | None) -> bytes:
    """Topological and similarity terms per step, in two panels (log scale where useful)."""
    Figure, _ = matplotlib_parts()
    fig = Figure(figsize=(5.6, 2.1))
    axes = fig.subplots(1, 2)
    for ax, column, title, colour in ((axes[0], 0, "topological loss", "#d62728"),
                                      (axes[1], 1, "similarity (MSE to original)", "#1f77b4")):
        values = np.array([float(v[column]) if v[column] is not None else np.nan for v in curve], float)
        _loss_axes(ax, values, title, colour, chosen_step)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.19, top=0.89, wspace=0.28)
    return _figure_png(fig)


# --------------------------------------------------------------------------- slices of a stack


def slice_axis(settings: Mapping[str, Any]) -> int:
    """Numpy axis of the run's ``--per-slice`` setting (``z`` when it has none)."""
    from topofix.slicing import SLICE_AXES

    return SLICE_AXES.get(str(settings.get("per_slice") or "z"), 0)


def _failing_slices(case: Mapping[str, Any], n: int) -> list[int]:
    """Slices (of ``n``) any prior found wrong before or after, in order."""
    recorded = [i for p in case.get("priors") or []
                for when in ("before", "after") for i in p.get(f"failing_slices_{when}") or []]
    return sorted({int(i) for i in recorded if isinstance(i, int) and 0 <= i < n})


def chosen_slices(case: Mapping[str, Any], vol: Volumes, axis: int) -> tuple[list[int], str, int]:
    """Slices to draw for a 3D case, why, and how many candidates there were.

    The slices whose topology was wrong before or after, else the one the correction
    changed most, else the middle one; at most :data:`MAX_SLICES`, evenly spread.
    """
    reference = vol.reference
    assert reference is not None
    failing = _failing_slices(case, reference.shape[axis])
    if failing:
        why = "slices whose topology was wrong before or after"
        candidates = failing
    elif vol.before is not None and vol.after is not None and (vol.before != vol.after).any():
        other = tuple(a for a in range(reference.ndim) if a != axis)
        changed = (vol.before != vol.after).sum(axis=other)
        candidates = [int(np.argmax(changed))]
        why = "the slice the correction changed most"
    else:
        candidates = [reference.shape[axis] // 2]
        why = "the middle slice"
    if len(candidates) <= MAX_SLICES:
        return candidates, why, len(candidates)
    picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, MAX_SLICES)).astype(int))
    return [candidates[i] for i in picks], why, len(candidates)
