"""The repair stage (topofix.repairing) against independent oracles.

Betti numbers are checked with scipy.ndimage labelling (2D) or gudhi's cubical
persistence (3D) from ``tests/oracles.py``, never with ``topofix.betti_numbers``
that the repair uses to decide; every map is hand-made so that the minimal
repair is known by construction.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracles import gudhi_betti, label_betti_2d

from topofix.priors import Prior
from topofix.repairing import _outer_diagrams, _simple_point_table, _thin
from topofix.repairing import repair_labels as repair
from topofix.topology.persistence import persistence

MYO, LV, RV = Prior((1, 1), (2,)), Prior((1, 0), (3,)), Prior((1, 0), (1,))


def disc(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def annulus(shape, centre, inner, outer):
    return disc(shape, centre, outer) & ~disc(shape, centre, inner)


def softmax_from(maps: dict[int, np.ndarray], shape, channels=4, rest=0.02) -> np.ndarray:
    """Channel-first probabilities: given channels set where given, channel 0 takes the remainder."""
    prob = np.zeros((channels,) + shape, np.float32)
    for c, m in maps.items():
        prob[c] = m
    prob[0] = np.clip(1 - prob[1:].sum(0), 0, 1)
    return prob


def broken_ring(gap_p: float, shape=(40, 40)):
    """A binary-map ring (label 1) with a three-row gap on its right side at probability ``gap_p``."""
    ring = annulus(shape, (20, 20), 6, 9)
    cols = np.indices(shape)[1]
    rows = np.indices(shape)[0]
    gap = ring & (cols > 20) & (np.abs(rows - 20) <= 1)
    s = np.full(shape, 0.02, np.float32)
    s[ring] = 0.9
    s[gap] = gap_p
    prob = np.stack([1 - s, s])
    return prob, (s >= 0.5).astype(np.uint8), gap


# --- missing loop -----------------------------------------------------------


@pytest.mark.parametrize("connectivity", ["full", "face"])
def test_open_ring_is_closed_through_the_gap_only(connectivity):
    prob, labels, gap = broken_ring(0.3)
    assert label_betti_2d(labels, connectivity) == (1, 0)
    result = repair(prob, labels, [Prior((1, 1), (1,))], connectivity=connectivity)
    changed = result.labels != labels
    assert label_betti_2d(result.labels, connectivity) == (1, 1)
    assert changed.any() and not (changed & ~gap).any()  # only gap voxels
    assert (result.labels[changed] == 1).all()
    assert result.changed == int(changed.sum()) and result.met
    entry = result.per_prior[0]
    assert (entry.betti_before, entry.betti_after, entry.met_before, entry.met_after) == ((1, 0), (1, 1), False, True)
    assert any("closed loop at level 0.30" in a for a in entry.actions)


def test_bridge_follows_the_highest_probabilities():
    prob, labels, gap = broken_ring(0.3)
    ridge = gap & (np.indices(gap.shape)[1] == 27)  # one column across the gap is more probable
    prob[1][ridge] = 0.4
    prob[0] = 1 - prob[1]
    result = repair(prob, labels, [Prior((1, 1), (1,))], connectivity="face")
    # 4-connected foreground: the minimal bridge across the three-row gap is that column
    np.testing.assert_array_equal(result.labels != labels, ridge)


def test_gap_below_the_floor_is_left_open_and_reported():
    prob, labels, _ = broken_ring(0.05)
    result = repair(prob, labels, [Prior((1, 1), (1,))], evidence_floor=0.1)
    assert result.labels.tobytes() == labels.tobytes() and result.changed == 0 and not result.met
    assert "no loop above the evidence floor 0.10" in result.per_prior[0].actions


@pytest.mark.parametrize("floor, closed", [(0.25, True), (float(np.nextafter(0.25, 1.0)), False)])
def test_a_gap_exactly_at_the_floor_is_closed(floor, closed):
    """The floor is inclusive: a loop that exists at level 0.25 (the gap's probability, exact in
    float32) is evidence at floor 0.25 and not at the next float above it."""
    prob, labels, gap = broken_ring(0.25)
    assert label_betti_2d(labels, "full") == (1, 0)
    result = repair(prob, labels, [Prior((1, 1), (1,))], evidence_floor=floor)
    if closed:
        assert label_betti_2d(result.labels, "full") == (1, 1) and result.met
        changed = result.labels != labels
        assert changed.any() and (gap | ~changed).all()  # only gap pixels drawn
    else:
        assert result.labels.tobytes() == labels.tobytes() and result.changed == 0 and not result.met


@pytest.mark.parametrize("seed", range(8))
def test_2d_prior_always_met_when_the_loop_is_above_the_floor(seed):
    rng = np.random.default_rng(seed)
    shape = (48, 48)
    centre = rng.integers(20, 28, 2)
    inner = int(rng.integers(4, 8))
    ring = annulus(shape, centre, inner, inner + int(rng.integers(2, 5)))
    s = np.where(ring, rng.uniform(0.7, 1.0, shape), rng.uniform(0.0, 0.08, shape)).astype(np.float32)
    angle = np.arctan2(*(np.indices(shape) - centre[:, None, None]))
    for a in rng.uniform(-np.pi, np.pi, int(rng.integers(1, 3))):  # one or two gaps
        cut = ring & (np.abs(np.angle(np.exp(1j * (angle - a)))) < 0.3)
        s[cut] = rng.uniform(0.12, 0.45, shape)[cut]
    prob = np.stack([1 - s, s])
    labels = (s >= 0.5).astype(np.int16)
    assert label_betti_2d(labels, "full")[1] == 0
    result = repair(prob, labels, [Prior((1, 1), (1,))])
    assert label_betti_2d(result.labels, "full") == (1, 1)
    changed = result.labels != labels
    assert (s[changed] >= 0.1).all()  # nothing drawn below the floor
    assert result.labels.dtype == labels.dtype


# --- extra components -------------------------------------------------------


def cardiac(shape=(48, 48)):
    """MYO ring (2) around LV (3), RV (1) on the left; probabilities peaked on each label."""
    myo = annulus(shape, (24, 26), 5, 9)
    lv = disc(shape, (24, 26), 5)
    rv = disc(shape, (24, 8), 5)
    prob = softmax_from({1: 0.9 * rv, 2: 0.9 * myo, 3: 0.9 * lv}, shape)
    return prob


def test_confident_blob_is_removed_into_the_neighbouring_label():
    shape = (48, 48)
    prob = cardiac(shape)
    blob = disc(shape, (24, 8), 2)  # MYO painted inside the RV, where RV is the runner-up
    prob[2][blob], prob[1][blob], prob[0][blob] = 0.95, 0.04, 0.01
    labels = prob.argmax(0).astype(np.uint8)
    ring_before = labels == 2
    ring_before[blob] = False
    assert label_betti_2d(labels == 2, "full") == (2, 1)
    result = repair(prob, labels, [MYO, LV, RV])
    assert label_betti_2d(result.labels == 2, "full") == (1, 1)
    assert (result.labels[blob] == 1).all()  # to RV, not to background
    np.testing.assert_array_equal(result.labels == 2, ring_before)  # the ring untouched
    assert result.changed == int(blob.sum()) and result.met


def test_the_less_persistent_of_two_extra_components_goes():
    shape = (40, 60)
    strong = disc(shape, (20, 10), 4)
    medium = disc(shape, (20, 30), 3)
    weak = disc(shape, (20, 48), 6)  # largest, but its peak is lowest: least persistent
    s = np.full(shape, 0.02, np.float32)
    s[strong], s[medium], s[weak] = 0.95, 0.9, 0.7
    prob = np.stack([1 - s, s])
    labels = (s >= 0.5).astype(np.uint8)
    result = repair(prob, labels, [Prior((2, 0), (1,))])
    np.testing.assert_array_equal(result.labels.astype(bool), strong | medium)
    assert label_betti_2d(result.labels, "full") == (2, 0)
    assert any("removed component of" in a for a in result.per_prior[0].actions)


# --- holes ------------------------------------------------------------------


def test_pinhole_is_filled():
    shape = (30, 30)
    blob = disc(shape, (15, 15), 8)
    s = np.where(blob, 0.9, 0.02).astype(np.float32)
    s[15, 15] = 0.4
    prob = np.stack([1 - s, s])
    labels = (s >= 0.5).astype(np.uint8)
    assert label_betti_2d(labels, "full") == (1, 1)
    result = repair(prob, labels, [Prior((1, 0), (1,))])
    assert label_betti_2d(result.labels, "full") == (1, 0)
    np.testing.assert_array_equal(result.labels.astype(bool), blob)


def two_hole_myocardium(shape=(48, 48)):
    """A MYO disc with the LV cavity (MYO 0.3, LV 0.6) and a spurious deep pinhole (MYO 0.02)."""
    wall = disc(shape, (24, 24), 14)
    lv = disc(shape, (24, 20), 4)
    spurious = disc(shape, (24, 33), 1)
    prob = softmax_from({2: 0.9 * wall}, shape)
    prob[2][lv], prob[3][lv], prob[0][lv] = 0.3, 0.6, 0.1
    prob[2][spurious], prob[3][spurious], prob[0][spurious] = 0.02, 0.0, 0.98
    return prob, lv, spurious


@pytest.mark.parametrize("partner", [LV, Prior((1, 0), (2, 3))], ids=["lv", "myo+lv"])
def test_pairing_keeps_the_hole_that_holds_the_lv(partner):
    # with 2+3=1,0 no prior vetoes filling the LV hole: only the pairing rule keeps it
    prob, lv, spurious = two_hole_myocardium()
    labels = prob.argmax(0).astype(np.uint8)
    assert label_betti_2d(labels == 2, "full") == (1, 2)
    result = repair(prob, labels, [MYO, partner])
    assert label_betti_2d(result.labels == 2, "full") == (1, 1)
    assert (result.labels[spurious] == 2).all() and (result.labels[lv] == 3).all()


def test_without_pairing_the_longest_bar_wins():
    """The same map without an LV prior: persistence alone keeps the spurious (deeper) hole."""
    prob, lv, spurious = two_hole_myocardium()
    labels = prob.argmax(0).astype(np.uint8)
    result = repair(prob, labels, [MYO])
    assert label_betti_2d(result.labels == 2, "full") == (1, 1)
    assert (result.labels[lv] == 2).all() and (result.labels[spurious] == 0).all()


def test_painted_cavity_is_opened_to_the_lv():
    """A filled disc whose centre has lower MYO probability: the H1 bar (0.9, 0.5) is there."""
    shape = (40, 40)
    wall = annulus(shape, (20, 20), 5, 9)
    centre = disc(shape, (20, 20), 5)
    prob = softmax_from({2: 0.9 * wall}, shape)
    prob[2][centre], prob[3][centre], prob[0][centre] = 0.5, 0.4, 0.1
    labels = prob.argmax(0).astype(np.uint8)
    assert label_betti_2d(labels == 2, "full") == (1, 0)
    result = repair(prob, labels, [MYO, LV])
    assert label_betti_2d(result.labels == 2, "full") == (1, 1)
    np.testing.assert_array_equal(result.labels == 3, centre)  # exactly the dip, given to the LV
    assert result.met and any("opened painted loop" in a for a in result.per_prior[0].actions)


# --- never worse --------------------------------------------------------------


def test_all_met_is_byte_identical():
    prob = cardiac()
    labels = prob.argmax(0).astype(np.int32)
    result = repair(prob, labels, [MYO, LV, RV])
    assert result.labels.dtype == labels.dtype and result.labels.tobytes() == labels.tobytes()
    assert result.changed == 0 and result.met
    assert all(e.met_before and e.met_after and not e.actions for e in result.per_prior)


def test_a_met_prior_is_untouched_while_another_is_repaired():
    shape = (48, 48)
    prob = cardiac(shape)
    extra = disc(shape, (42, 8), 2)  # an RV island far from the myocardium
    prob[1][extra], prob[0][extra] = 0.8, 0.2
    labels = prob.argmax(0).astype(np.uint8)
    result = repair(prob, labels, [MYO, LV, RV])
    assert label_betti_2d(result.labels == 1, "full") == (1, 0)
    for label in (2, 3):
        assert (result.labels == label).tobytes() == (labels == label).tobytes()


def test_a_fix_that_would_break_a_met_prior_is_undone():
    shape = (48, 48)
    prob = cardiac(shape)
    blob = disc(shape, (42, 40), 2)  # MYO island whose runner-up is the LV, far from the LV
    prob[2][blob], prob[3][blob], prob[0][blob] = 0.6, 0.35, 0.05
    labels = prob.argmax(0).astype(np.uint8)
    result = repair(prob, labels, [MYO, LV])
    # removing the island would make it a second LV component: LV (1,0) -> (2,0)
    assert result.labels.tobytes() == labels.tobytes() and not result.met
    assert any("would break 3" in a for a in result.per_prior[0].actions)


def test_protect_structures_do_not_get_worse():
    shape = (48, 48)
    prob = cardiac(shape)
    blob = disc(shape, (42, 40), 2)
    prob[2][blob], prob[3][blob], prob[0][blob] = 0.6, 0.35, 0.05
    labels = prob.argmax(0).astype(np.uint8)
    assert not repair(prob, labels, [MYO]).labels.tobytes() == labels.tobytes()
    guarded = repair(prob, labels, [MYO], protect=[Prior(None, (3,))])
    assert guarded.labels.tobytes() == labels.tobytes()


def test_no_evidence_leaves_the_map_alone():
    s = np.full((32, 32), 0.05, np.float32)
    s[10:20, 10:20] = 0.04
    prob = np.stack([1 - s, s])
    labels = np.zeros((32, 32), np.uint8)
    result = repair(prob, labels, [Prior((1, 1))], evidence_floor=0.1)
    assert result.changed == 0 and not result.met
    actions = result.per_prior[0].actions
    assert "no loop above the evidence floor 0.10" in actions
    assert "no component above the evidence floor 0.10" in actions


def test_missing_component_is_added_above_the_floor():
    shape = (30, 30)
    s = np.full(shape, 0.02, np.float32)
    s[disc(shape, (15, 15), 5)] = 0.3  # never argmax, but the network saw it
    prob = np.stack([1 - s, s])
    labels = np.zeros(shape, np.uint8)
    result = repair(prob, labels, [Prior((1, 0))])
    np.testing.assert_array_equal(result.labels.astype(bool), disc(shape, (15, 15), 5))


# --- stacks and volumes -------------------------------------------------------


def test_per_slice_touches_only_the_failing_slice():
    prob2, labels2, gap = broken_ring(0.3)
    ring = annulus(gap.shape, (20, 20), 6, 9)
    s_ok = np.where(ring, 0.9, 0.02).astype(np.float32)
    ok, nothing = np.stack([1 - s_ok, s_ok]), np.stack([np.ones_like(s_ok), 0 * s_ok])
    probs = np.stack([ok, prob2, ok, nothing], axis=1)  # (C, Z, H, W)
    labels = np.stack([ring, labels2.astype(bool), ring, np.zeros_like(ring)]).astype(np.uint8)
    result = repair(probs, labels, [Prior((1, 1), (1,))], per_slice="z")
    changed = result.labels != labels
    assert changed[1].any() and not changed[[0, 2, 3]].any()
    assert not (changed[1] & ~gap).any()
    assert all(label_betti_2d(result.labels[z], "full") == (1, 1) for z in range(3))
    assert [e.slice_index for e in result.per_prior] == [1] and result.met  # the empty slice is skipped


def test_3d_extra_component_and_cavity_in_a_shell():
    shape = (24, 24, 24)
    shell = disc(shape, (11, 11, 11), 8) & ~disc(shape, (11, 11, 11), 5)
    bubble = np.zeros(shape, bool)
    bubble[11, 11, 18] = True  # a one-voxel cavity inside the wall
    speck = disc(shape, (21, 21, 21), 1)
    s = np.where(shell, 0.9, 0.02).astype(np.float32)
    s[bubble] = 0.3
    s[speck] = 0.7
    prob = np.stack([1 - s, s])
    labels = (s >= 0.5).astype(np.uint8)
    assert gudhi_betti(labels, "full") == (2, 0, 2)
    result = repair(prob, labels, [Prior((1, 0, 1))])
    assert gudhi_betti(result.labels, "full") == (1, 0, 1)
    np.testing.assert_array_equal(result.labels.astype(bool), (shell | bubble))
    assert result.met


def test_3d_tunnels_are_reported_not_repaired():
    shape = (16, 16, 16)
    ball = disc(shape, (8, 8, 8), 5)
    s = np.where(ball, 0.9, 0.02).astype(np.float32)
    prob = np.stack([1 - s, s])
    labels = ball.astype(np.uint8)
    result = repair(prob, labels, [Prior((1, 1, 0))])
    assert result.changed == 0 and not result.met
    assert "tunnels (beta1) are not repaired in 3D" in result.per_prior[0].actions


# --- the thinning underneath ------------------------------------------------


@pytest.mark.parametrize("connectivity", ["full", "face"])
def test_simple_points_preserve_topology(connectivity):
    rng = np.random.default_rng(3)
    table = _simple_point_table(connectivity)
    weights = 1 << np.arange(8)
    ring = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
    for _ in range(300):
        mask = rng.random((7, 7)) < 0.55
        y, x = rng.integers(1, 6, 2)
        mask[y, x] = True
        code = sum(int(mask[y - 1 + dy, x - 1 + dx]) * w for (dy, dx), w in zip(ring, weights))
        removed = mask.copy()
        removed[y, x] = False
        same = label_betti_2d(mask, connectivity) == label_betti_2d(removed, connectivity)
        if table[code]:
            assert same
    # thinning a solid bar keeps it one connected piece without holes
    bar = np.zeros((9, 20), bool)
    bar[2:7, 2:18] = True
    thin = _thin(bar, bar, np.random.default_rng(0).random(bar.shape), connectivity)
    assert label_betti_2d(thin, connectivity) == (1, 0) and thin.sum() == 1


def test_sigmoid_map_and_bad_inputs():
    prob, labels, _ = broken_ring(0.3)
    result = repair(prob[1:], labels, [Prior((1, 1))])
    assert label_betti_2d(result.labels, "full") == (1, 1)
    with pytest.raises(ValueError):
        repair(prob[:, :10], labels, [Prior((1, 1))])
    with pytest.raises(ValueError):
        repair(prob, labels, [Prior((1, 1))], per_slice="z")


@pytest.mark.parametrize("connectivity", ["full", "face"])
@pytest.mark.parametrize("shape", [(23, 31), (9, 11, 13)])
def test_outer_diagrams_match_the_persistence_engine(connectivity, shape):
    prob = np.random.default_rng(5).random(shape).astype(np.float32)
    reference = persistence(prob, connectivity)
    ours = _outer_diagrams(prob, connectivity)
    for dim in (0, len(shape) - 1):
        for name in ("birth", "death", "birth_cell", "death_cell"):
            np.testing.assert_array_equal(getattr(ours[dim], name), getattr(reference[dim], name))
