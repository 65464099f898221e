"""A batch on a real Dask cluster (issue: scale out, point 4): two worker processes on this machine.

What is checked against what is known independently: the masks a sequential run writes (byte for
byte), its report rows, the journal read back line by line, and a worker process that really dies
(``os._exit``) in the middle of a case, after its outputs were written and before its result
reached the scheduler.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("distributed", reason="Dask is not installed (pip install 'topofix[distributed]')")

import dask
from distributed import Client, LocalCluster

from topofix.batch import RunInfo, run_batch
from topofix.cli.app import app
from topofix.correction import CorrectionSettings
from topofix.files import CorrectRunner, Inference, correct_files
from topofix.journal import file_sha256
from topofix.priors import build_priors

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "sample_data" / "models" / "demo_unet.pt"
IMAGES = ROOT / "sample_data" / "images"
KEEP = ("key", "status", "priors", "steps", "stop_reason", "met_before", "met_after", "repaired", "error",
        "betti_before", "betti_after", "changed_fraction", "dice_original_corrected")


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and two worker processes (one task each), as ``dask worker`` would run them."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 2}):
        local = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None)
    yield local
    local.close()


def outputs(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if not n.startswith(".") and "topofix_" not in n)


def journal(folder: Path) -> list[dict]:
    text = (folder / "topofix_journal.jsonl").read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # a torn line would not parse


def rows(report) -> list[dict]:
    return [{k: v for k, v in {**c.result, "key": c.key, "status": c.status, "error": c.error}.items() if k in KEEP}
            for c in report.cases]


def assert_same_files(a: Path, b: Path, expected: int) -> None:
    names = outputs(a)
    assert len(names) == expected and names == outputs(b)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def assert_journal_once(folder: Path, keys: list[str]) -> None:
    events = journal(folder)
    done = [e["key"] for e in events if e["event"] == "done"]
    assert sorted(done) == sorted(keys) and len(set(done)) == len(keys)
    assert not [e for e in events if e["event"] == "error"]
    assert [n for n in os.listdir(folder) if n.endswith(".tmp")] == []  # no temporary left behind


# -- usage: no cluster started -------------------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    (["--cluster", "local:x"], "local:N"),
    (["--cluster", "local:2", "--workers", "2"], "choose one"),
    (["--cluster", "local:2", "--shard", "0/2"], "choose one"),
])
def test_cluster_usage_errors(tmp_path, extra, message):
    result = cli("correct", IMAGES / "img_001.png", "-m", MODEL, "-o", tmp_path / "o", "-p", "2=1,1", "-q", *extra)
    assert result.exit_code == 2 and message in result.output and not (tmp_path / "o").exists()


def test_without_dask_the_option_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    result = cli("predict", IMAGES / "img_001.png", "-m", MODEL, "-o", tmp_path / "o", "--cluster", "local:2", "-q")
    assert result.exit_code == 2 and "pip install 'topofix[distributed]'" in result.output


def test_an_in_memory_model_cannot_go_to_a_cluster(tmp_path):
    from topofix.models.loading import load_model

    module = load_model(MODEL).module
    with pytest.raises(ValueError, match="model as a file path"):
        correct_files([IMAGES / "img_001.png"], module, ["2=1,1"], tmp_path / "o", cluster="local:2")
    assert not (tmp_path / "o").exists()


# -- a real cluster ------------------------------------------------------------------------------
def test_cli_local_cluster_writes_what_one_process_writes(tmp_path):
    """``--cluster local:2`` end to end (the CLI starts and stops its own two worker processes) on
    four scans, one of them broken: the same files and report rows as a sequential run."""
    inputs = [IMAGES / f"img_00{i}.png" for i in (1, 2, 3, 4)]
    common = ["-m", MODEL, "-p", "2=1,1", "--per-slice", "z", "--device", "cpu", "-q", "--threads", "1"]
    one = cli("correct", *inputs, "-o", tmp_path / "one", *common)
    two = cli("correct", *inputs, "-o", tmp_path / "two", *common, "--cluster", "local:2")
    assert one.exit_code == two.exit_code == 0, two.output
    assert_same_files(tmp_path / "one", tmp_path / "two", 4)
    a = json.loads((tmp_path / "one" / "topofix_report.json").read_text())["cases"]
    b = json.loads((tmp_path / "two" / "topofix_report.json").read_text())["cases"]
    assert [{k: c.get(k) for k in KEEP} for c in a] == [{k: c.get(k) for k in KEEP} for c in b]
    assert_journal_once(tmp_path / "two", [p.name for p in inputs])


@pytest.mark.slow
def test_27_scans_on_a_cluster_equal_the_sequential_run(tmp_path, cluster):
    """The 27 sample scans (5 broken) through a scheduler address, as on a real cluster: the same
    files byte for byte and the same report rows as one process, every case journaled once."""
    kwargs = {"inference": Inference(per_slice="z", device="cpu"), "threads": 1}
    one = correct_files([IMAGES], MODEL, ["2=1,1"], tmp_path / "one", **kwargs)
    two = correct_files([IMAGES], MODEL, ["2=1,1"], tmp_path / "two", cluster=cluster.scheduler_address, **kwargs)
    assert one.exit_status == two.exit_status == 0
    assert_same_files(tmp_path / "one", tmp_path / "two", 27)
    assert rows(one) == rows(two)
    assert sum(c.result.get("met_before") is False for c in two.cases) == 5
    assert_journal_once(tmp_path / "two", outputs(tmp_path / "one"))


def _dies_once(runner, victim: str, marker: str):
    """The runner, except that the first attempt of ``victim`` kills its worker process after the
    case's outputs are in place and before its result reaches the scheduler (a local function:
    shipped by value to the workers)."""

    def process(input_path, plan, may_overwrite, written):
        result = runner(input_path, plan, may_overwrite, written)
        if os.path.basename(input_path) == victim and not os.path.exists(marker):
            with open(marker, "w") as handle:
                handle.write(str(os.getpid()))
            os._exit(1)
        return result

    return process


@pytest.mark.slow
def test_a_worker_killed_mid_batch_has_its_scan_retried(tmp_path, cluster):
    """A worker process dies holding one of the 27 cases: the scheduler gives the case to another
    worker (the nanny restarts the dead one); its outputs equal a sequential run's, and the journal
    has every case done exactly once, no error, no torn line."""
    victim, marker = "img_005.png", tmp_path / "died.pid"
    sha = file_sha256(MODEL)
    runner = CorrectRunner(str(MODEL), sha, Inference(per_slice="z", device="cpu"), None,
                           priors=tuple(build_priors(priors=["2=1,1"])), settings=CorrectionSettings())
    run = lambda: RunInfo("correct", str(MODEL), sha, ["2=1,1"], {})
    one = run_batch(run(), [IMAGES], tmp_path / "one", runner, threads=1)
    client = Client(cluster.scheduler_address)
    workers_before = set(client.scheduler_info()["workers"])
    two = run_batch(run(), [IMAGES], tmp_path / "two", _dies_once(runner, victim, str(marker)),
                    cluster=cluster.scheduler_address, threads=1)
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker process really died
    assert set(client.scheduler_info()["workers"]) != workers_before  # ... and was replaced
    client.close()
    assert [c.status for c in two.cases] == ["done"] * 27, [c.error for c in two.cases if c.error]
    assert_same_files(tmp_path / "one", tmp_path / "two", 27)
    assert rows(one) == rows(two)
    assert_journal_once(tmp_path / "two", outputs(tmp_path / "one"))
    assert [e["event"] for e in journal(tmp_path / "two") if e.get("key") == victim] == ["start", "done"]


@pytest.mark.slow
def test_sigterm_stops_the_cluster_and_resume_finishes_the_batch(tmp_path):
    """SIGTERM to ``correct --cluster local:2`` once a case is journaled: exit 143 with a report of
    what finished, the worker processes stopped with it; ``--skip-existing`` on the cluster then
    carries those forward and does the rest."""
    import signal

    import psutil
    from test_batch import _start, _wait_for_done

    out = tmp_path / "out"
    proc = _start(out, "--cluster", "local:2")
    _wait_for_done(out, 1, proc)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2  # the worker processes (and multiprocessing's helpers)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    data = json.loads((out / "topofix_report.json").read_text())
    finished = [c["key"] for c in data["cases"] if c["status"] == "done"]
    assert data["interrupted"] == "SIGTERM" and 1 <= len(finished) < 5
    psutil.wait_procs(children, timeout=30)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert [n for n in os.listdir(out) if n.endswith(".tmp")] == []

    resumed = _start(out, "--cluster", "local:2", "--skip-existing")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode in (0, 1), stderr
    cases = {c["key"]: c["status"] for c in json.loads((out / "topofix_report.json").read_text())["cases"]}
    assert len(cases) == 5 and {k for k, s in cases.items() if s == "resumed"} == set(finished)
    events = journal(out)
    assert sorted(e["key"] for e in events if e["event"] == "done") == sorted(cases)
