"""--per-slice helpers (topofix.slicing), on hand-made arrays whose slices are known."""

from __future__ import annotations

import numpy as np

from topofix.slicing import iter_slices, slice_planes, slice_spacing, take_slice


def test_iter_slices_cuts_along_the_named_axis():
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # (z, y, x)
    assert [(i, p.tolist()) for i, p in iter_slices(a, None)] == [(None, a.tolist())]
    z = list(iter_slices(a, "z"))
    assert [i for i, _ in z] == [0, 1] and z[1][1].tolist() == a[1].tolist()
    x = list(iter_slices(a, "x"))
    assert [i for i, _ in x] == [0, 1, 2, 3] and x[2][1].tolist() == a[:, :, 2].tolist()
    y = list(iter_slices(a, "y"))
    assert len(y) == 3 and y[0][1].tolist() == a[:, 0, :].tolist()
    flat = a[0]
    assert [(i, p.tolist()) for i, p in iter_slices(flat, "x")] == [(0, flat.tolist())]  # 2D: its only slice


def test_slice_spacing_drops_the_sliced_axis():
    assert slice_spacing((3.0, 0.7, 0.5), 3, "z") == (0.7, 0.5)
    assert slice_spacing((3.0, 0.7, 0.5), 3, "x") == (3.0, 0.7)
    assert slice_spacing((3.0, 0.7, 0.5), 3, None) == (3.0, 0.7, 0.5)
    assert slice_spacing((0.7, 0.5), 2, "z") == (0.7, 0.5)


def test_take_slice_is_a_writable_view_and_slice_planes_counts():
    a = np.zeros((2, 3, 4))
    take_slice(a, "y", 1)[:] = 5
    assert a[:, 1, :].min() == 5 and a.sum() == 5 * 8
    probs = np.zeros((2, 2, 3, 4))  # channels first
    take_slice(probs, "x", 3, channels=True)[:] = 1
    assert probs[:, :, :, 3].min() == 1 and probs.sum() == 2 * 2 * 3
    assert slice_planes(3, None, None) == [None]
    assert slice_planes(2, "z", None) == [0]
    assert slice_planes(3, "z", 4) == [0, 1, 2, 3]
