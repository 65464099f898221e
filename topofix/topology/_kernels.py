"""Numba kernels of the persistence engine: radix ordering and union-find.

Why these algorithms:

* **Ordering.** Every filtration starts by sorting the voxels. A stable LSD radix
  sort of float32 keys (3 passes of 11 bits, or 2 of 16 for large images; the
  histograms of all passes in one read, a pass skipped when all keys share its
  digit) is
  about 6x faster than ``np.argsort(kind="stable")`` (46 us vs 340 us for
  80x80, 0.14 s vs 0.84 s for 96x240x256, measured here).
* **Union-find with the elder rule** gives the pairs of dimension 0
  (components) in near-linear time; by Alexander duality the pairs of the top
  dimension d-1 (holes in 2D, cavities in 3D) are the components of the
  *complement* processed in the reverse order, with everything outside the
  image one "outside" component that never dies.

The image is embedded in a grid padded by one voxel on every side, so the
neighbour loop has no bounds checks: padding voxels are either never
processed (dimension 0) or part of the outside (the dual pass). 2D images are
padded in-plane only.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from topofix.topology._jit import njit

_BIG = np.int32(2**31 - 1)


@njit(nogil=True)
def radix_order(values: np.ndarray, descending: bool) -> np.ndarray:
    """Stable ordering permutation (int32) of a 1-D float32 array, ties by index.

    ``descending=True`` orders the largest value first (super-level filtration).
    NaN must not occur (callers refuse it).
    """
    n = values.size
    bits = values.view(np.uint32)
    keys = np.empty(n, np.uint32)
    if n > 200_000:
        nbits, passes = 16, 2
    else:
        nbits, passes = 11, 3
    mask = (1 << nbits) - 1
    counts = np.zeros((passes, mask + 1), np.int64)  # all digit histograms in the key pass
    for i in range(n):
        u = bits[i]
        # monotone map float32 -> uint32; -0.0 and 0.0 made equal
        if u == np.uint32(0x80000000):
            u = np.uint32(0)
        if u & np.uint32(0x80000000):
            u = ~u
        else:
            u = u | np.uint32(0x80000000)
        if descending:
            u = ~u
        keys[i] = u
        kk = keys[i]  # as uint32 (numba types u more widely after ~)
        for p in range(passes):
            counts[p, (kk >> (p * nbits)) & mask] += 1
    order = np.arange(n).astype(np.int32)
    tkeys = np.empty(n, np.uint32)
    tord = np.empty(n, np.int32)
    for p in range(passes):
        shift = p * nbits
        count = counts[p]
        if count[(keys[0] >> shift) & mask] == n:
            continue  # every key has this digit: the pass would not move anything
        total = 0
        for b in range(mask + 1):
            c = count[b]
            count[b] = total
            total += c
        for i in range(n):
            kk = keys[i]
            d = (kk >> shift) & mask
            j = count[d]
            tkeys[j] = kk
            tord[j] = order[i]
            count[d] = j + 1
        keys, tkeys = tkeys, keys
        order, tord = tord, order
    return order


@njit(nogil=True, inline="always")
def _find(parent: np.ndarray, x: int) -> int:
    """Root of ``x``, halving the path on the way."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(nogil=True, inline="always")
def _merge(parent: np.ndarray, pos: np.ndarray, x: int, root: int, other: int, young: np.ndarray,
           merge: np.ndarray, n: int) -> tuple[int, int]:
    """Merge the components of roots ``root`` (holding ``x``) and ``other`` with the
    elder rule: the root processed later dies; its death at ``x`` is recorded
    unless it is ``x``'s own, just-born component. Returns ``(new root, n)``."""
    if pos[other] < pos[root]:
        old, yng = other, root
    else:
        old, yng = root, other
    if yng != x:
        young[n] = yng
        merge[n] = x
        n += 1
    parent[yng] = old
    return old, n


@lru_cache(maxsize=64)
def neighbour_offsets(shape: tuple[int, ...], full: bool) -> np.ndarray:
    """Flat offsets of the neighbours in the padded grid of an image of ``shape``.

    ``full``: 8 (2D) / 26 (3D) neighbours, else 4 / 6. Cached: batches of
    same-sized images ask for it once per image.
    """
    padded = tuple(s + 2 for s in shape)
    strides = np.cumprod((1,) + padded[::-1][:-1])[::-1]
    offsets = []
    for delta in np.ndindex(*(3,) * len(shape)):
        step = np.array(delta) - 1
        nonzero = np.count_nonzero(step)
        if nonzero == 0 or (not full and nonzero > 1):
            continue
        offsets.append(int(np.dot(step, strides)))
    return np.array(offsets, np.int64)


@njit(nogil=True)
def union_find_pairs(order: np.ndarray, shape: np.ndarray, offsets: np.ndarray, outside: bool):
    """Merge events of the voxels processed in ``order`` (flat C indices).

    ``shape`` is the image shape (2 or 3 ints); ``offsets`` from
    :func:`neighbour_offsets`. With ``outside``, the padding is one component,
    older than every voxel.

    Returns ``(young, merge, n)``: for ``i < n``, the component whose first
    voxel was ``young[i]`` merged into an older one when voxel ``merge[i]`` was
    processed (elder rule: the component whose first voxel comes later in
    ``order`` dies). A voxel merging at its own arrival is not a pair. Without
    ``outside`` the component of ``order[0]`` never dies (it is not reported).
    """
    ndim = shape.size
    if ndim == 2:
        n0, n1, n2 = 1, shape[0], shape[1]
        p0 = 1
    else:
        n0, n1, n2 = shape[0], shape[1], shape[2]
        p0 = n0 + 2
    p1 = n1 + 2
    p2 = n2 + 2
    lead = 0 if ndim == 2 else 1
    size = n0 * n1 * n2
    total = p0 * p1 * p2
    ghost = total
    # parent[q] < 0: not processed yet (padding included, unless it is the outside)
    parent = np.full(total + 1, -1, np.int32)
    pos = np.empty(total + 1, np.int32)  # processing position, read for roots only
    if outside:
        parent[:] = ghost  # padding: already processed, part of the outside
        pos[ghost] = -1
    padded = np.empty(size, np.int32)
    for k in range(size):
        x = order[k]
        i = x // (n1 * n2)
        r = x - i * (n1 * n2)
        j = r // n2
        ll = r - j * n2
        q = ((i + lead) * p1 + j + 1) * p2 + ll + 1
        padded[k] = q
        pos[q] = k
        if outside:
            parent[q] = -1
    young = np.empty(size, np.int64)
    merge = np.empty(size, np.int64)
    n = 0
    for k in range(size):
        x = padded[k]
        parent[x] = x
        root = x
        for off in offsets:
            y = x + off
            if parent[y] < 0:
                continue  # not processed yet (or padding never processed)
            other = _find(parent, y)
            if other != root:
                root, n = _merge(parent, pos, x, root, other, young, merge, n)
    # padded -> image flat indices
    for t in range(n):
        for arr in (young, merge):
            q = arr[t]
            ll = q % p2 - 1
            r = q // p2
            j = r % p1 - 1
            i = r // p1 - lead
            arr[t] = (i * n1 + j) * n2 + ll
    return young, merge, n


@njit(nogil=True)
def union_find_corners(order: np.ndarray, shape: np.ndarray, outside: bool):
    """:func:`union_find_pairs` for the full neighbourhood (8 in 2D, 26 in 3D), faster.

    Voxels that share a grid corner are neighbours, so instead of looking at 26
    neighbours we link each voxel to its 8 corners (4 in 2D): a corner is
    created with its first voxel and links every later one. The corners of a
    voxel span 4 cache lines where its 26 neighbours span 9, and this pass is
    memory-bound (filtration order is random in space). Corners never start a
    component (they appear with a voxel), so the pairs are the same. With
    ``outside``, corners on the image border belong to the outside.
    Returns ``(young, merge, n)`` as :func:`union_find_pairs`.
    """
    ndim = shape.size
    if ndim == 2:
        n0, n1, n2 = 1, shape[0], shape[1]
        c0 = 1
    else:
        n0, n1, n2 = shape[0], shape[1], shape[2]
        c0 = n0 + 1
    c1 = n1 + 1
    c2 = n2 + 1
    size = n0 * n1 * n2
    ncorner = c0 * c1 * c2
    ghost = size + ncorner
    parent = np.full(ghost + 1, -1, np.int32)  # voxels, then corners, then the outside
    pos = np.empty(ghost + 1, np.int32)  # read for roots only: voxels and the outside
    pos[ghost] = -1
    parent[ghost] = ghost
    if outside:
        for ci in range(c0):
            for cj in range(c1):
                for cl in range(c2):
                    border = cj == 0 or cj == n1 or cl == 0 or cl == n2
                    if ndim == 3 and (ci == 0 or ci == n0):
                        border = True
                    if border:
                        parent[size + (ci * c1 + cj) * c2 + cl] = ghost
    for k in range(size):
        pos[order[k]] = k
    # corner offsets of a voxel relative to its lowest corner
    ncorners = 4 if ndim == 2 else 8
    coff = np.empty(ncorners, np.int64)
    t = 0
    for di in range(2 if ndim == 3 else 1):
        for dj in range(2):
            for dl in range(2):
                coff[t] = (di * c1 + dj) * c2 + dl
                t += 1
    young = np.empty(size, np.int64)
    merge = np.empty(size, np.int64)
    n = 0
    for k in range(size):
        x = order[k]
        i = x // (n1 * n2)
        r = x - i * (n1 * n2)
        j = r // n2
        ll = r - j * n2
        base = size + (i * c1 + j) * c2 + ll
        parent[x] = x
        root = x
        for t in range(ncorners):
            c = base + coff[t]
            if parent[c] < 0:
                parent[c] = root  # a new corner: part of x's component
                continue
            other = _find(parent, c)
            if other != root:
                root, n = _merge(parent, pos, x, root, other, young, merge, n)
    return young, merge, n
