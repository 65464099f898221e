"""topofix.atomic, and the report writers that must go through it.

Why these tests: a report written in place (``open(path, "w")``) looks the same as
one written atomically until the write fails half-way or the process is killed; then
a pipeline reads half a JSON. An audit that made the report writers write in place
found that none of the CLI and report tests noticed. So every test here makes the
last two steps of an atomic write fail (``os.fsync``, ``os.replace``) and checks the
result against the file system itself: the target holds its previous bytes, and no
temporary file is left beside it. A writer that wrote in place would leave the new
(or a partial) content there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import topofix.atomic as atomic
from topofix.atomic import atomic_write_bytes, atomic_write_text, refuse_existing
from topofix.cli.app import app
from topofix.errors import OutputError

ROOT = Path(__file__).resolve().parent.parent
REAL_REPLACE = os.replace  # taken once: a stand-in made while another is in place must not wrap it
LABELS = ROOT / "sample_data" / "labels"
runner = CliRunner()


def failing(name: str):
    """An ``os.replace``/``os.fsync`` stand-in that raises ENOSPC, as a full disk does."""

    def fail(*args, **kwargs):
        raise OSError(28, f"No space left on device ({name})")

    return fail


def failing_for(names: set[str]):
    """``os.replace`` that fails only when moving onto one of ``names`` (masks still get written)."""
    def replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) in names:
            raise OSError(28, "No space left on device")
        return REAL_REPLACE(src, dst, *args, **kwargs)

    return replace


def listing(folder: Path) -> set[str]:
    return set(os.listdir(folder))


# --------------------------------------------------------------------------- atomic.py itself


def test_writes_the_bytes_with_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "r.json"
    assert atomic_write_text(target, "{\"a\": 1}\n") == target  # missing parents are created
    assert target.read_bytes() == b"{\"a\": 1}\n"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert listing(target.parent) == {"r.json"}


def test_text_is_utf8(tmp_path):
    atomic_write_text(tmp_path / "r.csv", "myocarde é,ü\n")
    assert (tmp_path / "r.csv").read_bytes() == "myocarde é,ü\n".encode()


@pytest.mark.parametrize("step", ["replace", "fsync"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, step):
    target = tmp_path / "topofix_report.json"
    target.write_bytes(b"old report\n")
    monkeypatch.setattr(atomic.os, step, failing(step))
    with pytest.raises(OutputError, match="No space left") as info:
        atomic_write_bytes(target, b"new report, long enough to be half-written\n", overwrite=True)
    assert str(info.value).startswith(f"{target}: ") and "\n" not in str(info.value)  # names the report
    assert target.read_bytes() == b"old report\n"
    assert listing(tmp_path) == {"topofix_report.json"}


@pytest.mark.parametrize("step", ["replace", "fsync"])
def test_a_failed_first_write_leaves_nothing(tmp_path, monkeypatch, step):
    monkeypatch.setattr(atomic.os, step, failing(step))
    with pytest.raises(OutputError, match="r.json: could not be written"):
        atomic_write_text(tmp_path / "r.json", "{}")
    assert listing(tmp_path) == set()


def test_an_interrupt_while_writing_leaves_no_temporary(tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt is a BaseException, not an Exception) between write and rename."""
    target = tmp_path / "r.json"
    target.write_text("old")

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new", overwrite=True)
    assert target.read_text() == "old" and listing(tmp_path) == {"r.json"}


def test_the_data_is_flushed_before_the_rename(tmp_path, monkeypatch):
    """fsync of the temporary file happens before os.replace: after a crash the renamed file has its data."""
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    atomic_write_text(tmp_path / "r.json", "{}")
    assert calls == ["fsync", "replace"]


def test_refuses_to_replace_without_overwrite(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(OutputError) as info:
        atomic_write_text(target, "new")
    message = str(info.value)
    assert "\n" not in message and str(target) in message and "--overwrite" in message
    assert target.read_text() == "old" and listing(tmp_path) == {"r.json"}
    atomic_write_text(target, "new", overwrite=True)
    assert target.read_text() == "new" and listing(tmp_path) == {"r.json"}


def test_a_file_that_appears_during_the_write_is_not_replaced(tmp_path, monkeypatch):
    """Two runs racing for one report name: the second finds the first's file at rename time."""
    target = tmp_path / "r.json"
    real_fsync = os.fsync

    def other_writer(fd):
        real_fsync(fd)
        target.write_text("the other run's report")

    monkeypatch.setattr(atomic.os, "fsync", other_writer)
    with pytest.raises(OutputError, match="already exists"):
        atomic_write_text(target, "mine")
    assert target.read_text() == "the other run's report" and listing(tmp_path) == {"r.json"}


def test_a_folder_is_never_a_report(tmp_path):
    (tmp_path / "r.json").mkdir()
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="is a folder"):
            atomic_write_text(tmp_path / "r.json", "{}", overwrite=overwrite)
        with pytest.raises(OutputError, match="is a folder"):
            refuse_existing(tmp_path / "r.json", overwrite)
    assert listing(tmp_path) == {"r.json"} and not os.listdir(tmp_path / "r.json")


# --------------------------------------------------------------------------- the report writers


def one_line_error(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    return lines[0]


def test_check_reports_survive_a_failed_rewrite(tmp_path, monkeypatch):
    """`topofix check --json --csv` (cli.console.write_reports): a failed rewrite keeps the old reports."""
    out = tmp_path / "reports"
    args = ["check", str(LABELS / "img_001.png"), "--label", "2", "--betti", "1,1", "-q",
            "--json", str(out / "r.json"), "--csv", str(out / "r.csv")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    before = {name: (out / name).read_bytes() for name in ("r.json", "r.csv")}
    assert json.loads(before["r.json"])["results"]
    for name in ("r.json", "r.csv"):
        monkeypatch.setattr(os, "replace", failing_for({name}))
        result = runner.invoke(app, [*args, "--overwrite"])
        assert result.exit_code == 2, result.output
        line = one_line_error(result)
        assert "No space left" in line and name in line
        assert {n: (out / n).read_bytes() for n in before} == before
        assert listing(out) == {"r.json", "r.csv"}


def repair_run(tmp_path: Path, *extra: str):
    """`topofix repair` on one broken ring (a label map: no network, a second or so)."""
    from topofix.io import write_mask

    labels = tmp_path / "in"
    yy, xx = np.mgrid[:24, :24]
    d = np.hypot(yy - 12, xx - 12)
    ring = (d <= 7) & (d > 4) & ~((abs(yy - 12) <= 1) & (xx > 12))  # a ring with a gap
    if not labels.exists():
        write_mask(labels / "ring.nii.gz", ring.astype(np.uint8))
    out = tmp_path / "out"
    args = ["repair", str(labels), "-o", str(out), "--label", "1", "--betti", "1,1", "-q", *extra]
    return out, runner.invoke(app, args)


def test_batch_reports_and_html_survive_a_failed_rewrite(tmp_path, monkeypatch):
    """`topofix repair` (files.write_reports, cli.progress.write_run_reports): JSON, CSV and HTML
    report whose rename fails keeps the previous run's bytes; the exit status is 2 with one line."""
    from topofix.outputs import REPORT_CSV, REPORT_JSON

    out, first = repair_run(tmp_path, "--html")
    assert first.exit_code in (0, 1), first.output
    reports = {REPORT_JSON, REPORT_CSV, "topofix_report.html"}
    assert reports <= listing(out)
    files_before = listing(out)
    for name in sorted(reports):
        before = (out / name).read_bytes()
        monkeypatch.setattr(os, "replace", failing_for({name}))
        _, result = repair_run(tmp_path, "--html", "--overwrite")
        assert result.exit_code == 2, result.output
        line = one_line_error(result)
        assert "No space left" in line and name in line
        assert (out / name).read_bytes() == before, name  # (the reports written before it are the new run's)
        assert listing(out) == files_before, name  # no temporary left beside the reports


def test_html_report_command_survives_a_failed_rewrite(tmp_path, monkeypatch):
    """`topofix report` (report_html.write_html_report): the page of a real run, rewritten."""
    out, first = repair_run(tmp_path)
    assert first.exit_code in (0, 1), first.output
    target = tmp_path / "page.html"
    written = runner.invoke(app, ["report", str(out), "-o", str(target)])
    assert written.exit_code == 0, written.output
    before = target.read_bytes()
    assert b"ring" in before
    monkeypatch.setattr(os, "replace", failing("replace"))
    result = runner.invoke(app, ["report", str(out), "-o", str(target), "--overwrite"])
    assert result.exit_code == 2, result.output
    line = one_line_error(result)
    assert "No space left" in line and "page.html" in line
    assert target.read_bytes() == before
    assert listing(tmp_path) == {"in", "out", "page.html"}
