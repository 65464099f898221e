"""topofix.losses.loss_terms: the losses of several maps with one batched persistence call.

A correction step of a stack evaluates one loss per broken slice; loss_terms computes the
persistence of all of them in one batch (issue 13, point 5). Each job must get its own
map's diagrams (gudhi is the oracle) and the same loss and gradient as the map alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topofix.losses import DenseTopologicalLoss, TopologicalLoss, loss_terms


def gudhi_pairs(p: np.ndarray, dim: int) -> list[tuple[float, float]]:
    """gudhi's super-level bars of dimension ``dim`` (sub-level of -p, full connectivity, Z/2)."""
    import gudhi

    cc = gudhi.CubicalComplex(top_dimensional_cells=-np.asarray(p, np.float32))
    cc.compute_persistence(homology_coeff_field=2)
    return sorted((float(np.float32(-b)), float(np.float32(-d)) if np.isfinite(d) else -np.inf)
                  for b, d in cc.persistence_intervals_in_dimension(dim) if b != d)


def ours_pairs(diagram) -> list[tuple[float, float]]:
    return sorted((float(np.float32(b)), float(np.float32(d)) if np.isfinite(d) else -np.inf)
                  for b, d in diagram.as_array() if b != d)


def ring(side: int, gap: bool, blob: bool, seed: int) -> np.ndarray:
    """A smooth ring probability map, optionally with a gap and a blob, plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:side, :side] - (side - 1) / 2
    r = np.hypot(y, x)
    p = np.exp(-((r - side / 4) ** 2) / (2 * (side / 16) ** 2))
    if gap:
        p[(x > 0) & (np.abs(y) < side / 12)] *= 0.2
    if blob:
        p += 0.9 * np.exp(-((y - side / 2.6) ** 2 + (x - side / 2.6) ** 2) / (2 * (side / 20) ** 2))
    return np.clip(p + rng.normal(0, 0.02, p.shape), 0, 1).astype(np.float32)


MAPS = [ring(40, True, False, 0), ring(32, False, True, 1), ring(48, True, True, 2), ring(24, False, False, 3)]


@pytest.mark.parametrize("make", [
    lambda: TopologicalLoss("1,1", roi_threshold=None, spatial_dims=2),
    lambda: TopologicalLoss("1,1", roi_threshold=0.5, roi_margin=2, spatial_dims=2, form="mixed"),
    lambda: DenseTopologicalLoss("1,1", roi_threshold=0.5, spatial_dims=2),
], ids=["squared-no-roi", "mixed-roi", "dense-roi"])
@pytest.mark.parametrize("workers", [1, 2])
def test_each_job_gets_its_own_maps_persistence_and_loss(make, workers):
    loss = make()
    leaves = [torch.tensor(m, requires_grad=True) for m in MAPS]
    batched = loss_terms([(loss, leaf, None) for leaf in leaves], workers=workers)
    torch.stack([t.total for t in batched]).sum().backward()
    grads = [leaf.grad.clone() for leaf in leaves]

    for m, terms, grad in zip(MAPS, batched, grads):
        name = next(iter(terms.priors))
        crop = m[terms.roi]
        for dim in (0, 1):  # the job's diagrams are its own map's (gudhi on the same crop)
            assert ours_pairs(terms.priors[name].diagrams[dim]) == gudhi_pairs(crop, dim)
        alone = torch.tensor(m, requires_grad=True)  # the same loss on the map alone
        value = make()(alone)
        value.backward()
        assert float(terms.total.detach()) == pytest.approx(float(value.detach()), rel=1e-6, abs=1e-9)
        assert torch.allclose(grad, alone.grad, atol=1e-7)


def test_on_the_cpu_the_map_itself_is_read():
    """``host`` is the map copied to the CPU; on the CPU the map itself is read (no second computation)."""
    loss = TopologicalLoss("1,0", roi_threshold=None, spatial_dims=2)
    p = torch.tensor(MAPS[1], dtype=torch.float64, requires_grad=True)  # ring + blob: two components
    host = torch.tensor(MAPS[3], dtype=torch.float32)  # another map: one ring, one component
    (terms,) = loss_terms([(loss, p, host)])
    # on the CPU a host copy on the same device is the map itself, so nothing else is read
    assert ours_pairs(terms.priors[next(iter(terms.priors))].diagrams[0]) == gudhi_pairs(MAPS[1], 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_map_gives_the_cpu_loss_and_gradient():
    loss = DenseTopologicalLoss("1,1", roi_threshold=0.5, spatial_dims=2)
    cpu = [torch.tensor(m, requires_grad=True) for m in MAPS]
    gpu = [torch.tensor(m, device="cuda", requires_grad=True) for m in MAPS]
    on_cpu = loss_terms([(loss, m, None) for m in cpu])
    on_gpu = loss_terms([(loss, m, m.detach().cpu()) for m in gpu])
    torch.stack([t.total for t in on_cpu]).sum().backward()
    torch.stack([t.total for t in on_gpu]).sum().backward()
    for a, b, ma, mb in zip(on_cpu, on_gpu, cpu, gpu):
        assert float(a.total) == pytest.approx(float(b.total), rel=1e-5)
        assert torch.allclose(ma.grad, mb.grad.cpu(), atol=1e-6)
