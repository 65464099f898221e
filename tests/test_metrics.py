"""Segmentation metrics against independent implementations and hand-made answers.

* Dice: SimpleITK's LabelOverlapMeasuresImageFilter.
* Surfaces: SimpleITK's BinaryContourImageFilter (face-connected, on a zero-padded image).
* Hausdorff distance: SimpleITK's HausdorffDistanceImageFilter on those surfaces, with spacing.
* HD95 and ASSD: brute-force pairwise distances (scipy.spatial.distance.cdist), anisotropic spacing.
* VI: hand-computed entropies.
* Betti numbers / errors: hand-made masks.
* Betti matching: hand-made cases with known answers, properties, and a brute-force
  induced matching (Bauer & Lesnick's definition; image persistence by linear algebra
  over Z/2 on the cubical complex, refined as documented in topofix.metrics.topology).
"""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from scipy.spatial.distance import cdist

from topofix import Geometry, betti_numbers
from topofix.metrics import (
    average_symmetric_surface_distance,
    betti_error,
    betti_matching,
    betti_matching_error,
    dice,
    hausdorff_distance,
    hd95,
    mean_label_dice,
    surface_distances,
    surface_mask,
    variation_of_information,
    vi_terms,
)


def _img(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows])


def _random_pair(rng, shape, lo=0.05, hi=0.6):
    return rng.random(shape) < rng.uniform(lo, hi), rng.random(shape) < rng.uniform(lo, hi)


# --------------------------------------------------------------------------- #
# Dice and VI
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("shape", [(15, 17), (6, 7, 8)])
def test_dice_matches_simpleitk(shape):
    rng = np.random.default_rng(1)
    for _ in range(10):
        p, g = _random_pair(rng, shape)
        f = sitk.LabelOverlapMeasuresImageFilter()
        f.Execute(sitk.GetImageFromArray(p.astype(np.uint8)), sitk.GetImageFromArray(g.astype(np.uint8)))
        assert dice(p, g) == pytest.approx(f.GetDiceCoefficient(), abs=1e-12)


def test_mean_label_dice_matches_simpleitk_per_label():
    """``correct``'s change measure: SimpleITK's per-label Dice, averaged over the labels in either map."""
    rng = np.random.default_rng(5)
    for shape in ((12, 13), (5, 6, 7)):
        for _ in range(5):
            a = rng.integers(0, 4, shape).astype(np.uint8)
            b = np.where(rng.random(shape) < 0.3, rng.integers(0, 5, shape), a).astype(np.uint8)
            f = sitk.LabelOverlapMeasuresImageFilter()
            f.Execute(sitk.GetImageFromArray(a), sitk.GetImageFromArray(b))
            labels = sorted((set(np.unique(a)) | set(np.unique(b))) - {0})
            expected = np.mean([f.GetDiceCoefficient(int(label)) for label in labels])
            assert mean_label_dice(a, b) == pytest.approx(expected, abs=1e-12)


def test_mean_label_dice_hand_made_cases():
    empty = np.zeros((3, 3), np.uint8)
    assert mean_label_dice(empty, empty) == 1.0  # unchanged all-background map (dice() says NaN here)
    a = empty.copy()
    a[0, :2] = 1
    a[2, 2] = 2
    b = empty.copy()
    b[0, :2] = 1
    assert mean_label_dice(a, b) == 0.5  # label 1 kept (1.0), label 2 removed (0.0)
    assert mean_label_dice(a, a) == 1.0
    c = a.copy()
    c[0, 1] = 3  # label 1 halves (2*1/3), label 2 kept, label 3 new (0)
    assert mean_label_dice(a, c) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_dice_empty_rules_and_labels():
    empty = np.zeros((4, 4), bool)
    one = empty.copy()
    one[1, 1] = True
    assert math.isnan(dice(empty, empty))
    assert dice(one, empty) == 0.0 and dice(empty, one) == 0.0
    assert dice(one * 7, one) == 1.0  # non-zero = foreground
    with pytest.raises(ValueError, match="shape"):
        dice(one, np.zeros((3, 4)))


def test_vi_hand_computed():
    p = np.array([0, 0, 1, 1, 2, 2])
    g = np.array([0, 0, 0, 1, 1, 1])
    # joint counts (0,0)=2 (1,0)=1 (1,1)=1 (2,1)=2 over 6 voxels
    h_p, h_g = math.log(3), math.log(2)
    h_pg = -(2 * (2 / 6) * math.log(2 / 6) + 2 * (1 / 6) * math.log(1 / 6))
    assert variation_of_information(p, g) == pytest.approx(2 * h_pg - h_p - h_g)
    assert variation_of_information(p, g) == pytest.approx(math.log(3) - math.log(2) / 3)
    split, merge = vi_terms(p, g)
    assert split == pytest.approx(h_pg - h_g) and merge == pytest.approx(h_pg - h_p)
    # a split of one region into two halves costs log 2 in one term only
    a = np.array([[0, 0, 1, 1]])
    b = np.zeros((1, 4), int)
    assert vi_terms(a, b) == pytest.approx((math.log(2), 0.0))


def test_vi_properties():
    rng = np.random.default_rng(2)
    p = rng.integers(0, 4, (9, 11))
    g = rng.integers(0, 3, (9, 11))
    assert variation_of_information(p, p) == 0.0
    assert variation_of_information(p, (p + 5) * 3) == pytest.approx(0.0, abs=1e-12)  # partitions, not names
    assert variation_of_information(p, g) == pytest.approx(variation_of_information(g, p))
    assert 0 < variation_of_information(p, g) <= math.log(p.size)
    big = rng.integers(0, 70000, (50, 50))  # many labels: the sparse path
    assert variation_of_information(big, big) == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------- #
# Surfaces and distances
# --------------------------------------------------------------------------- #


def _sitk_contour(mask: np.ndarray) -> np.ndarray:
    img = sitk.GetImageFromArray(np.pad(mask, 1).astype(np.uint8))
    f = sitk.BinaryContourImageFilter()
    f.SetFullyConnected(False)
    inner = tuple(slice(1, -1) for _ in mask.shape)
    return sitk.GetArrayFromImage(f.Execute(img)).astype(bool)[inner]


def _brute_surface(mask: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mask)
    for idx in zip(*np.nonzero(mask)):
        for axis in range(mask.ndim):
            for step in (-1, 1):
                n = list(idx)
                n[axis] += step
                if not 0 <= n[axis] < mask.shape[axis] or not mask[tuple(n)]:
                    out[idx] = True
    return out


def _brute_directed(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    pa = np.argwhere(_brute_surface(a)) * np.asarray(spacing)
    pb = np.argwhere(_brute_surface(b)) * np.asarray(spacing)
    return cdist(pa, pb).min(axis=1)


@pytest.mark.parametrize("shape", [(14, 11), (6, 7, 5)])
def test_surface_matches_simpleitk_contour_and_brute_force(shape):
    rng = np.random.default_rng(3)
    for _ in range(10):
        m = rng.random(shape) < rng.uniform(0.2, 0.8)
        assert np.array_equal(surface_mask(m), _sitk_contour(m))
        assert np.array_equal(surface_mask(m), _brute_surface(m))


@pytest.mark.parametrize("shape, spacing", [((13, 16), (0.7, 1.9)), ((6, 8, 7), (3.0, 0.8, 1.1))])
def test_hausdorff_matches_simpleitk(shape, spacing):
    rng = np.random.default_rng(4)
    for _ in range(10):
        p, g = _random_pair(rng, shape)
        a = sitk.GetImageFromArray(_sitk_contour(p).astype(np.uint8))
        b = sitk.GetImageFromArray(_sitk_contour(g).astype(np.uint8))
        a.SetSpacing(spacing[::-1])  # ITK order
        b.SetSpacing(spacing[::-1])
        f = sitk.HausdorffDistanceImageFilter()
        f.Execute(a, b)
        assert hausdorff_distance(p, g, spacing) == pytest.approx(f.GetHausdorffDistance(), abs=1e-9)


@pytest.mark.parametrize("shape, spacing", [((12, 15), (0.6, 2.3)), ((5, 7, 6), (4.0, 0.9, 1.3))])
def test_hd95_and_assd_match_brute_force(shape, spacing):
    rng = np.random.default_rng(5)
    for _ in range(10):
        p, g = _random_pair(rng, shape)
        d_pg = _brute_directed(p, g, spacing)
        d_gp = _brute_directed(g, p, spacing)
        expected_hd95 = max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))
        expected_assd = (d_pg.sum() + d_gp.sum()) / (d_pg.size + d_gp.size)
        assert hd95(p, g, spacing) == pytest.approx(expected_hd95, abs=1e-9)
        assert average_symmetric_surface_distance(p, g, spacing) == pytest.approx(expected_assd, abs=1e-9)
        d = surface_distances(p, g, spacing)
        assert np.sort(d.pred_to_gt) == pytest.approx(np.sort(d_pg))
        assert d.hd == pytest.approx(max(d_pg.max(), d_gp.max()))


def test_hd95_is_max_of_directed_percentiles_not_pooled():
    # a 1-voxel prediction inside a long bar: the two directions differ a lot
    g = np.zeros((3, 41), bool)
    g[1, :] = True
    p = np.zeros_like(g)
    p[1, 20] = True
    d = surface_distances(p, g)
    assert d.pred_to_gt.tolist() == [0.0]
    assert d.hd95 == pytest.approx(np.percentile(d.gt_to_pred, 95))
    assert d.hd95 > np.percentile(np.concatenate([d.pred_to_gt, d.gt_to_pred]), 95) - 1e-12


def test_known_distances_and_spacing_conventions():
    a = np.zeros((5, 12), bool)
    a[1:4, 1:4] = True
    b = np.roll(a, 5, axis=1)  # shifted 5 voxels along x (the last axis)
    assert hausdorff_distance(a, b) == 5.0
    assert hausdorff_distance(a, b, spacing=(1.0, 0.5)) == 2.5  # per array axis: x is 0.5
    geometry = Geometry((0.5, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))  # ITK order (x, y)
    assert hausdorff_distance(a, b, spacing=geometry) == 2.5
    assert hd95(a, b, spacing=(1.0, 0.5)) == 2.5
    # surface columns 1, 2, 3 hold 3, 2, 3 voxels, at 2.5, 2.0, 1.5 from the other square (both ways)
    assert average_symmetric_surface_distance(a, b, spacing=(1.0, 0.5)) == pytest.approx((3 * 2.5 + 2 * 2 + 3 * 1.5) / 8)
    assert hausdorff_distance(a, a) == 0.0
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, b, spacing=(1.0, 0.0))


def test_surface_distances_empty_rules():
    empty = np.zeros((6, 6), bool)
    one = empty.copy()
    one[2:4, 2:4] = True
    both = surface_distances(empty, empty)
    assert math.isnan(both.hd) and math.isnan(both.hd95) and math.isnan(both.assd)
    for d in (surface_distances(one, empty), surface_distances(empty, one)):
        assert d.hd == d.hd95 == d.assd == math.inf


def test_distances_are_exact_after_cropping():
    # objects far from each other in a big image: the crop to the union keeps both surfaces
    p = np.zeros((40, 50), bool)
    g = np.zeros_like(p)
    p[2:5, 3:6] = True
    g[30:33, 40:44] = True
    spacing = (1.3, 0.7)
    d_pg = _brute_directed(p, g, spacing)
    d_gp = _brute_directed(g, p, spacing)
    assert hausdorff_distance(p, g, spacing) == pytest.approx(max(d_pg.max(), d_gp.max()))


# --------------------------------------------------------------------------- #
# Betti numbers and errors
# --------------------------------------------------------------------------- #

RING = _img([".......", ".#####.", ".#...#.", ".#...#.", ".#...#.", ".#####.", "......."])
DISC = _img([".......", ".#####.", ".#####.", ".#####.", ".#####.", ".#####.", "......."])


def test_betti_error_hand_made():
    assert betti_error(RING, DISC) == (0, 1)
    assert betti_error(RING, RING) == (0, 0)
    two = np.zeros((7, 12), bool)
    two[1:3, 1:3] = True
    two[1:3, 6:9] = True
    assert betti_error(two, np.zeros_like(two)) == (2, 0)
    ball = np.zeros((5, 5, 5), bool)
    ball[1:4, 1:4, 1:4] = True
    hollow = ball.copy()
    hollow[2, 2, 2] = False
    assert betti_error(hollow, ball) == (0, 0, 1)


# --------------------------------------------------------------------------- #
# Betti matching: known answers
# --------------------------------------------------------------------------- #


def _ring(shape, top, left, size, width=1):
    m = np.zeros(shape, bool)
    m[top : top + size, left : left + size] = True
    m[top + width : top + size - width, left + width : left + size - width] = False
    return m


def _box(shape, *slices):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in slices)] = True
    return m


@pytest.mark.parametrize("connectivity", ["full", "face"])
def test_betti_matching_known_cases_2d(connectivity):
    s = (16, 16)
    # two overlapping rings (shifted by one voxel): components and loops matched
    m = betti_matching(_ring(s, 2, 2, 8, 2), _ring(s, 3, 3, 8, 2), connectivity)
    assert m.errors == (0, 0) and m.matched == (1, 1)
    # a ring against the disc it bounds: the loop is unmatched
    disc = _box(s, (2, 10), (2, 10))
    assert betti_matching(_ring(s, 2, 2, 8, 2), disc, connectivity).errors == (0, 1)
    assert betti_matching(disc, _ring(s, 2, 2, 8, 2), connectivity).errors == (0, 1)
    # two blobs against one blob overlapping one of them: one unmatched component
    two = _box(s, (1, 4), (1, 4)) | _box(s, (9, 13), (9, 13))
    one = _box(s, (10, 14), (10, 14))
    m = betti_matching(two, one, connectivity)
    assert m.errors == (1, 0) and m.unmatched_pred == (1, 0) and m.unmatched_gt == (0, 0)
    # shifted blobs that do not overlap (nor touch): unmatched on both sides
    assert betti_matching(_box(s, (2, 5), (2, 5)), _box(s, (2, 5), (9, 12)), connectivity).errors == (2, 0)
    # Betti error 0, but the holes are in different places
    left, right = _ring(s, 1, 1, 5), _ring(s, 8, 9, 5)
    m = betti_matching(left, right, connectivity)
    assert betti_error(left, right, connectivity) == (0, 0)
    assert m.errors == (2, 2)
    # a ring split into two holes by a bar: one hole matched, one not
    split = _ring(s, 2, 2, 9)
    split[6, 2:11] = True
    m = betti_matching(_ring(s, 2, 2, 9), split, connectivity)
    assert m.pred_betti == (1, 1) and m.gt_betti == (1, 2) and m.errors == (0, 1)
    # empty against something: everything is unmatched
    assert betti_matching(np.zeros(s, bool), split, connectivity).errors == (1, 2)
    assert betti_matching(np.zeros(s, bool), np.zeros(s, bool), connectivity).errors == (0, 0)


def test_betti_matching_touching_counts_as_one_union_component():
    # two components of the prediction bridged only by the ground truth
    p = _box((5, 9), (1, 4), (1, 3)) | _box((5, 9), (1, 4), (6, 8))
    g = _box((5, 9), (2, 3), (1, 8))
    m = betti_matching(p, g)
    assert m.pred_betti[0] == 2 and m.gt_betti[0] == 1
    assert m.errors[0] == 1  # one pair per component of the union


def _crossed_holes(wall_row: int):
    """Two holes each, crossed: x's wall splits left/right, y's wall cuts the left part at wall_row."""
    s = (12, 20)
    frame = _box(s, (1, 11), (1, 19)) & ~_box(s, (2, 10), (2, 18))
    x = frame.copy()
    x[1:11, 12] = True  # x: h1 = left (cols 2-11), h2 = right (cols 13-17)
    y = frame.copy()
    y[wall_row, 1:13] = True
    y[1 : wall_row + 1, 12] = True  # y: g2 = top-left, g1 = the rest (bottom-left + right)
    return x, y


@pytest.mark.parametrize("connectivity", ["full", "face"])
def test_betti_matching_ties_follow_the_documented_rule(connectivity):
    # Union holes: k2 = h1 & g2 (top-left), k1 = h1 & g1 (bottom-left), k3 = h2 & g1 (right, 8x5).
    # Each hole is represented by its largest union hole; pairs that chose the same one match.
    x, y = _crossed_holes(wall_row=6)  # k2 = 40 voxels, k1 = 30, k3 = 40 (tie: k2's first voxel first)
    m = betti_matching(x, y, connectivity)
    assert m.pred_betti == (1, 2) and m.gt_betti == (1, 2)
    assert m.matched == (1, 2) and m.errors == (0, 0)  # h1-g2 through k2, h2-g1 through k3
    x, y = _crossed_holes(wall_row=3)  # k2 = 10 voxels, k1 = 60 (largest in both h1 and g1), k3 = 40
    m = betti_matching(x, y, connectivity)
    assert m.matched == (1, 1) and m.errors == (0, 2)  # only h1-g1 through k1
    for wall_row in (3, 6):
        _check_against_oracle(*_crossed_holes(wall_row), connectivity, seed=0)


def test_betti_matching_3d_known_cases():
    s = (7, 7, 7)
    ball = _box(s, (1, 6), (1, 6), (1, 6))
    hollow = ball.copy()
    hollow[3, 3, 3] = False
    m = betti_matching(hollow, ball)
    assert m.pred_betti == (1, 0, 1) and m.gt_betti == (1, 0, 0)
    assert m.matched == (1, 0, 0) and m.errors == (0, 0, 1) and m.error == 1
    assert m.dimensions == (0, 1, 2)
    assert betti_matching(hollow, hollow).errors == (0, 0, 0)
    shifted = np.roll(hollow, 1, axis=2)  # cavities at different voxels: both unmatched
    assert betti_matching(hollow, shifted).errors == (0, 0, 2)
    apart = _box(s, (1, 3), (1, 3), (1, 3)), _box(s, (4, 6), (4, 6), (4, 6))
    assert betti_matching(*apart, "face").errors == (2, 0, 0)
    assert betti_matching(*apart, "full").errors == (2, 0, 0)
    torus = _box(s, (2, 5), (1, 6), (1, 6)) & ~_box(s, (2, 5), (3, 4), (3, 4))
    m = betti_matching(torus, ball)
    assert m.pred_betti == (1, 1, 0) and m.errors == (0, 1, 0) and m.betti_errors == (0, 1, 0)
    assert betti_matching_error(torus, torus) == (0, 0, 0)
    assert betti_matching(np.zeros(s, bool), np.zeros(s, bool)).matched == (0, 0, 0)


def _ring_3d(shape, plane, at, corner, size):
    """A square ring of 1-voxel width: in the plane ``z == at`` (``plane="xy"``) or ``y == at`` ("xz")."""
    m = np.zeros(shape, bool)
    a, b = corner
    if plane == "xy":
        m[at, a : a + size, b : b + size] = True
        m[at, a + 1 : a + size - 1, b + 1 : b + size - 1] = False
    else:
        m[a : a + size, at, b : b + size] = True
        m[a + 1 : a + size - 1, at, b + 1 : b + size - 1] = False
    return m


def _solid_torus(shape=(7, 12, 12)):
    m = _box(shape, (1, 6), (1, 11), (1, 11))
    m[:, 4:8, 4:8] = False
    return m


@pytest.mark.parametrize("connectivity", ["full", "face"])
def test_betti_matching_3d_tunnels(connectivity):
    def bm(p, g):
        m = betti_matching(p, g, connectivity)
        assert m.pred_betti == betti_numbers(p, connectivity) and m.gt_betti == betti_numbers(g, connectivity)
        return m.matched[1], m.errors[1]

    s = (7, 7, 9)
    ring = _ring_3d(s, "xy", 3, (1, 1), 5)
    linked = _ring_3d(s, "xz", 3, (1, 3), 5)  # through the ring's hole
    assert betti_numbers(ring | linked, connectivity)[:2] == (2, 2)
    assert bm(ring, ring) == (1, 0)
    assert bm(ring, np.roll(ring, 1, axis=2)) == (1, 0)  # shifted by one voxel: the same tunnel
    assert bm(ring, linked) == (0, 2)  # linked rings: two different tunnels
    assert bm(ring, ring | linked) == (1, 1)
    far = np.zeros((7, 7, 16), bool)
    left, right = _ring_3d(far.shape, "xy", 3, (1, 1), 5), _ring_3d(far.shape, "xy", 3, (1, 10), 5)
    assert bm(left, right) == (0, 2)  # unlinked, apart
    assert bm(left | right, right) == (1, 1)
    overlapping = _ring_3d(s, "xy", 3, (1, 4), 4)  # shares a side with the ring: u has two tunnels
    assert bm(ring, overlapping) == (0, 2)
    solid = _solid_torus()
    channel = _box(solid.shape, (2, 5), (2, 10), (2, 10)) & ~_box(solid.shape, (0, 7), (3, 9), (3, 9))
    hollow = solid & ~channel  # a torus surface with thick walls: b1 = 2, b2 = 1
    assert betti_numbers(hollow, connectivity) == (1, 2, 1)
    assert bm(hollow, solid) == (1, 1)  # the loop around the hole matches, the one around the tube not
    assert bm(hollow, hollow) == (2, 0)
    filled = _box(solid.shape, (1, 6), (1, 11), (1, 11))
    assert bm(solid, filled) == (0, 1)  # a solid torus against the block that fills its hole
    assert bm(solid, np.roll(solid, 1, axis=0)) == (1, 0)  # shifted along the axis of the hole
    assert bm(solid, np.roll(solid, 1, axis=2)) == (1, 0)  # shifted across, less than the hole's width
    for p, g in [(ring, linked), (ring, np.roll(ring, 1, axis=2)), (ring, overlapping)]:
        _check_against_oracle(p, g, connectivity, seed=0)


def test_betti_matching_crop_keeps_positions():
    # the same pair placed in a bigger image with an offset gives the same answer
    rng = np.random.default_rng(6)
    p, g = _random_pair(rng, (9, 9), 0.3, 0.6)
    big_p = np.zeros((30, 25), bool)
    big_g = np.zeros((30, 25), bool)
    big_p[11:20, 7:16] = p
    big_g[11:20, 7:16] = g
    for c in ("full", "face"):
        assert betti_matching(big_p, big_g, c) == betti_matching(p, g, c)


masks_2d = arrays(np.bool_, st.tuples(st.integers(1, 9), st.integers(1, 9)))
masks_3d = arrays(np.bool_, st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), connectivity=st.sampled_from(["full", "face"]), three_d=st.booleans())
def test_betti_matching_properties(data, connectivity, three_d):
    p = data.draw(masks_3d if three_d else masks_2d)
    g = data.draw(arrays(np.bool_, st.just(p.shape)))
    m = betti_matching(p, g, connectivity)
    assert m.pred_betti == betti_numbers(p, connectivity)
    assert m.gt_betti == betti_numbers(g, connectivity)
    for e, be in zip(m.errors, m.betti_errors):
        assert e is None or e >= be  # a refinement of the Betti error
        assert e is None or (e - be) % 2 == 0
    assert betti_matching(g, p, connectivity).errors == m.errors  # symmetric
    assert set(betti_matching(p, p, connectivity).errors) <= {0, None}  # identical masks: 0
    assert betti_matching(p, p.astype(np.uint8) * 3, connectivity).error == 0


# --------------------------------------------------------------------------- #
# Betti matching: a brute-force induced matching as the oracle
# --------------------------------------------------------------------------- #


def _cell_value(coord, vals, construction):
    choices = []
    for a, c in enumerate(coord):
        if construction == "T":  # voxels are top cells: a cell is in when any adjacent voxel is
            opts = [(c - 1) // 2] if c % 2 else [c // 2 - 1, c // 2]
        else:  # voxels are vertices: a cell is in when all its vertices are
            opts = [(c - 1) // 2, (c + 1) // 2] if c % 2 else [c // 2]
        choices.append([o for o in opts if 0 <= o < vals.shape[a]])
    values = [vals[idx] for idx in itertools.product(*choices)]
    return max(values) if construction == "T" else min(values)


def oracle_betti_matching(x, y, connectivity="full", seed=0):
    """(b_k(x), b_k(y), matched pairs) per dimension k < d, from the definition.

    Cubical complex of the image padded with one background voxel, then one frame voxel
    (homology relative to the frame = the outside as one point). Super-level filtrations
    of x, y and u = x | y (foreground 1, background 0), refined by one global cell order:
    foreground cells of u; then background cells growing from the outside (an edge never
    joins two components born in the foreground, neither of them the outside; the rest of
    this phase in random order, except the background squares, which enter one at a time
    in C order of the grid after all background edges), holding back one top cell of
    each hole of u and of the outside region; then the held cells, holes smallest first (size, later first voxel
    first) and the outside last. Persistence pairs by column reduction over Z/2; the image
    barcode of H(x_t) -> H(u_t) from ranks of [cycles of x_s | boundaries of u_t]; a bar of
    x is matched to the bar of u that dies when its image bar dies (Bauer & Lesnick).
    """
    construction = "T" if connectivity == "full" else "V"
    rng = np.random.default_rng(seed)
    d = x.ndim

    def padded(m):
        return np.pad(np.pad((m != 0).astype(int), 1), 1, constant_values=2)

    vox = {"x": padded(x), "y": padded(y)}
    vox["u"] = np.maximum(vox["x"], vox["y"])
    ext = [2 * s + 1 if construction == "T" else 2 * s - 1 for s in vox["u"].shape]
    coords = list(itertools.product(*(range(e) for e in ext)))
    n = len(coords)
    cid = {c: i for i, c in enumerate(coords)}
    dim = [sum(ci % 2 for ci in c) for c in coords]
    val = {k: [_cell_value(c, v, construction) for c in coords] for k, v in vox.items()}
    frame = [v == 2 for v in val["u"]]
    boundary = []
    for c in coords:
        faces = []
        for a in range(d):
            if c[a] % 2:
                for step in (-1, 1):
                    f = list(c)
                    f[a] += step
                    faces.append(cid[tuple(f)])
        boundary.append(faces)

    # holes of u: bounded background components (background connectivity); one held top cell each
    rank = 1 if connectivity == "full" else d
    lab, nlab = ndimage.label(vox["u"] != 1, ndimage.generate_binary_structure(d, rank))
    held = []
    for h in range(1, nlab + 1):
        if h == lab[(0,) * d]:
            continue
        flat = np.flatnonzero(lab.ravel() == h)
        corner = np.unravel_index(int(flat[0]), lab.shape)
        cell = cid[tuple(2 * int(v) + 1 for v in corner)]  # T: that voxel; V: the block above it
        held.append(((flat.size, -int(flat[0])), cell))
    held.sort()
    held.append((None, cid[(3,) * d]))  # a top cell of the outside region (in the padding), last
    held_cells = {c for _, c in held}

    phase1 = sorted((i for i in range(n) if val["u"][i] == 1), key=lambda i: (dim[i], i))
    outside = n
    parent = list(range(n + 1))
    positive = [val["u"][i] == 1 and dim[i] == 0 for i in range(n)] + [False]

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a, b):
        a, b = find(a), find(b)
        if a != b:
            if b == outside:
                a, b = b, a
            parent[b] = a
            positive[a] = positive[a] or positive[b]

    def node(i):
        return outside if frame[i] else i

    for i in phase1:
        if dim[i] == 1:
            union(*(node(f) for f in boundary[i]))
    rest = [i for i in range(n) if val["u"][i] == 0 and i not in held_cells]
    phase2 = [i for i in rest if dim[i] == 0]
    rng.shuffle(phase2)
    edges = [i for i in rest if dim[i] == 1]
    rng.shuffle(edges)
    while edges:
        waiting = []
        for e in edges:
            a, b = (find(node(f)) for f in boundary[e])
            if a == b or outside in (a, b) or not (positive[a] and positive[b]):
                union(a, b)
                phase2.append(e)
            else:
                waiting.append(e)
        assert len(waiting) < len(edges)
        edges = waiting
    higher = [i for i in rest if dim[i] >= 2]
    rng.shuffle(higher)
    phase2 += sorted(higher, key=lambda i: (dim[i], i if dim[i] == 2 else 0))  # squares in C order
    pi = [-1] * n
    for k, i in enumerate(phase1 + phase2 + [c for _, c in held]):
        pi[i] = k

    def key(name, c):
        return (-val[name][c], pi[c])

    def reduce(name):
        cells = sorted((i for i in range(n) if not frame[i]), key=lambda i: key(name, i))
        pos = {c: j for j, c in enumerate(cells)}
        R, V, pivots, pairs, cycles = {}, {}, {}, [], {}
        for j, c in enumerate(cells):
            col = 0
            for f in boundary[c]:
                if not frame[f]:
                    assert pos[f] < j  # a valid filtration
                    col ^= 1 << pos[f]
            v = 1 << j
            while col and (col.bit_length() - 1) in pivots:
                i = pivots[col.bit_length() - 1]
                col ^= R[i]
                v ^= V[i]
            R[j], V[j] = col, v
            if col:
                pivots[col.bit_length() - 1] = j
                pairs.append((cells[col.bit_length() - 1], c))
            else:
                cycles[c] = v
        return cells, pos, R, pairs, cycles

    red = {k: reduce(k) for k in ("x", "y", "u")}
    u_cells, u_pos, u_R, u_pairs, _ = red["u"]
    u_keys = [key("u", c) for c in u_cells]

    def to_u(v, cells):
        out = 0
        while v:
            b = v & -v
            out |= 1 << u_pos[cells[b.bit_length() - 1]]
            v ^= b
        return out

    def matched(name, k):
        cells, pos, _, pairs, cycles = red[name]
        bars, deaths_in_u = 0, []
        u_deaths = sorted(key("u", dd) for bb, dd in u_pairs if dim[bb] == k)
        by_death = {key("u", dd): (bb, dd) for bb, dd in u_pairs}
        for b, death in pairs:
            if dim[b] != k or not val[name][b] > val[name][death]:
                continue  # zero-length bars are not in the barcode
            bars += 1
            tb = key(name, b)
            older = [to_u(cycles[c], cells) for c in cells[: pos[b]] if dim[c] == k and c in cycles]
            zb = to_u(cycles[b], cells)

            def alive(t, older=older, zb=zb):  # is the image bar born at tb still alive in H(u_t)?
                basis = {}
                for j in range(bisect.bisect_right(u_keys, t)):
                    if dim[u_cells[j]] == k + 1 and u_R[j]:
                        basis[u_R[j].bit_length() - 1] = u_R[j]

                def add(v):
                    while v:
                        low = v.bit_length() - 1
                        if low not in basis:
                            basis[low] = v
                            return True
                        v ^= basis[low]
                    return False

                for z in older:
                    add(z)
                return add(zb)

            if not alive(tb):
                continue  # zero-length image bar: unmatched
            later = [t for t in u_deaths if t > tb]
            lo, hi = 0, len(later) - 1
            assert not alive(later[hi])
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (mid + 1, hi) if alive(later[mid]) else (lo, mid)
            ub, ud = by_death[later[lo]]
            if val["u"][ub] > val["u"][ud]:
                deaths_in_u.append(ud)
        assert len(set(deaths_in_u)) == len(deaths_in_u)
        return bars, set(deaths_in_u)

    result = []
    for k in range(d):
        nx, mx = matched("x", k)
        ny, my = matched("y", k)
        result.append((nx, ny, len(mx & my)))
    return result


def _crop_to_union(p, g):
    """Both masks cropped to the bounding box of their union (where the refinement is defined)."""
    u = p | g
    if not u.any():
        return p, g
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(u))
    return p[box], g[box]


def _check_against_oracle(p, g, connectivity, seed):
    p, g = _crop_to_union(p, g)
    expected = oracle_betti_matching(p, g, connectivity, seed)
    m = betti_matching(p, g, connectivity)
    assert tuple(e[0] for e in expected) == m.pred_betti
    assert tuple(e[1] for e in expected) == m.gt_betti
    for k, (_, _, pairs) in enumerate(expected):
        if m.matched[k] is not None:
            assert m.matched[k] == pairs, (k, p.astype(int), g.astype(int), expected, m)


def test_oracle_on_known_cases():
    s = (10, 10)
    assert oracle_betti_matching(_ring(s, 1, 1, 6), _box(s, (1, 7), (1, 7))) == [(1, 1, 1), (1, 0, 0)]
    assert oracle_betti_matching(_box(s, (1, 3), (1, 3)), _box(s, (6, 8), (6, 8))) == [(1, 1, 0), (0, 0, 0)]


@pytest.mark.parametrize("connectivity", ["full", "face"])
@pytest.mark.parametrize("shape, cases", [((7, 7), 12), ((4, 4, 4), 2)])
def test_betti_matching_equals_brute_force_induced_matching(connectivity, shape, cases):
    rng = np.random.default_rng(7)
    for seed in range(cases):
        p, g = _random_pair(rng, shape, 0.3, 0.7)
        _check_against_oracle(p, g, connectivity, seed)


@pytest.mark.slow
@pytest.mark.parametrize("connectivity", ["full", "face"])
@pytest.mark.parametrize("shape, cases", [((9, 9), 150), ((12, 10), 60), ((5, 5, 5), 25), ((4, 6, 5), 25)])
def test_betti_matching_equals_brute_force_many(connectivity, shape, cases):
    rng = np.random.default_rng(8)
    for seed in range(cases):
        p, g = _random_pair(rng, shape, 0.25, 0.75)
        _check_against_oracle(p, g, connectivity, seed)


@pytest.mark.parametrize("connectivity", ["full", "face"])
def test_betti_matching_3d_dimension_1_equals_brute_force(connectivity):
    rng = np.random.default_rng(9)
    for seed in range(8):
        p, g = _random_pair(rng, [(4, 4, 4), (3, 4, 5)][seed % 2], 0.3, 0.7)
        _check_against_oracle(p, g, connectivity, seed)


@pytest.mark.parametrize("connectivity", ["full", "face"])
def test_betti_matching_3d_float64_path(connectivity, monkeypatch):
    # grids too large for exact float32 values go through gudhi: same answers
    from topofix.metrics import topology

    rng = np.random.default_rng(10)
    pairs = [_random_pair(rng, (5, 6, 5), 0.3, 0.7) for _ in range(4)]
    expected = [betti_matching(p, g, connectivity) for p, g in pairs]
    monkeypatch.setattr(topology, "_FLOAT32_EXACT", 0)
    assert [betti_matching(p, g, connectivity) for p, g in pairs] == expected


@pytest.mark.slow
@pytest.mark.parametrize("connectivity", ["full", "face"])
@pytest.mark.parametrize("shape, cases", [((4, 4, 4), 100), ((3, 5, 6), 60), ((5, 5, 5), 30)])
def test_betti_matching_3d_dimension_1_equals_brute_force_many(connectivity, shape, cases):
    rng = np.random.default_rng(12)
    for seed in range(cases):
        p, g = _random_pair(rng, shape, 0.2, 0.8)
        _check_against_oracle(p, g, connectivity, seed)
