"""Persistent homology of the super-level-set filtration of a probability map.

``topofix.persistence(prob)`` returns, for each homology dimension 0..d-1, the
bars of the filtration ``{prob >= t}`` as t goes from 1 down to 0, with the
*critical cells* of every bar: the voxel whose value is the bar's birth and the
voxel whose value is its death. Gradients of a topological loss reach the
network only through those voxels (:mod:`topofix.losses`).

Connectivity follows :mod:`topofix.topology.connectivity` (same convention as
``betti_numbers``): ``"full"`` is gudhi's ``top_dimensional_cells`` /
CubicalRipser's T-construction, ``"face"`` gudhi's ``vertices`` / V-construction.

How it is computed (all in numba, see ``bench/RESULTS.md`` for the figures):

* 2D maps: one numba call does everything (:mod:`topofix.topology._fast2d`):
  pixels are classified locally (regular, birth, possible merge) by a table
  look-up, and the union-finds below run on the possible merges only;
* voxels are ordered once by a radix sort of their float32 values;
* dimension 0 by union-find with the elder rule;
* dimension d-1 (holes in 2D, cavities in 3D) by union-find on the complement,
  processed in the reverse order, with the outside of the image as one
  component (Alexander duality);
* dimension 1 in 3D by persistent cohomology with clearing, apparent pairs found
  in memory order (:mod:`topofix.topology._reduction`); for ``"full"`` it runs on
  the complement, by duality.

Values are processed in float32 (what networks output); bars of zero length
(birth == death) are left out, as in gudhi.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from topofix.threads import get_threads
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY, check_connectivity


@dataclass(frozen=True)
class Diagram:
    """The bars of one homology dimension, longest first.

    Attributes
    ----------
    dim:
        Homology dimension (0 components, 1 loops, 2 cavities).
    birth, death:
        Bar ends in probability units (float64 arrays), ``birth >= death``; the
        essential class of dimension 0 has ``death = -inf``.
    birth_cell, death_cell:
        Flat (C-order) indices into the input of the voxels whose values are
        ``birth`` and ``death``; ``-1`` for the death of an essential class.
    """

    dim: int
    birth: np.ndarray
    death: np.ndarray
    birth_cell: np.ndarray
    death_cell: np.ndarray

    def __len__(self) -> int:
        return int(self.birth.size)

    @property
    def length(self) -> np.ndarray:
        """``birth - death`` (``inf`` for essential classes)."""
        return self.birth - self.death

    @property
    def essential(self) -> np.ndarray:
        """Boolean mask of the bars that never die."""
        return self.death_cell < 0

    def alive(self, t: float) -> int:
        """Number of bars alive at threshold ``t``: ``death < t <= birth``."""
        return int(np.count_nonzero((self.birth >= t) & (self.death < t)))

    def as_array(self) -> np.ndarray:
        """``(n, 2)`` array of ``(birth, death)``."""
        return np.stack([self.birth, self.death], axis=1)


@dataclass(frozen=True)
class Persistence:
    """Diagrams of dimensions ``0..ndim-1`` of one probability map (``None`` for a
    dimension left out with ``persistence(..., dims=...)``)."""

    diagrams: tuple[Diagram | None, ...]
    shape: tuple[int, ...]
    connectivity: str

    def __getitem__(self, dim: int) -> Diagram | None:
        return self.diagrams[dim]

    def __iter__(self):
        return iter(self.diagrams)

    def betti(self, t: float) -> tuple[int | None, ...]:
        """Betti numbers of ``{prob >= t}`` read from the diagrams."""
        return tuple(None if d is None else d.alive(t) for d in self.diagrams)


def _as_float32(prob: Any) -> np.ndarray:
    if hasattr(prob, "detach"):  # torch tensor, without importing torch
        prob = prob.detach().cpu().float().numpy()  # .float(): numpy has no bfloat16
    arr = np.ascontiguousarray(np.asarray(prob, dtype=np.float32))
    if arr.ndim not in (2, 3):
        raise ValueError(f"persistence needs a 2D or 3D map, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("persistence needs a non-empty map")
    if not np.isfinite(arr).all():
        raise ValueError("the map contains NaN or Inf values")
    return arr


def _diagram(dim: int, values: np.ndarray, births: np.ndarray, deaths: np.ndarray) -> Diagram:
    """Build a Diagram from critical cells, dropping zero-length bars, longest first."""
    births = births.astype(np.int64, copy=False)
    deaths = deaths.astype(np.int64, copy=False)
    b = values[births].astype(np.float64)
    d = np.where(deaths >= 0, values[np.maximum(deaths, 0)].astype(np.float64), -np.inf)
    keep = b != d
    b, d, births, deaths = b[keep], d[keep], births[keep], deaths[keep]
    order = np.lexsort((deaths, births, -(b - d)))  # longest first; ties by birth, then death cell
    return Diagram(dim, b[order], d[order], births[order], deaths[order])


def _essential(desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bar that never dies: born at the maximum (first in super-level order), death cell -1."""
    return np.array([desc[0]], np.int64), np.array([-1], np.int64)


def _wanted_dims(dims: Any, ndim: int) -> tuple[bool, ...]:
    """``dims`` (None, an int or ints) as one flag per dimension ``0..ndim-1``."""
    if dims is None:
        return (True,) * ndim
    chosen = {int(dims)} if np.isscalar(dims) else {int(k) for k in dims}
    if not chosen or not chosen <= set(range(ndim)):
        raise ValueError(f"dims must be a non-empty subset of 0..{ndim - 1}, got {dims!r}")
    return tuple(k in chosen for k in range(ndim))


def _persistence_2d(arr: np.ndarray, connectivity: str, wanted: tuple[bool, ...]) -> Persistence:
    """2D: one numba call (:mod:`topofix.topology._fast2d`) for ordering, both passes and sorting."""
    from topofix.topology._fast2d import persistence_2d

    ok, *bars = persistence_2d(arr.reshape(-1), arr.shape[0], arr.shape[1], connectivity == "full", *wanted)
    if not ok:
        raise ValueError("the map contains NaN or Inf values")
    h0 = Diagram(0, *bars[:4]) if wanted[0] else None
    h1 = Diagram(1, *bars[4:]) if wanted[1] else None
    return Persistence((h0, h1), arr.shape, connectivity)


def persistence_batch(
    probs: Any, connectivity: str = DEFAULT_CONNECTIVITY, *, workers: int | None = None, dims: Any = None
) -> list[Persistence]:
    """:func:`persistence` of every map of a batch (first axis), on all cores.

    ``dims`` is passed to :func:`persistence` (only those dimensions computed).

    The numba kernels release the GIL, so threads share the batch; for a batch
    of small 2D maps this is what makes persistence at every optimisation step
    cheap (``bench/RESULTS.md``).
    """
    if hasattr(probs, "detach"):
        probs = probs.detach().cpu().numpy()
    maps = list(probs)
    workers = workers or min(len(maps), get_threads())
    if workers <= 1 or len(maps) < 2:
        return [persistence(m, connectivity, dims=dims) for m in maps]
    chunks = np.array_split(np.arange(len(maps)), workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(lambda idx: [persistence(maps[i], connectivity, dims=dims) for i in idx], chunks)
        return [p for part in parts for p in part]


def persistence(prob: Any, connectivity: str = DEFAULT_CONNECTIVITY, *, dims: Any = None) -> Persistence:
    """Persistence diagrams of the super-level filtration of a 2D or 3D map.

    Parameters
    ----------
    prob:
        2D or 3D array or tensor (probabilities, or any finite real values).
    connectivity:
        ``"full"`` (default) or ``"face"``, as for :func:`topofix.betti_numbers`.
    dims:
        The homology dimensions to compute (an int or an iterable of ints in
        ``0..ndim-1``); ``None`` (default): all of them. A prior that only
        constrains some Betti numbers needs only those diagrams; the others
        are not computed (in 3D, leaving out dimension 1 skips the
        reduction, the most expensive pass) and come back as ``None``.
        The diagrams computed are exactly those of the full computation.

    Returns
    -------
    Persistence
        ``result[k]`` is the :class:`Diagram` of dimension ``k`` (``k < ndim``),
        or ``None`` for a dimension left out by ``dims``.
        For every threshold ``t``, ``result.betti(t) == betti_numbers(prob >= t)``
        (``None`` in the dimensions left out).

    Notes
    -----
    Essential classes: in a super-level filtration the whole image ends as one
    component, so exactly one bar never dies: the dimension-0 bar born at
    ``prob.max()``. It is reported with ``death = -inf`` and ``death_cell = -1``;
    the losses decide how to close it (see :mod:`topofix.losses`). No class of
    higher dimension is essential (the image is contractible).
    """
    check_connectivity(connectivity)
    arr = _checked_map(prob)
    wanted = _wanted_dims(dims, arr.ndim)
    if arr.ndim == 2:
        return _persistence_2d(arr, connectivity, wanted)
    return _persistence_3d(arr, connectivity, wanted)


def _checked_map(prob: Any) -> np.ndarray:
    """``prob`` as a non-empty 2D or 3D float32 array (finite, see below), without a copy in the common case.

    A C-contiguous 2D float32 array (a slice of a float32 map, what the losses pass at every step)
    is used as it is: its finiteness is checked by the 2D kernel, so that no pass over it is added.
    """
    if type(prob) is np.ndarray and prob.dtype == np.float32 and prob.ndim == 2 and prob.flags.c_contiguous:
        if prob.size == 0:
            raise ValueError("persistence needs a non-empty map")
        return prob
    return _as_float32(prob)


@dataclass
class _Passes3D:
    """The raw pairs the 3D passes give, as cell indices of the unpadded map (``None``: pass skipped).

    ``young``/``merge`` (``n`` pairs): the separate union-find; ``low_b``/``low_d``: the
    V-construction's union-find; ``loop_a``/``loop_b``: the apparent and reduction passes.
    """

    young: Any = None
    merge: Any = None
    n: int = 0
    low_b: Any = None
    low_d: Any = None
    loop_a: Any = None
    loop_b: Any = None


def _persistence_3d(arr: np.ndarray, connectivity: str, wanted: tuple[bool, ...]) -> Persistence:
    """The 3D diagrams: the passes the wanted dimensions need (:func:`_passes_3d`), read as diagrams.

    "full" and "face" read the same passes dually: what one reads as components, the other
    reads as cavities of the complement.
    """
    from topofix.topology._kernels import radix_order

    full = connectivity == "full"
    flat = arr.ravel()
    desc = radix_order(flat, True)  # super-level order
    asc = desc[::-1].copy()  # increasing values: the complement's order
    essential = _essential(desc)
    passes = _passes_3d(arr, desc, asc, full, wanted)
    if full:
        diagrams = _diagrams_full(flat, passes, essential, wanted)
    else:
        diagrams = _diagrams_face(flat, passes, essential, wanted)
    return Persistence(diagrams, arr.shape, connectivity)


def _passes_3d(arr: np.ndarray, desc: np.ndarray, asc: np.ndarray, full: bool,
               wanted: tuple[bool, ...]) -> _Passes3D:
    """Run the passes the wanted dimensions need, two at a time.

    The V-construction of g on a padded grid: g = p with a present shell (the complement of the
    super-level set, "full") or g = -p ("face"). The union-find passes and the apparent-pair pass
    are independent: two threads share them (the numba kernels release the GIL). Passes that no
    wanted dimension needs are skipped: the separate union-find gives dimension 0 ("full") or 2
    ("face"); the V-construction's union-find gives the other one and clears dimension 1; the
    apparent and reduction passes give dimension 1.
    """
    from topofix.topology import _reduction as red

    shape = np.array(arr.shape, np.int64)
    want_loops = wanted[1]
    want_separate = wanted[0] if full else wanted[2]
    want_components = want_loops or (wanted[2] if full else wanted[0])
    out = _Passes3D()
    rank = order = grid = g = negative = None
    n0 = 0
    if want_components:
        order, rank, grid, g = _v_construction(arr, asc if full else desc, shape, full)
    workers = min(2, get_threads())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        separate = pool.submit(_separate_pass, desc, asc, shape, full) if want_separate else None
        components = pool.submit(red.components_pass, rank, order, grid, g) if want_components else None
        if want_loops:
            rest = _apparent_pairs(pool, workers, rank, order, grid, g)
        if components is not None:
            negative, out.low_b, out.low_d, n0 = components.result()
        if separate is not None:
            out.young, out.merge, out.n = separate.result()
    if want_loops:
        loop_a, loop_b, n1 = red.reduction_pass(rest, rank, order, grid, g, negative)
        out.loop_a = red.unpad(loop_a, n1, shape)
        out.loop_b = red.unpad(loop_b, n1, shape)
    if want_components:
        out.low_b = red.unpad(out.low_b, n0, shape)
        out.low_d = red.unpad(out.low_d, n0, shape)
    return out


def _v_construction(arr: np.ndarray, order_of: np.ndarray, shape: np.ndarray, full: bool):
    """(order, rank, grid, g): the padded grid's cell order and the flat padded map g (see
    :func:`_passes_3d`), built once and shared by the passes that need it."""
    from topofix.topology import _reduction as red

    order, rank, grid = red.padded_order(order_of, shape, full)
    g = np.full(tuple(grid), -np.inf, np.float32)
    g[2:-2, 2:-2, 2:-2] = arr if full else -arr
    return order, rank, grid, g.ravel()


def _separate_pass(desc: np.ndarray, asc: np.ndarray, shape: np.ndarray, full: bool):
    """The separate union-find, through shared corners (26 neighbours, faster than face pairs):
    "full": the components; "face": the cavities (the complement's components, with the outside)."""
    from topofix.topology._kernels import union_find_corners

    return union_find_corners(desc, shape, False) if full else union_find_corners(asc, shape, True)


def _apparent_pairs(pool: ThreadPoolExecutor, workers: int, rank, order, grid, g) -> np.ndarray:
    """The apparent-pair pass in ``4 * workers`` chunks on ``pool``; the cells it leaves unpaired,
    in order (what the reduction pass works on)."""
    from topofix.topology import _reduction as red

    bounds = np.linspace(0, g.size, 4 * workers + 1).astype(np.int64)
    chunks = [pool.submit(red.apparent_pass, rank, order, grid, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    return np.concatenate([c.result()[0][: c.result()[1]] for c in chunks])


def _diagrams_full(flat: np.ndarray, p: _Passes3D, essential: tuple[np.ndarray, np.ndarray],
                   wanted: tuple[bool, ...]) -> tuple[Diagram | None, ...]:
    """Connectivity "full": components from the separate pass (plus the essential bar), loops and
    cavities dually from the complement (its deaths are our births)."""
    essential_b, essential_d = essential
    h0 = h1 = h2 = None
    if wanted[0]:
        h0 = _diagram(0, flat, np.concatenate([p.young[:p.n], essential_b]),
                      np.concatenate([p.merge[:p.n], essential_d]))
    if wanted[1]:
        h1 = _diagram(1, flat, p.loop_b, p.loop_a)  # dual: the complement's death is our birth
    if wanted[2]:
        h2 = _diagram(2, flat, p.low_d, p.low_b)
    return h0, h1, h2


def _diagrams_face(flat: np.ndarray, p: _Passes3D, essential: tuple[np.ndarray, np.ndarray],
                   wanted: tuple[bool, ...]) -> tuple[Diagram | None, ...]:
    """Connectivity "face": components from the V-construction of -p (plus the essential bar),
    loops from the reduction, cavities from the separate pass on the complement."""
    essential_b, essential_d = essential
    h0 = h1 = h2 = None
    if wanted[0]:
        h0 = _diagram(0, flat, np.concatenate([p.low_b, essential_b]), np.concatenate([p.low_d, essential_d]))
    if wanted[1]:
        h1 = _diagram(1, flat, p.loop_a, p.loop_b)
    if wanted[2]:
        h2 = _diagram(2, flat, p.merge[:p.n], p.young[:p.n])
    return h0, h1, h2
