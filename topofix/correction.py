"""``topofix correct`` as a Python API: test-time topological fine-tuning of one scan.

The method (Clough et al., IEEE TPAMI 2022; Byrne et al., IEEE TMI 2022): for
each scan alone, start from the user's network, predict ``S0``, and if the mask
breaks the Betti prior, take gradient steps on a copy of the network with

    L = L_topo(S) + lambda * mean((S - S0)^2)

where ``L_topo`` is :class:`topofix.TopologicalLoss` and the similarity term
keeps the corrected output close to the original prediction (without it the
network is free to change everything the prior does not see). The weights are
restored after every scan, so each scan starts from the original network.

Why the loop is shaped this way:

* the network is in ``eval()`` mode (batch norm uses its running statistics,
  dropout is off) while all its parameters train, as in Byrne et al.'s code;
* the prior is checked on the mask that will be written (the argmax label map
  for softmax models), not on a thresholded channel, after every step;
* the loop stops once that mask has met the prior at ``patience`` consecutive
  steps (the mask is stable), and returns that iterate;
* if no step meets the prior, the iterate with the lowest loss (topological +
  similarity) whose Betti error is not above the start's is returned and reported
  as not met: never something worse than the start (the start itself qualifies);
* a scan whose original mask already meets the prior is returned untouched
  (byte-identical output) unless ``always=True``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from topofix.checking import check_labels
from topofix.priors import Prior, build_priors
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY


@dataclass
class CorrectionSettings:
    """Optimisation settings of :func:`correct` (CLI: ``--steps``, ``--lr``, ``--lambda``...).

    Defaults are discussed in the README ("Choosing the settings").
    """

    steps: int = 100
    lr: float = 1e-4
    lam: float = 100.0
    threshold: float = 0.5
    connectivity: str = DEFAULT_CONNECTIVITY
    form: str = "squared"
    roi_threshold: float | None = 0.5
    roi_margin: int = 2
    patience: int = 3
    always: bool = False
    seed: int | None = 0


@dataclass
class PriorOutcome:
    """One prior, before and after (whole image, or per slice)."""

    prior: str
    expected: list[int] | None
    betti_before: list[list[int]]
    betti_after: list[list[int]]
    met_before: bool
    met_after: bool
    failing_slices_before: list[int] = field(default_factory=list)
    failing_slices_after: list[int] = field(default_factory=list)


@dataclass
class CaseReport:
    """What happened to one scan (a row of ``topofix_report.json``)."""

    path: str
    priors: list[PriorOutcome]
    met_before: bool
    met_after: bool
    steps: int
    stop_reason: str
    chosen_step: int
    seconds: float
    changed_fraction: float
    dice_original_corrected: float
    topo_loss: float | None
    similarity_loss: float | None
    loss_curve: list[tuple[float, float]] = field(default_factory=list)
    diagrams: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["loss_curve"] = [list(v) for v in self.loss_curve]
        return data


@dataclass
class CorrectionResult:
    """Output of :func:`correct`: corrected and original masks/probabilities, and the report."""

    labels: np.ndarray
    probabilities: np.ndarray
    original_labels: np.ndarray
    original_probabilities: np.ndarray
    report: CaseReport


def _outcomes(labels_before: np.ndarray, labels_after: np.ndarray, priors: Sequence[Prior], connectivity: str,
              per_slice: str | None) -> list[PriorOutcome]:
    before = check_labels(labels_before, priors, connectivity=connectivity, per_slice=per_slice)
    after = check_labels(labels_after, priors, connectivity=connectivity, per_slice=per_slice)
    outcomes = []
    for prior in priors:
        b = [r for r in before if r.prior == prior]
        a = [r for r in after if r.prior == prior]
        outcomes.append(PriorOutcome(
            prior=prior.spec,
            expected=None if b[0].expected is None else list(b[0].expected),
            betti_before=[list(r.betti) for r in b],
            betti_after=[list(r.betti) for r in a],
            met_before=all(r.status != "fail" for r in b),
            met_after=all(r.status != "fail" for r in a),
            failing_slices_before=[r.slice_index for r in b if r.status == "fail" and r.slice_index is not None],
            failing_slices_after=[r.slice_index for r in a if r.status == "fail" and r.slice_index is not None],
        ))
    return outcomes


def _meets(labels: np.ndarray, priors: Sequence[Prior], connectivity: str, per_slice: str | None) -> bool:
    return _betti_error(labels, priors, connectivity, per_slice) == 0


def _betti_error(labels: np.ndarray, priors: Sequence[Prior], connectivity: str, per_slice: str | None) -> int:
    """Sum over priors (and slices) of |Betti numbers - prior|: 0 when the mask meets the priors.

    Empty slices (structure absent with ``per_slice``) count as met, as in ``check``.
    """
    error = 0
    for r in check_labels(labels, priors, connectivity=connectivity, per_slice=per_slice):
        if r.status == "fail":
            error += sum(abs(b - e) for b, e in zip(r.betti, r.expected))
    return error


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the non-zero labels present in either mask (1.0 when both are empty)."""
    labels = np.union1d(np.unique(a), np.unique(b))
    labels = labels[labels != 0]
    if labels.size == 0:
        return 1.0
    scores = []
    for label in labels:
        x, y = a == label, b == label
        denom = x.sum() + y.sum()
        scores.append(2.0 * np.logical_and(x, y).sum() / denom if denom else 1.0)
    return float(np.mean(scores))


def correct(
    image: Any,
    model: Any,
    priors: Sequence[Prior | str] | Prior | str,
    *,
    settings: CorrectionSettings | None = None,
    contract: Any = None,
    per_slice: str | None = None,
    patch_size: Sequence[int] | None = None,
    overlap: float = 0.5,
    device: str = "auto",
    path: str = "<array>",
    callback: Callable[[int, float, float], None] | None = None,
) -> CorrectionResult:
    """Correct the topology of one scan's segmentation by test-time fine-tuning.

    Parameters
    ----------
    image:
        The scan: a numpy array (numpy order, ``(y, x)`` or ``(z, y, x)``) or a
        :class:`topofix.Image`.
    model:
        A ``torch.nn.Module``, a :class:`topofix.models.LoadedModel` or a path to
        a TorchScript/ONNX file. Its weights are restored before returning.
    priors:
        ``--prior`` specs (``"2=1,1"``), :class:`Prior` objects, or one of them.
    settings:
        :class:`CorrectionSettings` (steps, lr, lambda, threshold...).
    contract, per_slice, patch_size, overlap, device:
        How to run the model (see :func:`topofix.predict`).
    callback:
        Called after every step with ``(step, topo_loss, similarity_loss)``
        (progress bars).

    Returns
    -------
    CorrectionResult
    """
    import torch

    from topofix.losses import TopologicalLoss
    from topofix.models.contract import resolve_activation, resolve_contract
    from topofix.models.inference import (
        labels_from_probabilities,
        predict_probabilities,
        prepare_input,
        resolve_device,
    )
    from topofix.models.loading import LoadedModel, load_model
    from topofix.models.weights import WeightsSnapshot, fresh_optimizer

    settings = settings or CorrectionSettings()
    started = time.perf_counter()
    if isinstance(priors, (str, Prior)):
        priors = [priors]
    prior_list = [p for p in build_priors(priors=priors) if p.betti is not None]
    if not prior_list:
        raise ValueError("correct needs at least one prior with Betti numbers (e.g. '2=1,1')")
    array = image.array if hasattr(image, "array") else np.asarray(image)
    torch_device = resolve_device(device)
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = load_model(model, device=str(torch_device))
    module = model.module if isinstance(model, LoadedModel) else model
    original_device = next((p.device for p in module.parameters()), torch_device)
    module = module.to(torch_device)
    in_channels = 1 if contract is None else contract.in_channels
    image_ndim = array.ndim - (1 if in_channels > 1 else 0)
    # resolved and normalised once: the loop runs the network at every step
    contract = resolve_contract(module, contract, image_ndim=image_ndim, per_slice=per_slice, patch_size=patch_size)
    x = prepare_input(array, contract, device=torch_device)

    def run(grad: bool):
        return predict_probabilities(module, x, contract, per_slice=per_slice, patch_size=patch_size,
                                     overlap=overlap, device=torch_device, grad=grad)

    def to_labels(prob) -> np.ndarray:
        return labels_from_probabilities(prob, contract, threshold=settings.threshold)

    snapshot = WeightsSnapshot(module)
    was_training = module.training
    module.eval()
    rng = torch.random.fork_rng(devices=[torch_device] if torch_device.type == "cuda" else [])
    rng.__enter__()  # seeded locally: the caller's random state is left as it was
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    try:
        with torch.no_grad():
            s0 = run(grad=False).detach()
        labels0 = to_labels(s0)
        activation = resolve_activation(contract.activation, s0.shape[0])
        met0 = _meets(labels0, prior_list, settings.connectivity, per_slice)
        curve: list[tuple[float, float]] = []
        if met0 and not settings.always:
            report = _report(path, labels0, labels0, prior_list, settings, per_slice, 0, "already met",
                             started, None, None, curve)
            probs = s0.cpu().numpy()
            return CorrectionResult(labels0, probs, labels0, probs, report)

        loss_fn = TopologicalLoss(prior_list, connectivity=settings.connectivity, form=settings.form,
                                  roi_threshold=settings.roi_threshold, roi_margin=settings.roi_margin,
                                  spatial_dims=2 if per_slice else image_ndim)
        slices = _loss_slices(labels0, prior_list, per_slice)
        optimizer = fresh_optimizer(module, settings.lr)
        # if the prior is never met: the iterate with the lowest loss (topological + lambda *
        # similarity, what the steps minimise) among those whose Betti error is not above the
        # start's. Not the topological loss alone: a large step can nearly empty the mask,
        # which lowers that term without being a better segmentation.
        start_error = _betti_error(labels0, prior_list, settings.connectivity, per_slice)
        best: tuple[float, Any, np.ndarray, int] | None = None
        met_run = 0
        stop_reason = "max steps"
        chosen = None
        for step in range(settings.steps + 1):
            # the output of the current weights (step 0: the original network)
            prob = run(grad=step < settings.steps)
            labels = to_labels(prob.detach())
            error = _betti_error(labels, prior_list, settings.connectivity, per_slice)
            met_run = met_run + 1 if error == 0 else 0
            if met_run >= settings.patience or (met_run and step == settings.steps):
                chosen = (prob.detach(), labels, step)
                stop_reason = "met"
                break
            topo = _topological_loss(loss_fn, _loss_input(prob, activation), per_slice, slices)
            similarity = torch.mean((prob - s0) ** 2)
            topo_value, sim_value = float(topo.detach()), float(similarity.detach())
            curve.append((topo_value, sim_value))
            if callback is not None:
                callback(step, topo_value, sim_value)
            objective = topo_value + settings.lam * sim_value
            if error <= start_error and (best is None or objective < best[0]):
                best = (objective, prob.detach(), labels, step)
            if step == settings.steps:
                break
            optimizer.zero_grad(set_to_none=True)
            (topo + settings.lam * similarity).backward()
            optimizer.step()
        if chosen is None:  # never met: see `best` above (step 0, the original, always qualifies)
            assert best is not None
            _, prob_best, labels_best, step_best = best
            chosen = (prob_best, labels_best, step_best)
        final_prob, final_labels, final_step = chosen
        with torch.no_grad():
            final_topo = float(_topological_loss(loss_fn, _loss_input(final_prob, activation), per_slice, slices))
            final_sim = float(torch.mean((final_prob - s0) ** 2))
        steps_run = final_step if stop_reason == "met" else len(curve) - 1
        report = _report(path, labels0, final_labels, prior_list, settings, per_slice, steps_run, stop_reason,
                         started, final_topo, final_sim, curve, chosen_step=final_step)
        report.diagrams = _diagram_data(loss_fn, _loss_input(s0, activation), _loss_input(final_prob, activation),
                                        per_slice, slices, report)
        return CorrectionResult(final_labels, final_prob.cpu().numpy(), labels0, s0.cpu().numpy(), report)
    finally:
        snapshot.restore()
        module.train(was_training)
        module.to(original_device)
        rng.__exit__(None, None, None)


def _loss_input(prob, activation: str):
    """Probabilities laid out as the loss reads them: channel index = label.

    Softmax outputs already are (channel 0 = background). Several sigmoid channels
    (nnU-Net's region-based outputs) paint label k + 1 from channel k, so a
    background channel (1 - the largest region probability) is put in front; one
    sigmoid channel is the foreground map itself.
    """
    if activation == "sigmoid" and prob.shape[0] > 1:
        import torch

        return torch.cat([1 - prob.amax(0, keepdim=True), prob], dim=0)
    return prob


def _loss_slices(labels0: np.ndarray, priors: Sequence[Prior], per_slice: str | None) -> list[int] | None:
    """Slices the loss looks at with ``per_slice``: those where some prior's structure is present."""
    if per_slice is None or labels0.ndim == 2:
        return None
    from topofix.checking import SLICE_AXES

    axis = SLICE_AXES[per_slice]
    keep = []
    for index in range(labels0.shape[axis]):
        plane = np.take(labels0, index, axis=axis)
        if any(p.select(plane).any() for p in priors):
            keep.append(index)
    return keep


def _topological_loss(loss_fn, prob, per_slice: str | None, slices: list[int] | None):
    """The loss on the whole map, or summed over the chosen 2D slices (channel axis first)."""
    if slices is None:
        return loss_fn(prob)
    from topofix.checking import SLICE_AXES

    axis = SLICE_AXES[per_slice] + 1  # + channel axis
    total = prob.new_zeros(())
    for index in slices:
        total = total + loss_fn(prob.select(axis, index))
    return total


MIN_REPORTED_LENGTH = 0.01
"""Bars shorter than this (noise on the diagonal) are left out of the report's diagrams."""


def _bars(term) -> list[list[float]]:
    """``[dim, birth, death, kept]`` rows of one prior term; ``kept``: among the beta*_k
    longest bars of its dimension, which the loss pushes to length 1 (the others to 0)."""
    rows = []
    for dim, ((births, deaths), wanted) in enumerate(zip(term.bars, term.expected)):
        b = births.detach().cpu().numpy().astype(float)
        d = deaths.detach().cpu().numpy().astype(float)
        order = np.argsort(-(b - d), kind="stable")
        kept = np.zeros(b.size, bool)
        kept[order[:wanted]] = True
        rows.extend([dim, round(float(x), 5), round(float(y), 5), bool(k)]
                    for x, y, k in zip(b, d, kept) if k or x - y >= MIN_REPORTED_LENGTH)
    return rows


def _diagram_data(loss_fn, before, after, per_slice, slices, report) -> list[dict[str, Any]]:
    """Persistence diagrams before/after, per prior (and per slice that failed before or
    after), for reports and pictures: what the prior keeps and what it removes."""
    import torch

    from topofix.checking import SLICE_AXES

    entries: list[dict[str, Any]] = []
    if slices is None:
        planes = [(None, before, after)]
    else:
        failing = {i for o in report.priors for i in o.failing_slices_before + o.failing_slices_after}
        axis = SLICE_AXES[per_slice] + 1
        planes = [(i, before.select(axis, i), after.select(axis, i)) for i in slices if i in failing]
    with torch.no_grad():
        for index, b, a in planes:
            terms_before, terms_after = loss_fn.terms(b), loss_fn.terms(a)
            for name, term in terms_before.priors.items():
                entries.append({
                    "slice": index,
                    "prior": name,
                    "expected": list(term.expected),
                    "before": _bars(term),
                    "after": _bars(terms_after.priors[name]),
                })
    return entries


def _report(path, labels0, labels1, priors, settings, per_slice, steps, reason, started, topo, sim, curve,
            chosen_step=0):
    outcomes = _outcomes(labels0, labels1, priors, settings.connectivity, per_slice)
    return CaseReport(
        path=path,
        priors=outcomes,
        met_before=all(o.met_before for o in outcomes),
        met_after=all(o.met_after for o in outcomes),
        steps=steps,
        stop_reason=reason,
        chosen_step=chosen_step,
        seconds=round(time.perf_counter() - started, 3),
        changed_fraction=float(np.mean(labels0 != labels1)),
        dice_original_corrected=dice(labels0, labels1),
        topo_loss=topo,
        similarity_loss=sim,
        loss_curve=curve,
    )
