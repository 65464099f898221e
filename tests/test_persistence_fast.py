"""The fast paths of topofix.persistence: the fused 2D kernel and dimension-restricted runs.

Both must give exactly the diagrams (values and critical cells) of the generic
computation, which test_persistence.py checks against gudhi.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_persistence import gudhi_diagrams, ours

import topofix
from topofix.topology._fast2d import GROUPS4, GROUPS8
from topofix.topology._kernels import neighbour_offsets, radix_order, union_find_corners, union_find_pairs
from topofix.topology.persistence import _diagram


def generic_2d(p: np.ndarray, connectivity: str):
    """The former 2D path: plain union-finds over every pixel (8-neighbours through corners)."""
    flat = p.ravel()
    shape = np.array(p.shape, np.int64)
    desc = radix_order(flat, True)
    asc = desc[::-1].copy()
    full = connectivity == "full"

    def components(order, eight, outside):
        if eight:
            return union_find_corners(order, shape, outside)
        return union_find_pairs(order, shape, neighbour_offsets(p.shape, False), outside)

    young, merge, n = components(desc, full, False)
    h0 = _diagram(0, flat, np.concatenate([young[:n], [desc[0]]]), np.concatenate([merge[:n], [-1]]))
    young, merge, n = components(asc, not full, True)
    h1 = _diagram(1, flat, merge[:n], young[:n])
    return h0, h1


def same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("birth", "death", "birth_cell", "death_cell"))


def maps_2d(rng):
    for _ in range(60):
        shape = tuple(int(s) for s in rng.integers(1, 25, 2))
        yield rng.random(shape).astype(np.float32)
        yield (rng.integers(0, 4, shape) / 3).astype(np.float32)  # plateaus
    from scipy import ndimage

    for seed in range(3):
        v = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal((80, 90)), 2)
        yield v.astype(np.float32)
        yield np.round(v * 4).astype(np.float32)  # large plateaus


def test_local_group_tables():
    # empty, one neighbour, N+E (8-connected through the diagonal; 4-connected only with NE)
    assert GROUPS8[0] == GROUPS4[0] == 0
    assert GROUPS8[0b1] == GROUPS4[0b1] == 1
    assert GROUPS8[0b101] == 1 and GROUPS4[0b101] == 2 and GROUPS4[0b111] == 1
    assert GROUPS4[0b10] == 0  # a corner alone is not a 4-neighbour
    assert GROUPS8[0b00010001] == 2  # N and S
    assert GROUPS8[255] == 1 and GROUPS4[255] == 1


@pytest.mark.parametrize("connectivity", ["full", "face"])
def test_fast_2d_equals_the_generic_path_with_critical_cells(connectivity):
    rng = np.random.default_rng(7 + (connectivity == "face"))
    for p in maps_2d(rng):
        fast = topofix.persistence(p, connectivity)
        for k, reference in enumerate(generic_2d(p, connectivity)):
            assert same(fast[k], reference), (p.shape, k)


@pytest.mark.parametrize("connectivity", ["full", "face"])
def test_fast_2d_equals_gudhi_on_larger_maps(connectivity):
    from scipy import ndimage

    rng = np.random.default_rng(11)
    for sigma in (0, 1, 3):
        p = rng.random((64, 75))
        p = (ndimage.gaussian_filter(p, sigma) if sigma else p).astype(np.float32)
        assert ours(p, connectivity) == gudhi_diagrams(p, connectivity)


def test_fast_2d_inputs_of_every_layout_agree():
    rng = np.random.default_rng(3)
    p = rng.random((30, 40)).astype(np.float32)
    reference = topofix.persistence(p)
    for variant in (p.astype(np.float64), np.asfortranarray(p), p.T.copy().T, p[:, :].tolist()):
        result = topofix.persistence(variant)
        assert all(same(a, b) for a, b in zip(result, reference))
    strided = np.zeros((30, 80), np.float32)
    strided[:, ::2] = p
    assert all(same(a, b) for a, b in zip(topofix.persistence(strided[:, ::2]), reference))


def test_fast_2d_refuses_nan_and_inf():
    for bad in (np.nan, np.inf, -np.inf):
        p = np.zeros((5, 6), np.float32)
        p[2, 3] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            topofix.persistence(p)
    with pytest.raises(ValueError, match="non-empty"):
        topofix.persistence(np.zeros((0, 4), np.float32))


@pytest.mark.parametrize("connectivity", ["full", "face"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_restricted_dims_equal_the_full_computation(ndim, connectivity):
    from itertools import combinations

    rng = np.random.default_rng(20 + ndim)
    for _ in range(8):
        shape = tuple(int(s) for s in rng.integers(2, 14 if ndim == 2 else 9, ndim))
        p = rng.random(shape).astype(np.float32)
        if rng.random() < 0.5:
            p = np.round(p * 3) / 3
        whole = topofix.persistence(p, connectivity)
        for size in range(1, ndim + 1):
            for chosen in combinations(range(ndim), size):
                part = topofix.persistence(p, connectivity, dims=chosen)
                for k in range(ndim):
                    if k in chosen:
                        assert same(part[k], whole[k]), (shape, chosen, k)
                    else:
                        assert part[k] is None
    # one dimension against gudhi, and an int for dims
    p = rng.random((7, 8, 9) if ndim == 3 else (20, 21)).astype(np.float32)
    reference = gudhi_diagrams(p, connectivity)
    for k in range(ndim):
        dgm = topofix.persistence(p, connectivity, dims=k)[k]
        assert sorted((float(np.float32(b)), float(np.float32(d))) for b, d in dgm.as_array()) == reference[k]


def test_restricted_dims_betti_and_batch():
    rng = np.random.default_rng(1)
    p = rng.random((12, 13, 14)).astype(np.float32)
    part = topofix.persistence(p, dims=(0, 2))
    assert part.betti(0.5)[1] is None
    assert part.betti(0.5)[0] == topofix.persistence(p).betti(0.5)[0]
    batch = topofix.persistence_batch(rng.random((4, 20, 20)).astype(np.float32), dims=[1], workers=2)
    assert all(r[0] is None and r[1] is not None for r in batch)
    for bad in ([], [3], (-1,), [0, 5]):
        with pytest.raises(ValueError, match="dims"):
            topofix.persistence(p, dims=bad)
