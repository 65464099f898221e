"""The batch engine of ``predict`` and ``correct``: many scans, one output folder, nothing lost.

Why one engine: an unattended pipeline must be able to trust a batch whatever
happens around the work: a full disk, two inputs with the same file name, a
network that outputs NaN, ``docker stop``, a second run on the same folder, a
resume after a crash. Every one of those was once handled (or not) separately
by each command. Here they are handled once:

* **Discovery and naming**: :func:`topofix.inputs.expand_inputs`, then
  :func:`topofix.outputs.plan_outputs` (distinct outputs for distinct inputs).
* **Checked up front**: the output folder is created and written to, the
  report paths are checked, the model is loaded, before the first scan.
* **One lock per folder, one journal**: :mod:`topofix.journal`. Each case is
  journaled the moment it finishes; an interrupt loses at most the case in
  progress.
* **Resume** (``resume=True``, CLI ``--skip-existing``): a case is carried
  forward only if its journal entry is ``done`` under the same fingerprint
  (model content hash, priors, settings) and its outputs read back; outputs of
  another run are refused (``--overwrite`` redoes them); outputs of this
  fingerprint's interrupted case are redone.
* **A case fails alone**: any error (unreadable input, the network failing or
  producing NaN, a write that does not read back) fails that case with one line
  and the batch goes on.
* **Interrupts**: SIGINT and SIGTERM stop after journaling what finished; the
  report of the finished cases is written and :attr:`BatchReport.interrupted`
  says which signal.

Exit status (:attr:`BatchReport.exit_status`): 0 every case succeeded (and,
for ``correct``, meets its prior), 1 some case does not meet its prior, 2 some
case failed, 130 / 143 interrupted by SIGINT / SIGTERM.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from topofix._version import __version__
from topofix.errors import OutputError, TopofixError, exception_line, with_path
from topofix.journal import FolderLock, Journal, file_sha256, fingerprint, remove_stale_temporaries
from topofix.outputs import CaseOutputs, plan_outputs, shard_suffix

__all__ = ["BatchReport", "CaseRecord", "Interrupted", "RunInfo", "parse_shard", "report_from_journals", "run_batch", "shard_suffix"]


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived: stop after journaling what finished."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class CaseRecord:
    """One input's outcome in a batch.

    ``status``: ``done`` (processed now), ``resumed`` (carried forward from the
    journal of an earlier run with the same fingerprint) or ``error``.
    ``result``: the command's own record (for ``correct`` a
    :class:`topofix.correction.CaseReport` as a dict; for ``predict`` the labels
    present and the warnings).
    """

    path: str
    key: str
    status: str
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "resumed")

    @property
    def outcome(self) -> str:
        """``corrected``, ``already met``, ``not met``, ``error`` (``predict``: ``done``); the one place
        a case is classified, for the summary line, the tables and the HTML report."""
        if not self.ok:
            return "error"
        if self.met is None:
            return "done"
        if not self.met:
            return "not met"
        return "already met" if self.result.get("met_before") else "corrected"

    @property
    def met(self) -> bool | None:
        """Whether the case meets its prior afterwards (``None``: no prior, or not processed)."""
        value = self.result.get("met_after")
        return None if value is None or not self.ok else bool(value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseRecord:
        return cls(**{k: data[k] for k in ("path", "key", "status", "outputs", "seconds", "error", "result")
                      if k in data})

    @classmethod
    def from_flat(cls, data: dict[str, Any]) -> CaseRecord:
        """A case of the JSON report (:func:`_flat_case`) back into a record.

        Reports written before the batch engine said ``processed`` (now ``done``)."""
        batch = {"path", "key", "status", "outputs", "error"}
        status = str(data.get("status") or "done")
        status = {"processed": "done"}.get(status, status)
        path = str(data.get("path", ""))
        return cls(path, str(data.get("key") or os.path.basename(path)), status, list(data.get("outputs") or []),
                   float(data.get("seconds") or 0.0), data.get("error"),
                   {k: v for k, v in data.items() if k not in batch})


@dataclass
class RunInfo:
    """What decides a batch's results, recorded in the journal and the report."""

    tool: str
    model_path: str
    model_sha256: str
    priors: list[str]
    settings: dict[str, Any]
    version: str = __version__
    started: str = ""

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.describe())


@dataclass
class BatchReport:
    """The typed report of a batch: the run, every case, and how it ended."""

    run: RunInfo
    cases: list[CaseRecord] = field(default_factory=list)
    interrupted: str | None = None
    finished: str = ""
    journal: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseRecord]:
        return [c for c in self.cases if c.status == "error"]

    @property
    def not_met(self) -> list[CaseRecord]:
        return [c for c in self.cases if c.met is False]

    @property
    def exit_status(self) -> int:
        if self.interrupted:
            return 128 + int(signal.Signals[self.interrupted])
        if self.failed:
            return 2
        return 1 if self.not_met else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": f"topofix {self.run.tool}",
            "version": self.run.version,
            "model": self.run.model_path,
            "model_sha256": self.run.model_sha256,
            "priors": self.run.priors,
            "settings": self.run.settings,
            "started": self.run.started,
            "finished": self.finished,
            "interrupted": self.interrupted,
            "exit_status": self.exit_status,
            "journal": self.journal,
            "summary": self.summary(),
            "cases": [_flat_case(c) for c in self.cases],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchReport:
        """A JSON report (:meth:`to_dict`) back into the typed report (for ``topofix report``)."""
        tool = str(data.get("tool") or "topofix correct").replace("topofix ", "", 1)
        run = RunInfo(tool, str(data.get("model") or ""), str(data.get("model_sha256") or ""),
                      list(data.get("priors") or []), dict(data.get("settings") or {}),
                      str(data.get("version") or __version__), str(data.get("started") or ""))
        cases = [CaseRecord.from_flat(c) for c in data.get("cases") or [] if isinstance(c, dict)]
        return cls(run, cases, data.get("interrupted"), str(data.get("finished") or ""), str(data.get("journal") or ""))

    def outcome_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for case in self.cases:
            counts[case.outcome] = counts.get(case.outcome, 0) + 1
        return counts

    def summary(self) -> dict[str, int]:
        done = [c for c in self.cases if c.ok]
        return {
            "scans": len(self.cases),
            "processed": sum(c.status == "done" for c in self.cases),
            "resumed": sum(c.status == "resumed" for c in self.cases),
            "failed": len(self.failed),
            "met_before": sum(bool(c.result.get("met_before")) for c in done),
            "met_after": sum(c.met is True for c in done),
            "not_met": len(self.not_met),
        }


def _flat_case(case: CaseRecord) -> dict[str, Any]:
    """A case as the JSON report shows it: the command's record with the batch's fields on top."""
    data = dict(case.result)
    data.update({"path": case.path, "key": case.key, "status": case.status, "outputs": case.outputs,
                 "error": case.error})
    data.setdefault("seconds", case.seconds)
    return data


# ----------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------
CaseFunction = Callable[[str, CaseOutputs, bool, "list[Path]"], "dict[str, Any]"]
"""``(input path, where its outputs go, overwrite, written) -> result record``; every file is appended
to ``written`` as soon as it is in place, so that a case failing half-way leaves none of its outputs."""


def check_output_folder(folder: Path) -> None:
    """Create ``folder`` and prove it is writable, before any work (one-line OutputError otherwise)."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(folder, "is a file, expected an output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".topofix-probe-{os.getpid()}.tmp"
        with open(probe, "wb") as handle:
            handle.write(b"ok")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        raise OutputError(folder, f"cannot write in the output folder: {exc.strerror or exc}") from None


def check_report_path(path: Path, overwrite: bool) -> None:
    """A report path must be a file name in a folder that exists or can be made (checked up front)."""
    if path.is_dir():
        raise OutputError(path, "is a folder, expected a file name")
    parent = path.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputError(path, f"cannot be written: {ancestor} is a file")
            if not os.access(ancestor, os.W_OK):
                raise OutputError(path, f"cannot be written: {ancestor} is not writable")
            break


def model_identity(path: str | os.PathLike[str] | None) -> tuple[str, str]:
    """(path, sha256) of a model file; an in-memory model is ``("<module>", "")``."""
    if path is None:
        return "<module>", ""
    return os.fspath(path), file_sha256(path)


def outputs_read_back(paths: Iterable[str]) -> str | None:
    """``None`` if every output reads back completely, else a one-line reason (resume's check)."""
    from topofix.dicom_seg import is_seg_path, verify_seg_file
    from topofix.io import verify_image_file

    for p in paths:
        problem = verify_seg_file(p) if is_seg_path(p) else verify_image_file(p)
        if problem:
            return f"{p}: {problem}"
    return None


def run_batch(
    run: RunInfo,
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    process: CaseFunction,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_case: Callable[[CaseRecord], None] | None = None,
    on_start: Callable[[str, int, int], None] | None = None,
    expand: Callable[[list[str]], list[Any]] | None = None,
    output_name: Callable[[str], str] | None = None,
    shard: tuple[int, int] | None = None,
    workers: int = 1,
    threads: int | None = None,
    cluster: str | None = None,
) -> BatchReport:
    """Run ``process`` on every input, journaled, under the output folder's lock.

    ``on_start(path, index, total)`` and ``on_case(record)`` let a caller show
    progress. ``expand`` turns the inputs into items (default
    :func:`topofix.inputs.expand_inputs`), ``output_name`` names an input's mask
    (default: the input's name). ``workers > 1``: that many cases at once in forked
    processes with ``threads`` threads each (default: a share of the cores), outputs identical
    to a sequential run's; the journal is written by this process only. ``cluster``: the cases run
    as tasks on a Dask cluster (``"tcp://scheduler:8786"``, or ``"local:N"`` for N worker processes
    here; :mod:`topofix.cluster`), journaled by this process; the workers need the inputs, the model
    and ``output`` at the same paths. Errors of one case never stop the batch; SIGINT/SIGTERM do, after
    journaling, and are reported in :attr:`BatchReport.interrupted`.
    """
    from topofix.inputs import expand_inputs

    if cluster is not None:
        process = _cluster_process(cluster, process, workers, shard)
    folder = Path(output)
    check_output_folder(folder)
    items = (expand or expand_inputs)([os.fspath(i) for i in inputs])
    # names are planned over every input, so that shards agree on them; then this shard's part
    plans = plan_outputs([i.path for i in items if i.error is None], folder, output_name)
    if shard is not None:
        items = items[shard[0]::shard[1]]
    _refuse_overwriting_inputs(items, plans, folder)
    run.started = run.started or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report = BatchReport(run)
    suffix = "" if shard is None else shard_suffix(shard)
    journal = Journal(folder, suffix)
    report.journal = str(journal.path)
    client = local_cluster = None
    with FolderLock(folder, suffix), _signals_raise():
        if cluster is not None:  # connected under the lock, before the run is journaled
            from topofix.cluster import connect

            client, local_cluster, threads = connect(cluster, threads)
        if shard is None:  # shards share the folder: another shard's temporaries may be in flight
            remove_stale_temporaries(folder)
        fp = run.fingerprint
        previous = _open_run(journal, run, fp, folder)
        run_offset = journal.size()
        cases = _Cases(items, plans, previous, journal, fp, resume, overwrite, on_start, on_case)
        try:
            _dispatch(cases, process, report, client, workers, threads)
        except (Interrupted, KeyboardInterrupt) as stop:
            report.interrupted = stop.args[0] if isinstance(stop, Interrupted) else "SIGINT"
            _add_journaled(report, journal, run_offset)
        finally:
            if client is not None:
                _end_cluster(client, local_cluster, report, folder)
    report.finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return report


def _cluster_process(cluster: str, process: CaseFunction, workers: int,
                     shard: tuple[int, int] | None) -> CaseFunction:
    """The case function as it travels to a cluster, after the checks a cluster run needs up front.

    Everything is refused before any work (and before the folder is locked): a conflicting option,
    a malformed address, or an in-memory model that cannot reach a worker (``ValueError``).
    """
    from topofix.cluster import check_cluster_address, portable

    if workers > 1:
        raise ValueError("--workers and --cluster: choose one (--cluster local:N runs N worker processes)")
    if shard is not None:
        raise ValueError("--shard and --cluster: choose one (a cluster takes the whole batch)")
    check_cluster_address(cluster)
    return portable(process)


def _refuse_overwriting_inputs(items: Sequence[Any], plans: dict[str, CaseOutputs], folder: Path) -> None:
    """An output folder that holds an input whose output would replace it is refused before any work:
    the batch would destroy what it reads."""
    for item in items:
        plan = plans.get(item.path)
        if plan is not None and _same_file(plan.mask, item.path):
            raise OutputError(folder, f"holds the input {plan.key}, which its output would overwrite; "
                                      "choose another output folder")


def _open_run(journal: Journal, run: RunInfo, fp: str, folder: Path) -> dict[str, Any]:
    """Journal the start of this run; returns the journal's last entry per case (what resume reads).

    A folder whose last run is of the other tool (``predict`` vs ``correct``) is refused: one
    output folder, one tool.
    """
    earlier = journal.runs()
    if earlier and earlier[-1].get("run", {}).get("tool") not in (None, run.tool):
        raise OutputError(folder, f"holds a topofix {earlier[-1]['run']['tool']} run; "
                                  f"use another output folder for {run.tool}")
    previous = journal.last_entries()
    journal.append({"event": "run", "fingerprint": fp, "run": run.describe()})
    return previous


def _dispatch(cases: _Cases, process: CaseFunction, report: BatchReport, client: Any, workers: int,
              threads: int | None) -> None:
    """Run the cases the way the batch asked for: on a Dask cluster, on forked workers, or here."""
    if client is not None:
        from topofix.cluster import run_on_cluster

        run_on_cluster(client, threads, cases, process, report)
    elif workers > 1 and len(cases.items) > 1:
        from topofix.threads import default_threads

        _run_parallel(cases, process, workers, threads or default_threads(workers), report)
    else:
        _run_sequential(cases, process, report)


def _end_cluster(client: Any, local_cluster: Any, report: BatchReport, folder: Path) -> None:
    """Close the cluster connection, then remove what a killed worker's attempt left in the folder.

    Only when no task can be in flight any more: the local cluster is stopped, or the run was not
    interrupted (an interrupted remote task may still be writing its temporaries).
    """
    _close_cluster(client, local_cluster)
    if local_cluster is not None or not report.interrupted:
        remove_stale_temporaries(folder)


@dataclass
class _Task:
    """A case cleared to run: where its outputs go and whether it may replace them."""

    item: Any
    plan: CaseOutputs
    may_overwrite: bool


def _prepare(item, plans, previous, fp: str, resume: bool, overwrite: bool) -> CaseRecord | _Task:
    """A final record (input error, resumed, refused), or the task to run."""
    if item.error is not None:
        return CaseRecord(item.path, os.path.basename(item.path), "error", error=str(item.error))
    plan: CaseOutputs = plans[item.path]
    before = previous.get(plan.key)
    same_run = before is not None and before.fingerprint == fp
    # this fingerprint's own outputs that may be replaced: an interrupted or failed case, or (resuming) a
    # "done" case whose outputs no longer read back
    ours = same_run and before.event in ("start", "error")
    if resume and same_run and before.event == "done":
        kept = CaseRecord.from_dict(before.case)
        if outputs_read_back(kept.outputs) is None:
            kept.status = "resumed"
            return kept
        ours = True  # journaled as done, but an output is gone or broken: redo it
    if plan.mask.exists() and not overwrite and not ours:
        hint = ("it was written by a run with another model, prior or settings (or by something else)"
                if resume else "it already exists")
        return CaseRecord(item.path, plan.key, "error",
                          error=f"{plan.mask}: {hint}; use --overwrite to redo it")
    return _Task(item, plan, overwrite or ours)


def _execute(task: _Task, process: CaseFunction) -> CaseRecord:
    """Run one case; every error becomes the case's one-line error (outputs of a failed case removed)."""
    item, plan = task.item, task.plan
    started = time.perf_counter()
    written: list[Path] = []
    try:
        try:
            result = process(item.path, plan, task.may_overwrite, written)
        except BaseException:
            _remove(written)  # a failed or interrupted case leaves none of its outputs behind
            raise
        return CaseRecord(item.path, plan.key, "done", [str(p) for p in written],
                          round(time.perf_counter() - started, 3), None, result)
    except TopofixError as error:
        message = str(error) if isinstance(error, OutputError) else with_path(str(error), item.path, anywhere=True)
        return CaseRecord(item.path, plan.key, "error", seconds=round(time.perf_counter() - started, 3),
                          error=message)
    except MemoryError:
        return CaseRecord(item.path, plan.key, "error", error=f"{item.path}: out of memory")
    except Exception as exc:  # a bug or the user's model: one line for the user, the trace in the journal
        return CaseRecord(item.path, plan.key, "error",
                          error=f"{item.path}: internal error ({type(exc).__name__}: {_internal_reason(exc)})",
                          result={"traceback": traceback.format_exc(limit=20)})


def _finish(record: CaseRecord, journal: Journal, fp: str) -> CaseRecord:
    """Journal the case's outcome; a result that cannot be journaled is not trusted nor left behind."""
    try:
        journal.append({"event": record.status, "key": record.key, "fingerprint": fp, "case": record.to_dict()})
    except OutputError as error:
        _remove([Path(p) for p in record.outputs])
        return CaseRecord(record.path, record.key, "error", [], record.seconds, str(error))
    return record


def _admit(item, plans, previous, journal: Journal, fp: str, resume: bool, overwrite: bool) -> CaseRecord | _Task:
    """:func:`_prepare` a case and, when it is to run, journal its start (every way of running uses this)."""
    prepared = _prepare(item, plans, previous, fp, resume, overwrite)
    if isinstance(prepared, _Task):
        journal.append({"event": "start", "key": prepared.plan.key, "fingerprint": fp, "path": item.path})
    return prepared


@dataclass
class _Cases:
    """A batch's cases as every way of running them sees them (here, forked workers, a cluster).

    What a case is admitted against (plans, the previous journal entries, the fingerprint) and where
    its outcome goes (the journal, the caller's callbacks, the report in input order) are the same
    however it runs; only the runners differ in how they execute the admitted tasks.
    """

    items: list[Any]
    plans: dict[str, CaseOutputs]
    previous: dict[str, Any]
    journal: Journal
    fp: str
    resume: bool
    overwrite: bool
    on_start: Callable[[str, int, int], None] | None
    on_case: Callable[[CaseRecord], None] | None
    records: dict[int, CaseRecord] = field(default_factory=dict)

    def admit(self, index: int, item: Any) -> _Task | None:
        """Announce case ``index`` and clear it to run (:func:`_admit`); ``None``: it is not to run,
        and its final record (input error, resumed, refused) is already recorded."""
        if self.on_start is not None:
            self.on_start(item.path, index, len(self.items))
        admitted = _admit(item, self.plans, self.previous, self.journal, self.fp, self.resume, self.overwrite)
        if isinstance(admitted, CaseRecord):
            self.record(index, admitted)
            return None
        return admitted

    def finish(self, index: int, record: CaseRecord) -> None:
        """Journal the outcome of a case that ran (:func:`_finish`) and record it."""
        self.record(index, _finish(record, self.journal, self.fp))

    def record(self, index: int, record: CaseRecord) -> None:
        self.records[index] = record
        if self.on_case is not None:
            self.on_case(record)

    def failed(self, index: int, why: str) -> CaseRecord:
        """The record of a case whose runner lost it (a dead worker, a failed task): it fails alone."""
        item = self.items[index]
        return CaseRecord(item.path, self.plans[item.path].key, "error", error=f"{item.path}: {why}")

    def report_to(self, report: BatchReport) -> None:
        """Hand the recorded cases to the report in input order (also after an interrupt)."""
        report.cases.extend(self.records[i] for i in sorted(self.records))


def _run_sequential(cases: _Cases, process: CaseFunction, report: BatchReport) -> None:
    """The cases one after the other in this process."""
    try:
        for index, item in enumerate(cases.items):
            task = cases.admit(index, item)
            if task is not None:
                cases.finish(index, _execute(task, process))
    finally:
        cases.report_to(report)


# -- workers: N cases at once in forked processes; the parent alone writes the journal ------------
_WORKER_PROCESS: CaseFunction | None = None


def _worker_init(threads: int) -> None:
    """In a worker: interrupts are the parent's business (it stops the pool), and a share of the threads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from topofix.threads import set_threads

    set_threads(threads)


def _worker_run(task: _Task) -> CaseRecord:
    assert _WORKER_PROCESS is not None
    return _execute(task, _WORKER_PROCESS)


def _run_parallel(cases: _Cases, process: CaseFunction, workers: int, threads: int, report: BatchReport) -> None:
    """The cases on ``workers`` forked processes, each with its own copy of the network (fork) and
    ``threads`` threads; results are journaled by this process as they arrive, reported in input order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _WORKER_PROCESS
    _WORKER_PROCESS = process  # inherited by the forked workers: closures need no pickling
    pending: dict[Any, int] = {}
    queue = list(enumerate(cases.items))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_init, initargs=(threads,))
    try:
        while queue or pending:
            _submit(pool, cases, queue, pending, 2 * workers)
            if pending:
                _collect(cases, pending)
    except BaseException:
        for process_ in list(getattr(pool, "_processes", {}).values()):
            process_.terminate()  # an interrupt: stop the cases in flight now (journaled as started only)
        pool.shutdown(wait=False, cancel_futures=True)
        cases.report_to(report)
        raise
    pool.shutdown(wait=True)
    cases.report_to(report)


def _submit(pool: Any, cases: _Cases, queue: list[tuple[int, Any]], pending: dict[Any, int], limit: int) -> None:
    """Admit queued cases until ``limit`` are in flight; few in flight means few journaled as started
    (and redone) if the batch is interrupted."""
    while queue and len(pending) < limit:
        index, item = queue.pop(0)
        task = cases.admit(index, item)
        if task is not None:
            pending[pool.submit(_worker_run, task)] = index


def _collect(cases: _Cases, pending: dict[Any, int]) -> None:
    """Wait for at least one case in flight and journal every one that has finished."""
    from concurrent.futures import FIRST_COMPLETED, wait

    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    for future in done:
        index = pending.pop(future)
        try:
            record = future.result()
        except Exception as exc:  # the worker died (killed, out of memory): that case fails alone
            record = cases.failed(index, f"the worker process died ({type(exc).__name__})")
        cases.finish(index, record)


def _close_cluster(client: Any, local_cluster: Any) -> None:
    """Close the client (and stop a local cluster's workers); an interrupt during closing is ignored."""
    for closable in (client, local_cluster):
        if closable is None:
            continue
        try:
            closable.close()
        except BaseException:  # noqa: BLE001, S110 - a second Ctrl-C, or the scheduler already gone
            pass


def _add_journaled(report: BatchReport, journal: Journal, offset: int) -> None:
    """After an interrupt: the cases this run journaled whose record the interrupt kept from the
    report (a signal between the journal line and the report's list), so the report lists every
    finished case the journal holds."""
    known = {c.key for c in report.cases}
    for record in journal.records(since=offset):
        if record.get("event") in ("done", "error") and record.get("key") not in known and record.get("case"):
            report.cases.append(CaseRecord.from_dict(record["case"]))
            known.add(record["key"])


def _remove(paths: list[Path]) -> None:
    for path in paths:
        try:
            Path(path).unlink(missing_ok=True)
        except OSError:
            pass


def parse_shard(text: str, environ: Any = None) -> tuple[int, int]:
    """``"K/N"`` (0 <= K < N), or ``"auto"``: SLURM array variables, or a Kubernetes Indexed Job's
    ``JOB_COMPLETION_INDEX`` with the shard count in ``TOPOFIX_SHARDS``. ValueError (one line) else."""
    env = os.environ if environ is None else environ
    if text.strip().lower() == "auto":
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            k = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            n = int(env["SLURM_ARRAY_TASK_COUNT"])
        elif "JOB_COMPLETION_INDEX" in env and "TOPOFIX_SHARDS" in env:
            k, n = int(env["JOB_COMPLETION_INDEX"]), int(env["TOPOFIX_SHARDS"])
        else:
            raise ValueError("--shard auto: no SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, nor "
                             "JOB_COMPLETION_INDEX with TOPOFIX_SHARDS, in the environment")
    else:
        part, _, total = text.partition("/")
        try:
            k, n = int(part), int(total)
        except ValueError:
            raise ValueError(f"--shard {text!r}: expected K/N (e.g. 0/4) or auto") from None
    if not 0 <= k < n:
        raise ValueError(f"--shard {k}/{n}: K must be in 0..N-1")
    return k, n


def report_from_journals(folder: str | os.PathLike[str]) -> BatchReport:
    """One report from every journal in ``folder`` (the shards' and an unsharded run's).

    Each case's last ``done``/``error`` entry wins; the run description is the latest run's. A
    case whose last entry is ``start`` (interrupted) is not reported: it has no result.
    """
    from topofix.outputs import JOURNAL

    folder = Path(folder)
    stem = JOURNAL[: -len(".jsonl")]
    journals = sorted(folder.glob(f"{stem}*.jsonl"))
    if not journals:
        raise OutputError(folder, f"holds no {JOURNAL} (nor shard journals)")
    runs: list[dict[str, Any]] = []
    cases: dict[str, CaseRecord] = {}
    for path in journals:
        journal = Journal(folder, path.name[len(stem): -len(".jsonl")])
        runs += journal.runs()
        for key, entry in journal.last_entries().items():
            if entry.event in ("done", "error") and entry.case:
                cases[key] = CaseRecord.from_dict(entry.case)
    described = (runs[-1].get("run") if runs else None) or {}
    run = RunInfo(**{k: described[k] for k in ("tool", "model_path", "model_sha256", "priors", "settings",
                                                "version", "started") if k in described}) \
        if {"tool", "model_path", "model_sha256", "priors", "settings"} <= set(described) \
        else RunInfo("correct", "", "", [], {})
    report = BatchReport(run, [cases[k] for k in sorted(cases)])
    report.journal = ", ".join(str(p) for p in journals)
    fingerprints = {r.get("fingerprint") for r in runs}
    if len(fingerprints) > 1:
        report.warnings.append(f"the journals hold runs with {len(fingerprints)} different models, priors or "
                               "settings; each case is reported with its own latest result")
    return report


def _internal_reason(exc: BaseException) -> str:
    """The last line of an unexpected exception (Python puts the message there), cut at 200 characters."""
    return exception_line(exc, limit=200, mark=False, fallback=False)


def _same_file(a: Path, b: str) -> bool:
    try:
        return a.resolve() == Path(b).resolve()
    except OSError:
        return False


class _signals_raise:
    """SIGTERM raises :class:`Interrupted` in the main thread while the batch runs (SIGINT already
    raises KeyboardInterrupt); the previous handlers are restored afterwards."""

    def __enter__(self) -> _signals_raise:
        self._old = None
        try:
            self._old = signal.signal(signal.SIGTERM, _raise_interrupted)
        except ValueError:  # not the main thread: leave signals alone
            self._old = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def install_interrupt_handlers() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` from now on (the CLI's entry point calls this)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, _raise_interrupted)
        except (ValueError, OSError):  # not the main thread
            pass
