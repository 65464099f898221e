"""Persistence bars as torch tensors that carry gradients.

Why this design: a persistence diagram is a piecewise-linear function of the
map. Away from ties, a small change of the values does not change *which* voxel
creates or kills each bar (the pairing), so every bar end is just the value of
one voxel, its critical cell. The exact (sub)gradient of any function of the
bars is therefore obtained by

1. computing the pairing once, without gradients, with the exact numba engine
   (:func:`topofix.persistence`, on a detached CPU copy), and
2. *gathering* the bar ends from the original tensor at the critical cells.

Autograd then routes the gradient of a bar's birth to its birth voxel and of its
death to its death voxel; every other voxel gets exactly zero. Nothing of the
topology has to be differentiated by hand, the tensor stays on its device (only
the indices travel), and any dtype works (float64 for gradient checks, float32
or half for networks).

At ties the pairing is one of several valid ones (the engine breaks ties by
voxel index), so the gradient returned is one element of the subdifferential,
as in every persistent-homology loss (Clough et al., TPAMI 2022; Hu et al.,
NeurIPS 2019). The pairing is computed on float32 values (what the engine
uses); a float64 map whose values differ only below float32 resolution is paired
as if they were tied.
"""

from __future__ import annotations

from typing import Literal

import torch

from topofix.topology.connectivity import DEFAULT_CONNECTIVITY, check_connectivity
from topofix.topology.persistence import Persistence, persistence

Essential = Literal["min", "drop"]
ESSENTIAL_MODES: tuple[str, ...] = ("min", "drop")

Bars = tuple[torch.Tensor, torch.Tensor]


def check_essential(essential: str) -> Essential:
    """Return ``essential`` if it is ``"min"`` or ``"drop"``, else raise ``ValueError``."""
    if essential not in ESSENTIAL_MODES:
        raise ValueError(
            f"unknown essential mode {essential!r}; expected one of {', '.join(ESSENTIAL_MODES)}"
        )
    return essential  # type: ignore[return-value]


def differentiable_persistence(
    prob: torch.Tensor,
    connectivity: str = DEFAULT_CONNECTIVITY,
    *,
    essential: Essential = "min",
    diagrams: Persistence | None = None,
) -> tuple[list[Bars], Persistence]:
    """Bars of the super-level filtration of ``prob`` as differentiable tensors.

    Parameters
    ----------
    prob:
        2D or 3D tensor (probabilities, or any finite values), on any device
        and of any floating dtype; it may require gradients.
    connectivity:
        ``"full"`` (default) or ``"face"``, as for :func:`topofix.persistence`.
    essential:
        How to treat the one bar that never dies, the dimension-0 class born at
        ``prob.max()``:

        ``"min"`` (default)
            Close it at the map's minimum: its death is gathered at
            ``argmin(prob)``, so its length is ``max - min``. A loss that wants
            this bar long pushes the maximum up *and* the minimum down; one that
            wants it short (a prior with ``beta0 = 0``: a structure that must be
            absent) pushes them together. This keeps every prior expressible,
            including ``beta0 = 0``, and is why it is the default.
        ``"drop"``
            Leave it out, as Byrne et al. (IEEE TMI 2022) do. The caller must
            then lower ``beta0`` by one, and a prior ``beta0 = 0`` cannot be
            expressed (nothing would penalise a map where the structure is
            present). The bars left do not push the maximum towards 1.

    Returns
    -------
    bars:
        ``bars[k] = (births, deaths)`` for each dimension ``k < prob.ndim``:
        1-D tensors gathered from ``prob`` (same device and dtype), in the
        engine's order: longest bar first (with ``"min"``, the essential bar
        comes first, since nothing is longer than ``max - min``).
    diagrams:
        The :class:`~topofix.Persistence` computed by the engine (without
        gradients), with ``death = -inf`` for the essential bar whatever
        ``essential`` is, for reports.
    diagrams:
        The engine's persistence of ``prob``'s values, when the caller already has
        it (see :func:`topofix.losses.loss_terms`: the maps of every part of a scan
        copied to the host at once and their persistence computed as one batch, so
        a GPU tensor is not copied back map by map). ``None`` (default): computed here.

    Notes
    -----
    Only the critical voxels (the ``birth_cell`` and ``death_cell`` of some
    bar, and ``argmin(prob)`` with ``"min"``) receive gradient. A voxel that is
    critical for several bars (a voxel that merges three components kills two
    bars) receives the sum of their contributions.
    """
    if not isinstance(prob, torch.Tensor):
        raise TypeError(f"differentiable_persistence needs a torch.Tensor, got {type(prob).__name__}")
    check_connectivity(connectivity)
    check_essential(essential)
    if not (prob.is_floating_point()):
        raise TypeError(f"differentiable_persistence needs a floating-point tensor, got {prob.dtype}")

    # The engine works on CPU float32; converting here (not in the engine) also covers
    # dtypes that numpy lacks, such as bfloat16 from mixed-precision training.
    if diagrams is None:
        diagrams = persistence(prob.detach().to("cpu", torch.float32), connectivity)
    flat = prob.reshape(-1)
    device = prob.device
    bars: list[Bars] = []
    minimum: torch.Tensor | None = None
    for diagram in diagrams:
        birth_cell = diagram.birth_cell
        death_cell = diagram.death_cell
        finite = death_cell >= 0
        if essential == "drop":
            birth_cell, death_cell = birth_cell[finite], death_cell[finite]
        births = flat[torch.as_tensor(birth_cell, dtype=torch.long, device=device)]
        index = torch.as_tensor(death_cell, dtype=torch.long, device=device)
        if essential == "min" and not finite.all():
            if minimum is None:  # stays on the device: no synchronisation
                minimum = torch.argmin(flat.detach())
            index = torch.where(index >= 0, index, minimum)
        deaths = flat[index]
        bars.append((births, deaths))
    return bars, diagrams
