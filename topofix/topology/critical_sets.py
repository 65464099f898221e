"""Critical sets: every voxel that must change for a bar to be born or to die.

The persistence loss of Clough et al. moves only the two *critical cells* of a
bar (its birth and death voxels). When a bar must change a lot, that is slow:
a ring broken at a gap of several pixels closes one pixel at a time, a blob of
100 confident pixels shrinks one pixel at a time, and at saturated
probabilities the gradient through the softmax vanishes on those two pixels.
Nigmetov & Morozov ("Topological optimization with big steps", Discrete &
Computational Geometry 2024) instead move every cell that must change for the
bar to be born or to die: its *critical set*. This module computes such sets
on the super-level filtration of a 2D/3D map and gives each one a target value
(high or low); :class:`topofix.losses.DenseTopologicalLoss` turns them into a
per-voxel loss.

What is asked of a bar is read at a band of thresholds ``[low, high]``
(default ``0.25, 0.75``, around the 0.5 threshold of the mask): a bar is
*visible* in the band when it is alive at some threshold of the band
(``birth >= low`` and ``death < high``).

Rules (``S`` the map, bar ``(b, d)``, ``b >= d``, cells as flat indices; the
foreground neighbourhood is that of the connectivity, 8/26 for ``"full"``,
4/6 for ``"face"``, the background the dual one, see
:mod:`topofix.topology.connectivity`):

A bar to kill, ``(b, d)``, can die two ways (Nigmetov & Morozov): its birth
moves down to ``d`` (*birth side*) or its death up to ``b`` (*death side*).
Read in the band, the birth side must bring the cells that make the birth
down to ``max(d, low)`` and the death side the cells that make the death up
to ``min(b, high)`` (then the bar is of zero length, or born below ``low``,
or dead at or above ``high``: invisible in the band either way). For
components (dimension 0) and holes/cavities (dimension ``ndim - 1``) both
sets are computed and **the cheaper one is used**, with

    cost = sum over the set of |S - level|,  level = max(d, low) (birth side)
                                              or min(b, high) (death side),

the L1 change of the map that kills the bar in the band: the principle of
minimal change of Nigmetov & Morozov, clipped to the band because the loss
asks nothing outside it. Ties go to the earlier rule (erase a component,
fill a hole); the paths below are cheapest paths found by Dijkstra with
ties broken by cell index, so the choice and the sets are deterministic.
What the rule does: a ring (0.98) touching an elder blob (0.99) through a
bridge of 0.3 is joined along the bridge (two pixels, cost ~0.9) instead of
erased (hundreds of pixels, ~0.7 each); a blob of ``n`` confident pixels
``k`` background pixels away from the ring is erased when ``n`` is smaller
than about ``k`` (per pixel both sides cost about ``high - low``), bridged
otherwise; a pinhole in a thick wall is filled, a hole whose wall to the
outside is thinner (or weaker) than the hole is large is opened.
``side="erase-fill"`` restores the earlier rule (birth side for components,
death side for holes, always).

``kill-component`` (dimension 0, a bar to kill, visible; birth side)
    The component of ``{S > d}`` containing the birth cell (by the elder rule
    it holds only this component and younger, shorter ones, never a kept
    component; kept birth cells found in it anyway, at ties, are removed
    with their component of ``{S >= low}``), restricted to ``S >= low``.
    Target low.
``join-component`` (dimension 0, a bar to kill, visible; death side)
    The cells below ``min(b, high)`` on the cheapest path (node weight
    ``max(min(b, high) - S, 0)``, foreground neighbourhood) from the birth
    cell to an older structure: a cell at or above ``b`` outside the
    ``kill-component`` region (by the elder rule, any such cell belongs to a
    component born no later than the bar). Raised, they connect the component
    to it above the band. Through a weak bridge this is the bridge; through
    the background it is a line of pixels one pixel wide. Target high.
``fill-hole`` (dimension ``ndim - 1``, holes in 2D, cavities in 3D; a bar to
kill, visible; death side)
    The hole: the component of ``{S < b}`` (background neighbourhood)
    containing the death cell, restricted to ``S < high``. Target high.
``open-hole`` (dimension ``ndim - 1``, a bar to kill, visible; birth side)
    The cells above ``max(d, low)`` on the cheapest path (node weight
    ``max(S - max(d, low), 0)``, background neighbourhood) from the death
    cell (the hole's minimum) to an older background: the border of the
    image (the outside is one background component, as in the persistence
    engine) or a cell at or below ``d`` outside the hole. This is the weakest
    crossing of the wall around the hole (the loop's birth cell is on it when
    the path is a min-max path); lowered, they open the hole. Target low.
``raise-birth`` (a kept bar born below ``high``)
    Dimension ``ndim - 1``: the loop that closes the hole, i.e. the
    background-neighbourhood border of the hole (the voxels next to the
    component of ``{S < b}`` containing the death cell, all ``>= b``), restricted
    to ``S < high``. Any background path out of the hole crosses this border,
    so once it is above the threshold (and the hole below), the hole exists.
    For a ring open at a gap of probability 0.01 whose cavity is lower still,
    the loop is born at 0.01 and the set is the gap's pixels next to the
    cavity. Dimension 0: the component of ``{S > max(d, min(low, b / 2))}``
    containing the birth cell, restricted to ``S < high``. Target high.
``lower-death`` (a kept bar that dies at or above ``low``)
    Dimension ``ndim - 1``: the hole (as for ``fill-hole``) restricted to
    ``S > low``: a disc painted over its cavity is emptied. Dimension 0 (two
    kept components joined above ``low``): the death cell only (a minimal
    cut would be needed for a dense set). Target low.
``critical-pixel`` (dimension 1 in 3D: tunnels)
    No dense set: the birth and death cells, as in the Clough loss (kept:
    birth high if ``b < high``, death low if ``d >= low``; killed and
    visible: birth low, death high).

Bars that are not visible in the band get no set: background noise born
below ``low`` is left alone, unlike in the Clough loss. *Missing* bars (fewer
bars than the prior asks for) get no set either: there is no candidate
voxel to move. The common real case is not missing, though: a ring open at a
low-probability gap still has its loop in the super-level filtration,
born at the gap's value, as long as the cavity is lower still; that bar is
kept and its ``raise-birth`` set is the gap.

Which bars are kept and which killed is the caller's decision
(:func:`topofix.losses.rank_bars`, shared with the Clough loss);
:func:`bar_sizes` gives the sizes it uses to break near-ties between
saturated components (a blob and the ring both born at 0.999).

All sets are computed by flood fills and Dijkstra searches in numba on the
same float32 values the persistence engine pairs; floods cost in proportion
to the set, a path search stops as soon as its cost exceeds the other
side's, so it explores at most the region cheaper than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from topofix.topology._jit import njit
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY, check_connectivity

KINDS: tuple[str, ...] = ("kill-component", "fill-hole", "raise-birth", "lower-death", "critical-pixel",
                          "join-component", "open-hole")
SIDES: tuple[str, ...] = ("cheaper", "erase-fill")


@dataclass(frozen=True)
class CriticalSet:
    """Voxels to move towards ``target`` so that bar ``bar`` of dimension ``dim`` behaves.

    Attributes
    ----------
    dim:
        Homology dimension of the bar.
    bar:
        Index of the bar in the caller's lists (``births[dim]`` etc.).
    kind:
        One of :data:`KINDS` (see the module docstring).
    cells:
        Flat (C-order) indices into the map, without repeats (in flood order).
    target:
        ``1.0`` (raise) or ``0.0`` (lower).
    """

    dim: int
    bar: int
    kind: str
    cells: np.ndarray
    target: float


def _offsets(ndim: int, full: bool) -> np.ndarray:
    """(k, 3) neighbour steps: all 3^ndim - 1 (full) or the 2 * ndim face neighbours."""
    steps = []
    for step in product((-1, 0, 1), repeat=ndim):
        n = sum(abs(s) for s in step)
        if n == 0 or (not full and n != 1):
            continue
        steps.append((0,) * (3 - ndim) + step)
    return np.array(steps, np.int64)


# kinds and roles as small integers inside the kernel
_KILL_COMPONENT, _FILL_HOLE, _RAISE_BIRTH, _LOWER_DEATH, _CRITICAL_PIXEL, _JOIN_COMPONENT, _OPEN_HOLE = range(7)
_KEEP, _KILL = 1, -1


@njit(nogil=True)
def _flood(values, dims, seed, level, mode, offsets, mark, stamp, region, buf):
    """Cells of the component containing ``seed`` of {values (>, <, >=) level}.

    With ``region >= 0`` only cells whose mark is ``region`` are entered (a
    sub-component of an earlier flood). Visited cells get ``mark = stamp``; the
    cells are written to ``buf``; returns their count (0 when the seed fails).
    """
    nz, ny, nx = dims[0], dims[1], dims[2]
    v = values[seed]
    ok = (v > level) if mode == 0 else ((v < level) if mode == 1 else (v >= level))
    if not ok or (region >= 0 and mark[seed] != region):
        return 0
    mark[seed] = stamp
    buf[0] = seed
    head, tail = 0, 1
    while head < tail:
        c = buf[head]
        head += 1
        z = c // (ny * nx)
        r = c - z * ny * nx
        y = r // nx
        x = r - y * nx
        for k in range(offsets.shape[0]):
            zz = z + offsets[k, 0]
            yy = y + offsets[k, 1]
            xx = x + offsets[k, 2]
            if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                continue
            q = (zz * ny + yy) * nx + xx
            if mark[q] == stamp or (region >= 0 and mark[q] != region):
                continue
            w = values[q]
            ok = (w > level) if mode == 0 else ((w < level) if mode == 1 else (w >= level))
            if not ok:
                continue
            mark[q] = stamp
            buf[tail] = q
            tail += 1
    return tail


@njit(nogil=True)
def _border(cells, n, dims, offsets, mark, region, stamp, buf):
    """Neighbours (by ``offsets``) of the first ``n`` cells (marked ``region``) that are
    not in the region; marks them ``stamp``, writes them to ``buf``, returns the count."""
    nz, ny, nx = dims[0], dims[1], dims[2]
    count = 0
    for i in range(n):
        c = cells[i]
        z = c // (ny * nx)
        r = c - z * ny * nx
        y = r // nx
        x = r - y * nx
        for k in range(offsets.shape[0]):
            zz = z + offsets[k, 0]
            yy = y + offsets[k, 1]
            xx = x + offsets[k, 2]
            if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                continue
            q = (zz * ny + yy) * nx + xx
            if mark[q] == region or mark[q] == stamp:
                continue
            mark[q] = stamp
            buf[count] = q
            count += 1
    return count


@njit(nogil=True, inline="always")
def _before(k1, c1, k2, c2):
    return k1 < k2 or (k1 == k2 and c1 < c2)


@njit(nogil=True)
def _heap_push(hkey, hcell, size, key, cell):
    """Push (key, cell) on the binary min-heap (ties by cell index); returns the arrays (grown if full)."""
    if size >= hkey.size:
        k2 = np.empty(2 * hkey.size, np.float64)
        c2 = np.empty(2 * hkey.size, np.int64)
        k2[:size] = hkey[:size]
        c2[:size] = hcell[:size]
        hkey, hcell = k2, c2
    i = size
    while i > 0:
        parent = (i - 1) // 2
        if not _before(key, cell, hkey[parent], hcell[parent]):
            break
        hkey[i] = hkey[parent]
        hcell[i] = hcell[parent]
        i = parent
    hkey[i] = key
    hcell[i] = cell
    return hkey, hcell


@njit(nogil=True)
def _heap_pop(hkey, hcell, size):
    """Remove the root of a heap of ``size`` entries (the caller read it first)."""
    size -= 1
    key = hkey[size]
    cell = hcell[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(hkey[child + 1], hcell[child + 1], hkey[child], hcell[child]):
            child += 1
        if not _before(hkey[child], hcell[child], key, cell):
            break
        hkey[i] = hkey[child]
        hcell[i] = hcell[child]
        i = child
    if size > 0:
        hkey[i] = key
        hcell[i] = cell


@njit(nogil=True)
def _cheapest_path(values, dims, src, level, rising, offsets, mark, region, goal, exits, budget, seen, done,
                   stamp, dist, pred, buf):
    """The cheapest way to connect ``src`` to a goal, by a path whose cells are moved to ``level``.

    Dijkstra on the cells (neighbourhood ``offsets``) with the node weight
    ``max(level - S, 0)`` (``rising``) or ``max(S - level, 0)`` (falling): the
    L1 change of the map that puts the whole path on the right side of
    ``level``. Goals: a cell outside the region (``mark != region``) at or
    above ``goal`` (rising) or at or below it (falling); with ``exits``, also
    any cell on the border of the grid (the outside of the image is one
    background component, as in the persistence engine). Ties are broken by
    cell index (deterministic). The search stops once the cheapest open cell
    costs more than ``budget`` (the other side is cheaper anyway).

    Returns ``(n, cost)``: the ``n`` path cells of positive weight written to
    ``buf`` (goal to source), or ``(-1, inf)`` if no path costs ``<= budget``.
    """
    nz, ny, nx = dims[0], dims[1], dims[2]
    hkey = np.empty(256, np.float64)
    hcell = np.empty(256, np.int64)
    seen[src] = stamp
    dist[src] = 0.0
    pred[src] = -1
    hkey, hcell = _heap_push(hkey, hcell, 0, 0.0, src)
    size = 1
    found = -1
    while size > 0:
        key = hkey[0]
        c = hcell[0]
        _heap_pop(hkey, hcell, size)
        size -= 1
        if done[c] == stamp or key > dist[c]:
            continue  # a stale entry
        if key > budget:
            break
        done[c] = stamp
        z = c // (ny * nx)
        r = c - z * ny * nx
        y = r // nx
        x = r - y * nx
        v = values[c]
        if c != src and mark[c] != region and ((v >= goal) if rising else (v <= goal)):
            found = c
            break
        if exits and (y == 0 or y == ny - 1 or x == 0 or x == nx - 1
                      or (nz > 1 and (z == 0 or z == nz - 1))):
            found = c
            break
        for k in range(offsets.shape[0]):
            zz = z + offsets[k, 0]
            yy = y + offsets[k, 1]
            xx = x + offsets[k, 2]
            if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                continue
            q = (zz * ny + yy) * nx + xx
            if done[q] == stamp:
                continue
            w = (level - values[q]) if rising else (values[q] - level)
            if w < 0:
                w = 0.0
            nd = key + w
            if seen[q] != stamp or nd < dist[q]:
                seen[q] = stamp
                dist[q] = nd
                pred[q] = c
                hkey, hcell = _heap_push(hkey, hcell, size, nd, q)
                size += 1
    if found < 0:
        return -1, np.inf
    cost = dist[found]
    n = 0
    c = found
    while c >= 0:
        w = (level - values[c]) if rising else (values[c] - level)
        if w > 0:
            buf[n] = c
            n += 1
        c = pred[c]
    return n, cost


@njit(nogil=True)
def _emit(cells, n, values, mode, level, out, used, starts, kinds, targets, dims_out, bars, nsets, kind, target,
          dim, bar):
    """Append the cells passing {values > level (mode 0) | < level (1) | any (3)} as one set.

    Returns the new ``used`` (-1 when ``out`` is too small), the set count in ``nsets[0]``."""
    if used < 0:
        return used
    start = used
    for i in range(n):
        c = cells[i]
        w = values[c]
        if mode == 0 and not (w > level):
            continue
        if mode == 1 and not (w < level):
            continue
        if mode == 2 and not (w >= level):
            continue
        if used >= out.size:
            return -1
        out[used] = c
        used += 1
    if used > start:
        j = nsets[0]
        starts[j] = start
        kinds[j] = kind
        targets[j] = target
        dims_out[j] = dim
        bars[j] = bar
        nsets[0] = j + 1
    return used


@njit(nogil=True)
def _all_sets(values, dims, ndim, fg, bg, bar_dim, bar_index, role, birth, death, kept_births0, low, high,
              cheaper, mark, buf, buf2, one, seen, done, dist, pred, out, starts, kinds, targets, dims_out, bars,
              nsets):
    """Every bar's critical sets (the rules of the module docstring) into ``out``.

    Returns the number of cells written, or -1 if ``out`` is too small."""
    used = 0
    stamp = 0
    search = 0
    for i in range(birth.size):
        dim = bar_dim[i]
        bar = bar_index[i]
        bc = birth[i]
        dc = death[i]
        b = values[bc]
        d = values[dc]
        top = dim == ndim - 1
        if role[i] == _KILL:
            if not (b >= low and d < high):
                continue  # not visible in the band
            if dim == 0:
                stamp += 1
                region = stamp
                n = _flood(values, dims, bc, d, 0, fg, mark, region, -1, buf)
                for c in kept_births0:  # a tie let a kept component in: take it out
                    if mark[c] == region:
                        stamp += 1
                        _flood(values, dims, c, low, 2, fg, mark, stamp, region, buf2)
                m = 0
                erase = 0.0  # cost of the birth side: the set lowered to max(d, low)
                floor = max(d, low)
                for j in range(n):  # cells still marked as the region, >= low
                    c = buf[j]
                    if mark[c] == region and values[c] >= low:
                        buf[m] = c
                        m += 1
                        if values[c] > floor:
                            erase += values[c] - floor
                k = -1
                if cheaper:  # death side: a path to an older structure, raised to min(b, high)
                    search += 1
                    k, join = _cheapest_path(values, dims, bc, min(b, high), True, fg, mark, region, b, False,
                                             erase, seen, done, search, dist, pred, buf2)
                    if k >= 0 and not join < erase:
                        k = -1  # ties: the birth side
                if k >= 0:
                    used = _emit(buf2, k, values, 3, 0.0, out, used, starts, kinds, targets, dims_out, bars, nsets,
                                 _JOIN_COMPONENT, 1.0, dim, bar)
                else:
                    used = _emit(buf, m, values, 3, low, out, used, starts, kinds, targets, dims_out, bars, nsets,
                                 _KILL_COMPONENT, 0.0, dim, bar)
            elif top:
                stamp += 1
                region = stamp
                n = _flood(values, dims, dc, b, 1, bg, mark, region, -1, buf)
                k = -1
                if cheaper:  # the other side: open the hole to an older background, lowered to max(d, low)
                    ceiling = min(b, high)
                    fill = 0.0
                    for j in range(n):
                        if values[buf[j]] < ceiling:
                            fill += ceiling - values[buf[j]]
                    search += 1
                    k, opening = _cheapest_path(values, dims, dc, max(d, low), False, bg, mark, region, d, True,
                                                fill, seen, done, search, dist, pred, buf2)
                    if k >= 0 and not opening < fill:
                        k = -1  # ties: fill
                if k >= 0:
                    used = _emit(buf2, k, values, 3, 0.0, out, used, starts, kinds, targets, dims_out, bars, nsets,
                                 _OPEN_HOLE, 0.0, dim, bar)
                else:
                    used = _emit(buf, n, values, 1, high, out, used, starts, kinds, targets, dims_out, bars, nsets,
                                 _FILL_HOLE, 1.0, dim, bar)
            else:
                one[0] = bc
                used = _emit(one, 1, values, 3, 0.0, out, used, starts, kinds, targets, dims_out, bars, nsets,
                             _CRITICAL_PIXEL, 0.0, dim, bar)
                one[0] = dc
                used = _emit(one, 1, values, 3, 0.0, out, used, starts, kinds, targets, dims_out, bars, nsets,
                             _CRITICAL_PIXEL, 1.0, dim, bar)
        elif role[i] == _KEEP:
            if dim == 0:
                if b < high:
                    level = min(low, b / 2)
                    if d > level:
                        level = d
                    stamp += 1
                    n = _flood(values, dims, bc, level, 0, fg, mark, stamp, -1, buf)
                    used = _emit(buf, n, values, 1, high, out, used, starts, kinds, targets, dims_out, bars, nsets,
                                 _RAISE_BIRTH, 1.0, dim, bar)
                if d >= low:
                    one[0] = dc
                    used = _emit(one, 1, values, 3, 0.0, out, used, starts, kinds, targets, dims_out, bars, nsets,
                                 _LOWER_DEATH, 0.0, dim, bar)
            elif top:
                if b < high or d >= low:
                    stamp += 1
                    region = stamp
                    n = _flood(values, dims, dc, b, 1, bg, mark, region, -1, buf)
                    if b < high:
                        stamp += 1
                        m = _border(buf, n, dims, bg, mark, region, stamp, buf2)
                        used = _emit(buf2, m, values, 1, high, out, used, starts, kinds, targets, dims_out, bars,
                                     nsets, _RAISE_BIRTH, 1.0, dim, bar)
                    if d >= low:
                        used = _emit(buf, n, values, 0, low, out, used, starts, kinds, targets, dims_out, bars,
                                     nsets, _LOWER_DEATH, 0.0, dim, bar)
            else:
                if b < high:
                    one[0] = bc
                    used = _emit(one, 1, values, 3, 0.0, out, used, starts, kinds, targets, dims_out, bars, nsets,
                                 _CRITICAL_PIXEL, 1.0, dim, bar)
                if d >= low:
                    one[0] = dc
                    used = _emit(one, 1, values, 3, 0.0, out, used, starts, kinds, targets, dims_out, bars, nsets,
                                 _CRITICAL_PIXEL, 0.0, dim, bar)
        if used < 0:
            return -1
    return used


@njit(nogil=True)
def _sizes(values, dims, fg, bg, top, dim, birth, death, low, mark, buf):
    sizes = np.zeros(birth.size, np.int64)
    for i in range(birth.size):
        if dim == 0:
            level = values[death[i]]
            if level < low:
                level = low
            sizes[i] = _flood(values, dims, birth[i], level, 0, fg, mark, i + 1, -1, buf)
        elif top:
            sizes[i] = _flood(values, dims, death[i], values[birth[i]], 1, bg, mark, i + 1, -1, buf)
    return sizes


def bar_sizes(
    values: np.ndarray,
    dim: int,
    birth_cells: np.ndarray,
    death_cells: np.ndarray,
    connectivity: str = DEFAULT_CONNECTIVITY,
    *,
    low: float = 0.25,
) -> np.ndarray:
    """How big the structure of each bar is, in voxels, to break near-ties between bars.

    Dimension 0: the component of ``{S > max(d, low)}`` containing the birth
    cell (its extent in the band); dimension ``ndim - 1``: the hole, the
    component of ``{S < b}`` containing the death cell. Other dimensions
    (tunnels in 3D): 0.
    """
    check_connectivity(connectivity)
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    flat = arr.ravel()
    dims = np.array((1,) * (3 - arr.ndim) + arr.shape, np.int64)
    full = connectivity == "full"
    births = np.asarray(birth_cells, np.int64).reshape(-1)
    deaths = np.asarray(death_cells, np.int64).reshape(-1)
    if births.size and (min(births.min(), deaths.min()) < 0 or max(births.max(), deaths.max()) >= flat.size):
        raise ValueError("a birth or death cell is outside the map")
    mark = np.zeros(flat.size, np.int32)
    buf = np.empty(flat.size, np.int64)
    return _sizes(flat, dims, _offsets(arr.ndim, full), _offsets(arr.ndim, not full), dim == arr.ndim - 1, dim,
                  births, deaths, np.float32(low), mark, buf)


def critical_sets(
    values: np.ndarray,
    birth_cells: list[np.ndarray],
    death_cells: list[np.ndarray],
    kept: list[np.ndarray],
    killed: list[np.ndarray],
    connectivity: str = DEFAULT_CONNECTIVITY,
    *,
    low: float = 0.25,
    high: float = 0.75,
    side: str = "cheaper",
) -> list[CriticalSet]:
    """Critical sets and targets of the bars of one map (see the module docstring).

    Parameters
    ----------
    values:
        The 2D or 3D map (it is converted to float32, as the engine pairs it).
    birth_cells, death_cells:
        Per dimension ``k < values.ndim``, the flat indices of every bar's
        critical cells (the essential bar's death cell must be given, e.g.
        ``argmin``, or the bar left out).
    kept, killed:
        Per dimension, indices into those arrays of the bars to keep (the
        ``beta*_k`` longest) and to kill (the others that the loss counts);
        bars in neither list are ignored.
    connectivity:
        ``"full"`` or ``"face"``.
    low, high:
        The band of thresholds in which bars are read (``0 <= low <= high``).
    side:
        How a killed component or hole dies: ``"cheaper"`` (default) the side
        of smaller cost (see the module docstring), ``"erase-fill"`` always
        the birth side for components (erase) and the death side for holes
        (fill), the rule before the cheaper side was introduced.

    Returns
    -------
    list of :class:`CriticalSet`, non-empty sets only, in the order of the
    bars (dimension by dimension, kept bars then killed ones, as given).
    """
    check_connectivity(connectivity)
    if not 0 <= low <= high:
        raise ValueError(f"need 0 <= low <= high, got low={low}, high={high}")
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; expected one of {', '.join(SIDES)}")
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    if arr.ndim not in (2, 3):
        raise ValueError(f"critical sets need a 2D or 3D map, got shape {arr.shape}")
    if not (len(birth_cells) == len(death_cells) == len(kept) == len(killed) == arr.ndim):
        raise ValueError(f"need one array of cells and of kept / killed bars per dimension ({arr.ndim})")
    ndim = arr.ndim
    flat = arr.ravel()
    dims = np.array((1,) * (3 - ndim) + arr.shape, np.int64)
    full = connectivity == "full"
    fg, bg = _offsets(ndim, full), _offsets(ndim, not full)  # foreground / background neighbourhoods

    bar_dim, bar_index, role, birth, death = [], [], [], [], []
    for k in range(ndim):
        births = np.asarray(birth_cells[k], np.int64)
        deaths = np.asarray(death_cells[k], np.int64)
        for r, idx in ((1, kept[k]), (-1, killed[k])):
            idx = np.asarray(idx, np.int64).reshape(-1)
            bar_dim.append(np.full(idx.size, k, np.int64))
            bar_index.append(idx)
            role.append(np.full(idx.size, r, np.int64))
            birth.append(births[idx])
            death.append(deaths[idx])
    bar_dim_a, bar_index_a, role_a = (np.concatenate(v) for v in (bar_dim, bar_index, role))
    birth_a, death_a = np.concatenate(birth), np.concatenate(death)
    if birth_a.size and (min(birth_a.min(), death_a.min()) < 0 or max(birth_a.max(), death_a.max()) >= flat.size):
        raise ValueError("a birth or death cell is outside the map (an essential bar needs a death cell)")
    kept_births0 = np.asarray(birth_cells[0], np.int64)[np.asarray(kept[0], np.int64).reshape(-1)]

    n_bars = birth_a.size
    mark = np.zeros(flat.size, np.int32)
    buf = np.empty(flat.size, np.int64)
    buf2 = np.empty(flat.size, np.int64)
    one = np.empty(1, np.int64)
    seen = np.zeros(flat.size, np.int32)  # the path searches' own stamps (``mark`` holds the regions)
    done = np.zeros(flat.size, np.int32)
    dist = np.empty(flat.size, np.float64)
    pred = np.empty(flat.size, np.int64)
    starts = np.empty(2 * n_bars + 1, np.int64)
    kinds = np.empty(2 * n_bars + 1, np.int64)
    targets = np.empty(2 * n_bars + 1, np.float64)
    dims_out = np.empty(2 * n_bars + 1, np.int64)
    bars = np.empty(2 * n_bars + 1, np.int64)
    capacity = 2 * flat.size + 64
    while True:
        out = np.empty(capacity, np.int64)
        nsets = np.zeros(1, np.int64)
        mark[:] = 0
        used = _all_sets(flat, dims, ndim, fg, bg, bar_dim_a, bar_index_a, role_a, birth_a, death_a, kept_births0,
                         np.float32(low), np.float32(high), side == "cheaper", mark, buf, buf2, one, seen, done,
                         dist, pred, out, starts, kinds, targets, dims_out, bars, nsets)
        seen[:] = 0
        done[:] = 0
        if used >= 0:
            break
        capacity *= 4  # sets overlap: more cells than voxels (rare); retry with room
    count = int(nsets[0])
    ends = np.append(starts[1:count], used)
    return [
        CriticalSet(int(dims_out[j]), int(bars[j]), KINDS[int(kinds[j])], out[starts[j]:ends[j]].copy(),
                    float(targets[j]))
        for j in range(count)
    ]
