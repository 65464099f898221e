"""How many CPU threads topofix uses: torch's intra-op threads and the persistence kernels', together.

Why one setting: a correction step runs the network (torch's thread pool) and then the
persistence (numba kernels on a thread pool); both default to every core. On a machine
another job shares, or with several topofix workers, that oversubscribes the cores and
torch's threads spin-wait on each other: on the 2-core project machine, with another
process busy on one core, ``topofix correct`` on the 27 sample scans took 35.5 s with 2
threads against 7.9 s with 1 (2026-11-29; the issue that asked for this measured 25.8 s
against 4.6 s). The default is therefore a *share* of the cores this process may use
(its CPU affinity, which containers and SLURM restrict): ``cores // workers``, at most
:data:`DEFAULT_CAP` (small 2D networks gain nothing from more; large 3D networks on an
idle machine may, with ``--threads``).
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_CAP", "available_cores", "default_threads", "get_threads", "set_threads"]

DEFAULT_CAP = 4
_threads: int | None = None


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(workers: int = 1) -> int:
    """``available_cores() // workers``, between 1 and :data:`DEFAULT_CAP`."""
    return max(1, min(DEFAULT_CAP, available_cores() // max(1, workers)))


def set_threads(threads: int | None = None, *, workers: int = 1) -> int:
    """Use ``threads`` CPU threads for the network and the persistence kernels (``None``: the default
    share of :func:`default_threads`); returns the number set."""
    n = int(threads) if threads else default_threads(workers)
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    global _threads
    _threads = n
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        import numba

        numba.set_num_threads(min(n, int(getattr(numba.config, "NUMBA_NUM_THREADS", n))))
    except (ImportError, ValueError):
        pass
    return n


def get_threads() -> int:
    """The threads the persistence kernels may use: the last :func:`set_threads`, else every core."""
    return _threads or available_cores()
