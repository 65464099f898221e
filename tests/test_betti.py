"""Exact Betti numbers against hand-made answers and independent oracles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from oracles import brute_euler, gudhi_betti, label_betti_2d

from topofix import betti_numbers, euler_characteristic


def _img(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows])


RING = _img(["#####", "#...#", "#...#", "#...#", "#####"])
DIAMOND = _img([".#.", "#.#", ".#."])  # a ring only through corners
CHECKER = (np.add.outer(np.arange(5), np.arange(5)) % 2 == 0)

HAND_2D = [
    # (mask, full, face)
    (np.zeros((4, 4), bool), (0, 0), (0, 0)),
    (_img(["#"]), (1, 0), (1, 0)),
    (RING, (1, 1), (1, 1)),
    (_img(["###", "#.#", "###"]), (1, 1), (1, 1)),  # ring touching the border: still a hole
    (_img(["#.###", "#.#.#", "###.#"]), (1, 0), (1, 0)),  # holes open to the border are not holes
    (_img(["#..", ".#.", "..#"]), (1, 0), (3, 0)),  # diagonal line
    (DIAMOND, (1, 1), (4, 0)),
    (CHECKER, (1, 4), (13, 0)),
    (np.hstack([RING, np.zeros((5, 1), bool), RING]), (2, 2), (2, 2)),
    (_img(["######", "#.##.#", "######"]), (1, 2), (1, 2)),
]


@pytest.mark.parametrize("mask, full, face", HAND_2D)
def test_hand_made_2d(mask, full, face):
    assert betti_numbers(mask, "full") == full
    assert betti_numbers(mask, "face") == face
    assert betti_numbers(mask) == full  # "full" is the default


def _cube(n: int) -> np.ndarray:
    return np.ones((n, n, n), bool)


def _shell() -> np.ndarray:
    m = _cube(5)
    m[1:4, 1:4, 1:4] = False
    return m


def _torus() -> np.ndarray:
    m = np.zeros((3, 5, 5), bool)
    m[:, :, :] = RING
    return m


def _two_cavities() -> np.ndarray:
    m = np.ones((5, 5, 9), bool)
    m[2, 2, 2] = m[2, 2, 6] = False
    return m


def _genus_two() -> np.ndarray:
    m = np.ones((3, 5, 9), bool)
    m[:, 2, 2] = m[:, 2, 6] = False
    return m


def _diagonal_3d() -> np.ndarray:
    m = np.zeros((3, 3, 3), bool)
    m[0, 0, 0] = m[1, 1, 1] = m[2, 2, 2] = True
    return m


def _edge_touching_cubes() -> np.ndarray:
    m = np.zeros((2, 2, 2), bool)
    m[0, 0, 0] = m[0, 1, 1] = True  # share an edge only
    return m


HAND_3D = [
    (np.zeros((3, 3, 3), bool), (0, 0, 0), (0, 0, 0)),
    (_cube(3), (1, 0, 0), (1, 0, 0)),
    (_shell(), (1, 0, 1), (1, 0, 1)),
    (_torus(), (1, 1, 0), (1, 1, 0)),
    (_two_cavities(), (1, 0, 2), (1, 0, 2)),
    (_genus_two(), (1, 2, 0), (1, 2, 0)),
    (_diagonal_3d(), (1, 0, 0), (3, 0, 0)),
    (_edge_touching_cubes(), (1, 0, 0), (2, 0, 0)),
]


@pytest.mark.parametrize("mask, full, face", HAND_3D)
def test_hand_made_3d(mask, full, face):
    assert betti_numbers(mask, "full") == full
    assert betti_numbers(mask, "face") == face


@pytest.mark.parametrize("mask, full, face", HAND_2D + HAND_3D)
def test_hand_made_cases_agree_with_gudhi(mask, full, face):
    # guards the hand-made answers themselves
    assert gudhi_betti(mask, "full") == full
    assert gudhi_betti(mask, "face") == face


def test_label_values_and_dtypes():
    labels = np.zeros((7, 7), np.int16)
    labels[1:6, 1:6] = 2
    labels[3, 3] = 0
    assert betti_numbers(labels) == (1, 1)  # any non-zero value is foreground
    assert betti_numbers(labels.astype(np.float32)) == (1, 1)
    assert betti_numbers(labels == 2) == (1, 1)


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    assert betti_numbers(torch.from_numpy(RING)) == (1, 1)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="2D or 3D"):
        betti_numbers(np.ones(5))
    with pytest.raises(ValueError, match="2D or 3D"):
        betti_numbers(np.ones((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="connectivity"):
        betti_numbers(RING, "diagonal")


@pytest.mark.parametrize("connectivity", ["full", "face"])
@pytest.mark.parametrize("seed", range(40))
def test_random_masks_match_gudhi(seed, connectivity):
    rng = np.random.default_rng(seed)
    ndim = 2 if seed % 2 else 3
    shape = tuple(rng.integers(1, 14 if ndim == 2 else 9, size=ndim))
    mask = rng.random(shape) < rng.uniform(0.2, 0.8)
    assert betti_numbers(mask, connectivity) == gudhi_betti(mask, connectivity)


@pytest.mark.parametrize("connectivity", ["full", "face"])
@pytest.mark.parametrize("seed", range(20))
def test_random_2d_masks_match_labelling(seed, connectivity):
    rng = np.random.default_rng(1000 + seed)
    mask = rng.random((rng.integers(5, 40), rng.integers(5, 40))) < 0.5
    assert betti_numbers(mask, connectivity) == label_betti_2d(mask, connectivity)


def test_larger_smooth_volume_matches_gudhi():
    # blobs from a smoothed random field: many cavities and tunnels at once
    from scipy import ndimage

    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.standard_normal((24, 28, 30)), 1.5)
    mask = field > 0.02
    for connectivity in ("full", "face"):
        assert betti_numbers(mask, connectivity) == gudhi_betti(mask, connectivity)


masks_2d = arrays(np.bool_, st.tuples(st.integers(1, 7), st.integers(1, 7)))
masks_3d = arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mask=st.one_of(masks_2d, masks_3d), connectivity=st.sampled_from(["full", "face"]))
def test_euler_characteristic_matches_a_cell_by_cell_count(mask, connectivity):
    """chi = b0 - b1 + b2 (Euler-Poincare) against a brute-force enumeration of cells."""
    chi = brute_euler(mask, connectivity)
    assert euler_characteristic(mask, connectivity) == chi
    betti = betti_numbers(mask, connectivity)
    assert sum((-1) ** k * b for k, b in enumerate(betti)) == chi


@settings(max_examples=60, deadline=None)
@given(mask=st.one_of(masks_2d, masks_3d))
def test_alexander_duality_between_conventions(mask):
    """In 2D, the holes of a mask under one convention are the components of its
    complement (inside a background frame) under the other, minus the outside."""
    if mask.ndim != 2:
        # in 3D: cavities of the mask = components of the complement, minus one
        padded = ~np.pad(mask, 1)
        assert betti_numbers(mask, "full")[2] == betti_numbers(padded, "face")[0] - 1
        assert betti_numbers(mask, "face")[2] == betti_numbers(padded, "full")[0] - 1
        return
    padded = ~np.pad(mask, 1)
    assert betti_numbers(mask, "full")[1] == betti_numbers(padded, "face")[0] - 1
    assert betti_numbers(mask, "face")[1] == betti_numbers(padded, "full")[0] - 1


@settings(max_examples=40, deadline=None)
@given(mask=st.one_of(masks_2d, masks_3d), connectivity=st.sampled_from(["full", "face"]))
def test_invariant_under_flips_transposes_and_padding(mask, connectivity):
    expected = betti_numbers(mask, connectivity)
    assert betti_numbers(mask.T, connectivity) == expected
    assert betti_numbers(np.flip(mask, 0), connectivity) == expected
    assert betti_numbers(np.pad(mask, 2), connectivity) == expected
