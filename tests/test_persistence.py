"""topofix.persistence against gudhi and CubicalRipser, and against betti_numbers."""

from __future__ import annotations

import numpy as np
import pytest

import topofix

CONNECTIVITIES = ("full", "face")


def gudhi_diagrams(p: np.ndarray, connectivity: str) -> list[list[tuple[float, float]]]:
    """gudhi's super-level diagrams (sub-level of -p), Z/2, zero-length bars dropped."""
    import gudhi

    f = -np.asarray(p, np.float32)
    if connectivity == "full":
        cc = gudhi.CubicalComplex(top_dimensional_cells=f)
    else:
        cc = gudhi.CubicalComplex(vertices=f)
    cc.compute_persistence(homology_coeff_field=2)
    return [
        sorted((float(np.float32(-b)), float(np.float32(-d))) for b, d in cc.persistence_intervals_in_dimension(k) if b != d)
        for k in range(p.ndim)
    ]


def ours(p: np.ndarray, connectivity: str) -> list[list[tuple[float, float]]]:
    result = topofix.persistence(p, connectivity)
    return [sorted((float(np.float32(b)), float(np.float32(d))) for b, d in dgm.as_array()) for dgm in result]


def random_map(rng: np.random.Generator, ndim: int, ties: bool, max_side: int) -> np.ndarray:
    shape = tuple(int(s) for s in rng.integers(1, max_side, ndim))
    if ties:  # few distinct values: plateaus everywhere
        return (rng.integers(0, 4, shape) / 3).astype(np.float32)
    return rng.random(shape).astype(np.float32)


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_equals_gudhi_on_random_maps(ndim, ties, connectivity):
    rng = np.random.default_rng(100 * ndim + 10 * ties + (connectivity == "face"))
    for _ in range(40):
        p = random_map(rng, ndim, ties, 12 if ndim == 2 else 8)
        assert ours(p, connectivity) == gudhi_diagrams(p, connectivity), p.shape


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("shape", [(40, 50), (18, 20, 22)])
def test_equals_gudhi_on_smooth_maps(shape, connectivity):
    from scipy import ndimage

    rng = np.random.default_rng(sum(shape))
    p = ndimage.gaussian_filter(rng.random(shape), 1.5).astype(np.float32)
    assert ours(p, connectivity) == gudhi_diagrams(p, connectivity)


def test_equals_cubicalripser():
    """cripser: computePH is the V-construction (face), computePH_T the T-construction (full)."""
    cripser = pytest.importorskip("cripser")
    rng = np.random.default_rng(5)
    for shape in [(30, 31), (9, 10, 11)]:
        p = rng.random(shape).astype(np.float32)
        for fn, connectivity in ((cripser.computePH, "face"), (cripser.computePH_T, "full")):
            rows = fn(-p.astype(np.float64), maxdim=p.ndim - 1)
            theirs = []
            for k in range(p.ndim):
                bars = [(-float(np.float32(b)), -float(np.float32(d)) if d < 1e300 else -np.inf)
                        for dim, b, d, *_ in rows if dim == k and b != d]
                theirs.append(sorted(bars))
            assert ours(p, connectivity) == theirs


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_bars_alive_at_t_are_the_betti_numbers(connectivity):
    rng = np.random.default_rng(9)
    for ndim in (2, 3):
        for _ in range(15):
            p = random_map(rng, ndim, ties=bool(rng.integers(2)), max_side=10 if ndim == 2 else 7)
            result = topofix.persistence(p, connectivity)
            for t in np.unique(p):
                assert result.betti(t) == topofix.betti_numbers(p >= t, connectivity), (p.shape, t)


def test_critical_cells_carry_the_bar_values():
    rng = np.random.default_rng(2)
    for shape in [(20, 25), (8, 9, 10)]:
        p = rng.random(shape).astype(np.float32)
        for connectivity in CONNECTIVITIES:
            for dgm in topofix.persistence(p, connectivity):
                flat = p.ravel()
                assert np.array_equal(flat[dgm.birth_cell], dgm.birth.astype(np.float32))
                finite = ~dgm.essential
                assert np.array_equal(flat[dgm.death_cell[finite]], dgm.death[finite].astype(np.float32))
                assert np.all(dgm.birth >= dgm.death)
                assert np.all(np.diff(dgm.length[finite]) <= 0)  # longest first


def test_essential_class_and_constant_image():
    result = topofix.persistence(np.full((5, 6), 0.3, np.float32))
    (h0, h1) = result
    assert len(h0) == 1 and h0.birth[0] == np.float32(0.3) and h0.death[0] == -np.inf
    assert h0.death_cell[0] == -1 and len(h1) == 0
    result3 = topofix.persistence(np.zeros((3, 4, 5)))
    assert [len(d) for d in result3] == [1, 0, 0]


def test_hand_made_ring_and_blob():
    """A ring of 0.9 with a gap of 0.4 and a blob of 0.7: known bars."""
    p = np.full((9, 14), 0.1, np.float32)
    p[1:8, 1:8] = 0.9
    p[3:6, 3:6] = 0.2  # hole
    p[4, 1:3] = 0.4  # gap in the wall (2 pixels): the loop is born at 0.4
    p[3:6, 10:13] = 0.7  # blob
    for connectivity in CONNECTIVITIES:
        h0, h1 = topofix.persistence(p, connectivity)
        assert sorted(zip(h0.birth.round(6), h0.death.round(6))) == [(0.7, 0.1), (0.9, -np.inf)]
        assert list(zip(h1.birth.round(6), h1.death.round(6))) == [(0.4, 0.2)]
        # the gap pixel is the loop's birth cell, a hole pixel its death cell
        assert np.unravel_index(h1.birth_cell[0], p.shape)[0] == 4
        assert p.ravel()[h1.death_cell[0]] == np.float32(0.2)


def test_torch_tensor_input_and_bad_input():
    torch = pytest.importorskip("torch")
    p = torch.rand(6, 7, dtype=torch.float64, requires_grad=True)
    assert ours(p.detach().numpy(), "full") == [sorted(zip(d.birth, d.death)) for d in topofix.persistence(p)]
    with pytest.raises(ValueError, match="NaN"):
        topofix.persistence(np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match="2D or 3D"):
        topofix.persistence(np.zeros(4))


class _Deferred:
    """A future that runs its job when its result is first asked for."""

    def __init__(self, fn, args):
        self.fn, self.args, self.done, self.value = fn, args, False, None

    def result(self):
        if not self.done:
            self.value, self.done = self.fn(*self.args), True
        return self.value


class LateExecutor:
    """A thread pool whose workers start late: every job runs after all were submitted, as on a
    loaded machine (the 3D path's first job once called a name rebound to a Future meanwhile:
    "'Future' object is not callable", seen only under load)."""

    def __init__(self, max_workers=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        return _Deferred(fn, args)


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_3d_passes_in_any_order_of_the_threads(monkeypatch, connectivity):
    import topofix.topology.persistence as engine

    monkeypatch.setattr(engine, "ThreadPoolExecutor", LateExecutor)
    rng = np.random.default_rng(7)
    for _ in range(5):
        p = random_map(rng, 3, False, 8)
        assert ours(p, connectivity) == gudhi_diagrams(p, connectivity), p.shape
