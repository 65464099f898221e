"""A batch on a Dask distributed cluster (``--cluster ADDRESS`` / ``--cluster local:N``).

Why Dask: it is pure Python and a light install (``pip install topofix[distributed]``), and its
scheduler/worker model is what imaging pipelines already run on hospital and university clusters:
dask-jobqueue starts workers as SLURM/PBS/SGE jobs, dask-kubernetes on Kubernetes. Ray would bring a
much heavier runtime, and its strength (GPU-aware scheduling of fractional resources) is not needed
here: each task is one whole scan.

How a batch runs there (:func:`run_on_cluster`): this process keeps everything that must happen once
(discovery, naming, the folder lock, the journal, the report); the workers run cases. Each case is
one task: a picklable runner (:mod:`topofix.files`) that loads the network from the model's *path*
once per worker process, reads the input and writes its outputs atomically (hidden temporary, read
back, rename), and returns its record; this process journals it the moment it arrives. The workers
therefore need the inputs, the model and the output folder at the same paths (a shared file system).

A worker that dies (killed, out of memory, its node lost) loses its task; the scheduler reschedules
it on another worker, up to ``distributed.scheduler.allowed-failures`` deaths (3 by default; 2 on a
``local:N`` cluster), after which that case fails alone with one line. Dask's ``retries=`` would add
nothing here: it reruns a task that *raised*, and a case never raises (every error is its record).
A rerun may replace what its killed attempt had already put in place: the case was cleared to be
written before it was submitted.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any

from topofix.errors import TopofixError, exception_line

__all__ = ["INSTALL_HINT", "LOCAL_ALLOWED_FAILURES", "check_cluster_address", "connect", "run_on_cluster"]

INSTALL_HINT = "--cluster needs Dask: pip install 'topofix[distributed]'"
LOCAL_ALLOWED_FAILURES = 2
"""Worker deaths a case may cause on a ``local:N`` cluster before it fails alone (a scan that kills
every worker that takes it must not take the whole batch down with it)."""


def _local_workers(address: str) -> int | None:
    if not address.lower().startswith("local"):
        return None
    _, _, count = address.partition(":")
    try:
        n = int(count) if count else 2
    except ValueError:
        raise TopofixError(f"--cluster {address!r}: expected local:N (N worker processes) or a scheduler "
                           "address such as tcp://scheduler:8786") from None
    if n < 1:
        raise TopofixError(f"--cluster {address!r}: N must be at least 1")
    return n


def check_cluster_address(address: str) -> None:
    """One-line TopofixError for a malformed address or a missing Dask (before any work)."""
    _local_workers(address)
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise TopofixError(INSTALL_HINT) from None


def connect(address: str, threads: int | None = None) -> tuple[Any, Any, int | None]:
    """(client, local cluster or None, threads per case) for ``tcp://host:port`` or ``local:N``.

    ``local:N``: N worker processes of one task each on this machine, each case with ``threads``
    threads (default: a share of this machine's cores). A scheduler address: ``threads`` as given, or
    each worker's share of its own machine (decided on the worker).
    """
    check_cluster_address(address)
    import dask
    from distributed import Client, LocalCluster

    n = _local_workers(address)
    if n is not None:
        from topofix.threads import default_threads

        try:
            with dask.config.set({"distributed.scheduler.allowed-failures": LOCAL_ALLOWED_FAILURES}):
                cluster = LocalCluster(n_workers=n, processes=True, threads_per_worker=1, dashboard_address=None,
                                       silence_logs=logging.ERROR)
        except (OSError, RuntimeError, TimeoutError) as exc:  # the workers are spawned: they re-import __main__
            reason = exception_line(exc, line="all", limit=200, mark=False)
            raise TopofixError(f"--cluster {address}: the worker processes did not start ({reason}); "
                               "from a Python script, call it under if __name__ == '__main__':") from None
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
        return client, cluster, threads or default_threads(n)
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        reason = exception_line(exc, line="all", limit=200, mark=False)
        raise TopofixError(f"--cluster {address}: cannot reach the Dask scheduler ({reason})") from None
    return client, None, threads


def _run_case(task: Any, process: Any, threads: int | None) -> Any:
    """On a worker: one case with a share of its machine's threads (the batch's :func:`_execute`)."""
    from topofix.batch import _execute
    from topofix.threads import default_threads, set_threads

    if threads is None:
        try:
            from distributed import get_worker

            slots = get_worker().state.nthreads
        except (ImportError, ValueError, AttributeError):
            slots = 1
        threads = default_threads(slots)
    set_threads(threads)
    return _execute(task, process)


def portable(process: Any) -> Any:
    """The case function as it can travel to a worker (runners drop their in-memory network)."""
    make = getattr(process, "portable", None)
    return make() if callable(make) else process


def run_on_cluster(client: Any, threads: int | None, cases: Any, process: Any, report: Any) -> None:
    """The cases (a batch's ``_Cases``) as Dask tasks; journaled here as they complete, reported in
    input order.

    At most twice the cluster's task slots are in flight (refreshed as workers come and go), so that
    an interrupt leaves few cases journaled as started. On SIGINT/SIGTERM the futures are cancelled
    (cases already running on a remote worker may still finish there, unjournaled: ``--skip-existing``
    redoes them) and the exception goes on to the caller.
    """
    from distributed import as_completed

    pending: dict[Any, int] = {}
    queue = list(enumerate(cases.items))
    completed = as_completed()
    try:
        _refill(client, threads, cases, process, queue, pending, completed)
        for future in completed:
            index = pending.pop(future)
            cases.finish(index, _task_record(cases, index, future))
            _refill(client, threads, cases, process, queue, pending, completed)
    except BaseException:
        try:
            client.cancel(list(pending))
        except Exception:  # noqa: BLE001, S110 - the client may already be gone
            pass
        cases.report_to(report)
        raise
    cases.report_to(report)


def _capacity(client: Any) -> int:
    """How many tasks may be in flight: twice the cluster's task slots now (workers come and go)."""
    try:
        slots = sum(client.nthreads().values())
    except Exception:  # noqa: BLE001 - the scheduler is busy: keep the current bound
        slots = 1
    return max(2, 2 * slots)


def _refill(client: Any, threads: int | None, cases: Any, process: Any, queue: list[tuple[int, Any]],
            pending: dict[Any, int], completed: Any) -> None:
    """Admit and submit queued cases until the cluster's capacity is in flight."""
    limit = _capacity(client)
    while queue and len(pending) < limit:
        index, item = queue.pop(0)
        admitted = cases.admit(index, item)
        if admitted is None:
            continue
        # cleared to be written: a rerun after a killed attempt may replace that attempt's outputs
        task = dataclasses.replace(admitted, may_overwrite=True)
        future = client.submit(_run_case, task, process, threads, pure=False,
                               key=f"topofix-case-{index}-{uuid.uuid4().hex}")
        pending[future] = index
        completed.add(future)


def _task_record(cases: Any, index: int, future: Any) -> Any:
    """The record a finished task returned, or the case's one-line error when the task failed
    (KilledWorker: it died too often; a lost scheduler...); the future is released either way."""
    try:
        record = future.result()
    except Exception as exc:  # noqa: BLE001 - KilledWorker (it died too often), a lost scheduler...
        reason = exception_line(exc, line="all", limit=200, mark=False)
        record = cases.failed(index, f"the Dask task failed ({type(exc).__name__}: {reason})")
    future.release()
    return record
