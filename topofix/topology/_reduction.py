"""Numba kernel: dimensions 0 and 1 of a 3D lower-star cubical filtration.

Why a reduction: in 3D, dimensions 0 and 2 come from union-find (see
:mod:`topofix.topology._kernels`), but loops (dimension 1) need the pairing of
edges with squares. We compute it by *persistent cohomology with clearing*, as
Ripser and CubicalRipser do: edges that kill a component (found by the
union-find pass of this same kernel, in the same cell order) are cleared; every
other edge's coboundary (its up-to-4 squares) is reduced, and almost every
column is settled at once by an *apparent pair* (the edge is the youngest face
of its oldest coface) or has a pivot no earlier column claimed.

The complex is the V-construction (voxels are vertices, a cell is present when
all its vertices are) of a function ``g`` on a grid padded by two layers:

* the outer layer is always absent (it bounds every neighbourhood loop);
* the inner layer is absent (``face`` connectivity, ``g = -p``) or present from
  the start (``full`` connectivity, where this computes the complement of the
  super-level set, ``g = p``, and Alexander duality turns its loops into the
  loops of the super-level set).

Cells are totally ordered by ``(rank of their highest vertex, dimension, local
code)``; ranks are the voxels' positions in the sorted order of ``g``. A cell
key is ``rank * 32 + code``: edge codes 0..5 (direction from the highest
vertex), square codes 16..27 (plane and position of the highest vertex).
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.typed import Dict

from topofix.topology._jit import njit
from topofix.topology._kernels import _find


@njit(nogil=True, inline="always")
def _square_key(w: int, a: int, b: int, rank: np.ndarray, strides: np.ndarray, nrank: int) -> int:
    """Key of the square with lowest corner ``w`` in the plane of axes a < b, or -1 if absent."""
    sa = strides[a]
    sb = strides[b]
    best = -1
    second = -1
    code = 0
    for pa in range(2):
        for pb in range(2):
            r = rank[w + pa * sa + pb * sb]
            if r < 0:
                return -1
            if r > best:
                second = best
                best = r
                code = pa * 2 + pb
            elif r > second:
                second = r
    plane = a + b - 1  # (0,1)->0, (0,2)->1, (1,2)->2
    return (best * nrank + second) * 32 + 16 + plane * 4 + code


@njit(nogil=True)
def _coboundary(edge_key: int, order: np.ndarray, rank: np.ndarray, strides: np.ndarray, out: np.ndarray,
                nrank: int) -> int:
    """Squares containing the edge, as sorted keys in ``out``; returns how many."""
    x = order[edge_key // (32 * nrank)]
    c = edge_key % 32
    a = c // 2
    u = x - strides[a] if c % 2 == 0 else x  # lower end of the edge
    n = 0
    for b in range(3):
        if b == a:
            continue
        lo = min(a, b)
        hi = max(a, b)
        for w in (u, u - strides[b]):
            k = _square_key(w, lo, hi, rank, strides, nrank)
            if k >= 0:
                out[n] = k
                n += 1
    # insertion sort (n <= 4)
    for i in range(1, n):
        v = out[i]
        j = i - 1
        while j >= 0 and out[j] > v:
            out[j + 1] = out[j]
            j -= 1
        out[j + 1] = v
    return n


@njit(nogil=True)
def _square_id(square_key: int, order: np.ndarray, strides: np.ndarray, nrank: int) -> int:
    m = order[square_key // (32 * nrank)]
    local = square_key % 32 - 16
    plane = local // 4
    pa = (local >> 1) & 1
    pb = local & 1
    a = 0 if plane < 2 else 1
    b = 1 if plane == 0 else 2
    w = m - pa * strides[a] - pb * strides[b]
    return w * 3 + plane


@njit(nogil=True, inline="always")
def _oldest_coface(x: int, c: int, rank: np.ndarray, strides: np.ndarray, nrank: int) -> int:
    """Smallest key among the squares containing edge ``(x, c)`` (-1 if none).

    The same as ``_coboundary(...)[0]`` without building the list: this runs
    for every edge of the volume.
    """
    a = c // 2
    u = x - strides[a] if c % 2 == 0 else x
    best = -1
    for b in range(3):
        if b == a:
            continue
        lo = a if a < b else b
        hi = b if a < b else a
        plane = lo + hi - 1
        s_lo = strides[lo]
        s_hi = strides[hi]
        sb_ = strides[b]
        for side in range(2):
            w = u - side * sb_
            top = -1
            second = -1
            code = 0
            ok = True
            for pa in range(2):
                for pb in range(2):
                    r = rank[w + pa * s_lo + pb * s_hi]
                    if r < 0:
                        ok = False
                    if r > top:
                        second = top
                        top = r
                        code = pa * 2 + pb
                    elif r > second:
                        second = r
            if ok:
                key = (top * nrank + second) * 32 + 16 + plane * 4 + code
                if best < 0 or key < best:
                    best = key
    return best


@njit(nogil=True, inline="always")
def _youngest_facet(square_key: int, order: np.ndarray, rank: np.ndarray, strides: np.ndarray,
                    nrank: int) -> int:
    """Key of the youngest edge of a square: of the two edges at its top vertex,
    the one whose other end has the higher rank."""
    r1 = square_key // (32 * nrank)
    return _youngest_facet_at(order[r1], r1, square_key, rank, strides, nrank)


@njit(nogil=True, inline="always")
def _youngest_facet_at(x: int, r1: int, square_key: int, rank: np.ndarray, strides: np.ndarray, nrank: int) -> int:
    """:func:`_youngest_facet` when the square's top voxel ``x`` (rank ``r1``) is known."""
    local = square_key % 32 - 16
    plane = local // 4
    a = 0 if plane < 2 else 1
    b = 1 if plane == 0 else 2
    if (local >> 1) & 1:  # the top vertex is on the upper side along a
        ca = 2 * a
        ra = rank[x - strides[a]]
    else:
        ca = 2 * a + 1
        ra = rank[x + strides[a]]
    if local & 1:
        cb = 2 * b
        rb = rank[x - strides[b]]
    else:
        cb = 2 * b + 1
        rb = rank[x + strides[b]]
    if ra > rb:
        return (r1 * nrank + ra) * 32 + ca
    return (r1 * nrank + rb) * 32 + cb


@njit(nogil=True, inline="always")
def _edge_id(edge_key: int, order: np.ndarray, strides: np.ndarray, nrank: int) -> int:
    x = order[edge_key // (32 * nrank)]
    c = edge_key % 32
    a = c // 2
    u = x - strides[a] if c % 2 == 0 else x
    return u * 3 + a


@njit(nogil=True)
def components_pass(rank: np.ndarray, order: np.ndarray, dims: np.ndarray, g: np.ndarray):
    """Dimension 0 by union-find over lower-star edges, in key order.

    ``rank``: int32 over the padded grid ``dims`` (3 ints), -1 for absent voxels,
    else the voxel's position in ``order`` (present voxels by increasing ``g``,
    padded flat indices); ``g``: filtration values on the same grid.
    Returns ``(negative, birth, death, n)``: ``negative[edge_id]`` marks the
    edges that merge two components (cleared in dimension 1); pairs are the
    first voxel of the dying component and the voxel whose edge merged it,
    zero-length pairs left out. The first component never dies.
    """
    q1 = dims[1]
    q2 = dims[2]
    strides = np.array([q1 * q2, q2, 1], np.int64)
    offsets = np.array([-strides[0], strides[0], -strides[1], strides[1], -1, 1], np.int64)
    total = dims[0] * q1 * q2
    npresent = order.size
    parent = np.empty(total, np.int32)
    negative = np.zeros(total * 3, np.bool_)
    h0b = np.empty(1024, np.int64)
    h0d = np.empty(1024, np.int64)
    n0 = 0
    lower = np.empty(6, np.int64)
    lower_rank = np.empty(6, np.int64)
    for k in range(npresent):
        x = order[k]
        parent[x] = x
        root = x
        # the lower-star edges of x, in key order: by the rank of their other end
        nl = 0
        for c in range(6):
            ry = rank[x + offsets[c]]
            if ry < 0 or ry > k:
                continue
            j = nl
            while j > 0 and lower_rank[j - 1] > ry:
                lower_rank[j] = lower_rank[j - 1]
                lower[j] = lower[j - 1]
                j -= 1
            lower_rank[j] = ry
            lower[j] = c
            nl += 1
        for t in range(nl):
            c = lower[t]
            y = x + offsets[c]
            other = _find(parent, y)
            if other == root:
                continue
            if rank[other] < rank[root]:
                old = other
                yng = root
            else:
                old = root
                yng = other
            a = c // 2
            u = y if c % 2 == 0 else x
            negative[u * 3 + a] = True
            if yng != x and g[yng] != g[x]:
                if n0 == h0b.size:
                    h0b = _grow(h0b, n0)
                    h0d = _grow(h0d, n0)
                h0b[n0] = yng
                h0d[n0] = x
                n0 += 1
            parent[yng] = old
            root = old

    return negative, h0b, h0d, n0


@njit(nogil=True)
def apparent_pass(rank: np.ndarray, order: np.ndarray, dims: np.ndarray, start: int, stop: int):
    """Dimension 1, first pass, in memory order, over padded flat indices ``start..stop-1``.

    An edge whose oldest coface has it as its youngest face is an *apparent
    pair*: a persistence pair whatever the order of reduction (Bauer, Ripser).
    In a lower-star filtration both cells of an apparent pair share their top
    voxel, so the pair has zero length and is not reported: the pass only sets
    aside the edges that are not apparent. With the lexicographic cell order
    that is ~0.1% of the edges of a smooth volume; doing it in memory order
    rather than filtration order saves a cache miss per voxel, and the pass
    needs nothing from the others, so it runs on threads alongside them.

    Returns ``(rest, nrest)``: keys of the non-apparent edges for
    :func:`reduction_pass`, except each voxel's first lower edge, which always
    merges the voxel into an older component (a cleared column).
    """
    q1 = dims[1]
    q2 = dims[2]
    strides = np.array([q1 * q2, q2, 1], np.int64)
    offsets = np.array([-strides[0], strides[0], -strides[1], strides[1], -1, 1], np.int64)
    rest = np.empty(1024, np.int64)
    nrest = 0
    nrank = order.size
    lower_ranks = np.empty(6, np.int64)
    for x in range(start, stop):
        k = rank[x]
        if k < 0:
            continue
        first = -1  # the lower neighbour of smallest rank
        first_rank = nrank
        for c in range(6):
            ry = rank[x + offsets[c]]
            lower_ranks[c] = ry
            if 0 <= ry < first_rank and ry < k:
                first = c
                first_rank = ry
        for c in range(6):
            ry = lower_ranks[c]
            if ry < 0 or ry > k or c == first:
                continue
            key = (k * nrank + ry) * 32 + c
            tau = _oldest_coface(x, c, rank, strides, nrank)
            # apparent iff tau's top voxel is x and the edge is tau's youngest face
            if tau >= 0 and tau // (32 * nrank) == k and _youngest_facet_at(x, k, tau, rank, strides, nrank) == key:
                continue
            if nrest == rest.size:
                rest = _grow(rest, nrest)
            rest[nrest] = key
            nrest += 1
    return rest, nrest


@njit(nogil=True)
def _symdiff_into(x: np.ndarray, nx: int, y: np.ndarray, ny: int, out: np.ndarray) -> int:
    """Sorted symmetric difference (sum over Z/2) of two sorted key lists into
    ``out`` (large enough: ``nx + ny``); returns its length. No allocation: this
    runs for every column addition."""
    i = j = n = 0
    while i < nx and j < ny:
        if x[i] < y[j]:
            out[n] = x[i]
            i += 1
            n += 1
        elif y[j] < x[i]:
            out[n] = y[j]
            j += 1
            n += 1
        else:
            i += 1
            j += 1
    while i < nx:
        out[n] = x[i]
        i += 1
        n += 1
    while j < ny:
        out[n] = y[j]
        j += 1
        n += 1
    return n


@njit(nogil=True)
def reduction_pass(rest: np.ndarray, rank: np.ndarray, order: np.ndarray, dims: np.ndarray,
                   g: np.ndarray, negative: np.ndarray):
    """Dimension 1, second pass: the non-apparent columns, by decreasing key.

    ``rest``: keys from :func:`apparent_pass` (any order; cleared edges allowed,
    they are skipped). Returns ``(birth, death, n)`` like :func:`apparent_pass`.

    A square claimed by an apparent pair (its youngest edge, whose oldest
    coface it is) is recognised locally; only the other claims are stored, with
    their reduced column when it differs from the plain coboundary.
    """
    q1 = dims[1]
    q2 = dims[2]
    strides = np.array([q1 * q2, q2, 1], np.int64)
    h1b = np.empty(1024, np.int64)
    h1d = np.empty(1024, np.int64)
    n1 = 0
    cob2 = np.empty(4, np.int64)
    work = np.empty(64, np.int64)
    spare = np.empty(64, np.int64)
    claims = Dict.empty(key_type=types.int64, value_type=types.int64)
    slot_edge = np.empty(1024, np.int64)
    slot_start = np.empty(1024, np.int64)
    slot_len = np.empty(1024, np.int64)
    nslots = 0
    pool = np.empty(4096, np.int64)
    pool_n = 0
    nrank = order.size
    rest = np.sort(rest)[::-1]
    for key in rest:
        if negative[_edge_id(key, order, strides, nrank)]:
            continue  # cleared: this edge kills a component
        x = order[key // (32 * nrank)]
        nw = _coboundary(key, order, rank, strides, work, nrank)
        if nw == 0:
            continue  # essential class (does not occur on a padded grid)
        added = False
        while nw > 0:
            tau = work[0]
            owner = _youngest_facet(tau, order, rank, strides, nrank)
            m = 0
            if owner != key and not negative[_edge_id(owner, order, strides, nrank)]:
                m = _coboundary(owner, order, rank, strides, cob2, nrank)
                if m == 0 or cob2[0] != tau:
                    m = 0  # tau is not its owner's oldest coface: no apparent claim
            if m > 0:
                addend = cob2
            elif tau in claims:
                slot = claims[tau]
                if slot_start[slot] < 0:
                    m = _coboundary(slot_edge[slot], order, rank, strides, cob2, nrank)
                    addend = cob2
                else:
                    s0 = slot_start[slot]
                    m = slot_len[slot]
                    addend = pool[s0:s0 + m]
            else:
                break  # pivot unclaimed: the column is reduced
            if spare.size < nw + m:
                spare = np.empty(2 * (nw + m), np.int64)
            nw = _symdiff_into(work, nw, addend, m, spare)
            work, spare = spare, work
            added = True
        if nw == 0:
            continue  # essential (cannot happen on a padded grid)
        piv = work[0]
        if nslots == slot_edge.size:
            slot_edge = _grow(slot_edge, nslots)
            slot_start = _grow(slot_start, nslots)
            slot_len = _grow(slot_len, nslots)
        slot_edge[nslots] = key
        slot_start[nslots] = -1
        slot_len[nslots] = 0
        if added:
            while pool_n + nw > pool.size:
                pool = _grow(pool, pool_n)
            pool[pool_n:pool_n + nw] = work[:nw]
            slot_start[nslots] = pool_n
            slot_len[nslots] = nw
            pool_n += nw
        claims[piv] = nslots
        nslots += 1
        top = order[piv // (32 * nrank)]
        if g[x] != g[top]:
            if n1 == h1b.size:
                h1b = _grow(h1b, n1)
                h1d = _grow(h1d, n1)
            h1b[n1] = x
            h1d[n1] = top
            n1 += 1
    return h1b, h1d, n1


@njit(nogil=True)
def _grow(array: np.ndarray, used: int) -> np.ndarray:
    bigger = np.empty(max(2 * array.size, 16), array.dtype)
    bigger[:used] = array[:used]
    return bigger


@njit(nogil=True)
def padded_order(interior_order: np.ndarray, shape: np.ndarray, present_shell: bool):
    """Order and rank over the grid padded by two layers (see module docstring).

    ``interior_order``: the image's voxels (flat C indices) by increasing ``g``.
    With ``present_shell`` the inner padding layer comes first (at ``-inf``).
    Returns ``(order, rank, dims)`` with padded flat indices.
    """
    n0, n1, n2 = shape[0], shape[1], shape[2]
    d0, d1, d2 = n0 + 4, n1 + 4, n2 + 4
    dims = np.array([d0, d1, d2], np.int64)
    total = d0 * d1 * d2
    rank = np.full(total, -1, np.int32)
    nshell = (n0 + 2) * (n1 + 2) * (n2 + 2) - n0 * n1 * n2 if present_shell else 0
    order = np.empty(nshell + interior_order.size, np.int64)
    k = 0
    if present_shell:
        for i in range(1, d0 - 1):
            for j in range(1, d1 - 1):
                for ll in range(1, d2 - 1):
                    if i == 1 or i == d0 - 2 or j == 1 or j == d1 - 2 or ll == 1 or ll == d2 - 2:
                        q = (i * d1 + j) * d2 + ll
                        order[k] = q
                        rank[q] = k
                        k += 1
    for t in range(interior_order.size):
        x = interior_order[t]
        i = x // (n1 * n2)
        r = x - i * (n1 * n2)
        j = r // n2
        ll = r - j * n2
        q = ((i + 2) * d1 + j + 2) * d2 + ll + 2
        order[k] = q
        rank[q] = k
        k += 1
    return order, rank, dims


@njit(nogil=True)
def unpad(indices: np.ndarray, n: int, shape: np.ndarray) -> np.ndarray:
    """Padded flat indices (two layers) back to the image's flat C indices.

    The first ``n`` indices are converted, all of them when ``n < 0``.
    """
    d1 = shape[1] + 4
    d2 = shape[2] + 4
    if n < 0:
        n = indices.size
    out = np.empty(n, np.int64)
    for t in range(n):
        q = indices[t]
        ll = q % d2 - 2
        r = q // d2
        j = r % d1 - 2
        i = r // d1 - 2
        out[t] = (i * shape[1] + j) * shape[2] + ll
    return out
