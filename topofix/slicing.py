"""``--per-slice``: how a 3D stack is taken apart into 2D slices, in one place.

Why one module: ``check``, ``evaluate``, ``correct``/``predict`` (per-slice
inference and the per-slice rules) and ``repair`` must agree on which numpy
axis ``x``, ``y`` and ``z`` name, and on what a 2D image given with
``--per-slice`` is (its own single slice, index 0); each used to carry its own
copy of the table and of the slice loop.

Arrays are in numpy order ``(z, y, x)`` (SimpleITK's ``GetArrayFromImage``),
so ``z`` is axis 0; channel-first arrays (probabilities) add 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from topofix.choices import SliceAxis

SLICE_AXES: dict[str, int] = {axis.value: axis.axis for axis in SliceAxis}
"""Slice axis names (image axes as in ITK-SNAP/SimpleITK) -> numpy axis of a (z, y, x) array."""


def iter_slices(array: np.ndarray, per_slice: str | None) -> Iterator[tuple[int | None, np.ndarray]]:
    """``(index, plane)`` for every slice of ``array`` along ``per_slice``.

    ``None``: the whole array once, with index ``None``. A 2D array is its own
    only slice (index 0), so that the rules for slices (an empty slice of a
    stack, say) still apply to it. Planes are ``np.take`` copies (callers only
    read them; :func:`take_slice` gives a writable view).
    """
    if per_slice is None:
        yield None, array
        return
    if array.ndim == 2:
        yield 0, array
        return
    axis = SLICE_AXES[per_slice]
    for index in range(array.shape[axis]):
        yield index, np.take(array, index, axis=axis)


def slice_spacing(spacing: Sequence[float], ndim: int, per_slice: str | None) -> tuple[float, ...]:
    """The voxel size of a slice (numpy order): ``spacing`` without the sliced axis."""
    if per_slice is None or ndim == 2:
        return tuple(spacing)
    axis = SLICE_AXES[per_slice]
    return tuple(s for a, s in enumerate(spacing) if a != axis)


def slice_planes(shape_ndim: int, per_slice: str | None, n_slices: int | None) -> list[int | None]:
    """Slice indices a unit can have: ``[None]`` for a whole scan, else ``0..n-1``."""
    if per_slice is None or shape_ndim == 2:
        return [None] if per_slice is None else [0]
    assert n_slices is not None
    return list(range(n_slices))


def take_slice(array: np.ndarray, per_slice: str | None, index: int | None, channels: bool = False) -> np.ndarray:
    """The plane ``index`` of ``array`` along ``per_slice`` (the whole array for ``None``).

    A view, so that writing into it writes into ``array``.
    """
    if index is None or per_slice is None:
        return array
    spatial = array.ndim - (1 if channels else 0)
    if spatial == 2:  # a 2D scan with --per-slice: its only slice
        return array
    where: list[slice | int] = [slice(None)] * array.ndim
    where[SLICE_AXES[per_slice] + (1 if channels else 0)] = index
    return array[tuple(where)]


__all__ = ["SLICE_AXES", "iter_slices", "slice_planes", "slice_spacing", "take_slice"]
