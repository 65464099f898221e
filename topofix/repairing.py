"""Repair a label map toward Betti-number priors by the smallest change the probabilities support.

Why this stage exists: ``topofix correct`` fine-tunes a copy of the network until
its prediction meets the prior, but it may stop first (a gap of probability ~0,
a confident extra component held by the similarity term, a cavity painted over).
The mask that is written must still be brought to the prior when the network's
own probability map says how. :func:`repair_labels` does that with plain numpy and the
persistence engine, without the network.

The method
----------
For each prior whose structure fails, with ``S`` the structure's probability
map (the sum of its channels, as in :class:`topofix.losses.TopologicalLoss`) and
``M`` its current mask, the super-level persistence of ``S`` ranks every feature
of ``M``. Changes are tried smallest first, in four stages, repeated while one
of them makes progress:

1. **Extra components** (``beta0`` too large) are removed, least persistent
   first. A component's persistence is the longest H0 bar of ``S`` born inside
   it (elder rule: the bar of the peak that makes it a separate island, from
   that peak down to the level where it merges with an older island; the
   essential bar is infinite). A component with no bar born inside it (its peak
   leans on higher values outside the mask) has persistence 0. Ties: lower peak,
   then fewer voxels, go first. Removed voxels take the most probable label
   *outside* the structure (in a multi-label map a pixel that leaves the
   myocardium goes to the neighbouring label the network prefers).
2. **Extra holes / cavities** (``beta_{d-1}`` too large) are filled, least
   persistent first: a hole's persistence is the longest H_{d-1} bar whose
   death cell (the hole's deepest voxel) lies in it. **Pairing** decides first:
   a hole that contains voxels of a label covered by another prior's structure
   (the LV inside the myocardium, under ``2=1,1`` with ``3=1,0`` or
   ``2+3=1,0``) is kept before any hole that does not, whatever their bars.
   Filled voxels join the structure (the most probable of its labels).
3. **Missing holes** (``beta_{d-1}`` too small) are restored only from a bar of
   ``S`` born at ``t >= evidence_floor``, at least ``min_persistence`` long (a
   shorter one is noise of the map), whose death cell is not already in a
   hole of ``M`` (pairing first again: bars whose deepest voxel belongs to a
   paired label, then the longest). Two cases:

   * *open ring* (the death cell is outside the mask, 2D only): the loop exists
     in ``{S >= t}`` but a piece of it is missing from ``M``. The voxels of
     ``{S >= t}`` that are not in ``M`` (nor in its holes) and touch ``M`` or
     the bar's birth cell are added, then thinned: simple points are removed
     from them, lowest probability first, until only a bridge of one voxel
     width is left (4-connected, see ``_thin``). Removing simple points never
     changes the topology, so the loop closed at level ``t`` stays closed, and
     because low probabilities go first the bridge follows the path of highest
     probability. This is the
     minimal-change variant of "close at level t" (the level set alone would
     add the whole low-probability halo of the gap).
   * *painted cavity* (the death cell is inside the mask: a disc where the
     network drew the structure over a cavity whose probability dips): the
     voxels of ``M`` in the component of ``{S < (b + d) / 2}`` that holds the
     death cell are removed (they take the most probable other label). The
     mid-level of the bar is the threshold at which the cavity is most stable
     (half-way between appearing and being filled); the region is enclosed by
     the loop born at ``b``, so it opens a hole, not a notch.

4. **Missing components** (``beta0`` too small) are restored only from an H0
   bar born at ``b >= evidence_floor`` (and ``min_persistence`` long) whose
   birth cell is outside ``M``: the component of ``{S >= max(evidence_floor,
   b / 2)}`` (and above the bar's death, so it is that island and no other)
   around its peak is added: the island at half its peak height, never where
   the network gave less than the floor.

Every change is verified with exact Betti numbers before it is kept (**never
worse**): it must bring the prior strictly closer to its target (L1 distance of
the Betti numbers) and no other prior, nor any ``protect`` structure, may move
away from its target (a structure without target must keep its Betti numbers).
Otherwise the change is undone and the next candidate is tried. Priors already
met are never acted on.

Guarantees
----------
2D, one prior (or priors that do not veto each other):

* extra components and extra holes are removed, least persistent first, as
  long as that brings the prior closer (removing a whole component or filling
  a whole hole always lowers its count; a component is kept only when removing
  it would also remove a hole the prior needs, or another prior vetoes it);
* a missing loop is restored whenever ``S`` has an H1 bar born at ``t >=
  evidence_floor``, at least ``min_persistence`` long, that is not a hole of
  the mask: a ring open at any number of gaps whose probability is ``>= t``
  is closed (every piece of the loop in ``{S >= t}`` either lies in the mask
  or touches it, so the added set holds the whole loop and encloses the bar's
  death cell), a painted cavity is opened; a missing component is added
  whenever ``S`` has an H0 bar born at or above the floor outside the mask.

So when this evidence exists the prior is met after repair (tested on broken
rings with one or two gaps, painted discs and missing islands); when it does
not, nothing is invented and the reason is reported (``"no loop above the
evidence floor 0.10"``). Restoring a loop or a component never adds a voxel
where ``S < evidence_floor`` (filling an extra hole may: that is what filling means).

3D: extra components are removed, extra cavities filled and missing
components added exactly as in 2D; a missing cavity is opened only when it is
painted over (its deepest voxel is in the mask); closing a cavity across a gap
is not attempted, and tunnels/handles (``beta1``) are neither closed nor
opened (reported as such). Each 3D change is still verified, so the 3D
repair never makes a prior worse.

Speed: all work is done in the bounding box of the structure and of
``{S >= evidence_floor}`` plus a one-voxel margin; persistence of ``S`` is
computed once per prior per pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from topofix.errors import PriorError
from topofix.priors import Prior
from topofix.slicing import SLICE_AXES
from topofix.topology.betti import betti_numbers
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY, check_connectivity, neighbourhoods
from topofix.topology.labelling import label_components
from topofix.topology.persistence import Diagram, _as_float32, _diagram, _essential
from topofix.topology.regions import bounding_box

__all__ = ["PriorRepair", "RepairResult", "repair_labels"]

_MAX_ROUNDS = 4  # passes of the four stages per prior; each accepted change lowers an integer error
_MAX_TRIES = 8  # candidate bars tried per stage to restore a missing loop or component


@dataclass(frozen=True)
class PriorRepair:
    """What the repair did to one structure (in one slice with ``per_slice``)."""

    prior: str
    betti_before: tuple[int, ...]
    betti_after: tuple[int, ...]
    met_before: bool
    met_after: bool
    actions: tuple[str, ...] = ()
    slice_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "prior": self.prior,
            "slice": self.slice_index,
            "betti_before": list(self.betti_before),
            "betti_after": list(self.betti_after),
            "met_before": self.met_before,
            "met_after": self.met_after,
            "actions": list(self.actions),
        }


@dataclass
class RepairResult:
    """The repaired label map and what changed.

    Attributes
    ----------
    labels:
        The new label map (same shape and dtype as the input; the input is not modified).
    changed:
        Number of voxels whose label changed.
    per_prior:
        One :class:`PriorRepair` per prior with a target (per failing slice with ``per_slice``).
    met:
        True when every prior with a target is met after the repair (every
        non-skipped slice with ``per_slice``).
    """

    labels: np.ndarray
    changed: int
    per_prior: list[PriorRepair] = field(default_factory=list)
    met: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "met": self.met, "per_prior": [p.to_dict() for p in self.per_prior]}


# ---------------------------------------------------------------------------
# Structures: the map S and which labels voxels take when they join or leave


@dataclass(frozen=True)
class _Structure:
    prior: Prior
    target: tuple[int, ...] | None
    prob: np.ndarray  # float32 structure map S
    inside: tuple[int, ...]  # labels a voxel joining the structure may take
    outside: tuple[int, ...]  # labels a voxel leaving it may take
    paired: frozenset[int]  # labels of other priors' structures (hole pairing)


def _structures(probabilities: np.ndarray, priors: Sequence[Prior], ndim: int) -> list[_Structure]:
    """One :class:`_Structure` per prior; the maps mirror ``TopologicalLoss._maps``."""
    n = probabilities.shape[0]
    sigmoid = n == 1
    result = []
    for prior in priors:
        labels = prior.labels
        if sigmoid:
            if labels not in (None, (1,)):
                raise PriorError(
                    f"prior {prior.spec} names labels, but the input is a single probability map "
                    "(give a channel-first softmax, channel index = label)"
                )
            prob, inside, outside = probabilities[0], (1,), (0,)
        elif labels is None:
            prob, inside, outside = 1.0 - probabilities[0], tuple(range(1, n)), (0,)
        else:
            if max(labels) >= n:
                raise PriorError(
                    f"prior {prior.spec} names label {max(labels)} but the input has only {n} "
                    "channels (channel index = label, channel 0 = background)"
                )
            prob = probabilities[list(labels)].sum(0)
            inside, outside = labels, tuple(c for c in range(n) if c not in labels)
        others = {lab for p in priors if p is not prior and p.labels is not None for lab in p.labels}
        result.append(
            _Structure(
                prior,
                prior.expected(ndim),
                np.ascontiguousarray(prob, dtype=np.float32),
                inside,
                outside,
                frozenset(others - set(inside)),
            )
        )
    return result


def _pick_labels(
    probabilities: np.ndarray, box: tuple[slice, ...], where: np.ndarray, choices: tuple[int, ...]
) -> np.ndarray:
    """For the voxels ``where`` (inside ``box``), the most probable label among ``choices``.

    ``choices`` are channel indices (channel index = label); a single choice is
    returned as is, which also covers the one-channel sigmoid map (labels 0/1).
    """
    count = int(np.count_nonzero(where))
    if len(choices) == 1 or count == 0:
        return np.full(count, choices[0] if choices else 0, np.int64)
    block = probabilities[(list(choices),) + box][:, where]
    return np.asarray(choices, np.int64)[np.argmax(block, axis=0)]


# ---------------------------------------------------------------------------
# Small topology helpers on a cropped mask


def _components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    return label_components(mask, connectivity)


def _border_labels(lab: np.ndarray) -> np.ndarray:
    parts = []
    for axis in range(lab.ndim):
        parts.append(np.take(lab, 0, axis).ravel())
        parts.append(np.take(lab, -1, axis).ravel())
    return np.unique(np.concatenate(parts))


def _holes(mask: np.ndarray, bg_connectivity: int) -> tuple[np.ndarray, list[int]]:
    """Background components of ``mask`` that do not touch the (crop) border: the holes."""
    lab, n = _components(~mask, bg_connectivity)
    outside = set(_border_labels(lab).tolist())
    return lab, [i for i in range(1, n + 1) if i not in outside]


def _bar_scores(lab: np.ndarray, n: int, cells: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each region 1..n of ``lab``, the longest bar whose critical cell lies in it (0 if none)."""
    scores = np.zeros(n + 1)
    if cells.size:
        owner = lab.ravel()[cells]
        np.maximum.at(scores, owner, lengths)
    return scores


def _crop_box(mask: np.ndarray, prob: np.ndarray, floor: float, margin: int = 1) -> tuple[slice, ...] | None:
    """Bounding box of the structure and of its evidence ``{S >= floor}``, plus a margin.

    Everything outside is background for the structure and below the floor, so
    Betti numbers, holes and every bar born at or above the floor are the same
    in the box as in the whole image.
    """
    return bounding_box(mask | (prob >= floor), margin)


def _dilate(mask: np.ndarray, connectivity: int) -> np.ndarray:
    from scipy import ndimage

    rank = {4: 1, 8: 2, 6: 1, 18: 2, 26: 3}[connectivity]
    return ndimage.binary_dilation(mask, ndimage.generate_binary_structure(mask.ndim, rank))


def _outer_diagrams(prob: np.ndarray, connectivity: str) -> dict[int, Diagram]:
    """The diagrams of dimension 0 and d-1 of the super-level filtration (no tunnels in 3D).

    The same union-find passes as :func:`topofix.persistence` (components, and
    by Alexander duality the complement's components for holes/cavities); the
    3D tunnel reduction, the costly part, is skipped because the repair never
    uses it. ``tests/test_repair.py`` checks the result against ``persistence``.
    """
    from topofix.topology._kernels import neighbour_offsets, radix_order, union_find_corners, union_find_pairs

    arr = _as_float32(prob)
    full = connectivity == "full"
    shape = np.array(arr.shape, np.int64)
    flat = arr.ravel()
    desc = radix_order(flat, True)
    asc = desc[::-1].copy()

    def components(order: np.ndarray, corners: bool, outside: bool):
        if corners:
            return union_find_corners(order, shape, outside)
        return union_find_pairs(order, shape, neighbour_offsets(arr.shape, False), outside)

    eb, ed = _essential(desc)
    young, merge, n = components(desc, full, False)
    h0 = _diagram(0, flat, np.concatenate([young[:n], eb]), np.concatenate([merge[:n], ed]))
    young, merge, n = components(asc, not full, True)
    top = arr.ndim - 1
    return {0: h0, top: _diagram(top, flat, merge[:n], young[:n])}


# ---------------------------------------------------------------------------
# 2D thinning by simple points

# The eight neighbours, clockwise from the top-left; bit k of a code = neighbour k is foreground.
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


@lru_cache(maxsize=2)
def _simple_point_table(connectivity: str) -> np.ndarray:
    """``table[code]``: is the centre a simple point of a 2D mask with this 8-neighbourhood?

    A foreground pixel is simple when deleting it changes no Betti number; in 2D
    this is local (Rosenfeld; Bertrand's topological numbers): exactly one
    foreground component in the 8-neighbourhood that touches the centre, and
    exactly one background component there that touches it, each in its own
    connectivity (foreground 8 / background 4 for ``"full"``, the opposite for
    ``"face"``), background components counted only when 4-adjacent to the
    centre under 4-connectivity, foreground ones only when 4-adjacent under
    4-connectivity.
    """
    from scipy import ndimage

    fg_conn, bg_conn = neighbourhoods(connectivity, 2)
    four = ndimage.generate_binary_structure(2, 1)
    eight = ndimage.generate_binary_structure(2, 2)
    edge = np.zeros((3, 3), bool)
    edge[0, 1] = edge[1, 0] = edge[1, 2] = edge[2, 1] = True
    table = np.zeros(256, np.bool_)
    for code in range(256):
        fg = np.zeros((3, 3), bool)
        for k, (dy, dx) in enumerate(_RING):
            fg[1 + dy, 1 + dx] = bool(code >> k & 1)
        bg = ~fg
        bg[1, 1] = False

        def touching(mask: np.ndarray, conn: int) -> int:
            lab, n = ndimage.label(mask, four if conn == 4 else eight)
            if conn == 4:  # a 4-component must be 4-adjacent to the centre to touch it
                return len(set(lab[edge].tolist()) - {0})
            return n  # every pixel of the 8-neighbourhood is 8-adjacent to the centre

        table[code] = touching(fg, fg_conn) == 1 and touching(bg, bg_conn) == 1
    return table


def _thin(mask: np.ndarray, removable: np.ndarray, prob: np.ndarray, connectivity: str) -> np.ndarray:
    """Delete simple points of ``removable`` from ``mask`` (2D), lowest ``prob`` first, until none is left.

    The topology of ``mask`` is unchanged; what remains of ``removable`` is a
    bridge one voxel wide along the highest probabilities. Under ``"full"`` only
    points simple in both conventions are deleted, so the bridge stays
    4-connected: a diagonal-only bridge would close the structure's loop but let
    another label (8-connected too) leak across it, e.g. the LV through the
    myocardium.
    """
    from topofix.topology._thinning import thin_kernel

    padded = np.pad(mask, 1).astype(np.uint8)
    order = np.flatnonzero(np.pad(removable & mask, 1))
    values = np.pad(prob, 1).ravel()[order]
    order = order[np.argsort(values, kind="stable")].astype(np.int64)
    table = _simple_point_table(connectivity)
    if connectivity == "full":  # keep the bridge 4-connected: it must also wall off the other labels
        table = table & _simple_point_table("face")
    thin_kernel(padded, order, table)
    return padded[1:-1, 1:-1].astype(bool)


# ---------------------------------------------------------------------------
# The repair of one structure


class _Scene:
    """The label map being repaired and the Betti numbers of every watched structure."""

    def __init__(self, probabilities: np.ndarray, labels: np.ndarray, structures: list[_Structure],
                 guards: list[_Structure], connectivity: str):
        self.probabilities = probabilities
        self.labels = labels
        self.structures = structures
        self.watched = structures + guards
        self.connectivity = connectivity
        self.ndim = labels.ndim
        self.fg, self.bg = neighbourhoods(connectivity, self.ndim)
        self.betti = [self._betti(s, labels) for s in self.watched]

    def _betti(self, s: _Structure, labels: np.ndarray) -> tuple[int, ...]:
        return betti_numbers(s.prior.select(labels), self.connectivity)

    def error(self, index: int, betti: tuple[int, ...] | None = None) -> int:
        """L1 distance of a structure's Betti numbers to its target (0 without target)."""
        s = self.watched[index]
        betti = self.betti[index] if betti is None else betti
        return 0 if s.target is None else sum(abs(a - b) for a, b in zip(betti, s.target))

    def met(self, index: int) -> bool:
        s = self.watched[index]
        return s.target is None or self.betti[index] == s.target

    def attempt(self, index: int, box: tuple[slice, ...], where: np.ndarray, values: np.ndarray) -> str | None:
        """Apply ``labels[box][where] = values`` if it passes the never-worse rule.

        Returns None when kept, else why it was undone.
        """
        if not where.any():
            return "nothing to change"
        candidate = self.labels.copy()
        view = candidate[box]
        view[where] = values.astype(candidate.dtype, copy=False)
        new = [self._betti(s, candidate) for s in self.watched]
        if self.error(index, new[index]) >= self.error(index):
            return f"it would not bring {self.watched[index].prior.name} closer to its prior (Betti {new[index]})"
        for j, s in enumerate(self.watched):
            if j == index:
                continue
            worse = new[j] != self.betti[j] if s.target is None else self.error(j, new[j]) > self.error(j)
            if worse:
                return f"it would break {s.prior.name} (Betti {self.betti[j]} -> {new[j]})"
        self.labels = candidate
        self.betti = new
        return None


@dataclass
class _Context:
    """Everything a stage needs about the structure being repaired, in its crop box."""

    scene: _Scene
    index: int
    box: tuple[slice, ...]
    prob: np.ndarray  # S in the box
    diagrams: dict[int, Diagram]
    floor: float
    min_persistence: float
    actions: list[str]

    @property
    def structure(self) -> _Structure:
        return self.scene.watched[self.index]

    @property
    def betti(self) -> tuple[int, ...]:
        return self.scene.betti[self.index]

    @property
    def target(self) -> tuple[int, ...]:
        assert self.structure.target is not None
        return self.structure.target

    def mask(self) -> np.ndarray:
        return self.structure.prior.select(self.scene.labels[self.box])

    def pick(self, where: np.ndarray, inside: bool) -> np.ndarray:
        s = self.structure
        return _pick_labels(self.scene.probabilities, self.box, where, s.inside if inside else s.outside)

    def pick_at(self, cell: int, inside: bool) -> int:
        """:meth:`pick` for one voxel (flat index in the box)."""
        choices = self.structure.inside if inside else self.structure.outside
        if len(choices) == 1:
            return choices[0]
        point = np.unravel_index(cell, self.prob.shape)
        index = tuple(b.start + p for b, p in zip(self.box, point))
        return choices[int(np.argmax(self.scene.probabilities[(list(choices),) + index]))]

    def paired_regions(self, lab: np.ndarray) -> np.ndarray:
        """For each region of ``lab``: does it hold a label of another prior's structure?"""
        size = int(lab.max()) + 1
        if not self.structure.paired:
            return np.zeros(size, bool)
        hits = np.isin(self.scene.labels[self.box], list(self.structure.paired))
        return np.bincount(lab.ravel(), weights=hits.ravel(), minlength=size) > 0

    def try_change(self, where: np.ndarray, inside: bool, done: str, undone: str) -> bool:
        why = self.scene.attempt(self.index, self.box, where, self.pick(where, inside))
        self.actions.append(done if why is None else f"{undone}: {why}")
        return why is None

    def try_all(self, lab: np.ndarray, regions: list[int], inside: bool, done: list[str]) -> bool:
        """Change all ``regions`` of ``lab`` at once (the common case: one check, not one per region)."""
        if len(regions) < 2:
            return False
        where = np.isin(lab, regions)
        if self.scene.attempt(self.index, self.box, where, self.pick(where, inside)) is not None:
            return False
        self.actions.extend(done)
        return True


def _remove_components(ctx: _Context) -> bool:
    """Stage 1: remove the least persistent components until ``beta0`` is the target."""
    if ctx.betti[0] <= ctx.target[0]:
        return False
    mask = ctx.mask()
    lab, n = _components(mask, ctx.scene.fg)
    h0 = ctx.diagrams[0]
    scores = _bar_scores(lab, n, h0.birth_cell, h0.length)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    peaks = np.zeros(n + 1)
    np.maximum.at(peaks, lab.ravel(), ctx.prob.ravel())
    order = sorted(range(1, n + 1), key=lambda i: (scores[i], peaks[i], sizes[i], -i))

    def done(i: int) -> str:
        bar = "inf" if np.isinf(scores[i]) else f"{scores[i]:.2f}"
        return f"removed component of {sizes[i]} voxels (persistence {bar})"

    extra = order[: n - ctx.target[0]]
    if ctx.try_all(lab, extra, False, [done(i) for i in extra]):
        return True
    progressed = False
    for i in order:
        if ctx.betti[0] <= ctx.target[0]:
            break
        progressed |= ctx.try_change(
            lab == i, inside=False, done=done(i), undone=f"kept component of {sizes[i]} voxels"
        )
    return progressed


def _fill_holes(ctx: _Context) -> bool:
    """Stage 2: fill the least persistent holes (paired ones last) until ``beta_{d-1}`` is the target."""
    top = ctx.scene.ndim - 1
    if ctx.betti[top] <= ctx.target[top]:
        return False
    word = "hole" if top == 1 else "cavity"
    lab, holes = _holes(ctx.mask(), ctx.scene.bg)
    dgm = ctx.diagrams[top]
    scores = _bar_scores(lab, int(lab.max()), dgm.death_cell, dgm.length)
    sizes = np.bincount(lab.ravel(), minlength=int(lab.max()) + 1)
    paired = ctx.paired_regions(lab)
    keys = {i: (paired[i], scores[i], sizes[i], -i) for i in holes}
    order = sorted(holes, key=keys.__getitem__)

    def done(i: int) -> str:
        return f"filled {word} of {sizes[i]} voxels (persistence {scores[i]:.2f})"

    extra = order[: len(holes) - ctx.target[top]]
    if ctx.try_all(lab, extra, True, [done(i) for i in extra]):
        return True
    progressed = False
    for i in order:
        if ctx.betti[top] <= ctx.target[top]:
            break
        progressed |= ctx.try_change(lab == i, inside=True, done=done(i), undone=f"kept {word} of {sizes[i]} voxels")
    return progressed


def _open_painted(ctx: _Context, birth: float, death: float, death_cell: int) -> tuple[np.ndarray | None, float]:
    """The voxels of the mask in the cavity of a bar whose deepest voxel was painted over."""
    level = np.float32(0.5 * (birth + death))
    low = ctx.prob < level
    lab, _ = _components(low, ctx.scene.bg)
    region = lab.ravel()[death_cell]
    if region == 0 or region in set(_border_labels(lab).tolist()):
        return None, float(level)
    return (lab == region) & ctx.mask(), float(level)


def _close_gap(ctx: _Context, birth: float, birth_cell: int) -> np.ndarray:
    """The thinned bridge that closes, at level ``birth``, a loop missing from the mask (2D)."""
    mask = ctx.mask()
    hole_lab, holes = _holes(mask, ctx.scene.bg)
    in_holes = np.isin(hole_lab, holes)
    candidates = (ctx.prob >= np.float32(birth)) & ~mask & ~in_holes
    lab, n = _components(candidates, ctx.scene.fg)
    near = np.unique(lab[_dilate(mask, ctx.scene.fg) & candidates])
    keep = set(near.tolist()) | {int(lab.ravel()[birth_cell])}
    added = np.isin(lab, [k for k in keep if k])
    thinned = _thin(mask | added, added, ctx.prob, ctx.scene.connectivity)
    return thinned & ~mask


def _restore_holes(ctx: _Context) -> bool:
    """Stage 3: restore a missing loop (2D) or cavity from a bar born at or above the floor."""
    top = ctx.scene.ndim - 1
    if ctx.betti[top] >= ctx.target[top]:
        return False
    word = "loop" if top == 1 else "cavity"
    dgm = ctx.diagrams[top]
    evidence = (dgm.birth >= ctx.floor) & (dgm.length >= ctx.min_persistence) & (dgm.death_cell >= 0)
    tried: set[int] = set()
    progressed = False
    while ctx.betti[top] < ctx.target[top] and len(tried) < _MAX_TRIES:
        mask = ctx.mask()
        hole_lab, holes = _holes(mask, ctx.scene.bg)
        in_holes = np.isin(hole_lab, holes).ravel()
        flat_labels = ctx.scene.labels[ctx.box].ravel()
        options = []
        for k in np.flatnonzero(evidence):
            cell = int(dgm.death_cell[k])
            if k in tried or in_holes[cell]:
                continue
            label = flat_labels[cell]
            if mask.ravel()[cell]:  # painted over: the label it would have without the structure
                label = ctx.pick_at(cell, inside=False)
            options.append(((int(label) in ctx.structure.paired, dgm.length[k]), k))
        if not options:
            if not tried:
                ctx.actions.append(f"no {word} above the evidence floor {ctx.floor:.2f}")
            return progressed
        k = max(options)[1]
        tried.add(k)
        birth, death = float(dgm.birth[k]), float(dgm.death[k])
        cell = int(dgm.death_cell[k])
        if mask.ravel()[cell]:
            where, level = _open_painted(ctx, birth, death, cell)
            if where is None:
                ctx.actions.append(f"{word} at level {level:.2f} is not enclosed in the box: left")
                continue
            progressed |= ctx.try_change(
                where, inside=False,
                done=f"opened painted {word} at level {level:.2f} with {int(where.sum())} voxels",
                undone=f"left painted {word} at level {level:.2f}",
            )
        elif top == 1:
            where = _close_gap(ctx, birth, int(dgm.birth_cell[k]))
            progressed |= ctx.try_change(
                where, inside=True,
                done=f"closed loop at level {birth:.2f} with {int(where.sum())} voxels",
                undone=f"left loop at level {birth:.2f} open",
            )
        else:
            ctx.actions.append(f"cavity at level {birth:.2f} is open to the outside: closing it is not attempted in 3D")
    return progressed


def _add_components(ctx: _Context) -> bool:
    """Stage 4: add a missing component from an H0 bar born at or above the floor."""
    if ctx.betti[0] >= ctx.target[0]:
        return False
    h0 = ctx.diagrams[0]
    tried: set[int] = set()
    progressed = False
    while ctx.betti[0] < ctx.target[0] and len(tried) < _MAX_TRIES:
        mask = ctx.mask().ravel()
        options = [
            (h0.length[k], k) for k in range(len(h0))
            if k not in tried and h0.birth[k] >= ctx.floor and h0.length[k] >= ctx.min_persistence
            and not mask[int(h0.birth_cell[k])]
        ]
        if not options:
            if not tried:
                ctx.actions.append(f"no component above the evidence floor {ctx.floor:.2f}")
            return progressed
        k = max(options)[1]
        tried.add(k)
        birth, death = float(h0.birth[k]), float(h0.death[k])
        level = max(ctx.floor, 0.5 * birth)
        island = (ctx.prob >= np.float32(level)) & (ctx.prob > np.float32(death) if np.isfinite(death) else True)
        lab, _ = _components(island, ctx.scene.fg)
        where = (lab == lab.ravel()[int(h0.birth_cell[k])]) & ~ctx.mask()
        progressed |= ctx.try_change(
            where, inside=True,
            done=f"added component of {int(where.sum())} voxels at level {level:.2f}",
            undone=f"did not add component at level {level:.2f}",
        )
    return progressed


_STAGES = (_remove_components, _fill_holes, _restore_holes, _add_components)


def _repair_structure(scene: _Scene, index: int, floor: float, min_persistence: float) -> list[str]:
    """Run the four stages on one failing structure until it is met or nothing more can be done."""
    s = scene.watched[index]
    assert s.target is not None
    actions: list[str] = []
    for _ in range(_MAX_ROUNDS):
        box = _crop_box(s.prior.select(scene.labels), s.prob, floor)
        if box is None:  # no structure and no evidence anywhere
            top = scene.ndim - 1
            if scene.betti[index][top] < s.target[top]:
                actions.append(f"no {'loop' if top == 1 else 'cavity'} above the evidence floor {floor:.2f}")
            if scene.betti[index][0] < s.target[0]:
                actions.append(f"no component above the evidence floor {floor:.2f}")
            break
        prob = np.ascontiguousarray(s.prob[box])
        diagrams = _outer_diagrams(prob, scene.connectivity)
        ctx = _Context(scene, index, box, prob, diagrams, floor, min_persistence, actions)
        progressed = False
        for stage in _STAGES:
            if scene.met(index):
                break
            progressed |= stage(ctx)
        if scene.met(index) or not progressed:
            break
    if scene.ndim == 3 and scene.betti[index][1] != s.target[1]:
        actions.append("tunnels (beta1) are not repaired in 3D")
    return actions


def _repair_array(probabilities: np.ndarray, labels: np.ndarray, priors: Sequence[Prior],
                  protect: Sequence[Prior], connectivity: str, floor: float, min_persistence: float,
                  skip: Sequence[bool] | None = None,
                  slice_index: int | None = None) -> tuple[np.ndarray, list[PriorRepair]]:
    """Repair one 2D or 3D label map; ``skip[k]`` leaves prior ``k`` alone (it is still watched)."""
    ndim = labels.ndim
    structures = _structures(probabilities, priors, ndim)
    guards = _structures(probabilities, protect, ndim) if protect else []
    scene = _Scene(probabilities, labels, structures, guards, connectivity)
    before = list(scene.betti)
    met_before = [scene.met(k) for k in range(len(structures))]
    actions: dict[int, list[str]] = {k: [] for k in range(len(structures))}
    for _ in range(2):  # a second pass: fixing one structure may free another from a veto
        changed = False
        for k, s in enumerate(structures):
            if s.target is None or scene.met(k) or (skip is not None and skip[k]):
                continue
            current = scene.labels
            actions[k].extend(_repair_structure(scene, k, floor, min_persistence))
            changed |= scene.labels is not current
        if not changed:
            break
    entries = [
        PriorRepair(s.prior.name, before[k], scene.betti[k], met_before[k], scene.met(k),
                    tuple(dict.fromkeys(actions[k])), slice_index)  # a retried candidate is reported once
        for k, s in enumerate(structures)
        if s.target is not None and not (skip is not None and skip[k])
    ]
    return scene.labels, entries


def _validate(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be an integer label map, got dtype {labels.dtype}")
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be 2D or 3D, got shape {labels.shape}")
    if probabilities.ndim != labels.ndim + 1 or probabilities.shape[1:] != labels.shape:
        raise ValueError(
            f"probabilities must be channel-first (C, {', '.join(map(str, labels.shape))}), "
            f"got shape {probabilities.shape}"
        )
    return np.asarray(probabilities, np.float32), labels


def repair_labels(
    probabilities: np.ndarray,
    labels: np.ndarray,
    priors: Sequence[Prior],
    *,
    connectivity: str = DEFAULT_CONNECTIVITY,
    evidence_floor: float = 0.1,
    min_persistence: float = 0.1,
    protect: Sequence[Prior] = (),
    per_slice: str | None = None,
    empty: str = "skip",
) -> RepairResult:
    """Bring a label map to its Betti-number priors by the smallest change the probabilities support.

    Parameters
    ----------
    probabilities:
        Channel-first softmax ``(C, *spatial)`` (channel index = label, channel
        0 background), or a one-channel sigmoid map ``(1, *spatial)`` (label 1 =
        foreground). ``spatial`` is ``(H, W)`` or ``(D, H, W)``.
    labels:
        The current integer label map (the argmax), shape ``spatial``. Not modified.
    priors:
        :class:`~topofix.priors.Prior` objects; ``p.expected(ndim)`` is the target
        (the caller narrows priors listing alternatives). Priors without Betti
        numbers are only watched, like ``protect``.
    connectivity:
        ``"full"`` or ``"face"``, as for :func:`topofix.betti_numbers`.
    evidence_floor:
        Nothing is added where the structure's probability is below this, and a
        missing loop or component is restored only from a bar born at or above it.
    min_persistence:
        A missing loop or component is restored only from a bar at least this
        long (shorter bars are noise of the map, e.g. a 0.03 dip inside a
        confident wall, not a cavity the network saw).
    protect:
        Report-only structures that must not get worse: a change that moves one
        away from its Betti numbers (or its target, if it has one) is undone.
    per_slice:
        ``"x"``, ``"y"`` or ``"z"``: repair each 2D slice of a 3D stack on its
        own (axes as in :data:`topofix.slicing.SLICE_AXES`); slices that meet
        every prior are not touched.
    empty:
        With ``per_slice``: ``"skip"`` (default, as ``topofix check``) leaves a
        structure alone in a slice where it is absent (above the apex, below the
        base); ``"fail"`` repairs it there too.

    Returns
    -------
    RepairResult
        See the module docstring for the method and what is guaranteed.
    """
    check_connectivity(connectivity)
    if empty not in ("skip", "fail"):
        raise ValueError(f"empty must be 'skip' or 'fail', got {empty!r}")
    probabilities, labels = _validate(probabilities, labels)
    priors, protect = list(priors), list(protect)
    if per_slice is None:
        new, entries = _repair_array(probabilities, labels, priors, protect, connectivity, evidence_floor,
                                     min_persistence)
        met = all(e.met_after for e in entries)
        return RepairResult(new, int(np.count_nonzero(new != labels)), entries, met)
    if per_slice not in SLICE_AXES:
        raise ValueError(f"per_slice must be one of {', '.join(SLICE_AXES)}, got {per_slice!r}")
    if labels.ndim != 3:
        raise ValueError(f"per_slice needs a 3D stack, got shape {labels.shape}")
    return _repair_slices(probabilities, labels, priors, protect, connectivity, evidence_floor,
                          min_persistence, SLICE_AXES[per_slice], empty)


def _repair_slices(probabilities: np.ndarray, labels: np.ndarray, priors: list[Prior], protect: list[Prior],
                   connectivity: str, floor: float, min_persistence: float, axis: int,
                   empty: str) -> RepairResult:
    """:func:`repair_labels` of each 2D slice along ``axis``; only failing slices are repaired."""
    result = labels.copy()
    entries: list[PriorRepair] = []
    met = True
    for index, plane, prob in _slices(labels, probabilities, axis):
        skip, failing = [], False
        for p in priors:
            selected = p.select(plane)
            target = p.expected(2)
            absent = not selected.any()
            skip.append(target is None or (absent and empty == "skip"))
            failing |= not skip[-1] and betti_numbers(selected, connectivity) != target
        if not failing:
            continue
        new, slice_entries = _repair_array(prob, plane, priors, protect, connectivity, floor, min_persistence,
                                           skip, index)
        entries.extend(slice_entries)
        met &= all(e.met_after for e in slice_entries)
        dest = [slice(None)] * 3
        dest[axis] = index
        result[tuple(dest)] = new
    return RepairResult(result, int(np.count_nonzero(result != labels)), entries, met)


def _slices(
    labels: np.ndarray, probabilities: np.ndarray, axis: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    for index in range(labels.shape[axis]):
        yield index, np.take(labels, index, axis), np.ascontiguousarray(np.take(probabilities, index, axis + 1))
