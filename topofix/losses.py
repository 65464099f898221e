"""Topological losses: Betti-number priors on probability maps, as torch modules.

The loss of Clough et al. (IEEE TPAMI 2022) asks the super-level-set barcode
of a probability map to have, in each dimension ``k``, exactly ``beta*_k`` bars
of length 1 and no other bar. With the bars of dimension ``k`` sorted by length
``|b - d|``, longest first::

    squared (Clough et al.)  L_k = sum_{l <= beta*} (1 - |b_l - d_l|^2) + sum_{l > beta*} |b_l - d_l|^2
    linear  (Byrne et al.)   L_k = sum_{l <= beta*} (1 - |b_l - d_l|)   + sum_{l > beta*} |b_l - d_l|

and ``L = sum_k L_k`` over ``k = 0 .. ndim-1``. No ground truth is needed, only
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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Literal

import torch

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

Form = Literal["squared", "linear"]
FORMS: tuple[str, ...] = ("squared", "linear")

PriorsLike = str | Prior | Sequence[int] | Iterable[str | Prior]


def _check_form(form: str) -> Form:
    if form not in FORMS:
        raise ValueError(f"unknown loss form {form!r}; expected one of {', '.join(FORMS)}")
    return form  # type: ignore[return-value]


def betti_prior_loss(
    births: torch.Tensor,
    deaths: torch.Tensor,
    betti_k: int,
    form: Form = "squared",
    *,
    tolerance: float = 0.0,
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
    tolerance:
        Bars shorter than this are left out of the excess sum (the bars beyond
        the ``beta*`` longest). Each such bar would cost less than
        ``tolerance^2`` (``tolerance`` in the linear form); skipping them keeps
        many tiny noise bars from dominating the loss and its gradient. It
        speeds nothing up (the engine computes every bar anyway).

    Returns
    -------
    torch.Tensor
        A scalar, zero exactly when there are ``beta*`` bars of length 1 and
        no other bar (longer than ``tolerance``). If there are fewer than
        ``beta*`` bars, each missing bar counts as a bar of length 0: a
        constant 1 with no gradient (nothing to push yet).
    """
    _check_form(form)
    if betti_k < 0:
        raise ValueError(f"a Betti number cannot be negative, got {betti_k}")
    if births.shape != deaths.shape or births.ndim != 1:
        raise ValueError(
            f"births and deaths must be 1-D tensors of the same length, got {tuple(births.shape)} "
            f"and {tuple(deaths.shape)}"
        )
    lengths = (births - deaths).abs()
    lengths, _ = torch.sort(lengths, descending=True)  # differentiable (a gather)
    wanted, excess = lengths[:betti_k], lengths[betti_k:]
    if tolerance > 0:
        excess = excess[excess >= tolerance]
    missing = betti_k - wanted.numel()
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

    @property
    def loss(self) -> torch.Tensor:
        """The sum over dimensions."""
        return torch.stack(list(self.losses)).sum()


@dataclass
class LossTerms:
    """Everything :meth:`TopologicalLoss.terms` computed.

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
            items = build_priors(betti=[int(v) for v in given])  # Betti numbers of the foreground
        else:
            items = build_priors(priors=given)  # type: ignore[arg-type]
    for prior in items:
        if prior.betti is None:
            raise PriorError(
                f"prior {prior.spec} has no Betti numbers: a loss needs them (e.g. {prior.name}=1,1)"
            )
        prior.expected(3)  # validates the count
    return items


class TopologicalLoss(torch.nn.Module):
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
        ``"squared"`` (Clough et al., default) or ``"linear"`` (Byrne et al.),
        see :func:`betti_prior_loss`.
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
    ) -> None:
        super().__init__()
        self.priors: list[Prior] = _normalise_priors(priors)
        self.connectivity = check_connectivity(connectivity)
        self.form: Form = _check_form(form)
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
        )

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

    def terms(self, prob: torch.Tensor) -> LossTerms:
        """The loss of every prior and dimension, with the bars used (for reports)."""
        maps, foreground = self._maps(prob)
        ndim = foreground.ndim
        roi = roi_slices(foreground, self.roi_threshold, self.roi_margin)
        result: dict[str, PriorTerm] = {}
        for prior, full_map in zip(self.priors, maps):
            expected = prior.expected(ndim)
            assert expected is not None  # refused at construction
            if self.essential == "drop":
                expected = (expected[0] - 1,) + expected[1:]
            bars, diagrams = differentiable_persistence(
                full_map[roi], self.connectivity, essential=self.essential
            )
            losses = tuple(
                betti_prior_loss(b, d, beta, self.form, tolerance=self.tolerance)
                for (b, d), beta in zip(bars, expected)
            )
            result[prior.name] = PriorTerm(prior, expected, losses, bars, diagrams)
        return LossTerms(result, roi)

    def forward(self, prob: torch.Tensor) -> torch.Tensor:
        """The scalar loss: the sum over priors and dimensions ``0..ndim-1``."""
        return self.terms(prob).total
