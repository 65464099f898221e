"""`topofix.correct`, the Python API of test-time correction: results, report, determinism,
weights restored between scans, the never-worse rule, already-met scans untouched."""

from __future__ import annotations

import correct_models as cm
import numpy as np
import pytest
import torch
from oracles import betti as oracle_betti

import topofix
from topofix import (
    CorrectionSettings,
    ModelContract,
    TopologicalLoss,
    load_model,
)

SETTINGS = CorrectionSettings(steps=60, lr=1e-3, lam=10.0, threshold=0.5, connectivity="full", form="squared",
                              roi_threshold=0.5, roi_margin=2, patience=3, seed=0)
BROKEN_RING = {"gap": 0.35, "gap_angle": 1.0, "seed": 3}
RING_AND_BLOB = {"blob": 0.6, "seed": 3}
BROKEN_RING_AND_BLOB = {"gap": 0.35, "gap_angle": 1.0, "blob": 0.6, "seed": 3}  # needs ~17 steps
GOOD_RING = {"seed": 4, "gap_angle": 2.0}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return cm.shared_models(tmp_path_factory)


@pytest.fixture(autouse=True)
def one_thread():
    with cm.one_thread():
        yield


def scan(**scene) -> np.ndarray:
    return cm.ring_scene(**scene)[1]


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_returns_labels_probabilities_and_report(models):
    image = scan(**BROKEN_RING)
    result = topofix.correct(image, models.ring, "1=1,1", settings=SETTINGS)
    assert result.labels.shape == image.shape and result.labels.dtype == np.uint8
    assert result.probabilities.shape == (1, *image.shape) and result.probabilities.dtype == np.float32
    assert 0.0 <= result.probabilities.min() and result.probabilities.max() <= 1.0
    np.testing.assert_array_equal(result.labels, result.probabilities[0] >= 0.5)
    np.testing.assert_array_equal(result.original_labels, result.original_probabilities[0] >= 0.5)
    assert oracle_betti(result.original_labels) == (1, 0)
    assert oracle_betti(result.labels) == (1, 1)
    report = result.report
    assert (report.met_before, report.met_after, report.stop_reason) == (False, True, "met")
    assert report.priors[0].prior == "1=1,1" and report.priors[0].expected == [1, 1]
    assert report.priors[0].betti_before == [[1, 0]] and report.priors[0].betti_after == [[1, 1]]
    # stopped once the mask met the prior at `patience` consecutive steps; one curve point per step taken
    assert report.steps == report.chosen_step == len(report.loss_curve) and report.steps >= SETTINGS.patience
    assert report.changed_fraction == pytest.approx(np.mean(result.labels != result.original_labels))
    assert 0.8 < report.dice_original_corrected < 1.0
    assert report.topo_loss < report.loss_curve[0][0]  # the loss went down
    data = report.to_dict()
    assert data["path"] == "<array>" and data["error"] is None and isinstance(data["loss_curve"][0], list)


def test_same_seed_gives_identical_results(models):
    image = scan(**BROKEN_RING_AND_BLOB)
    first = topofix.correct(image, models.ring, "1=1,1", settings=SETTINGS)
    second = topofix.correct(image, models.ring, "1=1,1", settings=SETTINGS)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.probabilities, second.probabilities)
    assert first.report.loss_curve == second.report.loss_curve
    assert first.report.steps == second.report.steps > 10


@pytest.mark.parametrize("kind", ["module", "ring_scripted", "ring_onnx"])
def test_weights_are_restored_between_scans(models, kind):
    """B after A gives exactly what B alone gives; the network is left bit-identical, in its mode."""
    module = models.ring if kind == "module" else load_model(models.files[kind]).module
    module.eval()
    original = state(module)
    a, b = scan(**RING_AND_BLOB), scan(**BROKEN_RING)
    alone = topofix.correct(b, module, "1=1,1", settings=SETTINGS)
    assert_same_state(state(module), original)
    first = topofix.correct(a, module, "1=1,1", settings=SETTINGS)
    assert first.report.steps > 0
    after = topofix.correct(b, module, "1=1,1", settings=SETTINGS)
    np.testing.assert_array_equal(after.labels, alone.labels)
    np.testing.assert_array_equal(after.probabilities, alone.probabilities)
    assert after.report.loss_curve == alone.report.loss_curve
    assert_same_state(state(module), original)
    assert all(p.grad is None for p in module.parameters())
    assert not module.training


def test_training_mode_is_restored(models):
    module = models.ring
    module.train()
    try:
        result = topofix.correct(scan(**BROKEN_RING), module, "1=1,1", settings=SETTINGS)
        assert module.training  # restored...
        assert result.report.met_after  # ...but the correction ran in eval mode (batch-norm running statistics)
    finally:
        module.eval()
    eval_result = topofix.correct(scan(**BROKEN_RING), module, "1=1,1", settings=SETTINGS)
    np.testing.assert_array_equal(result.probabilities, eval_result.probabilities)


def test_never_worse_when_steps_are_too_few(models):
    image = scan(**BROKEN_RING_AND_BLOB)
    settings = CorrectionSettings(**{**SETTINGS.__dict__, "steps": 3})
    result = topofix.correct(image, models.ring, "1=1,1", settings=settings)
    report = result.report
    assert not report.met_before and not report.met_after and report.stop_reason == "max steps"
    assert len(report.loss_curve) == 4  # steps 0..3, each evaluated
    start = report.loss_curve[0][0]
    assert report.topo_loss == pytest.approx(min(t for t, _ in report.loss_curve))
    assert report.topo_loss <= start
    # the same loss recomputed independently on the returned and the original probabilities
    loss = TopologicalLoss("1=1,1", roi_threshold=0.5, roi_margin=2, spatial_dims=2)
    kept = float(loss(torch.from_numpy(result.probabilities)))
    original = float(loss(torch.from_numpy(result.original_probabilities)))
    assert kept == pytest.approx(report.topo_loss, abs=1e-6)
    assert kept <= original + 1e-6
    assert original == pytest.approx(start, abs=1e-6)
    np.testing.assert_array_equal(result.labels, result.probabilities[0] >= 0.5)


def test_already_met_scan_is_returned_untouched(models):
    image = scan(**GOOD_RING)
    predicted = topofix.predict(image, models.ring, device="cpu")
    result = topofix.correct(image, models.ring, "1=1,1", settings=SETTINGS)
    assert result.report.stop_reason == "already met" and result.report.steps == 0
    assert result.report.met_before and result.report.met_after and result.report.loss_curve == []
    np.testing.assert_array_equal(result.labels, predicted.labels)
    np.testing.assert_array_equal(result.probabilities, predicted.probabilities)
    assert result.labels is result.original_labels


def test_always_fine_tunes_a_met_scan(models):
    image = scan(**GOOD_RING)
    settings = CorrectionSettings(**{**SETTINGS.__dict__, "always": True})
    result = topofix.correct(image, models.ring, "1=1,1", settings=settings)
    # met from step 0: stops after `patience` met steps, the prior still met
    assert result.report.stop_reason == "met" and result.report.steps == settings.patience - 1
    assert oracle_betti(result.labels) == (1, 1)


def test_multilabel_priors_and_per_slice(models):
    _, heart = cm.ring_scene(gap=0.5, gap_angle=1.0, disc=cm.HEART_LEVELS[2], seed=3)
    result = topofix.correct(heart, models.heart, ["1=1,1", "1+2=1,0"], settings=SETTINGS)
    assert result.probabilities.shape == (3, *heart.shape)
    assert [p.betti_before for p in result.report.priors] == [[[1, 0]], [[1, 0]]]
    assert [p.betti_after for p in result.report.priors] == [[[1, 1]], [[1, 0]]]
    assert [oracle_betti(result.original_labels == 1), oracle_betti(result.original_labels > 0)] == [(1, 0), (1, 0)]
    assert [oracle_betti(result.labels == 1), oracle_betti(result.labels > 0)] == [(1, 1), (1, 0)]

    c1, good = cm.ring_scene(seed=1)
    stack = np.stack([cm.background_like(c1, good, 10), good, scan(**BROKEN_RING)])
    result = topofix.correct(stack, models.ring, "1=1,1", settings=SETTINGS, per_slice="z",
                             contract=ModelContract(normalize="none"))
    prior = result.report.priors[0]
    assert prior.betti_before == [[0, 0], [1, 1], [1, 0]] and prior.failing_slices_before == [2]
    assert prior.betti_after == [[0, 0], [1, 1], [1, 1]] and prior.failing_slices_after == []
    assert [oracle_betti(s) for s in result.original_labels] == [(0, 0), (1, 1), (1, 0)]
    assert [oracle_betti(s) for s in result.labels] == [(0, 0), (1, 1), (1, 1)]
    assert not result.labels[0].any()


class TwoChannels(torch.nn.Module):
    """A network taking two image channels (the second ignored)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x[:, :1])


def test_model_with_two_input_channels(models):
    """A (y, x, 2) image for a two-channel network: the loss must read the (K, y, x) softmax as 2D."""
    _, heart = cm.ring_scene(gap=0.5, gap_angle=1.0, disc=cm.HEART_LEVELS[2], seed=3)
    priors = ["1=1,1", "1+2=1,0"]
    single = topofix.correct(heart, models.heart, priors, settings=SETTINGS)
    double = topofix.correct(np.stack([heart, heart], axis=-1), TwoChannels(models.heart), priors,
                             settings=SETTINGS, contract=ModelContract(in_channels=2))
    assert double.report.met_after and double.report.steps == single.report.steps
    np.testing.assert_array_equal(double.labels, single.labels)


def test_model_given_as_a_path(models):
    image = scan(**BROKEN_RING)
    result = topofix.correct(image, str(models.files["ring_scripted"]), "1=1,1", settings=SETTINGS, device="cpu")
    assert oracle_betti(result.labels) == (1, 1)
    in_memory = topofix.correct(image, models.ring, "1=1,1", settings=SETTINGS)
    np.testing.assert_array_equal(result.original_labels, in_memory.original_labels)


def test_refuses_priors_without_oracle_betti(models):
    with pytest.raises(ValueError, match="at least one prior"):
        topofix.correct(scan(**BROKEN_RING), models.ring, [], settings=SETTINGS)
    with pytest.raises(topofix.PriorError):
        topofix.correct(scan(**BROKEN_RING), models.ring, "1=1,x", settings=SETTINGS)


class RegionSigmoids(torch.nn.Module):
    """A region-based network (nnU-Net style): two sigmoid channels, channel k paints label k + 1.
    Channel 0 is the ring network's output (label 1), channel 1 is empty (label 2)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ring = self.inner(x)
        return torch.cat([ring, torch.full_like(ring, -10.0)], dim=1)


def test_region_based_sigmoid_channels(models):
    image = scan(**BROKEN_RING)
    result = topofix.correct(image, RegionSigmoids(models.ring), "1=1,1", settings=SETTINGS,
                             contract=ModelContract(activation="sigmoid"))
    assert oracle_betti(result.original_labels == 1) == (1, 0)
    assert oracle_betti(result.labels == 1) == (1, 1)


def test_fallback_is_not_a_degenerate_mask(models):
    image = scan(**BROKEN_RING_AND_BLOB)
    settings = CorrectionSettings(**{**SETTINGS.__dict__, "lr": 3e-2, "steps": 30})
    result = topofix.correct(image, models.ring, "1=1,1", settings=settings)
    assert result.report.met_after or result.report.dice_original_corrected > 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_a_stack_is_corrected_as_on_the_cpu(models):
    """The GPU path (issue 13): one host copy per step, batched per-slice persistence.
    Judged with gudhi (not topofix.betti_numbers); the module comes back to the CPU."""
    from oracles import gudhi_betti

    stack = np.stack([scan(**BROKEN_RING), scan(**GOOD_RING), scan(**BROKEN_RING_AND_BLOB)])
    on_cpu = topofix.correct(stack, models.ring, "1=1,1", settings=SETTINGS, per_slice="z", device="cpu")
    on_gpu = topofix.correct(stack, models.ring, "1=1,1", settings=SETTINGS, per_slice="z", device="cuda")
    for z in range(3):
        assert gudhi_betti(on_gpu.labels[z], "full") == gudhi_betti(on_cpu.labels[z], "full") == (1, 1)
    assert np.mean(on_gpu.labels != on_cpu.labels) < 0.01
    assert next(models.ring.parameters()).device.type == "cpu"
