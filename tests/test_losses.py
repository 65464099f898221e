"""TopologicalLoss and betti_prior_loss: values by hand, labels, ROI, and what descent does."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import topofix
from topofix.errors import PriorError
from topofix.losses import TopologicalLoss, betti_prior_loss, roi_slices

CONNECTIVITIES = ("full", "face")
FORMS = ("squared", "linear")


def t(values, **kw) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, **kw)


# --------------------------------------------------------------------------------------
# betti_prior_loss by hand. Bars: lengths 0.8, 0.1, 0.3 (given unsorted).
BIRTHS = [0.9, 0.6, 0.5]
DEATHS = [0.1, 0.5, 0.2]
HAND = [
    # betti, squared, linear
    (0, 0.64 + 0.09 + 0.01, 0.8 + 0.3 + 0.1),
    (1, (1 - 0.64) + 0.09 + 0.01, 0.2 + 0.3 + 0.1),
    (2, (1 - 0.64) + (1 - 0.09) + 0.01, 0.2 + 0.7 + 0.1),
    (3, (1 - 0.64) + (1 - 0.09) + (1 - 0.01), 0.2 + 0.7 + 0.9),
    (5, (1 - 0.64) + (1 - 0.09) + (1 - 0.01) + 2, 0.2 + 0.7 + 0.9 + 2),  # two missing bars
]


@pytest.mark.parametrize("betti, squared, linear", HAND)
def test_betti_prior_loss_by_hand(betti, squared, linear):
    assert float(betti_prior_loss(t(BIRTHS), t(DEATHS), betti, "squared")) == pytest.approx(squared, abs=1e-12)
    assert float(betti_prior_loss(t(BIRTHS), t(DEATHS), betti, "linear")) == pytest.approx(linear, abs=1e-12)


def test_betti_prior_loss_gradient_by_hand():
    b, d = t(BIRTHS, requires_grad=True), t(DEATHS, requires_grad=True)
    betti_prior_loss(b, d, 1, "squared").backward()
    # bar 0 (length 0.8) is wanted: d(1 - l^2)/db = -2l; bars 1, 2 are excess: d(l^2)/db = 2l
    np.testing.assert_allclose(b.grad.numpy(), [-1.6, 0.2, 0.6])
    np.testing.assert_allclose(d.grad.numpy(), [1.6, -0.2, -0.6])
    b, d = t(BIRTHS, requires_grad=True), t(DEATHS, requires_grad=True)
    betti_prior_loss(b, d, 1, "linear").backward()
    np.testing.assert_allclose(b.grad.numpy(), [-1.0, 1.0, 1.0])


def test_betti_prior_loss_is_zero_exactly_at_the_prior():
    for form in FORMS:
        assert float(betti_prior_loss(t([1.0, 1.0]), t([0.0, 0.0]), 2, form)) == 0.0
        assert float(betti_prior_loss(t([]), t([]), 0, form)) == 0.0
        assert float(betti_prior_loss(t([]), t([]), 2, form)) == 2.0  # nothing yet: constant
        assert float(betti_prior_loss(t([1.0, 1.0]), t([0.0, 0.0]), 1, form)) == 1.0  # one too many
        assert float(betti_prior_loss(t([1.0, 0.9]), t([0.0, 0.0]), 2, form)) > 0


def test_tolerance_skips_short_excess_bars_only():
    # lengths 0.8, 0.3, 0.1; tolerance 0.2 skips the 0.1 bar in the excess sum
    assert float(betti_prior_loss(t(BIRTHS), t(DEATHS), 1, "squared", tolerance=0.2)) == pytest.approx(0.36 + 0.09)
    assert float(betti_prior_loss(t(BIRTHS), t(DEATHS), 1, "linear", tolerance=0.2)) == pytest.approx(0.2 + 0.3)
    # a wanted bar is never skipped, however short
    assert float(betti_prior_loss(t([0.15]), t([0.1]), 1, "linear", tolerance=0.2)) == pytest.approx(0.95)


# mixed (knee 0.5): h(x) = x^2 for x <= 0.5, x - 0.25 beyond; x = 1 - length (kept), length (excess)
MIXED = {
    0: (0.8 - 0.25) + 0.09 + 0.01,
    1: 0.04 + 0.09 + 0.01,
    2: 0.04 + (0.7 - 0.25) + 0.01,
    3: 0.04 + (0.7 - 0.25) + (0.9 - 0.25),
    5: 0.04 + (0.7 - 0.25) + (0.9 - 0.25) + 2 * 0.75,  # a missing bar costs h(1) = 0.75
}


@pytest.mark.parametrize("betti", sorted(MIXED))
def test_mixed_form_by_hand(betti):
    assert float(betti_prior_loss(t(BIRTHS), t(DEATHS), betti, "mixed")) == pytest.approx(MIXED[betti], abs=1e-12)


def test_mixed_form_gradient_by_hand_and_smooth_at_the_knee():
    b, d = t(BIRTHS, requires_grad=True), t(DEATHS, requires_grad=True)
    betti_prior_loss(b, d, 1, "mixed").backward()
    # kept bar: x = 0.2 (squared part), dh/db = -2x; excess 0.1 and 0.3 (squared part): 2l
    np.testing.assert_allclose(b.grad.numpy(), [-0.4, 0.2, 0.6])
    b, d = t(BIRTHS, requires_grad=True), t(DEATHS, requires_grad=True)
    betti_prior_loss(b, d, 0, "mixed").backward()
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 0.2, 0.6])  # 0.8 > knee: slope 2 * 0.5 = 1
    # a kept bar of length 0.01: the squared form's gradient nearly vanishes, the mixed form's does not
    for form, slope in (("squared", -0.02), ("mixed", -1.0), ("linear", -1.0)):
        b = t([0.01], requires_grad=True)
        betti_prior_loss(b, t([0.0]), 1, form).backward()
        assert float(b.grad) == pytest.approx(slope, abs=1e-12)
    # continuous with a continuous derivative at the knee, for any knee
    for knee in (0.5, 0.2, 1.0):
        values, slopes = [], []
        for length in (knee - 1e-7, knee + 1e-7):
            b = t([length], requires_grad=True)
            values.append(float(betti_prior_loss(b, t([0.0]), 0, "mixed", knee=knee).detach()))
            b.grad = None
            betti_prior_loss(b, t([0.0]), 0, "mixed", knee=knee).backward()
            slopes.append(float(b.grad))
        assert values[0] == pytest.approx(values[1], abs=1e-6)
        assert slopes[0] == pytest.approx(slopes[1], abs=1e-6) == pytest.approx(2 * knee, abs=1e-6)
    assert float(betti_prior_loss(t([1.0, 1.0]), t([0.0, 0.0]), 2, "mixed")) == 0.0
    with pytest.raises(ValueError):
        betti_prior_loss(t(BIRTHS), t(DEATHS), 1, "mixed", knee=0.0)
    with pytest.raises(ValueError):
        TopologicalLoss((1, 1), form="mixed", knee=1.5)


def test_betti_prior_loss_refuses_bad_arguments():
    with pytest.raises(ValueError):
        betti_prior_loss(t(BIRTHS), t(DEATHS), 1, "cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        betti_prior_loss(t(BIRTHS), t(DEATHS), -1)
    with pytest.raises(ValueError):
        betti_prior_loss(t(BIRTHS), t(DEATHS[:2]), 1)


# --------------------------------------------------------------------------------------
# Hand-made maps with known bars.


def ring_map(n: int = 16, inner: float = 3.0, outer: float = 6.0) -> np.ndarray:
    y, x = np.mgrid[:n, :n]
    r = np.hypot(y - (n - 1) / 2, x - (n - 1) / 2)
    return ((r >= inner) & (r <= outer)).astype(np.float64)


def ring_and_blob() -> np.ndarray:
    """Ring of 0.8 around a 0.3 hole, a blob of 0.6, background 0.

    Bars: H0 essential born 0.8 (closed at the minimum 0: length 0.8), H0 blob
    (0.6, 0): 0.6; H1 (0.8, 0.3): 0.5.
    """
    p = np.zeros((7, 9))
    p[1:4, 1:4] = 0.8
    p[2, 2] = 0.3
    p[2, 6] = 0.6
    return p


@pytest.mark.parametrize("essential", ["min", "drop"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_perfect_ring_has_zero_loss(connectivity, form, essential):
    ring = t(ring_map())
    assert topofix.betti_numbers(ring_map(), connectivity) == (1, 1)
    for roi in (0.5, None):
        loss = TopologicalLoss((1, 1), connectivity=connectivity, form=form, essential=essential, roi_threshold=roi)
        assert float(loss(ring)) == 0.0
    # one loop too many, one component missing, a component that must be absent: 1 each
    assert float(TopologicalLoss((1, 0), connectivity=connectivity, form=form)(ring)) == 1.0
    assert float(TopologicalLoss((2, 1), connectivity=connectivity, form=form)(ring)) == 1.0
    assert float(TopologicalLoss((0, 1), connectivity=connectivity, form=form)(ring)) == 1.0


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_loss_values_on_a_hand_made_map(connectivity):
    p = t(ring_and_blob())
    cases = [
        # kwargs, expected
        ({"form": "squared"}, (1 - 0.64) + 0.36 + (1 - 0.25)),
        ({"form": "linear"}, 0.2 + 0.6 + 0.5),
        ({"form": "squared", "essential": "drop"}, 0.36 + (1 - 0.25)),  # beta0 lowered to 0
        ({"form": "linear", "essential": "drop"}, 0.6 + 0.5),
        ({"form": "squared", "tolerance": 0.7}, (1 - 0.64) + (1 - 0.25)),  # the 0.6 blob is skipped
    ]
    for kwargs, expected in cases:
        loss = TopologicalLoss("1,1", connectivity=connectivity, roi_threshold=None, **kwargs)
        assert float(loss(p)) == pytest.approx(expected, abs=1e-12), kwargs
    terms = TopologicalLoss((2, 1), connectivity=connectivity, roi_threshold=None).terms(p)
    term = terms.priors["foreground"]
    assert term.expected == (2, 1)
    assert [float(v) for v in term.losses] == pytest.approx([(1 - 0.64) + (1 - 0.36), 1 - 0.25])
    assert terms.values() == {"foreground": pytest.approx(float(terms.total))}
    (b0, d0), (b1, d1) = term.bars
    assert b0.tolist() == [0.8, 0.6] and d0.tolist() == [0.0, 0.0]
    assert b1.tolist() == [0.8] and d1.tolist() == [0.3]


def test_gradient_reaches_only_critical_voxels_inside_the_roi():
    p = ring_and_blob()
    p[6, 8] = 0.01  # a background voxel far from the object
    p = np.pad(p, 4)
    x = t(p, requires_grad=True)
    loss = TopologicalLoss((1, 1), roi_threshold=0.5, roi_margin=1)
    terms = loss.terms(x)
    terms.total.backward()
    roi = terms.roi
    assert [(s.start, s.stop) for s in roi] == [(4, 9), (4, 12)]  # rows 5..7, cols 5..10, +1
    grad = x.grad.numpy()
    outside = np.ones(p.shape, bool)
    outside[roi] = False
    assert not grad[outside].any()
    assert 0 < np.count_nonzero(grad) <= 6  # max, min, blob birth and death, hole birth and death


# --------------------------------------------------------------------------------------
# Multi-label (channel-first softmax, channel index = label).


def cardiac_softmax() -> torch.Tensor:
    """Channels: 0 background, 1 MYO (a ring of 0.8), 2 LV (0.7 inside the ring).

    Maps seen by the priors (all with background 0 at the image border):
    MYO ring: H0 0.8, H1 (0.8, 0); LV disk: H0 0.7; MYO+LV and the foreground:
    a disk 0.8 around 0.7, so H0 0.8 and H1 (0.8, 0.7).
    """
    ring = ring_map(20, 4.0, 6.5)
    y, x = np.mgrid[:20, :20]
    inside = (np.hypot(y - 9.5, x - 9.5) < 4.0).astype(np.float64)
    myo, lv = 0.8 * ring, 0.7 * inside
    return t(np.stack([1 - myo - lv, myo, lv]))


def test_multi_label_priors_by_hand():
    prob = cardiac_softmax()
    cases = {
        "1=1,1": 2 * (1 - 0.64),
        "2=1,0": 1 - 0.49,
        "1+2=1,0": (1 - 0.64) + 0.01,
        "1,0": (1 - 0.64) + 0.01,  # foreground = 1 - channel 0
        "1=1,0": (1 - 0.64) + 0.64,
        "2=0,0": 0.49,  # LV must be absent: the essential bar is in the excess
    }
    for spec, expected in cases.items():
        loss = TopologicalLoss([spec] if "=" in spec else spec, spatial_dims=2)
        assert float(loss(prob)) == pytest.approx(expected, abs=1e-12), spec
    loss = TopologicalLoss(["1=1,1", "2=1,0", "1+2=1,0"])
    terms = loss.terms(prob)
    assert list(terms.priors) == ["1", "2", "1+2"]
    assert terms.values() == pytest.approx({"1": 0.72, "2": 0.51, "1+2": 0.37})
    assert float(loss(prob)) == pytest.approx(0.72 + 0.51 + 0.37)


def test_union_is_the_sum_of_channels():
    prob = cardiac_softmax()
    prob[1, 10, 10] = 0.45  # a voxel shared by MYO and LV: union 0.95, the maximum
    prob[2, 10, 10] = 0.5
    prob[0, 10, 10] = 0.05
    prob[:, 19, 0] = torch.tensor([0.4, 0.3, 0.3])  # foreground 0.6 from two channels of 0.3
    prob.requires_grad_(True)
    terms = TopologicalLoss(["1+2=1,0", topofix.Prior(betti=(1, 0))]).terms(prob)
    for name in ("1+2", "foreground"):
        (b0, _), _ = terms.priors[name].bars
        assert float(b0[0].detach()) == pytest.approx(0.95)
    # the ROI follows the summed foreground (1 - channel 0), not any single channel
    assert terms.roi == (slice(2, 20), slice(0, 18))  # (2, 18) in both axes without it
    terms.total.backward()
    assert float(prob.grad[1, 10, 10]) == float(prob.grad[2, 10, 10]) < 0  # the union: both pushed up
    assert float(prob.grad[0, 10, 10]) > 0  # the foreground prior: 1 - channel 0 pushed up


def test_one_hot_softmax_meets_the_acdc_style_priors():
    prob = cardiac_softmax()
    onehot = torch.nn.functional.one_hot(prob.argmax(0), 3).permute(2, 0, 1).double()
    loss = TopologicalLoss(["1=1,1", "2=1,0", "1+2=1,0"], essential="drop")
    assert float(loss(onehot)) == 0.0


def test_input_shapes_and_label_errors():
    prob = cardiac_softmax()
    with pytest.raises(PriorError, match="label 3"):
        TopologicalLoss(["3=1,0"])(prob)
    with pytest.raises(PriorError, match="single probability map"):
        TopologicalLoss(["2=1,0"])(prob[2])
    with pytest.raises(ValueError, match="ambiguous"):
        TopologicalLoss((1, 0))(prob)  # (3, 20, 20): a 3D map, or a 2D softmax?
    assert float(TopologicalLoss((1, 0), spatial_dims=2)(prob)) == pytest.approx(0.37)
    with pytest.raises(ValueError):
        TopologicalLoss((1, 0), spatial_dims=3)(prob[0])
    # a one-channel (sigmoid) output is the foreground map itself
    ring = t(ring_map())
    assert float(TopologicalLoss((1, 1), spatial_dims=2)(ring[None])) == 0.0
    # a prior on beta2 cannot apply to a 2D map
    with pytest.raises(PriorError):
        TopologicalLoss((1, 1, 1))(ring)


def test_constructor_validation():
    with pytest.raises(PriorError):
        TopologicalLoss([])
    with pytest.raises(PriorError):
        TopologicalLoss([topofix.Prior(labels=(2,))])  # report-only prior
    with pytest.raises(PriorError, match="beta0=0"):
        TopologicalLoss(["2=0,0"], essential="drop")
    with pytest.raises(ValueError):
        TopologicalLoss((1, 1), form="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TopologicalLoss((1, 1), connectivity="diagonal")
    with pytest.raises(ValueError):
        TopologicalLoss((1, 1), roi_margin=-1)
    with pytest.raises(PriorError):
        TopologicalLoss(["2=1,1", "2=1,0"])  # two priors for one structure
    loss = TopologicalLoss([topofix.parse_prior("1+2=1,1"), "3=1,0"])
    assert [p.spec for p in loss.priors] == ["1+2=1,1", "3=1,0"]
    assert "1+2=1,1" in repr(loss)


# --------------------------------------------------------------------------------------
# Region of interest.


def smooth_map(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth noise under an off-centre Gaussian envelope: many bars, a proper ROI."""
    from scipy import ndimage

    p = ndimage.gaussian_filter(rng.random(shape), 1.5 if len(shape) == 2 else 0.8)
    p = (p - p.min()) / (p.max() - p.min())
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    centre = rng.uniform(-0.4, 0.4, len(shape))
    envelope = np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre)) / 0.25)
    return (p * envelope).astype(np.float32)


def above(diagram: topofix.Diagram, m: float) -> list[tuple[float, float]]:
    """The diagram seen from above m: bars born at or below m dropped, deaths clamped to m."""
    keep = diagram.birth > m
    return sorted(zip(diagram.birth[keep].tolist(), np.maximum(diagram.death[keep], m).tolist()))


def raw(diagram: topofix.Diagram) -> list[tuple[float, float]]:
    return sorted(zip(diagram.birth.tolist(), diagram.death.tolist()))


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("shape", [(40, 50), (18, 20, 22)])
def test_roi_keeps_the_diagram_above_the_outside_maximum(shape, connectivity):
    """The documented condition: with m = max of the map outside the ROI box, the diagrams of
    the box and of the whole image agree above m (and so also above any larger level, such as
    the maximum over the outside and the box's one-voxel boundary layer)."""
    rng = np.random.default_rng(sum(shape) + (connectivity == "face"))
    changed = 0
    for _ in range(3):
        p = smooth_map(rng, shape)
        full = topofix.persistence(p, connectivity)
        for fraction in (0.5, 0.7):
            threshold = fraction * float(p.max())
            for margin in (0, 1, 2):
                roi = roi_slices(torch.from_numpy(p), threshold, margin)
                assert all(s.stop - s.start < n for s, n in zip(roi, shape))  # a proper box
                outside = np.ones(shape, bool)
                outside[roi] = False
                m = float(p[outside].max())
                assert m < threshold
                inner = tuple(slice(s.start + 1, s.stop - 1) for s in roi)
                band = outside.copy()
                band[roi] = True
                band[inner] = False
                m_band = float(p[band].max())
                crop = topofix.persistence(p[roi], connectivity)
                for level in (m, m_band):
                    assert [above(a, level) for a in full] == [above(b, level) for b in crop]
                changed += [raw(a) for a in full] != [raw(b) for b in crop]
    assert changed  # the box does change the diagrams: the equality above m is not trivial


def test_roi_changes_nothing_when_the_outside_is_flat():
    """Constant background outside the box (the minimum of the map): no bar crosses m."""
    p = np.full((40, 40), 0.05)
    p[10:17, 12:20] = ring_and_blob()[:, :8] * 0.9 + 0.05
    p[14, 25] = 0.7  # a second component, inside the box
    x = t(p)
    for connectivity in CONNECTIVITIES:
        for form in FORMS:
            kw = {"connectivity": connectivity, "form": form}
            with_roi = TopologicalLoss((1, 1), roi_threshold=0.5, **kw)
            whole = TopologicalLoss((1, 1), roi_threshold=None, **kw)
            assert with_roi.terms(x).roi != tuple(slice(0, 40) for _ in range(2))
            assert float(with_roi(x)) == pytest.approx(float(whole(x)), abs=1e-12)
    # noise outside the box is what the ROI ignores
    noisy = p.copy()
    noisy[30:, 30:] += np.random.default_rng(0).uniform(0, 0.3, (10, 10))
    assert float(TopologicalLoss((1, 1))(t(noisy))) == pytest.approx(float(TopologicalLoss((1, 1))(x)))
    assert float(TopologicalLoss((1, 1), roi_threshold=None)(t(noisy))) > float(TopologicalLoss((1, 1))(x)) + 0.05


def test_roi_slices():
    fg = torch.zeros(10, 12)
    fg[3, 4] = 0.6
    fg[5, 9] = 0.9
    assert roi_slices(fg, 0.5, 0) == (slice(3, 6), slice(4, 10))
    assert roi_slices(fg, 0.5, 2) == (slice(1, 8), slice(2, 12))  # clipped to the image
    assert roi_slices(fg, 0.7, 1) == (slice(4, 7), slice(8, 11))
    assert roi_slices(fg, 0.95, 1) == (slice(0, 10), slice(0, 12))  # nothing above: whole image
    assert roi_slices(fg, None, 1) == (slice(0, 10), slice(0, 12))


# --------------------------------------------------------------------------------------
# What gradient descent on the loss alone does.


def descend(p0: np.ndarray, prior, steps: int, connectivity: str = "full", lr: float = 0.1, **kw):
    """Adam on logits, prob = sigmoid(logits); returns the Betti numbers at 0.5 after each step."""
    logits = torch.nn.Parameter(torch.logit(torch.tensor(p0, dtype=torch.float32)))
    loss_fn = TopologicalLoss(prior, connectivity=connectivity, spatial_dims=p0.ndim, **kw)
    optimiser = torch.optim.Adam([logits], lr=lr)
    history = [topofix.betti_numbers(p0 >= 0.5, connectivity)]
    for _ in range(steps):
        loss = loss_fn(torch.sigmoid(logits))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(topofix.betti_numbers(torch.sigmoid(logits).detach().numpy() >= 0.5, connectivity))
    return history, torch.sigmoid(logits).detach().numpy()


def ring_with_gap(n: int = 32, gap: int = 3) -> np.ndarray:
    """A ring of 0.9 (radii 8 to 11) cut by a gap of `gap` columns of 0.3, background 0.05."""
    y, x = np.mgrid[:n, :n]
    r = np.hypot(y - (n - 1) / 2, x - (n - 1) / 2)
    p = np.full((n, n), 0.05)
    p[(r >= 8) & (r <= 11)] = 0.9
    lo = n // 2 - gap // 2
    cut = p[: n // 2, lo : lo + gap]
    cut[cut > 0.5] = 0.3
    return p


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_descent_closes_a_broken_ring(connectivity, form):
    p0 = ring_with_gap()
    history, p = descend(p0, (1, 1), 60, connectivity, form=form)
    assert history[0] == (1, 0)
    assert history[-1] == (1, 1)
    assert history.index((1, 1)) <= 30  # measured: 16 steps
    assert all(h == (1, 1) for h in history[history.index((1, 1)):])  # and it stays closed
    assert (p[p0 == 0.3] >= 0.5).sum() >= 3  # the 3-column gap was bridged
    assert (p[p0 > 0.5] >= 0.5).all()  # nothing of the ring was lost


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_descent_removes_a_spurious_blob(connectivity):
    p0 = ring_with_gap(gap=0)
    p0[1:4, 1:4] = 0.8
    history, p = descend(p0, (1, 1), 120, connectivity)
    assert history[0] == (2, 1)
    assert history[-1] == (1, 1)
    assert history.index((1, 1)) <= 80  # measured: 47 steps
    assert (p[1:4, 1:4] < 0.5).all()  # removed, not bridged to the ring
    assert (p[p0 == 0.9] >= 0.5).all()


def test_descent_removes_a_structure_that_must_be_absent():
    p0 = np.full((12, 12), 0.05)
    p0[4:7, 5:8] = 0.8
    history, _ = descend(p0, (0, 0), 120)  # possible only with essential="min"
    assert history[0] == (1, 0) and history[-1] == (0, 0)


def hollow_sphere_with_hole(n: int = 16, hole: int = 3) -> np.ndarray:
    z, y, x = np.mgrid[:n, :n, :n]
    c = (n - 1) / 2
    r = np.sqrt((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2)
    p = np.full((n, n, n), 0.05)
    shell = (r >= 4.5) & (r <= 6.5)
    p[shell] = 0.9
    cut = np.zeros_like(shell)
    lo = n // 2 - hole // 2
    cut[: n // 2, lo : lo + hole, lo : lo + hole] = True
    p[shell & cut] = 0.3
    return p


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_descent_closes_a_hole_in_a_3d_shell(connectivity):
    p0 = hollow_sphere_with_hole()
    history, p = descend(p0, (1, 0, 1), 50, connectivity)  # no time limit here: numba compiles on a fresh clone
    assert history[0] == (1, 0, 0)
    assert history[-1] == (1, 0, 1)
    assert history.index((1, 0, 1)) <= 45  # measured: 29 (full), 31 (face)
    assert (p[p0 == 0.9] >= 0.5).all()


# --------------------------------------------------------------------------------------
# Temperature.


def gap_ring_logits(n: int = 32) -> tuple[torch.Tensor, tuple[int, int]]:
    """Logits of a ring of 0.99 open at a one-pixel-thick gap of 0.01, cavity 1e-4 (lower: the
    loop is born at 0.01); returns (logits, a gap pixel)."""
    p = np.full((n, n), 1e-3)
    p[6:26, 6] = p[6:26, 25] = p[6, 6:26] = p[25, 6:26] = 0.99
    p[7:25, 7:25] = 1e-4
    p[6, 14:17] = 0.01
    return torch.logit(t(p)), (6, 15)


def test_temperature_one_is_todays_loss():
    logits, _ = gap_ring_logits()
    for form in FORMS:
        z1 = logits.clone().requires_grad_(True)
        z2 = logits.clone().requires_grad_(True)
        a = TopologicalLoss((1, 1), form=form)(torch.sigmoid(z1))
        b = TopologicalLoss((1, 1), form=form, temperature=1.0)(torch.sigmoid(z2))
        a.backward()
        b.backward()
        assert float(a.detach()) == float(b.detach()) and torch.equal(z1.grad, z2.grad)
    assert "temperature" not in repr(TopologicalLoss((1, 1)))
    with pytest.raises(ValueError):
        TopologicalLoss((1, 1), temperature=0)


def test_temperature_is_the_softmax_of_tempered_logits():
    logits, _ = gap_ring_logits()
    z = torch.stack([torch.zeros_like(logits), logits])  # 2-channel softmax, channel 1 = the ring
    tempered = TopologicalLoss(["1=1,1"], temperature=3, spatial_dims=2)(torch.softmax(z, 0))
    plain = TopologicalLoss(["1=1,1"], spatial_dims=2)(torch.softmax(z / 3, 0))
    assert float(tempered) == pytest.approx(float(plain), abs=1e-9)
    single = TopologicalLoss((1, 1), temperature=3)(torch.sigmoid(logits))
    assert float(single) == pytest.approx(float(TopologicalLoss((1, 1))(torch.sigmoid(logits / 3))), abs=1e-9)


def test_temperature_keeps_the_gradient_alive_at_a_gap_of_p001():
    """Measured: the gradient wrt the logit of the gap's birth pixel is 1.96e-4 at T=1 (bar of
    length 0.0099, times p(1-p) = 0.0099) and 1.3e-2 at T=3 (length 0.13, q(1-q)/T = 0.049)."""
    logits, gap = gap_ring_logits()
    grads = {}
    for temperature in (1.0, 3.0):
        z = logits.clone().requires_grad_(True)
        TopologicalLoss((1, 1), temperature=temperature)(torch.sigmoid(z)).backward()
        grads[temperature] = z.grad[6, 14:17].abs().max().item()
    assert grads[1.0] == pytest.approx(2 * 0.0099 * 0.0099, rel=0.05)
    assert grads[3.0] > 30 * grads[1.0]


# --------------------------------------------------------------------------------------


def test_import_topofix_does_not_import_torch():
    code = (
        "import sys, topofix\n"
        "topofix.parse_prior('2=1,1')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    # the lazy exports resolve to the torch modules
    assert topofix.TopologicalLoss is TopologicalLoss
    assert topofix.betti_prior_loss is betti_prior_loss
    assert topofix.differentiable_persistence.__module__ == "topofix.topology.differentiable"
    assert topofix.PriorTerm.__module__ == topofix.LossTerms.__module__ == "topofix.losses"
