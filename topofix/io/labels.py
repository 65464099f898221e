"""Label maps: integer arrays in the smallest dtype that holds their labels.

One set of rules for what counts as a label map, used both when a mask is read
(:func:`topofix.io.read_mask`) and when one is written (:func:`topofix.io.write_mask`),
so that whatever topofix writes it reads back unchanged: integer arrays pass,
integer-valued finite floats become integers, anything else is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np

from topofix.errors import InputError
from topofix.io.png import COLOUR_TYPES

__all__ = ["LABEL_DTYPES", "as_labels", "collapse_channels", "smallest_label_dtype"]

# Label dtypes tried in order by write_mask / read_mask (first that fits wins).
LABEL_DTYPES: tuple[np.dtype[np.integer[Any]], ...] = tuple(
    np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.uint64)
)


def smallest_label_dtype(lo: int, hi: int) -> np.dtype | None:
    """The first of :data:`LABEL_DTYPES` that holds ``[lo, hi]`` (``None``: beyond 64 bits)."""
    for dt in LABEL_DTYPES:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return None


def as_labels(array: np.ndarray, fail: Callable[[str], NoReturn]) -> np.ndarray:
    """Integer label array from ``array``; ``fail(problem)`` raises the caller's error.

    Integer arrays pass unchanged; floats must be finite and integer-valued
    (e.g. a label map saved as float32 by some pipeline) and are converted to
    the smallest fitting integer dtype.
    """
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if np.issubdtype(array.dtype, np.complexfloating):
        fail("complex-valued image; expected a label map")
    if not np.issubdtype(array.dtype, np.floating):
        fail(f"unsupported pixel type {array.dtype}; expected a label map")
    if not np.isfinite(array).all():
        fail("mask contains NaN or Inf values")
    if not np.array_equal(array, np.trunc(array)):
        fail("mask has non-integer values; expected a label map (threshold probability maps first)")
    if array.size == 0:
        return array.astype(np.uint8)
    dt = smallest_label_dtype(int(array.min()), int(array.max()))
    if dt is None:
        fail("labels exceed the 64-bit integer range")
    return array.astype(dt)


def collapse_channels(array: np.ndarray, shown: str, colour_type: int | None) -> np.ndarray:
    """Greyscale labels from an RGB(A) array whose colour channels are all equal."""
    comps = array.shape[-1]
    if colour_type in COLOUR_TYPES:
        kind = f"{COLOUR_TYPES[colour_type]} PNG"
    else:
        kind = f"vector image with {comps} components per voxel"
    if comps not in (3, 4):
        raise InputError(shown, f"{kind}; a mask must be a scalar (greyscale) label image")
    rgb = array[..., :3]
    if comps == 4:
        alpha = array[..., 3]
        if alpha.size and not np.all(alpha == alpha.flat[0]):
            raise InputError(shown, f"{kind} with a varying alpha channel; a mask must be a greyscale label image")
    grey = rgb[..., 0]
    if not (np.array_equal(grey, rgb[..., 1]) and np.array_equal(grey, rgb[..., 2])):
        hint = (
            " (SimpleITK expands palette indices to RGB colours, so the indices are lost)"
            if colour_type == 3
            else ""
        )
        raise InputError(
            shown, f"{kind} with differing channels{hint}; a mask must be a greyscale label image"
        )
    return np.ascontiguousarray(grey)
