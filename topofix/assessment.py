"""Where a segmentation stands against its priors, per structure and per slice.

Why a module of its own: ``topofix correct`` asks the same questions at every
optimisation step (which structures meet their prior, by how much the others
miss it, which have no evidence at all) and the stopping rule, the fallback, the
repair stage and the report all need the answers. They are computed once per
step here, as a mapping from a *unit* (a prior, and a slice index with
``--per-slice``) to its :class:`UnitStatus`, and reused by everyone.

Units, and why per slice: with ``--per-slice z`` every slice of a stack is
judged on its own, so a stack whose slice 4 is broken has exactly one failing
unit per prior on slice 4; the correction is then accountable slice by slice
(slices that met their prior are left as they were, and a slice is never made
worse for the sake of its neighbours).

Evidence: a structure whose probability never reaches ``evidence_floor`` in a
unit is *absent* there: the network saw nothing, so nothing is corrected and the
mask is left as predicted (inventing a ring where the network saw none is worse
than saying so). An empty slice of a stack (``--per-slice``) counts as met, as
in ``topofix check``; a whole scan without the structure fails a prior that
expects it, unless the prior allows absence (``2=1,1|0,0``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from topofix.checking import check_labels
from topofix.priors import Prior
from topofix.slicing import SLICE_AXES, slice_planes, take_slice

Unit = tuple[str, "int | None"]
"""``(prior name, slice index)``; the slice index is ``None`` for a whole scan."""


@dataclass(frozen=True)
class UnitStatus:
    """One prior in one slice (or the whole scan) of one label map.

    Attributes
    ----------
    prior:
        The prior as the user gave it (with all its alternatives).
    slice_index:
        The slice along ``per_slice``, or ``None``.
    betti:
        Betti numbers of the structure's mask.
    met:
        The mask meets the prior (some alternative holds; an empty slice of a
        stack counts as met, as in ``check``).
    error:
        Betti error: L1 distance to the nearest alternative (0 when met).
    empty:
        The structure has no voxel here.
    """

    prior: Prior
    slice_index: int | None
    betti: tuple[int, ...]
    met: bool
    error: int
    empty: bool

    @property
    def unit(self) -> Unit:
        return (self.prior.name, self.slice_index)


def assess(
    labels: np.ndarray, priors: Sequence[Prior], *, connectivity: str, per_slice: str | None
) -> dict[Unit, UnitStatus]:
    """Status of every unit of ``labels`` (one Betti computation per prior and slice)."""
    result: dict[Unit, UnitStatus] = {}
    for r in check_labels(labels, priors, connectivity=connectivity, per_slice=per_slice):
        met = r.status != "fail"
        error = 0 if met else int(r.prior.error(r.betti))
        status = UnitStatus(r.prior, r.slice_index, tuple(r.betti), met, error, r.empty)
        result[status.unit] = status
    return result


def total_error(units: Mapping[Unit, UnitStatus], keys: Iterator[Unit] | Sequence[Unit] | None = None) -> int:
    """Summed Betti error over ``keys`` (all units by default)."""
    chosen = units.keys() if keys is None else keys
    return sum(units[k].error for k in chosen)


def structure_map(prob: np.ndarray, prior: Prior) -> np.ndarray:
    """The probability of ``prior``'s structure from channel-first probabilities (channel = label).

    As the losses read it: one channel for one label, the sum of channels for a
    union, ``1 - channel 0`` for the foreground; a one-channel input is the
    foreground map itself.
    """
    if prob.shape[0] == 1:
        return prob[0]
    if prior.labels is None:
        return 1 - prob[0]
    labels = [label for label in prior.labels if label < prob.shape[0]]
    if not labels:
        return np.zeros(prob.shape[1:], prob.dtype)
    return prob[labels].sum(0)


def evidence(
    prob: np.ndarray, priors: Sequence[Prior], per_slice: str | None
) -> dict[Unit, float]:
    """Maximum structure probability per unit: how much the network saw of each structure."""
    spatial_ndim = prob.ndim - 1
    n = None if per_slice is None or spatial_ndim == 2 else prob.shape[SLICE_AXES[per_slice] + 1]
    result: dict[Unit, float] = {}
    for prior in priors:
        whole = structure_map(prob, prior)
        for index in slice_planes(spatial_ndim, per_slice, n):
            plane = take_slice(whole, per_slice, index)
            result[(prior.name, index)] = float(plane.max()) if plane.size else 0.0
    return result
