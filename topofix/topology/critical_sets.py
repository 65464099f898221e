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

``kill-component`` (dimension 0, a bar to kill, visible)
    The component of ``{S > d}`` containing the birth cell (by the elder rule
    it holds only this component and younger, shorter ones, never a kept
    component; kept birth cells found in it anyway, at ties, are removed
    with their component of ``{S >= low}``), restricted to ``S >= low``.
    Target low.
``fill-hole`` (dimension ``ndim - 1``, holes in 2D, cavities in 3D; a bar to
kill, visible)
    The hole: the component of ``{S < b}`` (background neighbourhood)
    containing the death cell, restricted to ``S < high``. Target high.
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

All sets are computed by flood fills in numba (cost proportional to the
set, not to the image) on the same float32 values the persistence engine
pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numba as nb
import numpy as np

from topofix.topology.connectivity import DEFAULT_CONNECTIVITY, check_connectivity

KINDS: tuple[str, ...] = ("kill-component", "fill-hole", "raise-birth", "lower-death", "critical-pixel")


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
_KILL_COMPONENT, _FILL_HOLE, _RAISE_BIRTH, _LOWER_DEATH, _CRITICAL_PIXEL = range(5)
_KEEP, _KILL = 1, -1


@nb.njit(cache=True, nogil=True)
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


@nb.njit(cache=True, nogil=True)
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


@nb.njit(cache=True, nogil=True)
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


@nb.njit(cache=True, nogil=True)
def _all_sets(values, dims, ndim, fg, bg, bar_dim, bar_index, role, birth, death, kept_births0, low, high,
              mark, buf, buf2, one, out, starts, kinds, targets, dims_out, bars, nsets):
    """Every bar's critical sets (the rules of the module docstring) into ``out``.

    Returns the number of cells written, or -1 if ``out`` is too small."""
    used = 0
    stamp = 0
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
                for j in range(n):  # cells still marked as the region, >= low
                    c = buf[j]
                    if mark[c] == region and values[c] >= low:
                        buf[m] = c
                        m += 1
                used = _emit(buf, m, values, 3, low, out, used, starts, kinds, targets, dims_out, bars, nsets,
                             _KILL_COMPONENT, 0.0, dim, bar)
            elif top:
                stamp += 1
                n = _flood(values, dims, dc, b, 1, bg, mark, stamp, -1, buf)
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


@nb.njit(cache=True, nogil=True)
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

    Returns
    -------
    list of :class:`CriticalSet`, non-empty sets only, in the order of the
    bars (dimension by dimension, kept bars then killed ones, as given).
    """
    check_connectivity(connectivity)
    if not 0 <= low <= high:
        raise ValueError(f"need 0 <= low <= high, got low={low}, high={high}")
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
                         np.float32(low), np.float32(high), mark, buf, buf2, one, out, starts, kinds, targets,
                         dims_out, bars, nsets)
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
