"""differentiable_persistence: bar values, exact gradients, critical cells, essential modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import topofix
from topofix.topology.differentiable import differentiable_persistence

CONNECTIVITIES = ("full", "face")
ESSENTIALS = ("min", "drop")
SHAPES = {2: (7, 9), 3: (4, 5, 6)}


def well_spaced(rng: np.random.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """A random permutation of values at least 0.6/n apart (n voxels), in float64.

    Perturbing one voxel by 1e-6 cannot reorder them, even in float32 (the
    engine's precision), so the pairing is the same at x - eps and x + eps and
    central differences measure the true derivative.
    """
    n = int(np.prod(shape))
    values = (np.arange(n) + rng.uniform(0.0, 0.4, n)) / n
    return torch.tensor(rng.permutation(values).reshape(shape), dtype=torch.float64)


def bar_function(prob: torch.Tensor, connectivity: str, essential: str, weights: np.ndarray) -> torch.Tensor:
    """A scalar of the bars that depends on every bar: sum of weighted squared lengths
    (plus the births cubed, so that births and deaths are not only seen as a difference).

    Weights are looked up by birth cell, not by position in the list: the list is sorted
    by length and tied lengths could swap under a perturbation, the pairing cannot.
    """
    bars, diagrams = differentiable_persistence(prob, connectivity, essential=essential)
    total = prob.new_zeros(())
    for k, ((b, d), dgm) in enumerate(zip(bars, diagrams)):
        cells = dgm.birth_cell if essential == "min" else dgm.birth_cell[dgm.death_cell >= 0]
        w = torch.as_tensor(weights[k, cells], dtype=prob.dtype)
        total = total + (w * (b - d) ** 2).sum() + 0.1 * (k + 1) * (b**3).sum()
    return total


@pytest.mark.parametrize("essential", ESSENTIALS)
@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_gradient_equals_central_differences(ndim, connectivity, essential):
    rng = np.random.default_rng(7 * ndim + (connectivity == "face") + 3 * (essential == "drop"))
    shape = SHAPES[ndim]
    eps = 1e-6
    for _ in range(2):
        x = well_spaced(rng, shape).requires_grad_(True)
        weights = rng.uniform(0.5, 2.0, (ndim, x.numel()))
        bar_function(x, connectivity, essential, weights).backward()
        numeric = np.zeros(x.numel())
        base = x.detach().reshape(-1)
        for i in range(x.numel()):
            plus, minus = base.clone(), base.clone()
            plus[i] += eps
            minus[i] -= eps
            f_plus = bar_function(plus.reshape(shape), connectivity, essential, weights)
            f_minus = bar_function(minus.reshape(shape), connectivity, essential, weights)
            numeric[i] = (float(f_plus) - float(f_minus)) / (2 * eps)
        np.testing.assert_allclose(x.grad.reshape(-1).numpy(), numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("essential", ESSENTIALS)
@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_only_critical_cells_get_gradient(ndim, connectivity, essential):
    rng = np.random.default_rng(11 * ndim + (connectivity == "face"))
    x = well_spaced(rng, (12, 13) if ndim == 2 else (6, 7, 8)).requires_grad_(True)
    weights = rng.uniform(0.5, 2.0, (ndim, x.numel()))
    bar_function(x, connectivity, essential, weights).backward()
    diagrams = topofix.persistence(x.detach().numpy(), connectivity)
    critical = set()
    for dgm in diagrams:
        finite = dgm.death_cell >= 0
        critical |= set(dgm.birth_cell[finite].tolist()) | set(dgm.death_cell[finite].tolist())
        if essential == "min":
            critical |= set(dgm.birth_cell[~finite].tolist())
    if essential == "min":
        critical.add(int(torch.argmin(x.detach())))
    nonzero = set(np.flatnonzero(x.grad.reshape(-1).numpy()).tolist())
    assert nonzero == critical
    assert len(critical) < x.numel()  # the test means something: most voxels get nothing


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_values_equal_the_engine(ndim, connectivity):
    rng = np.random.default_rng(ndim)
    p = rng.random((15, 17) if ndim == 2 else (7, 8, 9)).astype(np.float32)
    x = torch.from_numpy(p)
    engine = topofix.persistence(p, connectivity)
    bars_min, _ = differentiable_persistence(x, connectivity, essential="min")
    bars_drop, _ = differentiable_persistence(x, connectivity, essential="drop")
    for k, dgm in enumerate(engine):
        finite = dgm.death_cell >= 0
        b, d = bars_min[k]
        assert b.dtype == torch.float32 and d.dtype == torch.float32
        np.testing.assert_array_equal(b.numpy(), dgm.birth)
        np.testing.assert_array_equal(d.numpy()[finite], dgm.death[finite])
        np.testing.assert_array_equal(d.numpy()[~finite], p.min())  # closed at the minimum
        b, d = bars_drop[k]
        np.testing.assert_array_equal(b.numpy(), dgm.birth[finite])
        np.testing.assert_array_equal(d.numpy(), dgm.death[finite])
    # exactly one essential bar, in dimension 0, born at the maximum
    assert [int((~dgm.essential).sum()) for dgm in engine] == [len(bars_drop[k][0]) for k in range(ndim)]
    assert len(bars_min[0][0]) == len(bars_drop[0][0]) + 1
    assert float(bars_min[0][0][0]) == p.max() and float(bars_min[0][1][0]) == p.min()


def test_longest_first_with_essential_closed_at_minimum():
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.random((20, 20)))
    bars, _ = differentiable_persistence(x, essential="min")
    for b, d in bars:
        lengths = (b - d).numpy()
        assert np.all(np.diff(lengths) <= 0)
    assert float(bars[0][0][0] - bars[0][1][0]) == float(x.max() - x.min())


def test_essential_gradient_pushes_max_up_and_min_down():
    x = torch.tensor([[0.2, 0.9, 0.1], [0.3, 0.4, 0.5]], dtype=torch.float64, requires_grad=True)
    bars, _ = differentiable_persistence(x, essential="min")
    b, d = bars[0]
    (1 - (b[0] - d[0]) ** 2).backward()  # wants the essential bar of length 1
    grad = x.grad.numpy()
    assert grad[0, 1] < 0 and grad[0, 2] > 0  # descent raises the max, lowers the min
    assert np.count_nonzero(grad) == 2


def test_constant_map():
    x = torch.full((4, 5), 0.3, requires_grad=True)
    bars, diagrams = differentiable_persistence(x, essential="min")
    assert [len(b) for b, _ in bars] == [1, 0]
    assert float((bars[0][0] - bars[0][1]).detach()) == 0.0
    bars, _ = differentiable_persistence(x, essential="drop")
    assert [len(b) for b, _ in bars] == [0, 0]
    assert len(diagrams[0]) == 1


def test_matches_gudhi_on_a_smooth_3d_map():
    """Independent oracle for the values: gudhi's diagram of -p (sub-level of -p)."""
    gudhi = pytest.importorskip("gudhi")
    from scipy import ndimage

    rng = np.random.default_rng(3)
    p = ndimage.gaussian_filter(rng.random((10, 11, 12)), 1.2).astype(np.float32)
    for connectivity in CONNECTIVITIES:
        bars, _ = differentiable_persistence(torch.from_numpy(p), connectivity, essential="drop")
        kw = "top_dimensional_cells" if connectivity == "full" else "vertices"
        cc = gudhi.CubicalComplex(**{kw: -p})
        cc.compute_persistence(homology_coeff_field=2)
        for k, (b, d) in enumerate(bars):
            expected = sorted(
                (float(np.float32(-bi)), float(np.float32(-di)))
                for bi, di in cc.persistence_intervals_in_dimension(k)
                if bi != di and np.isfinite(di)
            )
            assert sorted(zip(b.tolist(), d.tolist())) == expected


def test_gradient_through_a_network_style_graph():
    """Gradients flow through sigmoid/softmax into parameters, in float32."""
    logits = torch.randn(3, 10, 10, generator=torch.Generator().manual_seed(0), requires_grad=True)
    prob = logits.softmax(0)[1:].sum(0)
    bars, _ = differentiable_persistence(prob)
    sum(((b - d) ** 2).sum() for b, d in bars).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_maps(dtype):
    """Mixed-precision outputs work; bars keep the input's dtype, gradients reach it."""
    x = torch.rand(9, 9, generator=torch.Generator().manual_seed(1)).to(dtype).requires_grad_(True)
    bars, diagrams = differentiable_persistence(x)
    assert all(b.dtype == dtype for b, _ in bars)
    np.testing.assert_array_equal(bars[1][0].float().detach().numpy(), diagrams[1].birth)
    sum(((b - d) ** 2).sum() for b, d in bars).backward()
    assert x.grad.dtype == dtype and x.grad.abs().sum() > 0


def test_refuses_non_tensors_and_bad_modes():
    with pytest.raises(TypeError):
        differentiable_persistence(np.zeros((3, 3)))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        differentiable_persistence(torch.zeros((3, 3), dtype=torch.int64))
    with pytest.raises(ValueError):
        differentiable_persistence(torch.zeros((3, 3)), essential="keep")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        differentiable_persistence(torch.zeros((3, 3)), connectivity="diagonal")
    with pytest.raises(ValueError):
        differentiable_persistence(torch.zeros(5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bars_stay_on_the_device():
    x = torch.rand(16, 16, device="cuda", requires_grad=True)
    bars, _ = differentiable_persistence(x)
    assert all(b.device == x.device and d.device == x.device for b, d in bars)
    sum(((b - d) ** 2).sum() for b, d in bars).backward()
    assert x.grad.device == x.device
