"""DenseTopologicalLoss and critical sets: hand-made maps with known sets, independent oracles
(scipy.ndimage labels and dilations, tests/oracles.py), and what descent does at saturated
probabilities where the critical-pixel loss stalls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import count_components, gudhi_betti, label_betti_2d
from scipy import ndimage

from topofix.losses import (
    LOSS_NAMES,
    DenseTopologicalLoss,
    TopologicalLoss,
    TopologyObjective,
    make_topology_loss,
    rank_bars,
)
from topofix.topology.critical_sets import KINDS, critical_sets

CONNECTIVITIES = ("full", "face")


def t(values, **kw) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, **kw)


def background_structure(connectivity: str, ndim: int = 2) -> np.ndarray:
    """The background neighbourhood (4/6 for "full", 8/26 for "face"), for scipy."""
    return ndimage.generate_binary_structure(ndim, 1 if connectivity == "full" else ndim)


def sets_of(loss: DenseTopologicalLoss, prob: torch.Tensor, name: str = "foreground"):
    return loss.terms(prob).priors[name].critical


def as_mask(cells: np.ndarray, shape) -> np.ndarray:
    m = np.zeros(int(np.prod(shape)), bool)
    m[cells] = True
    return m.reshape(shape)


# --------------------------------------------------------------------------------------
# Hand-made maps.


def ring(n: int = 40, inner: float = 9.0, outer: float = 13.0, value: float = 0.99, cavity: float = 1e-4,
         background: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ring of `value` around a cavity of `cavity`; returns (map, ring mask, cavity mask)."""
    y, x = np.mgrid[:n, :n]
    r = np.hypot(y - (n - 1) / 2, x - (n - 1) / 2)
    ring_mask = (r >= inner) & (r <= outer)
    cavity_mask = r < inner
    p = np.full((n, n), background)
    p[ring_mask] = value
    p[cavity_mask] = cavity
    return p, ring_mask, cavity_mask


def ring_with_gap(gap_p: float = 0.01, n: int = 40, **kw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ring open at the top by a gap of 4 columns of probability `gap_p`; returns (map, gap, cavity)."""
    p, ring_mask, cavity = ring(n, **kw)
    y, x = np.mgrid[:n, :n]
    gap = ring_mask & (np.abs(x - (n - 1) / 2) < 2) & (y < n / 2)
    p[gap] = gap_p
    return p, gap, cavity


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_critical_set_of_an_extra_blob_is_the_blob(connectivity):
    p, ring_mask, _ = ring(value=0.995)
    blob = np.zeros_like(ring_mask)
    blob[2:7, 3:8] = True
    p[blob] = 0.9
    p[4, 5] = 0.99  # not flat: the birth cell is inside
    loss = DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None, side="erase-fill")
    sets = sets_of(loss, t(p))
    assert [(s.dim, s.kind, s.target) for s in sets] == [(0, "kill-component", 0.0)]
    expected = ndimage.label(p >= 0.5, np.ones((3, 3)))[0]
    expected = expected == expected[4, 5]  # the blob's component, by scipy
    assert np.array_equal(as_mask(sets[0].cells, p.shape), expected)
    assert expected.sum() == 25
    # the cheaper side (default): 25 pixels at 0.9 cost more to erase (~16) than the few background
    # pixels between the blob and the ring cost to raise (~0.75 each): a minimal bridge
    sets = sets_of(DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None), t(p))
    assert [(s.dim, s.kind, s.target) for s in sets] == [(0, "join-component", 1.0)]
    assert_minimal_bridge(as_mask(sets[0].cells, p.shape), p, expected, ring_mask, connectivity)


def assert_minimal_bridge(got, p, blob, ring_mask, connectivity):
    """`got` joins blob and ring at 0.5 (scipy labels) with as few pixels as any path of background
    pixels can (scipy's chessboard / taxicab distance transform from the ring)."""
    fg = 8 if connectivity == "full" else 4
    assert (p[got] < 0.5).all()
    joined = (p >= 0.5) | got
    assert count_components(joined, fg) == 1
    metric = "chessboard" if connectivity == "full" else "taxicab"
    steps = ndimage.distance_transform_cdt(~ring_mask, metric=metric)[blob].min()
    assert got.sum() == steps - 1


def test_rank_bars_breaks_near_ties_by_size():
    births, deaths = t([0.99, 0.995, 0.4, 0.97]), t([0.0, 0.0, 0.1, 0.0])  # lengths .99 .995 .3 .97
    sizes = np.array([500, 10, 1000, 40])
    wanted, excess, missing = rank_bars(births, deaths, 1)
    assert wanted.tolist() == [1] and excess.tolist() == [0, 3, 2] and missing == 0
    wanted, excess, _ = rank_bars(births, deaths, 1, sizes=sizes, tie=0.05)
    assert wanted.tolist() == [0]  # within 0.05 of the longest: the largest wins
    assert excess.tolist() == [3, 1, 2]  # the 0.3 bar stays last: clearly shorter, whatever its size
    wanted, _, _ = rank_bars(births, deaths, 2, sizes=sizes, tie=0.05)
    assert wanted.tolist() == [0, 3]


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_a_saturated_blob_tied_with_the_ring_is_the_one_removed(connectivity):
    """Ring and blob both at 0.99 (the blob first in index order, so the engine's essential bar):
    by length alone the ring would be the extra component; by size (tie=0.05) it is the blob."""
    p, ring_mask, _ = ring(value=0.99)
    blob = np.zeros_like(ring_mask)
    blob[2:7, 2:7] = True
    p[blob] = 0.99
    erase = dict(connectivity=connectivity, roi_threshold=None, side="erase-fill")
    sets = sets_of(DenseTopologicalLoss((1, 1), **erase), t(p))
    assert [s.kind for s in sets] == ["kill-component"]
    assert np.array_equal(as_mask(sets[0].cells, p.shape), blob)
    sets = sets_of(DenseTopologicalLoss((1, 1), tie=0, **erase), t(p))
    assert np.array_equal(as_mask(sets[0].cells, p.shape), ring_mask)  # the failure the tie rule avoids
    # with the cheaper side (default) neither the blob nor the ring is erased: the blob (25 pixels)
    # is 4 background pixels from the ring, so it is joined, whichever bar is killed
    for tie in (0.05, 0):
        sets = sets_of(DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None, tie=tie), t(p))
        assert [(s.kind, s.target) for s in sets] == [("join-component", 1.0)]
        assert_minimal_bridge(as_mask(sets[0].cells, p.shape), p, blob, ring_mask, connectivity)
    # measured (lr 0.1): 24 steps; with tie=0 it never gets there (the ring is pushed down)
    assert descend(p, "dense", 40, connectivity) is not None


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_critical_set_of_a_pinhole_is_the_hole(connectivity):
    """A pinhole in the middle of a thick wall (5 pixels to either side): filling it (2 pixels,
    cost 0.45 + 0.55) is cheaper than opening it (5 wall pixels at 0.95, 0.7 each)."""
    p, ring_mask, _ = ring(value=0.95, inner=6, outer=17)
    p[19:21, 31] = 0.3  # a two-pixel pinhole inside the ring wall (radius 11.5)
    p[20, 31] = 0.2
    assert label_betti_2d(p >= 0.5, connectivity) == (1, 2)
    loss = DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None)
    sets = sets_of(loss, t(p))
    assert [(s.dim, s.kind, s.target) for s in sets] == [(1, "fill-hole", 1.0)]
    hole = np.zeros(p.shape, bool)
    hole[19:21, 31] = True
    assert np.array_equal(as_mask(sets[0].cells, p.shape), hole)


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_critical_set_of_a_one_pixel_gap_is_that_pixel(connectivity):
    """A ring one pixel thick (a square outline), cut at one pixel: the set is that pixel."""
    p = np.full((12, 12), 1e-3)
    p[2:10, 2] = p[2:10, 9] = p[2, 2:10] = p[9, 2:10] = 0.99
    p[3:9, 3:9] = 1e-4  # the cavity, lower than the gap
    p[2, 5] = 0.01
    assert label_betti_2d(p >= 0.5, connectivity) == (1, 0)
    loss = DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None)
    sets = sets_of(loss, t(p))
    assert [(s.dim, s.kind, s.target) for s in sets] == [(1, "raise-birth", 1.0)]
    assert sets[0].cells.tolist() == [2 * 12 + 5]


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_critical_set_of_a_ring_gap_is_the_gap_next_to_the_cavity(connectivity):
    """The loop of the kept H1 bar is born at 0.01 (the cavity is lower): its set is the gap
    pixels on the cavity's border, the ones that close the ring, and nothing of the ring."""
    p, gap, cavity = ring_with_gap(0.01)
    assert label_betti_2d(p >= 0.5, connectivity) == (1, 0)
    loss = DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None)
    sets = sets_of(loss, t(p))
    assert [(s.dim, s.kind) for s in sets] == [(1, "raise-birth")]
    expected = gap & ndimage.binary_dilation(cavity, background_structure(connectivity))
    got = as_mask(sets[0].cells, p.shape)
    assert np.array_equal(got, expected)
    assert expected.sum() >= 4
    # raising exactly this set closes the ring at 0.5 (checked by scipy labels)
    closed = p >= 0.5
    closed[got] = True
    assert label_betti_2d(closed, connectivity) == (1, 1)


def test_low_probability_gap_without_a_lower_cavity_has_no_loop_to_keep():
    """If the cavity is not lower than the gap, no loop is ever born: the H1 bar is missing and
    gets no set (documented), only the squared/mixed constant."""
    p, gap, cavity = ring_with_gap(0.01, cavity=0.01)
    loss = DenseTopologicalLoss((1, 1), roi_threshold=None)
    terms = loss.terms(t(p)).priors["foreground"]
    assert len(terms.diagrams[1]) == 0
    assert terms.critical == ()


def test_filled_disc_lower_death_empties_the_cavity():
    p, ring_mask, cavity = ring(value=0.95, cavity=0.85)
    p[19, 19] = 0.8  # the death cell
    sets = sets_of(DenseTopologicalLoss((1, 1), roi_threshold=None), t(p))
    assert [(s.dim, s.kind, s.target) for s in sets] == [(1, "lower-death", 0.0)]
    assert np.array_equal(as_mask(sets[0].cells, p.shape), cavity)


def test_nothing_predicted_raises_the_kept_component():
    p, ring_mask, _ = ring(value=0.3, cavity=0.001)
    sets = sets_of(DenseTopologicalLoss((1, 1), roi_threshold=None), t(p))
    kinds = {(s.dim, s.kind): s for s in sets}
    assert set(kinds) == {(0, "raise-birth"), (1, "raise-birth")}
    assert np.array_equal(as_mask(kinds[0, "raise-birth"].cells, p.shape), ring_mask)


def test_bars_below_the_band_and_perfect_maps_are_left_alone():
    p, _, _ = ring()
    p[2:5, 2:5] = 0.2  # a faint blob below low = 0.25: not pushed (the squared form would)
    for connectivity in CONNECTIVITIES:
        loss = DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None)
        x = t(p, requires_grad=True)
        terms = loss.terms(x)
        assert terms.priors["foreground"].critical == ()
        assert float(terms.total.detach()) == 0.0
        terms.total.backward()  # attached to the graph, zero gradient
        assert not x.grad.any()
    assert float(TopologicalLoss((1, 1), roi_threshold=None)(t(p))) > 0.03  # 0.2^2 + ...
    # with low = 0.1 the faint blob is in the band
    sets = sets_of(DenseTopologicalLoss((1, 1), roi_threshold=None, low=0.1), t(p))
    assert [s.kind for s in sets] == ["kill-component"]


def test_3d_cavity_and_component_sets():
    n = 16
    z, y, x = np.mgrid[:n, :n, :n]
    r = np.sqrt(sum((g - (n - 1) / 2) ** 2 for g in (z, y, x)))
    p = np.full((n, n, n), 1e-3)
    p[(r >= 3.5) & (r <= 7)] = 0.99  # a thick hollow shell: (1, 0, 1)
    p[r < 3.5] = 1e-4
    p[0:2, 0:2, 0:2] = 0.9  # an extra component
    p[7, 7, 13] = 0.4  # a one-voxel pinhole cavity inside the shell wall (radius 5.5)
    for connectivity in CONNECTIVITIES:
        assert gudhi_betti(p >= 0.5, connectivity) == (2, 0, 2)
        blob = np.zeros(p.shape, bool)
        blob[0:2, 0:2, 0:2] = True
        pin = np.zeros(p.shape, bool)
        pin[7, 7, 13] = True
        loss = DenseTopologicalLoss((1, 0, 1), connectivity=connectivity, roi_threshold=None, spatial_dims=3,
                                    side="erase-fill")
        sets = sets_of(loss, t(p))
        kinds = {(s.dim, s.kind): as_mask(s.cells, p.shape) for s in sets}
        assert set(kinds) == {(0, "kill-component"), (2, "fill-hole")}
        assert np.array_equal(kinds[0, "kill-component"], blob)
        assert np.array_equal(kinds[2, "fill-hole"], pin)
        # cheaper side: erasing the 8-voxel blob costs 8 x 0.65 = 5.2; a bridge of k background
        # voxels k x 0.749, k from scipy's distance transform (chessboard for 26-, taxicab for
        # 6-connectivity); the pinhole (0.4, cost 0.35) is still filled (opening crosses >= 1 voxel
        # at 0.99, 0.74)
        shell = p >= 0.5
        shell[blob] = False
        metric = "chessboard" if connectivity == "full" else "taxicab"
        k = ndimage.distance_transform_cdt(~shell, metric=metric)[blob].min() - 1
        join = k * (0.75 - 1e-3) < 8 * 0.65
        assert k == (2 if connectivity == "full" else 7)  # 7 x 0.749 = 5.24: erased, by a hair
        loss = DenseTopologicalLoss((1, 0, 1), connectivity=connectivity, roi_threshold=None, spatial_dims=3)
        sets = sets_of(loss, t(p))
        kinds = {(s.dim, s.kind): as_mask(s.cells, p.shape) for s in sets}
        assert set(kinds) == {(0, "join-component" if join else "kill-component"), (2, "fill-hole")}
        assert np.array_equal(kinds[2, "fill-hole"], pin)
        if join:
            bridge = kinds[0, "join-component"]
            assert bridge.sum() == k and (p[bridge] < 0.5).all()
            assert gudhi_betti((p >= 0.5) | bridge | pin, connectivity) == (1, 0, 1)
        else:
            assert np.array_equal(kinds[0, "kill-component"], blob)


def test_3d_tunnels_fall_back_to_critical_pixels():
    """A solid torus-like ring in 3D (beta1 = 1) with a prior (1, 0, 0): the H1 bar is killed via
    its two critical voxels."""
    p = np.full((5, 12, 12), 1e-3)
    p[2, 2:10, 2] = p[2, 2:10, 9] = p[2, 2, 2:10] = p[2, 9, 2:10] = 0.99
    for connectivity in CONNECTIVITIES:
        assert gudhi_betti(p >= 0.5, connectivity) == (1, 1, 0)
        loss = DenseTopologicalLoss((1, 0, 0), connectivity=connectivity, roi_threshold=None, spatial_dims=3)
        sets = sets_of(loss, t(p))
        assert {(s.dim, s.kind) for s in sets} == {(1, "critical-pixel")}
        assert sorted(s.target for s in sets) == [0.0, 1.0] and all(s.cells.size == 1 for s in sets)


# --------------------------------------------------------------------------------------
# The loss and its gradient.


def test_loss_value_is_the_mean_cross_entropy_per_set():
    p, ring_mask, _ = ring(value=0.995)
    p[2:5, 3:6] = 0.99
    loss = DenseTopologicalLoss((1, 1), roi_threshold=None, side="erase-fill")
    terms = loss.terms(t(p)).priors["foreground"]
    assert [float(v) for v in terms.losses] == pytest.approx([-np.log(0.01), 0.0])
    # cheaper side: the blob is joined through background pixels, all at 1e-3
    terms = DenseTopologicalLoss((1, 1), roi_threshold=None).terms(t(p)).priors["foreground"]
    assert [s.kind for s in terms.critical] == ["join-component"]
    assert [float(v) for v in terms.losses] == pytest.approx([-np.log(1e-3), 0.0])


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_gradient_is_nonzero_exactly_on_the_critical_sets(connectivity):
    p, gap, cavity = ring_with_gap(0.01)
    blob = np.zeros(p.shape, bool)
    blob[1:4, 1:5] = True
    p[blob] = 0.97
    p[np.pad(np.ones((1, 1), bool), ((30, 9), (5, 34)))] = 0.35  # a faint blob in the band
    x = t(p, requires_grad=True)
    loss = DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None, side="erase-fill")
    terms = loss.terms(x)
    terms.total.backward()
    union = np.zeros(p.size, bool)
    for s in terms.priors["foreground"].critical:
        union[s.cells] = True
    union = union.reshape(p.shape)
    # the independent expectation: the blob, the faint pixel, the gap next to the cavity
    expected = blob | (p == 0.35) | (gap & ndimage.binary_dilation(cavity, background_structure(connectivity)))
    assert np.array_equal(union, expected)
    assert np.array_equal(x.grad.numpy() != 0, expected)
    assert (x.grad.numpy()[blob] > 0).all()  # pushed down
    assert (x.grad.numpy()[gap & expected] < 0).all()  # pushed up


def test_gradient_wrt_logits_does_not_vanish_at_saturation():
    """At p = 0.01 the cross-entropy's gradient wrt the logit is p - 1 (divided by the set's
    size); the squared loss on the loop's bar (length ~0.01) gives 2 l p (1 - p) ~ 2e-4 at its
    birth pixel. Measured: the gap receives 0.99 (dense) against 1.96e-4 (squared)."""
    p, gap, cavity = ring_with_gap(0.01)
    logits = torch.logit(t(p)).requires_grad_(True)
    DenseTopologicalLoss((1, 1), roi_threshold=None)(torch.sigmoid(logits)).backward()
    dense = logits.grad.numpy().copy()
    logits.grad = None
    TopologicalLoss((1, 1), roi_threshold=None)(torch.sigmoid(logits)).backward()
    squared = logits.grad.numpy().copy()
    assert np.abs(dense).sum() == pytest.approx(0.99, abs=1e-6)  # mean over the set of |p - 1|
    assert np.abs(dense[gap]).sum() == pytest.approx(0.99, abs=1e-6)  # all of it on the gap
    assert 0 < np.abs(squared[gap]).sum() < 3e-4
    assert np.count_nonzero(squared[gap]) == 1  # one pixel of the gap
    assert np.abs(dense[gap]).sum() > 1000 * np.abs(squared[gap]).sum()


def test_multi_label_softmax_and_roi():
    """Prior 2=1,1 on a 4-channel softmax (0 background, 1 RV, 2 MYO, 3 LV): the set indexes the
    ROI crop, the gradient reaches the channels through the softmax."""
    p, gap, cavity = ring_with_gap(0.01)
    myo = p
    lv = np.where(cavity, 0.98, 1e-3)
    bg = 1 - myo - lv - 1e-3
    prob = torch.tensor(np.stack([bg, np.full_like(p, 1e-3), myo, lv]), dtype=torch.float64)
    logits = torch.log(prob).requires_grad_(True)
    loss = DenseTopologicalLoss(["2=1,1"])
    terms = loss.terms(torch.softmax(logits, 0))
    roi = terms.roi
    assert roi != (slice(0, 40), slice(0, 40))
    (s,) = terms.priors["2"].critical
    assert s.kind == "raise-birth"
    full = np.zeros(p.shape, bool)
    full[roi] = as_mask(s.cells, (roi[0].stop - roi[0].start, roi[1].stop - roi[1].start))
    assert np.array_equal(full, gap & ndimage.binary_dilation(cavity, background_structure("full")))
    terms.total.backward()
    assert (logits.grad[2][full] < -0.1).all()  # MYO's logit pushed up, O(1) at p = 0.01
    assert not logits.grad[:, ~full].any()


def test_essential_drop_and_constructor_validation():
    p, _, _ = ring(value=0.995)
    p[2:5, 3:6] = 0.99
    sets = sets_of(DenseTopologicalLoss((1, 1), essential="drop", roi_threshold=None, side="erase-fill"), t(p))
    assert [s.kind for s in sets] == ["kill-component"]
    sets = sets_of(DenseTopologicalLoss((1, 1), essential="drop", roi_threshold=None), t(p))
    assert [s.kind for s in sets] == ["join-component"]
    with pytest.raises(ValueError):
        DenseTopologicalLoss((1, 1), low=0.8, high=0.2)
    with pytest.raises(TypeError):
        DenseTopologicalLoss((1, 1), form="squared")  # type: ignore[call-arg]
    loss = DenseTopologicalLoss((1, 1))
    assert isinstance(loss, TopologyObjective)
    assert "low=0.25, high=0.75, tie=0.05, side='cheaper'" in repr(loss)
    with pytest.raises(ValueError):
        DenseTopologicalLoss((1, 1), tie=-1)
    with pytest.raises(ValueError):
        DenseTopologicalLoss((1, 1), side="birth")
    with pytest.raises(ValueError):
        critical_sets(p, [np.array([0])] * 2, [np.array([1])] * 2, [np.array([0])] * 2, [np.array([], int)] * 2,
                      side="death")
    with pytest.raises(ValueError):
        critical_sets(p, [np.array([0])], [np.array([1])], [np.array([0])], [np.array([], int)])  # 1 dim of 2
    assert set(KINDS) >= {"kill-component", "fill-hole", "raise-birth", "lower-death", "critical-pixel",
                          "join-component", "open-hole"}


def test_factory_builds_every_name():
    assert LOSS_NAMES == ("squared", "linear", "mixed", "dense")
    for name in LOSS_NAMES:
        loss = make_topology_loss(name, ["2=1,1"], knee=None, temperature=None, roi_threshold=None)
        assert isinstance(loss, TopologyObjective)
        assert loss.form == name
        assert loss.roi_threshold is None  # None kept for the options where it is a value
    assert isinstance(make_topology_loss("dense", (1, 1), low=0.3), DenseTopologicalLoss)
    with pytest.raises(ValueError, match="dense"):
        make_topology_loss("cubic", (1, 1))
    with pytest.raises(TypeError):
        make_topology_loss("dense", (1, 1), knee=0.3)  # dense has no knee
    with pytest.raises(TypeError):
        make_topology_loss("squared", (1, 1), low=0.3)


# --------------------------------------------------------------------------------------
# Descent on free logits: dense targets against the critical-pixel squared loss.


def descend(p0: np.ndarray, name: str, steps: int, connectivity: str, lr: float = 0.1, **options) -> int | None:
    """Adam on the logits of a 2-channel softmax (background, structure); returns the first step
    at which the mask (structure >= 0.5) has Betti numbers (1, 1) by scipy labels, or None."""
    return descend_mask(p0, name, steps, connectivity, lr, **options)[0]


def descend_mask(p0, name, steps, connectivity, lr=0.1, **options) -> tuple[int | None, np.ndarray]:
    """As :func:`descend`, also returning the mask where it stopped."""
    logits = torch.nn.Parameter(torch.log(torch.tensor(np.stack([1 - p0, p0]), dtype=torch.float32)))
    loss_fn = make_topology_loss(name, ["1=1,1"], connectivity=connectivity, spatial_dims=2, **options)
    optimiser = torch.optim.Adam([logits], lr=lr)
    for step in range(steps + 1):
        prob = torch.softmax(logits, 0)
        mask = prob[1].detach().numpy() >= 0.5
        if label_betti_2d(mask, connectivity) == (1, 1):
            return step, mask
        if step == steps:
            return None, mask
        optimiser.zero_grad()
        loss_fn(prob).backward()
        optimiser.step()
    return None, mask


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_dense_closes_a_gap_at_p001_where_critical_pixels_do_not(connectivity):
    p0, gap, cavity = ring_with_gap(0.01)
    assert label_betti_2d(p0 >= 0.5, connectivity) == (1, 0)
    # measured (lr 0.1, both connectivities): dense 24 steps, squared 42, mixed 41, linear 46:
    # the critical-pixel loss moves one gap pixel at a time
    assert descend(p0, "dense", 30, connectivity) is not None
    assert descend(p0, "squared", 30, connectivity) is None


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_dense_removes_a_confident_blob_where_critical_pixels_do_not(connectivity):
    p0, ring_mask, _ = ring(value=0.995)
    p0[2:7, 2:7] = 0.99  # 25 pixels at 0.99
    assert count_components(p0 >= 0.5, 8 if connectivity == "full" else 4) == 2
    # measured (lr 0.1): dense 24 steps, squared 106 (full) / 104 (face), mixed 101 / 103: the
    # critical-pixel loss lowers the blob one birth pixel at a time
    assert descend(p0, "dense", 40, connectivity, side="erase-fill") is not None
    assert descend(p0, "squared", 40, connectivity) is None
    # the default (cheaper side) joins this blob to the ring (4 background pixels) instead
    assert descend(p0, "dense", 40, connectivity) is not None


# --------------------------------------------------------------------------------------
# Which side kills a bar: the cheaper one (Nigmetov & Morozov).


def papillary(n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A ring at 0.98 and, in its cavity, an elder blob at 0.99 touching it through a 1-pixel
    bridge at 0.3 (a papillary muscle); elsewhere one cavity pixel (1e-4) separates them; returns
    (map, ring, blob, bridge)."""
    p, ring_mask, cavity = ring(n, value=0.98)
    blob = np.zeros_like(ring_mask)
    blob[12:16, 18:22] = True
    bridge = np.zeros_like(ring_mask)
    bridge[11, 19] = True
    assert (cavity[blob]).all() and cavity[bridge].all() and ring_mask[10, 19]
    assert not (ndimage.binary_dilation(blob, np.ones((3, 3))) & ring_mask).any()
    p[blob] = 0.99
    p[bridge] = 0.3
    return p, ring_mask, blob, bridge


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_a_ring_younger_than_a_blob_bridged_to_it_is_joined_not_erased(connectivity):
    """The ring's bar (0.98, 0.3) is the extra one (the blob is elder). Erasing the ring (~300
    pixels, 0.73 each) costs far more than raising the bridge (1 pixel, 0.45): the set is
    the bridge, target 1 (and not a cavity pixel, 0.75 to raise)."""
    p, ring_mask, blob, bridge = papillary()
    fg = 8 if connectivity == "full" else 4
    assert label_betti_2d(p >= 0.5, connectivity) == (2, 1)
    sets = sets_of(DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None), t(p))
    assert [(s.dim, s.kind, s.target) for s in sets] == [(0, "join-component", 1.0)]
    assert np.array_equal(as_mask(sets[0].cells, p.shape), bridge)
    # the earlier rule erases the ring (its component at the bar's death, by scipy)
    sets = sets_of(DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None,
                                        side="erase-fill"), t(p))
    labels = ndimage.label(p > 0.3, ndimage.generate_binary_structure(2, 2 if fg == 8 else 1))[0]
    assert np.array_equal(as_mask(sets[0].cells, p.shape), labels == labels[ring_mask][0])
    assert np.array_equal(labels == labels[ring_mask][0], ring_mask)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_descent_joins_the_papillary_blob_and_keeps_the_ring(connectivity):
    p, ring_mask, blob, bridge = papillary()
    step, mask = descend_mask(p, "dense", 40, connectivity)
    assert step is not None  # Betti (1, 1) by scipy labels
    assert dice(mask, ring_mask) > 0.9 and mask[ring_mask].all()
    assert mask[bridge].all()
    # measured: the earlier rule (erase the ring) gets nowhere near the ring
    _, mask = descend_mask(p, "dense", 40, connectivity, side="erase-fill")
    assert dice(mask, ring_mask) < 0.5


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_a_small_blob_far_from_the_ring_is_erased_a_large_one_joined(connectivity):
    """Background 0.01 (the blob's bar dies at 0.01). A 2x2 blob at 0.95, 8+ pixels from the ring:
    erasing (4 x 0.7) beats a bridge (8+ x 0.74): the set is the blob. A 6x6 blob at the same place
    (36 x 0.7 = 25) is cheaper to join: the set is a minimal bridge."""
    p, ring_mask, _ = ring(value=0.98, background=0.01)
    small = np.zeros_like(ring_mask)
    small[1:3, 1:3] = True
    q = p.copy()
    q[small] = 0.95
    loss = DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None)
    sets = sets_of(loss, t(q))
    assert [(s.dim, s.kind, s.target) for s in sets] == [(0, "kill-component", 0.0)]
    labels = ndimage.label(q >= 0.5, np.ones((3, 3)))[0]
    assert np.array_equal(as_mask(sets[0].cells, q.shape), labels == labels[1, 1])
    large = np.zeros_like(ring_mask)
    large[1:7, 1:7] = True
    q = p.copy()
    q[large] = 0.95
    sets = sets_of(loss, t(q))
    assert [(s.dim, s.kind, s.target) for s in sets] == [(0, "join-component", 1.0)]
    assert_minimal_bridge(as_mask(sets[0].cells, q.shape), q, large, ring_mask, connectivity)


def thin_walled_hole(weak: float = 0.6) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """A thick ring (radii 5-17, 0.95) with a large extra hole (5 x 6 pixels at 0.2) in its wall,
    one pixel from the outside, that pixel at `weak`; returns (map, hole, weak pixel)."""
    p, ring_mask, _ = ring(value=0.95, inner=5, outer=17)
    hole = np.zeros_like(ring_mask)
    hole[17:22, 30:36] = True
    assert ring_mask[17:22, 36].all() and not ring_mask[17:22, 37].any()
    p[hole] = 0.2
    p[19, 36] = weak
    return p, hole, (19, 36)


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_a_large_hole_behind_a_thin_weak_wall_is_opened(connectivity):
    """Filling the hole costs 30 x 0.55 = 16.5, opening it through the weak wall pixel
    (0.6 -> 0.25) 0.35: the set is that pixel, target 0. With a strong wall (0.95 everywhere) but
    a small hole (2 pixels) filling wins again."""
    p, hole, weak = thin_walled_hole()
    assert label_betti_2d(p >= 0.5, connectivity) == (1, 2)
    loss = DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None)
    sets = sets_of(loss, t(p))
    assert [(s.dim, s.kind, s.target) for s in sets] == [(1, "open-hole", 0.0)]
    assert sets[0].cells.tolist() == [weak[0] * p.shape[1] + weak[1]]
    opened = p >= 0.5
    opened[weak] = False
    assert label_betti_2d(opened, connectivity) == (1, 1)  # a notch, the ring intact
    sets = sets_of(DenseTopologicalLoss((1, 1), connectivity=connectivity, roi_threshold=None,
                                        side="erase-fill"), t(p))
    assert [s.kind for s in sets] == ["fill-hole"]
    assert np.array_equal(as_mask(sets[0].cells, p.shape), hole)
    # a hole at 0.2 behind a strong one-pixel wall (0.95, 0.7 to lower to 0.25): one pixel
    # (0.55 to fill) is filled, two (1.1) are opened
    q, _, _ = thin_walled_hole(weak=0.95)
    q[thin_walled_hole()[1]] = 0.95
    q[19, 35] = 0.2
    sets = sets_of(loss, t(q))
    assert [s.kind for s in sets] == ["fill-hole"]
    assert sets[0].cells.tolist() == [19 * 40 + 35]
    q[20, 35] = 0.2
    sets = sets_of(loss, t(q))
    assert [s.kind for s in sets] == ["open-hole"]
    assert len(sets[0].cells) == 1 and p.flat[sets[0].cells[0]] >= 0.5  # one wall pixel lowered

