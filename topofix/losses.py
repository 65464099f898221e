"""Topological losses: Betti-number priors on probability maps, as torch modules.

The loss of Clough et al. (IEEE TPAMI 2022) asks the super-level-set barcode
of a probability map to have, in each dimension ``k``, exactly ``beta*_k`` bars
of length 1 and no other bar. With the bars of dimension ``k`` sorted by length
``|b - d|``, longest first::

    squared (Clough et al.)  L_k = sum_{l <= beta*} (1 - |b_l - d_l|^2) + sum_{l > beta*} |b_l - d_l|^2
    linear  (Byrne et al.)   L_k = sum_{l <= beta*} (1 - |b_l - d_l|)   + sum_{l > beta*} |b_l - d_l|
    mixed                    L_k = sum_{l <= beta*} h(1 - |b_l - d_l|)  + sum_{l > beta*} h(|b_l - d_l|)

with ``h`` the Huber function of the distance to the target length (squared
up to the knee, linear beyond, see :func:`betti_prior_loss`), and
``L = sum_k L_k`` over ``k = 0 .. ndim-1``. No ground truth is needed, only
the prior, which is why the loss can correct a prediction at test time
(``topofix correct``); it works just as well as an extra term in a training
loop::

    from topofix import TopologicalLoss

    topo = TopologicalLoss(["2=1,1", "1+2=1,1"])      # ACDC: MYO is a ring, RV+MYO too
    for image, target in loader:
        prob = model(image).softmax(1)                 # (B, C, H, W)
        loss = dice(prob, target) + 0.01 * sum(topo(p) for p in prob)
        loss.backward()

Gradients reach the network only through the critical voxels of each bar
(:func:`topofix.topology.differentiable.differentiable_persistence`).
:class:`DenseTopologicalLoss` instead moves every voxel that must change for a
bar to be born or to die (its critical set, :mod:`topofix.topology.critical_sets`),
with a cross-entropy whose gradient does not vanish at saturated probabilities.

Every loss here is a :class:`TopologyObjective` (``forward(prob)`` a scalar,
``terms(prob)`` a :class:`LossTerms`); :func:`make_topology_loss` builds one
from a name of :data:`LOSS_NAMES`, so a correction loop never special-cases a
form.

Why the choices below:

* The **essential** dimension-0 bar (the component that never dies) is closed
  at the map's minimum by default (``essential="min"``): it then counts as a
  bar of length ``max - min``, so priors with ``beta0 = 0`` (a structure that
  must be absent) stay expressible. ``essential="drop"`` removes it and lowers
  ``beta0`` by one, as Byrne et al. do.
* Multi-label maps follow Byrne et al.: the probability of a union of labels is
  the **sum** of their softmax channels; the foreground is ``1 - channel 0``.
* By default the topological term is computed in a **region of interest**
  around the foreground (Byrne et al.), which is faster and ignores background
  noise far from the object; see :class:`TopologicalLoss` for when this changes
  nothing.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Literal

import numpy as np
import torch

from topofix.choices import LossName
from topofix.errors import PriorError
from topofix.priors import Prior, build_priors
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY, check_connectivity
from topofix.topology.differentiable import (
    Bars,
    Essential,
    check_essential,
    differentiable_persistence,
)
from topofix.topology.persistence import Persistence

__all__ = [
    "DEFAULT_KNEE",
    "FORMS",
    "LOSS_NAMES",
    "DenseTopologicalLoss",
    "LossTerms",
    "PriorTerm",
    "TopologicalLoss",
    "TopologyObjective",
    "betti_prior_loss",
    "make_topology_loss",
    "rank_bars",
    "roi_slices",
]

Form = Literal["squared", "linear", "mixed"]
#: The forms of :func:`betti_prior_loss` (per-bar penalties on the critical cells).
FORMS: tuple[str, ...] = ("squared", "linear", "mixed")
#: Every name :func:`make_topology_loss` accepts: the forms, and "dense" (critical sets); the
#: vocabulary of ``--loss`` (:class:`topofix.choices.LossName`, which the CLI offers).
LOSS_NAMES: tuple[str, ...] = LossName.values()
#: Knee of the "mixed" form: squared within 0.5 of the target length, linear (slope 1) beyond.
DEFAULT_KNEE = 0.5
_EPS = 1e-6  # clamp of probabilities before log / logit

PriorsLike = str | Prior | Sequence[int] | Iterable[str | Prior]


def _check_form(form: str) -> Form:
    if form not in FORMS:
        raise ValueError(f"unknown loss form {form!r}; expected one of {', '.join(FORMS)}")
    return form  # type: ignore[return-value]


def _check_knee(knee: float) -> float:
    if not 0 < knee <= 1:
        raise ValueError(f"the knee of the mixed form must be in (0, 1], got {knee}")
    return float(knee)


def _huber(x: torch.Tensor, knee: float) -> torch.Tensor:
    """``x^2`` for ``x <= knee``, ``2 knee x - knee^2`` beyond (C^1 at the knee)."""
    return torch.where(x <= knee, x.square(), 2 * knee * x - knee * knee)


def rank_bars(
    births: torch.Tensor,
    deaths: torch.Tensor,
    betti_k: int,
    *,
    tolerance: float = 0.0,
    sizes: np.ndarray | None = None,
    tie: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Which bars the prior keeps and which it kills (Clough et al.'s rule).

    The bars are sorted by length ``|b - d|``, longest first; the ``betti_k``
    longest are kept (``wanted``), the others are ``excess``, except those
    shorter than ``tolerance``, which are ignored. Every loss of this module
    decides with this function.

    Near-ties (optional, ``sizes`` and ``tie > 0``): bars are then ranked by
    the number of bars *clearly* longer than them (by more than ``tie``), then
    by ``sizes`` (largest first), then by length. Two saturated components,
    a ring and a blob both born at 0.999, have lengths that differ by noise;
    by length alone the one kept is arbitrary, with sizes it is the larger.
    Only the bars within ``tie`` of the ``betti_k``-th longest can change
    side, so only their sizes matter. Without ``sizes`` (the default, and
    what :class:`TopologicalLoss` uses) the rule is the length alone.

    Returns
    -------
    wanted, excess:
        Long tensors of indices into ``births``/``deaths``, longest first.
    missing:
        ``max(betti_k - number of bars, 0)``.
    """
    lengths = (births - deaths).detach().abs()
    order = torch.sort(lengths, descending=True).indices
    if sizes is not None and tie > 0 and 0 < betti_k < lengths.numel():
        length = lengths.cpu().double().numpy()
        clearly_longer = length.size - np.searchsorted(np.sort(length), length + tie, side="right")
        ranked = np.lexsort((-length, -np.asarray(sizes, np.float64), clearly_longer))
        order = torch.as_tensor(ranked, dtype=torch.long, device=lengths.device)
    wanted, excess = order[:betti_k], order[betti_k:]
    if tolerance > 0:
        excess = excess[lengths[excess] >= tolerance]
    return wanted, excess, betti_k - wanted.numel()


def betti_prior_loss(
    births: torch.Tensor,
    deaths: torch.Tensor,
    betti_k: int,
    form: Form = "squared",
    *,
    tolerance: float = 0.0,
    knee: float = DEFAULT_KNEE,
) -> torch.Tensor:
    """The prior term of one homology dimension.

    Parameters
    ----------
    births, deaths:
        1-D tensors of the bars' ends (any order; they are sorted here by
        length ``|b - d|``, longest first).
    betti_k:
        ``beta*_k``, the number of bars of dimension ``k`` the object must have.
    form:
        ``"squared"`` (Clough et al., TPAMI 2022): the ``beta*`` longest bars
        cost ``1 - length^2``, the others ``length^2``. ``"linear"`` (Byrne et
        al., TMI 2022): ``1 - length`` and ``length``. The squared form is
        flat near length 0 (small noise bars get little gradient) and steep
        near length 1; the linear form pushes every bar at the same rate.
        ``"mixed"``: the Huber function ``h`` of the distance ``x`` to the
        target length (``x = 1 - length`` for a kept bar, ``length`` for an
        excess bar): ``h(x) = x^2`` for ``x <= knee``, ``2 knee x - knee^2``
        beyond, continuous with a continuous derivative. Near the target it is
        the squared form (a bar almost right is left nearly alone, noise bars
        get little gradient); far from it the slope stays ``2 knee`` (1 with the
        default knee 0.5) instead of vanishing: a kept bar of length 0 (a ring
        open at a low-probability gap) is pushed as hard as in the linear form,
        where the squared form's ``-2 length`` is 0.
    tolerance:
        Bars shorter than this are left out of the excess sum (the bars beyond
        the ``beta*`` longest). Each such bar would cost less than
        ``tolerance^2`` (``tolerance`` in the linear form); skipping them keeps
        many tiny noise bars from dominating the loss and its gradient. It
        speeds nothing up (the engine computes every bar anyway).
    knee:
        Of the ``"mixed"`` form, in ``(0, 1]`` (default 0.5: ``h(x) = x^2`` up
        to 0.5, ``x - 0.25`` beyond).

    Returns
    -------
    torch.Tensor
        A scalar, zero exactly when there are ``beta*`` bars of length 1 and
        no other bar (longer than ``tolerance``). If there are fewer than
        ``beta*`` bars, each missing bar counts as a bar of length 0: a
        constant with no gradient (nothing to push yet): 1, or ``h(1)`` (0.75
        with the default knee) in the mixed form.
    """
    _check_form(form)
    if form == "mixed":
        _check_knee(knee)
    if betti_k < 0:
        raise ValueError(f"a Betti number cannot be negative, got {betti_k}")
    if births.shape != deaths.shape or births.ndim != 1:
        raise ValueError(
            f"births and deaths must be 1-D tensors of the same length, got {tuple(births.shape)} "
            f"and {tuple(deaths.shape)}"
        )
    wanted_idx, excess_idx, missing = rank_bars(births, deaths, betti_k, tolerance=tolerance)
    lengths = (births - deaths).abs()
    wanted, excess = lengths[wanted_idx], lengths[excess_idx]  # differentiable (a gather)
    if form == "mixed":
        one = torch.ones((), dtype=lengths.dtype, device=lengths.device)
        return _huber(1 - wanted, knee).sum() + _huber(excess, knee).sum() + missing * _huber(one, knee)
    if form == "squared":
        wanted, excess = wanted.square(), excess.square()
    return (1 - wanted).sum() + excess.sum() + missing


@dataclass
class PriorTerm:
    """What one prior contributed to a :class:`TopologicalLoss`, for reports.

    Attributes
    ----------
    prior:
        The :class:`~topofix.Prior`.
    expected:
        Its Betti numbers as used, one per dimension (after padding, and after
        lowering ``beta0`` by one with ``essential="drop"``).
    losses:
        The loss of each dimension ``k`` (scalar tensors, with gradients).
    bars:
        ``bars[k] = (births, deaths)``: the bars the loss saw (tensors, in the
        region of interest, essential bar closed or dropped as configured).
    diagrams:
        The engine's :class:`~topofix.Persistence` of the same map (no
        gradients; essential bar with ``death = -inf``; cells are flat indices
        into the region of interest).
    """

    prior: Prior
    expected: tuple[int, ...]
    losses: tuple[torch.Tensor, ...]
    bars: list[Bars]
    diagrams: Persistence
    #: :class:`DenseTopologicalLoss` only: the critical sets (cells index the ROI crop).
    critical: tuple = ()

    @property
    def loss(self) -> torch.Tensor:
        """The sum over dimensions."""
        return torch.stack(list(self.losses)).sum()


@dataclass
class LossTerms:
    """Everything :meth:`TopologyObjective.terms` computed.

    ``priors`` maps each prior's name (``"2"``, ``"1+2"``, ``"foreground"``)
    to its :class:`PriorTerm`; ``roi`` is the region of interest (one slice per
    spatial axis) that the bars were computed in.
    """

    priors: dict[str, PriorTerm]
    roi: tuple[slice, ...]
    total: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.total = torch.stack([term.loss for term in self.priors.values()]).sum()

    def values(self) -> dict[str, float]:
        """Per-prior loss values as floats (no gradients), for logs and tables."""
        return {name: float(term.loss.detach()) for name, term in self.priors.items()}


def roi_slices(
    foreground: torch.Tensor, threshold: float | None, margin: int
) -> tuple[slice, ...]:
    """Bounding box of ``foreground >= threshold``, grown by ``margin`` voxels.

    The box is clipped to the image. ``threshold=None``, or no voxel at or
    above it, gives the whole image.
    """
    whole = tuple(slice(0, n) for n in foreground.shape)
    if threshold is None:
        return whole
    if margin < 0:
        raise ValueError(f"roi_margin must be >= 0, got {margin}")
    above = (foreground.detach() >= threshold)
    if not bool(above.any()):
        return whole
    slices = []
    for axis, size in enumerate(foreground.shape):
        other = tuple(a for a in range(foreground.ndim) if a != axis)
        hit = torch.nonzero(above.any(dim=other) if other else above).reshape(-1)
        lo, hi = int(hit[0]), int(hit[-1]) + 1
        slices.append(slice(max(lo - margin, 0), min(hi + margin, size)))
    return tuple(slices)


def _normalise_priors(priors: PriorsLike) -> list[Prior]:
    if isinstance(priors, Prior):
        items: list[Prior] = [priors]
    elif isinstance(priors, str):
        # "2=1,1" is a prior on label 2; "1,1" the Betti numbers of the foreground
        items = build_priors(priors=[priors]) if "=" in priors else build_priors(betti=priors)
    else:
        given = list(priors)
        if not given:  # build_priors would return a report-only prior
            raise PriorError("TopologicalLoss needs at least one prior")
        if all(isinstance(v, Integral) for v in given):
            items = build_priors(betti=[int(v) for v in given])  # type: ignore[arg-type]  # all Integral: checked above
        else:
            items = build_priors(priors=given)  # type: ignore[arg-type]
    for prior in items:
        if prior.betti is None:
            raise PriorError(
                f"prior {prior.spec} has no Betti numbers: a loss needs them (e.g. {prior.name}=1,1)"
            )
        prior.expected(3)  # validates the count
    return items


class TopologyObjective(torch.nn.Module, metaclass=abc.ABCMeta):
    """The interface of every topological loss: what a correction loop calls.

    ``forward(prob)`` returns the scalar loss of one image (no batch axis) and
    ``terms(prob)`` the :class:`LossTerms` it is the total of (per prior, per
    dimension, with the bars, for reports). Subclasses implement
    :meth:`terms`; ``forward`` is its total. Build one by name with
    :func:`make_topology_loss`.
    """

    @abc.abstractmethod
    def terms(self, prob: torch.Tensor) -> LossTerms:
        """The loss of every prior and dimension, for reports; ``.total`` is the loss."""

    def forward(self, prob: torch.Tensor) -> torch.Tensor:
        """The scalar loss: the sum over priors and dimensions ``0..ndim-1``."""
        return self.terms(prob).total


class TopologicalLoss(TopologyObjective):
    """Persistent-homology loss of Betti-number priors (Clough et al., TPAMI 2022).

    Parameters
    ----------
    priors:
        What :func:`topofix.build_priors` accepts: a list of
        :class:`~topofix.Prior` or of ``"LABELS=BETTI"`` strings
        (``["2=1,1", "1+2=1,0"]``), one such string or prior, or a tuple of
        Betti numbers such as ``(1, 1)`` meaning the foreground.
    connectivity:
        ``"full"`` (default) or ``"face"``, as everywhere in topofix.
    form:
        ``"squared"`` (Clough et al., default), ``"linear"`` (Byrne et al.)
        or ``"mixed"`` (squared near the target, linear far from it), see
        :func:`betti_prior_loss`.
    essential:
        ``"min"`` (default): the essential dimension-0 bar is closed at the
        minimum of the map and counts towards ``beta0``. ``"drop"``: it is
        removed and ``beta0`` lowered by one (Byrne et al.); priors with
        ``beta0 = 0`` are then refused, since nothing could penalise a present
        structure. See :func:`~topofix.topology.differentiable.differentiable_persistence`.
    roi_threshold, roi_margin:
        Region of interest: the bounding box of the voxels whose foreground
        probability is ``>= roi_threshold``, grown by ``roi_margin`` voxels on
        each side and clipped to the image. The foreground probability is the
        map itself for a single map, ``1 - channel 0`` (the summed foreground)
        for a multi-channel one. ``None`` uses the whole image, as does a map
        with no voxel above the threshold. All priors share the same box.
    tolerance:
        Excess bars shorter than this are not penalised (see
        :func:`betti_prior_loss`).
    spatial_dims:
        2 or 3, to say how to read the input's shape; by default it is
        inferred (see :meth:`forward`).
    knee:
        Of the ``"mixed"`` form (default 0.5), see :func:`betti_prior_loss`.
    temperature:
        ``T > 0`` (default 1: the input as given). With ``T != 1`` the bars
        are computed on tempered probabilities: ``softmax(log(p) / T)`` over
        the channels of a softmax input, ``sigmoid(logit(p) / T)`` for a
        single (sigmoid) map, ``p`` clamped to ``[1e-6, 1 - 1e-6]`` first.
        This is the softmax of the logits divided by ``T``: ``T > 1`` pulls
        saturated values off 0 and 1, so that the gradient through the
        softmax/sigmoid at a confident voxel (``p(1 - p)``, about 0.01 at
        ``p = 0.01``) does not vanish, and lengthens short bars whose ends are
        both near 0 or 1. Two-class decisions at 0.5 are unchanged (the
        argmax is). The region of interest is computed on the untempered
        foreground, so ``roi_threshold`` keeps its meaning.

    Notes
    -----
    **Input.** ``forward(prob)`` takes one image (no batch axis: sum the loss
    over a batch yourself):

    * a single map of shape ``(H, W)`` or ``(D, H, W)`` (a sigmoid output);
      priors must then be on the foreground (``labels`` None or ``(1,)``);
    * a channel-first softmax ``(C, H, W)`` or ``(C, D, H, W)`` whose channel
      index is the label (channel 0 = background). A prior on a union of
      labels uses the **sum** of their channels; a prior on the foreground
      (``labels=None``) uses ``1 - channel 0``. ``C = 1`` is read as a
      one-channel sigmoid output (the foreground probability).

    Without ``spatial_dims``, a 2-D input is a 2D map, a 4-D input a 3D
    softmax, and a 3-D input is a 2D softmax when some prior names a label
    other than 1; otherwise it is ambiguous and refused.

    **When the region of interest changes nothing.** Let ``R`` be the box and
    ``m`` the maximum of the map outside ``R`` (every voxel outside ``R`` has
    a value ``<= m``). By construction ``m < roi_threshold``: outside the box
    the foreground is below the threshold and, for a softmax, every prior's
    map is at most the summed foreground. For every threshold
    ``t > m`` the super-level set ``{p >= t}`` lies inside ``R``, so it is the
    same set of voxels, hence the same cubical complex and the same homology,
    whether the image or only ``R`` is filtered. The two persistence modules
    therefore agree above ``m``: after clamping every death to ``max(d, m)``
    and dropping the bars born at or below ``m``, the diagrams of ``R`` and of
    the whole image are equal (tested in ``tests/test_losses.py``). The loss
    is thus unchanged when no bar that matters crosses ``m``: what the box
    leaves out are bars born below ``m`` (background noise, which the
    whole-image loss would push down) and the low ends of bars that extend
    below ``m`` (for example the essential bar, closed at the minimum of the
    box instead of the minimum of the image, or two components that merge
    through voxels below ``m``). The statement also holds at any larger
    level, e.g. the maximum over the outside *and* the box's one-voxel
    boundary layer. The margin is what keeps deaths exact near the object:
    holes enclosed by the thresholded object lie in the box, and the
    ``roi_margin`` band lets components merge through the low-probability
    voxels next to them at their true values.

    **Essential bar and "drop".** With ``essential="drop"`` nothing pushes
    the maximum of a map towards 1: a map whose values all lie below 0.5 can
    have zero loss. ``"min"`` avoids this.
    """

    def __init__(
        self,
        priors: PriorsLike,
        *,
        connectivity: str = DEFAULT_CONNECTIVITY,
        form: Form = "squared",
        essential: Essential = "min",
        roi_threshold: float | None = 0.5,
        roi_margin: int = 2,
        tolerance: float = 0.0,
        spatial_dims: int | None = None,
        knee: float = DEFAULT_KNEE,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.priors: list[Prior] = _normalise_priors(priors)
        self.connectivity = check_connectivity(connectivity)
        self.form: str = _check_form(form)
        self.knee = _check_knee(knee)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.essential: Essential = check_essential(essential)
        if roi_margin < 0:
            raise ValueError(f"roi_margin must be >= 0, got {roi_margin}")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        if spatial_dims not in (None, 2, 3):
            raise ValueError(f"spatial_dims must be 2, 3 or None, got {spatial_dims}")
        self.roi_threshold = roi_threshold
        self.roi_margin = int(roi_margin)
        self.tolerance = float(tolerance)
        self.spatial_dims = spatial_dims
        if essential == "drop":
            absent = [p.spec for p in self.priors if p.betti and p.betti[0] == 0]
            if absent:
                raise PriorError(
                    f"prior {absent[0]} asks for beta0=0, which essential='drop' cannot express "
                    "(the component that never dies is not counted); use essential='min'"
                )

    def extra_repr(self) -> str:
        priors = ", ".join(p.spec for p in self.priors)
        return (
            f"priors=[{priors}], connectivity={self.connectivity!r}, form={self.form!r}, "
            f"essential={self.essential!r}, roi_threshold={self.roi_threshold}, "
            f"roi_margin={self.roi_margin}, tolerance={self.tolerance}"
        ) + self._extra_options()

    def _extra_options(self) -> str:
        """Non-default options only: the repr of the defaults stays as it was."""
        extra = ""
        if self.form == "mixed":
            extra += f", knee={self.knee}"
        if self.temperature != 1:
            extra += f", temperature={self.temperature}"
        return extra

    def _channels(self, prob: torch.Tensor) -> bool:
        """True when ``prob`` has a leading channel axis."""
        ndim = prob.ndim
        if self.spatial_dims is not None:
            if ndim == self.spatial_dims:
                return False
            if ndim == self.spatial_dims + 1:
                return True
            raise ValueError(
                f"expected a {self.spatial_dims}D map or a channel-first tensor of "
                f"{self.spatial_dims + 1} axes, got shape {tuple(prob.shape)}"
            )
        if ndim == 2:
            return False
        if ndim == 4:
            return True
        if ndim == 3:
            if any(p.labels not in (None, (1,)) for p in self.priors):
                return True
            raise ValueError(
                f"a 3-axis input {tuple(prob.shape)} is ambiguous with only foreground priors: "
                "pass spatial_dims=3 for a single 3D map or spatial_dims=2 for a (C, H, W) softmax"
            )
        raise ValueError(
            f"expected a 2D/3D map or a channel-first (C, H, W)/(C, D, H, W) tensor, got shape "
            f"{tuple(prob.shape)}"
        )

    def _maps(self, prob: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One map per prior, and the foreground probability that defines the ROI."""
        if not prob.is_floating_point():
            raise TypeError(f"TopologicalLoss needs a floating-point tensor, got {prob.dtype}")
        channels = self._channels(prob)
        if channels and prob.shape[0] == 1:  # a one-channel sigmoid output
            prob, channels = prob[0], False
        if not channels:
            for p in self.priors:
                if p.labels not in (None, (1,)):
                    raise PriorError(
                        f"prior {p.spec} names labels, but the input is a single probability map "
                        "(give a channel-first softmax, channel index = label)"
                    )
            return [prob] * len(self.priors), prob
        n = prob.shape[0]
        foreground = 1 - prob[0]
        maps = []
        for p in self.priors:
            if p.labels is None:
                maps.append(foreground)
                continue
            if max(p.labels) >= n:
                raise PriorError(
                    f"prior {p.spec} names label {max(p.labels)} but the input has only {n} "
                    "channels (channel index = label, channel 0 = background)"
                )
            if len(p.labels) == 1:
                maps.append(prob[p.labels[0]])
            else:
                maps.append(prob[list(p.labels)].sum(0))
        return maps, foreground

    def _temper(self, prob: torch.Tensor) -> torch.Tensor:
        """``softmax(log p / T)`` over channels, or ``sigmoid(logit p / T)`` for a single map."""
        if self._channels(prob) and prob.shape[0] > 1:
            return torch.softmax(torch.log(prob.clamp_min(_EPS)) / self.temperature, dim=0)
        return torch.sigmoid(torch.logit(prob.clamp(_EPS, 1 - _EPS)) / self.temperature)

    def _prepared(
        self, prob: torch.Tensor, roi: tuple[slice, ...] | None = None
    ) -> tuple[list[tuple[Prior, tuple[int, ...], torch.Tensor]], tuple[slice, ...]]:
        """Per prior: (prior, Betti numbers as used, its map cropped to the ROI); and the ROI.

        Shared by every loss of this module: label handling, temperature, ROI and
        the ``essential="drop"`` adjustment of ``beta0``. ``roi``: the region of
        interest when already known (computed on the host copy of a device tensor).
        """
        maps, foreground = self._maps(prob)
        if self.temperature != 1:
            maps, _ = self._maps(self._temper(prob))  # the ROI stays on the untempered foreground
        ndim = foreground.ndim
        if roi is None:
            roi = roi_slices(foreground, self.roi_threshold, self.roi_margin)
        items = []
        for prior, full_map in zip(self.priors, maps):
            expected = prior.expected(ndim)
            assert expected is not None  # refused at construction
            if self.essential == "drop":
                expected = (expected[0] - 1,) + expected[1:]
            items.append((prior, expected, full_map[roi]))
        return items, roi

    def terms(self, prob: torch.Tensor, *, host: torch.Tensor | None = None) -> LossTerms:
        """The loss of every prior and dimension, with the bars used (for reports).

        ``host``: the same map already copied to the CPU (see :func:`loss_terms`).
        """
        return loss_terms([(self, prob, host)])[0]

    def host_maps(self, prob: torch.Tensor, host: torch.Tensor | None = None) -> HostMaps:
        """What persistence needs of ``prob``: each prior's ROI map as a CPU float32 array.

        ``host`` is ``prob`` already on the CPU (a device tensor's copy): the ROI and
        the maps are then taken from it, so a GPU tensor costs no further copy;
        on the CPU the maps are views of ``prob`` itself.
        """
        if host is not None and host.device != prob.device:
            host_items, roi = self._prepared(host)
            items, _ = self._prepared(prob, roi)
        else:
            items, roi = self._prepared(prob)
            host_items = items
        values = [np.ascontiguousarray(m.detach().to("cpu", torch.float32).numpy()) for _, _, m in host_items]
        return HostMaps(items, roi, values)

    def terms_from(self, maps: HostMaps, diagrams: Sequence[Persistence]) -> LossTerms:
        """The loss terms from :meth:`host_maps` and the persistence of each of its maps."""
        result: dict[str, PriorTerm] = {}
        for (prior, expected, roi_map), diagram in zip(maps.items, diagrams):
            bars, diagram = differentiable_persistence(roi_map, self.connectivity, essential=self.essential,
                                                       diagrams=diagram)
            losses = tuple(
                betti_prior_loss(b, d, beta, self.form,  # type: ignore[arg-type]
                                 tolerance=self.tolerance, knee=self.knee)
                for (b, d), beta in zip(bars, expected)
            )
            result[prior.name] = PriorTerm(prior, expected, losses, bars, diagram)
        return LossTerms(result, maps.roi)


class DenseTopologicalLoss(TopologicalLoss):
    """Topological loss on critical sets (Nigmetov & Morozov, DCG 2024): dense targets.

    The same priors, bars and "which bars are kept" rule as
    :class:`TopologicalLoss` (:func:`rank_bars`: the ``beta*_k`` longest bars
    are kept, the others killed, bars shorter than ``tolerance`` ignored), the
    same labels, region of interest, temperature and ``essential`` handling;
    but instead of moving the two critical voxels of each bar, it moves every
    voxel that must change for the bar to be born or to die at the thresholds
    ``[low, high]`` (see :mod:`topofix.topology.critical_sets` for the rules:
    an extra component is either pushed down whole or joined to an older
    structure along its cheapest bridge, an extra hole either filled whole or
    opened along the weakest path through its wall, whichever changes the map
    less; a ring open at a gap is closed along its gap, a cavity painted over
    is emptied).

    The sets are recomputed at every call (they follow the map) and turned
    into a loss by binary cross-entropy between the map ``S`` and each set's
    target (0 or 1), averaged over the set's voxels, summed over sets::

        L_k = sum_{sets of dimension k} mean_{v in set} BCE(S_v, target)

    **Why cross-entropy.** Its gradient with respect to the logit of a sigmoid
    (or of a softmax channel) is ``S - target``: about 1 at ``S = 0.01`` with
    target 1, where the squared loss on the critical pixel gets ``2 l p (1-p)``,
    nearly 0 twice over (short bar, saturated softmax).

    **Scale.** Averaging over each set makes the gradient of one set with
    respect to the logits sum to at most 1 in absolute value (``mean |S - t|``),
    the same order as one bar of the squared or linear form on a
    non-saturated voxel (``|dL/dl| <= 2`` and ``<= 1``, times ``p (1 - p) <= 1/4``
    per end); the value is a cross-entropy (``log 2 = 0.69`` per set at
    ``S = 0.5``, 4.6 at 0.01 from its target), not a squared length, and it is
    zero exactly when every kept bar is born at or above ``high`` and dies
    below ``low`` and no other bar (longer than ``tolerance``) is alive in the
    band ``[low, high]``. Bars alive only below ``low`` (background noise) are
    left alone. Missing bars (fewer than ``beta*``) contribute nothing.

    Parameters
    ----------
    priors, connectivity, essential, roi_threshold, roi_margin, tolerance, spatial_dims, temperature:
        As for :class:`TopologicalLoss` (there is no ``form`` or ``knee``).
    low, high:
        The band of thresholds in which bars are read, ``0 <= low <= high <= 1``
        (default 0.25 and 0.75, around the 0.5 threshold of the mask).
    tie:
        Components (dimension 0) and holes/cavities (dimension ``ndim - 1``)
        whose lengths are within ``tie`` (default 0.05) of the last kept bar's
        are ranked by size (voxels, :func:`~topofix.topology.critical_sets.bar_sizes`),
        largest kept, see :func:`rank_bars`: with saturated probabilities a
        blob and the ring are born at 0.999 both, and keeping the wrong one
        would make the dense targets erase the ring. ``0`` uses the length
        alone, as :class:`TopologicalLoss` does.
    side:
        ``"cheaper"`` (default): a killed component or hole dies by the side
        that changes the map less (erase or join; fill or open), as Nigmetov &
        Morozov do; ``"erase-fill"``: always erase extra components and fill
        extra holes (the earlier rule, which erases a whole ring when a
        confident blob attached to it by a weak bridge is elder).

    Notes
    -----
    In 3D, components (dimension 0) and cavities (dimension 2) have dense sets;
    tunnels (dimension 1) fall back to their critical voxels, still with the
    cross-entropy. :attr:`PriorTerm.critical` lists the sets used (cells index
    the ROI crop).
    """

    def __init__(
        self,
        priors: PriorsLike,
        *,
        connectivity: str = DEFAULT_CONNECTIVITY,
        essential: Essential = "min",
        roi_threshold: float | None = 0.5,
        roi_margin: int = 2,
        tolerance: float = 0.0,
        spatial_dims: int | None = None,
        temperature: float = 1.0,
        low: float = 0.25,
        high: float = 0.75,
        tie: float = 0.05,
        side: str = "cheaper",
    ) -> None:
        from topofix.topology.critical_sets import SIDES

        super().__init__(priors, connectivity=connectivity, essential=essential, roi_threshold=roi_threshold,
                         roi_margin=roi_margin, tolerance=tolerance, spatial_dims=spatial_dims,
                         temperature=temperature)
        if not 0 <= low <= high <= 1:
            raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
        if tie < 0:
            raise ValueError(f"tie must be >= 0, got {tie}")
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r}; expected one of {', '.join(SIDES)}")
        self.form = "dense"
        self.low, self.high, self.tie = float(low), float(high), float(tie)
        self.side = side

    def _extra_options(self) -> str:
        return super()._extra_options() + f", low={self.low}, high={self.high}, tie={self.tie}, side={self.side!r}"

    def terms_from(self, maps: HostMaps, diagrams: Sequence[Persistence]) -> LossTerms:
        """The loss terms, with the critical sets (for reports); bars ranked on the host copy."""
        from topofix.topology.critical_sets import bar_sizes, critical_sets

        result: dict[str, PriorTerm] = {}
        for (prior, expected, roi_map), values, persistence in zip(maps.items, maps.values, diagrams):
            bars, persistence = differentiable_persistence(roi_map, self.connectivity, essential=self.essential,
                                                           diagrams=persistence)
            flat = roi_map.reshape(-1)
            host_flat = values.reshape(-1)
            births, deaths, kept, killed = [], [], [], []
            minimum = None
            for dim, (diagram, (b, d), beta) in enumerate(zip(persistence, bars, expected)):
                # the cells of the bars exactly as differentiable_persistence gathered them
                birth_cell, death_cell = diagram.birth_cell, diagram.death_cell
                if self.essential == "drop":
                    finite = death_cell >= 0
                    birth_cell, death_cell = birth_cell[finite], death_cell[finite]
                elif (death_cell < 0).any():
                    if minimum is None:
                        minimum = int(np.argmin(host_flat))
                    death_cell = np.where(death_cell >= 0, death_cell, minimum)
                # ranked on the host values of the same cells (b and d hold them on the device):
                # the choice of bars needs no copy back from a GPU
                host_b = torch.from_numpy(host_flat[birth_cell])
                host_d = torch.from_numpy(host_flat[death_cell])
                sizes = None
                if self.tie > 0 and 0 < beta < b.numel() and dim in (0, values.ndim - 1):
                    length = (host_b - host_d).abs().double().numpy()
                    near = length >= np.sort(length)[::-1][beta - 1] - self.tie  # the bars that can change side
                    if near.sum() > beta:
                        sizes = np.zeros(length.size)
                        sizes[near] = bar_sizes(values, dim, birth_cell[near], death_cell[near], self.connectivity,
                                                low=self.low)
                wanted, excess, _ = rank_bars(host_b, host_d, beta, tolerance=self.tolerance, sizes=sizes,
                                              tie=self.tie)
                births.append(birth_cell)
                deaths.append(death_cell)
                kept.append(wanted.numpy())
                killed.append(excess.numpy())
            sets = critical_sets(values, births, deaths, kept, killed, self.connectivity,
                                 low=self.low, high=self.high, side=self.side)
            losses = tuple(self._dimension_loss(flat, [s for s in sets if s.dim == k]) for k in range(len(bars)))
            result[prior.name] = PriorTerm(prior, expected, losses, bars, persistence, tuple(sets))
        return LossTerms(result, maps.roi)

    @staticmethod
    def _dimension_loss(flat: torch.Tensor, sets: list) -> torch.Tensor:
        """Sum over the sets of the mean binary cross-entropy to their targets."""
        if not sets:
            return flat[:0].sum()  # zero, attached to the graph
        device = flat.device
        sizes = np.array([s.cells.size for s in sets])
        cells = torch.as_tensor(np.concatenate([s.cells for s in sets]), dtype=torch.long, device=device)
        target = torch.as_tensor(np.repeat([s.target for s in sets], sizes), dtype=flat.dtype, device=device)
        weight = torch.as_tensor(np.repeat(1.0 / sizes, sizes), dtype=flat.dtype, device=device)
        p = flat[cells].clamp(_EPS, 1 - _EPS)
        bce = -(target * torch.log(p) + (1 - target) * torch.log1p(-p))
        return (weight * bce).sum()


@dataclass
class HostMaps:
    """One image's maps for a :class:`TopologicalLoss`: per prior on the device and on the host.

    ``items``: (prior, Betti numbers as used, the map cropped to the ROI, with
    gradients); ``roi``: the region of interest; ``values``: the same crops as CPU
    float32 arrays, what the persistence engine reads.
    """

    items: list[tuple[Prior, tuple[int, ...], torch.Tensor]]
    roi: tuple[slice, ...]
    values: list[np.ndarray]


def loss_terms(
    jobs: Sequence[tuple[TopologyObjective, torch.Tensor, torch.Tensor | None]], *, workers: int | None = None
) -> list[LossTerms]:
    """The :class:`LossTerms` of several images at once: ``jobs`` are ``(loss, map, host copy or None)``.

    Why: a correction step evaluates one loss per broken slice of a stack. Done one
    by one, each slice's map would travel from the GPU on its own and its
    persistence would run alone on one core. Here the maps come from the host
    copies the caller made once per step, and the persistence of all of them is
    one :func:`~topofix.topology.persistence.persistence_batch` call (threads share
    the slices; the kernels release the GIL). The result is the same as calling
    ``loss.terms(map)`` for each job.
    """
    from topofix.topology.persistence import persistence_batch

    prepared: dict[int, tuple[TopologicalLoss, HostMaps]] = {}
    for i, (loss, prob, host) in enumerate(jobs):
        if isinstance(loss, TopologicalLoss):
            prepared[i] = (loss, loss.host_maps(prob, host))
    diagrams: dict[tuple[int, int], Persistence] = {}
    by_connectivity: dict[str, list[tuple[int, int]]] = {}
    for i, (loss, maps) in prepared.items():
        by_connectivity.setdefault(loss.connectivity, []).extend((i, k) for k in range(len(maps.values)))
    for connectivity, keys in by_connectivity.items():
        arrays = [prepared[i][1].values[k] for i, k in keys]
        diagrams.update(zip(keys, persistence_batch(arrays, connectivity, workers=workers)))
    out = []
    for i, (objective, prob, _) in enumerate(jobs):
        if i not in prepared:  # another objective: its own terms
            out.append(objective.terms(prob))
            continue
        loss, maps = prepared[i]
        out.append(loss.terms_from(maps, [diagrams[(i, k)] for k in range(len(maps.values))]))
    return out


def make_topology_loss(name: str, priors: PriorsLike, **options) -> TopologyObjective:
    """The topological loss called ``name`` (one of :data:`LOSS_NAMES`).

    ``"squared"``, ``"linear"`` and ``"mixed"`` give a :class:`TopologicalLoss`
    of that form, ``"dense"`` a :class:`DenseTopologicalLoss`. ``options`` are
    the constructor's keyword arguments; an option given as ``None`` is left at
    its default (except ``roi_threshold`` and ``spatial_dims``, where ``None``
    is a value), so that a loop can pass all its settings whatever the loss:
    ``make_topology_loss(settings.loss, priors, knee=None, low=None, ...)``.
    An option that the chosen loss does not have and that is not ``None`` is
    refused (``TypeError``).
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown topological loss {name!r}; expected one of {', '.join(LOSS_NAMES)}")
    keep_none = ("roi_threshold", "spatial_dims")
    options = {k: v for k, v in options.items() if v is not None or k in keep_none}
    if name == "dense":
        return DenseTopologicalLoss(priors, **options)
    return TopologicalLoss(priors, form=name, **options)  # type: ignore[arg-type]
