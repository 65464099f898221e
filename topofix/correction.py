"""``topofix correct`` as a Python API: test-time topological fine-tuning of one scan.

The method (Clough et al., IEEE TPAMI 2022; Byrne et al., IEEE TMI 2022): for
each scan alone, start from the user's network, predict ``S0``, and if the mask
breaks the Betti prior, take gradient steps on a copy of the network with

    L = L_topo(S) + lambda * mean((S - S0)^2)

where ``L_topo`` is a topological objective (:func:`topofix.losses.make_topology_loss`:
Clough's squared form, Byrne's linear form, or the dense critical-set form) and
the similarity term keeps the corrected output close to the original prediction.
The weights are restored after every scan, so each scan starts from the original
network.

Why the loop is shaped this way:

* **Units.** The prior is judged per structure and, with ``per_slice``, per
  slice (:mod:`topofix.assessment`), once per step; the stopping rule, the
  fallback, the repair stage and the report all read that one record.
* **No evidence, no invention.** A structure whose probability stays below
  ``evidence_floor`` in a unit is *absent* there: left as predicted, reported
  as ``absent``, never fine-tuned for.
* **Only what is broken is worked on, and only it may change.** The loss looks
  at the slices with a failing unit; slices that met their prior keep their
  original labels and probabilities in the output (one fine-tuned copy serves
  the whole stack, but a slice is never changed for its neighbours' sake).
* **Never worse, per unit.** An iterate is eligible only if no unit's Betti
  error is above its start (a structure that met its prior still meets it).
  Each part (a failing slice, or the whole scan) takes its own best iterate:
  the first at which it met its prior for ``patience`` consecutive steps, else
  the eligible iterate of lowest objective (topological + lambda * similarity;
  not the topological term alone, which a near-empty mask can lower).
* **Stop when more steps cannot help**: when every part is met, or when no
  part has made progress for ``plateau`` steps. Progress is a lower Betti error
  *or* a topological term clearly below its best: on the hard benchmark
  (``bench/quality``) a gap often closes only after 40-90 steps of a slowly
  lengthening bar, and a plateau on the Betti error alone stopped those.
* **Escalation** (``escalate``): at a plateau, before stopping, the learning
  rate is multiplied and lambda divided by ``escalate_factor``: gentle settings
  first, stronger ones only while stuck; never-worse and the evidence floor
  still decide what is kept.
* **Repair stage** (``repair=True``): a part still not meeting its prior after
  fine-tuning is brought to it by the smallest change the probability map
  supports (:func:`topofix.repairing.repair`), within the evidence floor, never
  making another unit worse.
* A scan whose mask already meets the prior is returned untouched
  (byte-identical output) unless ``always=True``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from topofix.assessment import Unit, UnitStatus, assess, evidence
from topofix.metrics.overlap import mean_label_dice
from topofix.priors import Prior, target_priors
from topofix.slicing import SLICE_AXES, take_slice
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY


@dataclass
class CorrectionSettings:
    """Settings of :func:`correct` (CLI: ``--steps``, ``--lr``, ``--lambda``, ``--loss``...).

    Defaults are discussed in the README ("Choosing the settings"), measured on
    the hard benchmark (``bench/quality``).

    Attributes
    ----------
    steps, lr, lam:
        Most optimisation steps, Adam's learning rate, weight of the similarity term.
    threshold:
        Sigmoid threshold (one-channel models); softmax models use the argmax.
    form:
        Topological objective: ``squared`` (Clough et al.), ``linear`` (Byrne et
        al.), ``mixed`` or ``dense`` (critical sets); see :mod:`topofix.losses`.
    temperature:
        Bars computed on tempered probabilities (``softmax(log p / T)``): T > 1
        keeps gradients alive where the softmax is saturated.
    roi_threshold, roi_margin:
        Region of interest of the topological term (Byrne et al.).
    patience:
        A part is done once its mask met the prior at this many consecutive steps (1: the
        first met step is written; on the hard benchmark waiting for 3 fixed nothing more and
        let the masks drift: Dice 0.808 against 0.812, 25 steps against 20).
    plateau:
        Stop when no part made progress for this many steps (``None``: never): progress is a
        lower Betti error, or a topological term 0.5% below its best so far.
    escalate, escalate_factor:
        On a plateau, up to ``escalate`` times, multiply the learning rate by
        ``escalate_factor`` and divide lambda by it, instead of stopping: gentle
        settings first, stronger ones only while the Betti error does not fall.
    evidence_floor:
        A structure whose probability stays below this in a unit is ``absent``:
        left as predicted. Also the lowest level at which the repair stage may
        close a loop or keep a component.
    repair:
        Run the repair stage on parts that fine-tuning left broken.
    always:
        Fine-tune scans that already meet the prior.
    seed:
        Seed of torch's random generator during the correction (``None``: not seeded).
    """

    steps: int = 100
    lr: float = 2e-4
    lam: float = 100.0
    threshold: float = 0.5
    connectivity: str = DEFAULT_CONNECTIVITY
    form: str = "mixed"
    temperature: float = 1.0
    roi_threshold: float | None = 0.5
    roi_margin: int = 2
    patience: int = 1
    plateau: int | None = 15
    escalate: int = 0
    escalate_factor: float = 10.0
    evidence_floor: float = 0.2
    repair: bool = True
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
    absent: bool = False
    absent_slices: list[int] = field(default_factory=list)


@dataclass
class CaseReport:
    """What happened to one scan (a row of ``topofix_report.json``).

    ``stop_reason``: ``already met``, ``absent`` (no evidence: nothing done),
    ``met``, ``plateau``, ``max steps`` or ``non-finite`` (the network produced
    NaN/Inf: the last finite iterates are used). ``repaired``: the repair stage
    changed ``repair_changed`` voxels (``repair_actions`` says what it did).
    """

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
    absent: bool = False
    repaired: bool = False
    repair_changed: int = 0
    repair_actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

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
    channel_labels: list[int | None] | None = None
    """The label of each probability channel when it is not the channel's index (``None`` for a
    channel that stands for several labels); ``None``: channel ``k`` is label ``k``."""


PLATEAU_PROGRESS = 0.005
"""Relative fall of a part's topological term that counts as progress for the plateau rule."""


@dataclass
class _Part:
    """A failing slice (``index``) or the whole scan (``index=None``), and its best iterate so far."""

    index: int | None
    units: list[Unit]
    loss_priors: list[Prior]
    met_run: int = 0
    done_step: int | None = None
    best_objective: float | None = None
    best_step: int = 0
    best_prob: Any = None
    best_labels: np.ndarray | None = None
    best_error: int = 0
    best_topo: float = math.inf
    last_improved: int = 0


@dataclass
class _Descent:
    """What the fine-tuning loop carries from one step to the next (see :meth:`_Loop.fine_tune`)."""

    prob: Any  # this step's probabilities of the whole scan (with the graph while steps remain)
    optimizer: Any
    lam: float  # the similarity weight, lowered by each escalation
    step: int = 0
    escalations: int = 0


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
        ``--prior`` specs (``"2=1,1"``, ``"2=1,1|0,0"``), :class:`Prior` objects,
        or one of them.
    settings:
        :class:`CorrectionSettings` (steps, lr, lambda, loss form, repair...).
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

    from topofix.models.contract import resolve_activation, resolve_contract
    from topofix.models.inference import (
        labels_from_probabilities,
        predict_logits,
        predict_probabilities,
        prepare_input,
        resolve_device,
    )
    from topofix.models.loading import LoadedModel, load_model
    from topofix.models.weights import WeightsSnapshot, fresh_optimizer
    from topofix.prediction import from_logits

    settings = settings or CorrectionSettings()
    started = time.perf_counter()
    prior_list = target_priors(priors, "correct")
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

    slice_axis = 1 + SLICE_AXES[per_slice] if per_slice is not None and image_ndim == 3 else None

    def run(grad: bool, indices: Sequence[int] | None = None):
        """Probabilities of the whole scan, or (per-slice stacks) of the slices ``indices`` only."""
        xs = x
        if indices is not None and slice_axis is not None:
            xs = x.index_select(slice_axis, torch.as_tensor(list(indices), device=x.device))
        return predict_probabilities(module, xs, contract, per_slice=per_slice, patch_size=patch_size,
                                     overlap=overlap, device=torch_device, grad=grad)

    def to_labels(prob) -> np.ndarray:
        return labels_from_probabilities(prob, contract, threshold=settings.threshold)

    def step0():
        """The original prediction, computed as :func:`topofix.predict` computes it (same code)."""
        raw = predict_logits(module, x, contract, per_slice=per_slice, patch_size=patch_size, overlap=overlap,
                             device=torch_device, grad=False)
        prob, labels, _, warnings = from_logits(raw, contract, settings.threshold)
        return prob, labels, warnings

    snapshot = WeightsSnapshot(module)
    was_training = module.training
    module.eval()
    rng = torch.random.fork_rng(devices=[torch_device] if torch_device.type == "cuda" else [])
    rng.__enter__()  # seeded locally: the caller's random state is left as it was
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    try:
        activation = partial(resolve_activation, contract.activation)  # out channels -> sigmoid/softmax
        return _Loop(settings, prior_list, per_slice, image_ndim, run, to_labels, activation, path, started,
                     callback, fresh_optimizer, module, step0).run()
    finally:
        snapshot.restore()
        module.train(was_training)
        module.to(original_device)
        rng.__exit__(None, None, None)


class _Loop:
    """The fine-tuning loop of one scan; see the module docstring for the rules it follows."""

    def __init__(self, settings, priors, per_slice, image_ndim, run, to_labels, activation, path, started,
                 callback, fresh_optimizer, module, step0) -> None:
        self.step0 = step0
        self.s = settings
        self.priors = priors
        self.per_slice = per_slice
        self.image_ndim = image_ndim
        self.run_network = run
        self.to_labels = to_labels
        self.activation_for = activation  # out channels -> "sigmoid" / "softmax" (the contract's, resolved)
        self.path = path
        self.started = started
        self.callback = callback
        self.fresh_optimizer = fresh_optimizer
        self.module = module
        self._losses: dict[tuple[str, ...], Any] = {}
        self.targets: dict[Unit, Prior] = {}
        self.worked: list[int] | None = None  # slices run by the network while fine-tuning (None: all)
        self.warnings: list[str] = []  # step 0's, as predict gives them

    # -- what a step produces ----------------------------------------------------------
    def assess(self, labels: np.ndarray) -> dict[Unit, UnitStatus]:
        """Every unit's status; a structure present at the start is judged against its own target.

        A prior such as ``2=1,1|0,0`` is met by an absent structure, but deciding that a
        structure is absent is the evidence floor's job, not the optimiser's: a ring the network
        does see must not be "fixed" by erasing it. So a unit present at step 0 is judged against
        the alternative it was narrowed to (:meth:`narrow_targets`).
        """
        return self.retarget(assess(labels, self.priors, connectivity=self.s.connectivity,
                                    per_slice=self.per_slice))

    def retarget(self, units: dict[Unit, UnitStatus]) -> dict[Unit, UnitStatus]:
        for unit, target in self.targets.items():
            st = units[unit]
            units[unit] = UnitStatus(st.prior, st.slice_index, st.betti, target.is_met(st.betti),
                                     int(target.error(st.betti)), st.empty)
        return units

    def narrow_targets(self, units0: dict[Unit, UnitStatus], absent: set[Unit]) -> None:
        """The alternative each structure with evidence is held to (see :func:`_narrow`).

        Present structures, and empty ones that fail their prior while the network
        gives them probability above the floor (a faint structure may be real).
        """
        self.targets = {u: _narrow(st.prior, st.betti) for u, st in units0.items()
                        if u not in absent and (not st.empty or not st.met)}

    def loss_fn(self, priors: Sequence[Prior]):
        """One topological objective per set of (narrowed) priors, built once."""
        from topofix.losses import make_topology_loss

        key = tuple(p.spec for p in priors)
        if key not in self._losses:
            self._losses[key] = make_topology_loss(
                self.s.form, list(priors), connectivity=self.s.connectivity, temperature=self.s.temperature,
                roi_threshold=self.s.roi_threshold, roi_margin=self.s.roi_margin,
                spatial_dims=2 if self.per_slice else self.image_ndim)
        return self._losses[key]

    def plane(self, tensor, index: int | None):
        """The part ``index`` of a channel-first tensor (the whole tensor for a whole scan)."""
        if index is None or tensor.ndim - 1 == 2:
            return tensor
        return tensor.select(SLICE_AXES[self.per_slice] + 1, index)

    def plane_labels(self, labels: np.ndarray, index: int | None) -> np.ndarray:
        return take_slice(labels, self.per_slice, index)

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> CorrectionResult:
        """Step 0, then fine-tuning on the failing parts only when something is to be corrected."""
        s0, labels0, units0, absent = self.start()
        failing = [u for u, st in units0.items() if not st.met and u not in absent]
        if not failing and not self.s.always:
            return self.unchanged(s0, labels0, units0, absent)
        if not failing:  # always=True on a scan that meets its prior: every unit with its structure present
            failing = [u for u, st in units0.items() if u not in absent and not st.empty]
        parts = self.make_parts(units0, absent, failing)
        self.worked = self.worked_slices(parts)
        curve: list[tuple[float, float]] = []
        steps, stop_reason = self.fine_tune(s0, labels0, units0, parts, curve)
        return self.finish(parts, s0, labels0, units0, absent, steps, stop_reason, curve)

    def start(self) -> tuple[Any, np.ndarray, dict[Unit, UnitStatus], set[Unit]]:
        """Step 0 (predict: the same code, no graph), its units judged against their targets, and
        the absent units.

        A non-finite output stops here with an :class:`InferenceError`: there is nothing to
        correct from.
        """
        import torch

        s0, labels0, self.warnings = self.step0()
        s0 = s0.detach()
        if not bool(torch.isfinite(s0).all()):
            from topofix.models.inference import InferenceError

            raise InferenceError(f"{self.path}: the network's output contains NaN or Inf; nothing to correct")
        self.activation = self.activation_for(s0.shape[0])
        units0 = self.assess(labels0)
        absent = self.absent_units(s0, units0)
        self.narrow_targets(units0, absent)
        units0 = self.retarget(units0)  # the same Betti numbers, judged against the targets
        return s0, labels0, units0, absent

    def absent_units(self, s0, units0: dict[Unit, UnitStatus]) -> set[Unit]:
        """Units that are empty or failing and whose structure has no evidence in step 0's output.

        With no evidence there is nothing to correct from (an empty slice of a stack is met,
        but still reported absent): the evidence floor, not the optimiser, decides absence.
        """
        layout0 = _loss_input(s0, self.activation).float().cpu().numpy()
        seen = evidence(layout0, self.priors, self.per_slice)
        return {u for u, st in units0.items()
                if (st.empty or not st.met) and seen.get(u, 0.0) < self.s.evidence_floor}

    def unchanged(self, s0, labels0: np.ndarray, units0: dict[Unit, UnitStatus],
                  absent: set[Unit]) -> CorrectionResult:
        """The result when nothing fails (or only absent units do): step 0's output, no fine-tuning."""
        reason = "absent" if any(not units0[u].met for u in absent) else "already met"
        probs = s0.cpu().numpy()
        report = self.report(labels0, units0, labels0, units0, absent, 0, reason, 0, None, [])
        return CorrectionResult(labels0, probs, labels0, probs, report)

    def fine_tune(self, s0, labels0: np.ndarray, units0: dict[Unit, UnitStatus], parts: list[_Part],
                  curve: list[tuple[float, float]]) -> tuple[int, str]:
        """The fine-tuning loop; returns the last step and why it stopped.

        Each step: read this step's masks, mark the parts that are done, evaluate the
        objective, keep the best eligible iterate of each part, escalate or stop on a
        plateau, then one optimiser step. ``curve`` receives each step's (topo, sim).
        """
        s = self.s
        prob = self.forward(s0, grad=s.steps > 0)  # the worked part again, with the graph for step 1
        d = _Descent(prob, self.fresh_optimizer(self.module, s.lr), s.lam)
        while True:
            if not self._finite(d.prob.detach()):  # the network broke: keep what was eligible
                return d.step, "non-finite"
            host, labels, units = self.read_step(d, labels0, units0)
            if self.mark_done(parts, d, labels, units):
                return d.step, "met"
            loss = self.objective(d.prob, s0, parts, host)
            if not (math.isfinite(loss.topo_value) and math.isfinite(loss.similarity_value)):
                return d.step, "non-finite"
            self.record(d.step, loss, curve)
            for part in parts:
                if part.done_step is None:
                    self.consider(part, d.step, d.prob, labels, units, units0, loss.per_part[id(part)])
            if self.plateaued(d, parts):
                return d.step, "plateau"
            if d.step == s.steps:
                return d.step, "max steps"
            self.descend(d, loss, s0)

    @staticmethod
    def _finite(tensor) -> bool:
        """Whether every value of ``tensor`` is finite (one reduction, one transfer)."""
        import torch

        return bool(torch.isfinite(tensor).all())

    def read_step(self, d: _Descent, labels0: np.ndarray, units0: dict[Unit, UnitStatus]):
        """This step's one copy from the device (none on the CPU), its masks and their units.

        Step 0's masks and units are the ones already computed by :meth:`start`: the same
        probabilities, so labelling and assessing them again would only cost time.
        """
        host = d.prob.detach().to("cpu")
        if d.step == 0:
            return host, labels0, units0
        labels = self.to_labels(host)
        return host, labels, self.assess(labels)

    def mark_done(self, parts: list[_Part], d: _Descent, labels, units) -> bool:
        """Update every open part's met streak (:meth:`check_met`); True once all parts are done."""
        for part in parts:
            if part.done_step is None:
                self.check_met(part, d.step, d.prob, labels, units)
        return all(p.done_step is not None for p in parts)

    def record(self, step: int, loss: _Objective, curve: list[tuple[float, float]]) -> None:
        """Log this step's scalars in the loss curve and tell the caller's progress callback."""
        curve.append((loss.topo_value, loss.similarity_value))
        if self.callback is not None:
            self.callback(step, loss.topo_value, loss.similarity_value)

    def plateaued(self, d: _Descent, parts: list[_Part]) -> bool:
        """True when every open part has stalled for ``plateau`` steps and no escalation is left.

        A stall with escalations left is not the end: the loop tries stronger settings
        (:meth:`escalate`) and the stall clock of every part starts again.
        """
        s = self.s
        if s.plateau is None or not all(
                p.done_step is not None or d.step - p.last_improved >= s.plateau for p in parts):
            return False
        if d.escalations >= s.escalate:
            return True
        self.escalate(d, parts)
        return False

    def escalate(self, d: _Descent, parts: list[_Part]) -> None:
        """Stuck with gentle settings: a weaker similarity weight and a larger learning rate.

        Never-worse and the evidence floor still guard what is kept, so a stronger push
        cannot make the result worse than the start.
        """
        d.escalations += 1
        d.lam *= self.s.escalate_factor ** -1
        for group in d.optimizer.param_groups:
            group["lr"] *= self.s.escalate_factor
        for p in parts:
            p.last_improved = d.step

    def descend(self, d: _Descent, loss: _Objective, s0) -> None:
        """One optimiser step on topo + lam * sim, then the next step's forward pass.

        The last step's forward runs without a graph: no backward pass follows it.
        """
        d.optimizer.zero_grad(set_to_none=True)
        (loss.topo + d.lam * loss.similarity).backward()
        d.optimizer.step()
        d.step += 1
        d.prob = self.forward(s0, grad=d.step < self.s.steps)

    def worked_slices(self, parts: list[_Part]) -> list[int] | None:
        """The slices the network runs on during fine-tuning (``None``: the whole scan).

        With ``per_slice`` on a stack the network sees one slice at a time, and the
        output keeps the original of every slice that is not a part (see the module
        docstring), so only the parts' slices need a forward and a backward pass: a
        stack with one broken slice costs what a 2D slice does, not the stack.
        """
        indices = [p.index for p in parts]
        if self.per_slice is None or self.image_ndim != 3 or None in indices:
            return None
        return sorted(i for i in indices if i is not None)

    def forward(self, s0, grad: bool):
        """This step's probabilities of the whole scan: the worked slices from the network, the
        others the original's (``s0``; their difference, hence their similarity term, is zero)."""
        import torch

        if self.worked is None:
            return self.run_network(grad=grad)
        sub = self.run_network(grad=grad, indices=self.worked)
        axis = SLICE_AXES[self.per_slice] + 1
        index = torch.as_tensor(self.worked, device=s0.device)
        return s0.index_copy(axis, index, sub.to(s0.dtype))

    def make_parts(self, units0, absent, failing) -> list[_Part]:
        """The failing slices (or the whole scan), each with the priors its loss pushes toward.

        A prior that lists alternatives is narrowed to the one nearest to the
        mask among those that keep the structure (:meth:`narrow_targets`);
        absent and empty units are left out of the loss.
        """
        indices = sorted({u[1] for u in failing}, key=lambda i: -1 if i is None else i)
        parts = []
        for index in indices:
            units = [u for u in units0 if u[1] == index]
            # the structures with evidence, held to their targets; absent ones, and empty ones that
            # meet their prior, stay out of the loss (never-worse keeps them as they are)
            loss_priors = [self.targets[u] for u in units if u in self.targets]
            parts.append(_Part(index, units, loss_priors, best_error=sum(units0[u].error for u in units)))
        return parts

    def objective(self, prob, s0, parts, host=None) -> _Objective:
        """Topological term over the parts, similarity term, and each part's own (topo, sim).

        ``host``: ``prob`` already copied to the CPU this step (``None``: ``prob`` is on the
        CPU). Every part's maps are read from it and their persistence runs as one batch
        (:func:`topofix.losses.loss_terms`); the scalars the loop needs come back in one
        transfer. On a GPU a step thus waits for the device twice (this copy and the
        scalars), whatever the number of parts and priors.
        """
        import torch

        from topofix.losses import loss_terms

        layout = _loss_input(prob, self.activation)
        if host is None or host.device == prob.device:
            host_layout = layout.detach()
        else:
            host_layout = _loss_input(host, self.activation).float()
        with_priors = [p for p in parts if p.loss_priors]
        computed = loss_terms([(self.loss_fn(p.loss_priors), self.plane(layout, p.index),
                                self.plane(host_layout, p.index)) for p in with_priors])
        by_part = {id(p): t.total for p, t in zip(with_priors, computed)}
        total = prob.new_zeros(())
        terms, diffs = [], []
        for part in parts:
            term = by_part.get(id(part), prob.new_zeros(()))
            total = total + term
            terms.append(term.detach())
            diffs.append((self.plane(prob.detach(), part.index) - self.plane(s0, part.index)).square().mean())
        similarity = ((prob - s0) ** 2).mean()
        scalars = torch.stack([total.detach(), similarity.detach(), *terms, *diffs]).tolist()  # one transfer
        n = len(parts)
        values = {id(part): (scalars[2 + i], scalars[2 + n + i]) for i, part in enumerate(parts)}
        return _Objective(total, similarity, values, scalars[0], scalars[1])

    def check_met(self, part: _Part, step: int, prob, labels, units) -> None:
        """A part is done once its mask met the prior at ``patience`` consecutive steps (or at the last)."""
        met = all(units[u].met for u in part.units)
        part.met_run = part.met_run + 1 if met else 0
        if met and (part.met_run >= self.s.patience or step == self.s.steps):
            part.done_step = step
            self.keep(part, step, prob, labels)

    def consider(self, part: _Part, step: int, prob, labels, units, units0, values) -> None:
        """Fallback and plateau bookkeeping of a part not done yet.

        Eligible iterates keep every unit at or below its starting Betti error;
        among them the lowest objective is kept (the start always qualifies).
        """
        error = sum(units[u].error for u in part.units)
        topo_value, sim_value = values
        # progress: a lower Betti error, or a topological term clearly lower than its best so far (a
        # ring's bar lengthening step by step before the ring closes is progress, not a plateau)
        if error < part.best_error or topo_value < part.best_topo * (1 - PLATEAU_PROGRESS):
            part.last_improved = step
        part.best_error = min(part.best_error, error)
        part.best_topo = min(part.best_topo, topo_value)
        eligible = all(units[u].error <= units0[u].error for u in part.units)
        objective = topo_value + self.s.lam * sim_value
        if eligible and (part.best_objective is None or objective < part.best_objective):
            part.best_objective = objective
            self.keep(part, step, prob, labels)

    def keep(self, part: _Part, step: int, prob, labels: np.ndarray) -> None:
        part.best_step = step
        part.best_prob = self.plane(prob.detach(), part.index).clone()
        part.best_labels = self.plane_labels(labels, part.index).copy()

    def finish(self, parts, s0, labels0, units0, absent, steps, stop_reason, curve) -> CorrectionResult:
        """Compose the parts' chosen iterates over the original, repair what is still broken, report."""
        import torch

        labels = labels0.copy()
        prob = s0.clone()
        chosen_step = 0
        for part in parts:
            if part.best_labels is None:  # nothing eligible yet (non-finite at step 0): the original
                continue
            self.plane_labels(labels, part.index)[...] = part.best_labels
            self.plane(prob, part.index).copy_(part.best_prob)
            chosen_step = max(chosen_step, part.best_step)
        units = self.assess(labels)
        repair_changed, actions = 0, []
        if self.s.repair and any(not units[u].met for p in parts for u in p.units if u not in absent):
            labels, repair_changed, actions = self.repair(prob, labels, parts, units, absent)
            units = self.assess(labels)
        with torch.no_grad():
            final = self.objective(prob, s0, parts)
        report = self.report(labels0, units0, labels, units, absent, steps, stop_reason, chosen_step,
                             (final.topo_value, final.similarity_value), curve)
        report.repaired = repair_changed > 0
        report.repair_changed = repair_changed
        report.repair_actions = actions
        report.diagrams = self.diagram_data(s0, prob, parts, report)
        return CorrectionResult(labels, prob.cpu().numpy(), labels0, s0.cpu().numpy(), report)

    def repair(self, prob, labels, parts, units, absent):
        """The repair stage on every part still failing; a change that makes a unit worse is undone."""
        from topofix.repairing import repair_labels

        layout = _loss_input(prob, self.activation).float().cpu().numpy()
        changed, actions = 0, []
        for part in parts:
            if all(units[u].met for u in part.units):
                continue
            before = self.plane_labels(labels, part.index)
            narrowed = [self.targets.get(u) or _narrow(units[u].prior, units[u].betti)
                        for u in part.units if u not in absent]
            if not narrowed:
                continue
            plane_prob = take_slice(layout, self.per_slice, part.index, channels=True) \
                if part.index is not None else layout
            result = repair_labels(plane_prob, before, narrowed, connectivity=self.s.connectivity,
                            evidence_floor=self.s.evidence_floor)
            candidate = labels.copy()
            self.plane_labels(candidate, part.index)[...] = result.labels
            after = self.assess(candidate)
            if any(after[u].error > units[u].error for u in part.units):
                actions.append(f"{_where(part.index)}repair undone: it made a structure worse")
                continue
            n = int(np.count_nonzero(result.labels != before))
            if n:
                labels = candidate
                units = after
                changed += n
            actions.extend(f"{_where(part.index)}{entry.prior}: {action}"
                           for entry in result.per_prior for action in entry.actions)
        return labels, changed, actions

    # -- report ------------------------------------------------------------------------
    def report(self, labels0, units0, labels1, units1, absent, steps, reason, chosen_step, final,
               curve) -> CaseReport:
        outcomes = []
        for prior in self.priors:
            keys = [u for u in units0 if u[0] == prior.name]
            before = [units0[u] for u in keys]
            after = [units1[u] for u in keys]
            nearest = prior.nearest(before[0].betti) if before and hasattr(prior, "nearest") else prior.expected(
                labels0.ndim if self.per_slice is None else 2)
            outcomes.append(PriorOutcome(
                prior=prior.spec,
                expected=None if nearest is None else list(nearest),
                betti_before=[list(st.betti) for st in before],
                betti_after=[list(st.betti) for st in after],
                met_before=all(st.met for st in before),
                met_after=all(st.met for st in after),
                failing_slices_before=[st.slice_index for st in before
                                       if not st.met and st.slice_index is not None],
                failing_slices_after=[st.slice_index for st in after if not st.met and st.slice_index is not None],
                absent=any(u in absent for u in keys),
                absent_slices=[u[1] for u in keys if u in absent and u[1] is not None],
            ))
        topo, sim = (None, None) if final is None else final
        return CaseReport(
            path=self.path,
            priors=outcomes,
            met_before=all(o.met_before for o in outcomes),
            met_after=all(o.met_after for o in outcomes),
            steps=steps,
            stop_reason=reason,
            chosen_step=chosen_step,
            seconds=round(time.perf_counter() - self.started, 3),
            changed_fraction=float(np.mean(labels0 != labels1)),
            dice_original_corrected=mean_label_dice(labels0, labels1),
            topo_loss=topo,
            similarity_loss=sim,
            loss_curve=curve,
            absent=bool(absent),
            warnings=list(getattr(self, "warnings", [])),
        )

    def diagram_data(self, s0, final, parts, report) -> list[dict[str, Any]]:
        """Persistence diagrams before/after per prior and part (failing slices), for reports."""
        import torch

        before_layout, after_layout = _loss_input(s0, self.activation), _loss_input(final, self.activation)
        entries: list[dict[str, Any]] = []
        with torch.no_grad():
            for part in parts:
                if not part.loss_priors:
                    continue
                fn = self.loss_fn(part.loss_priors)
                terms_before = fn.terms(self.plane(before_layout, part.index))
                terms_after = fn.terms(self.plane(after_layout, part.index))
                for name, term in terms_before.priors.items():
                    entries.append({
                        "slice": part.index if self.per_slice else None,
                        "prior": name,
                        "expected": list(term.expected),
                        "before": _bars(term),
                        "after": _bars(terms_after.priors[name]),
                    })
        return entries


class _Objective(NamedTuple):
    """One evaluation of the objective: the two terms (with gradients) and the scalars the loop logs."""

    topo: Any
    similarity: Any
    per_part: dict[int, tuple[float, float]]  # id(part) -> (topological term, similarity of the part)
    topo_value: float
    similarity_value: float


def _narrow(prior: Prior, betti: Sequence[int]) -> Prior:
    """The alternative of ``prior`` the loss should push toward from ``betti``.

    The nearest alternative that keeps the structure (the structure has
    evidence: the absent alternative is what "absent" units are for); ties go
    to the first listed.
    """
    options = [a for a in prior.options(len(betti)) if any(a)] or prior.options(len(betti))
    best = min(options, key=lambda a: sum(abs(x - y) for x, y in zip(a, betti)))
    return prior.narrowed(best)


def _where(index: int | None) -> str:
    return "" if index is None else f"slice {index}: "



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


MIN_REPORTED_LENGTH = 0.01
"""Bars shorter than this (noise on the diagonal) are left out of the report's diagrams."""


def _bars(term) -> list[list[float]]:
    """``[dim, birth, death, kept]`` rows of one prior term; ``kept``: among the beta*_k
    longest bars of its dimension, which the loss pushes to length 1 (the others to 0)."""
    rows: list[list[float | bool]] = []
    for dim, ((births, deaths), wanted) in enumerate(zip(term.bars, term.expected)):
        b = births.detach().cpu().numpy().astype(float)
        d = deaths.detach().cpu().numpy().astype(float)
        order = np.argsort(-(b - d), kind="stable")
        kept = np.zeros(b.size, bool)
        kept[order[:wanted]] = True
        rows.extend([dim, round(float(x), 5), round(float(y), 5), bool(k)]
                    for x, y, k in zip(b, d, kept) if k or x - y >= MIN_REPORTED_LENGTH)
    return rows
