"""Every way of running a batch reports every case, in input order, and tells the caller of each.

The runners (here, forked workers; the Dask cluster in ``test_distributed.py``) share how a case is
admitted and recorded. A case that does not run (an unreadable input, a case carried forward by
resume, an output that is not ours to replace) must still be in the report and reach ``on_case``,
as must the cases that run. The expected statuses are written out by hand from the inputs; the
process is a plain copy through SimpleITK, so no network is involved and the test is fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from topofix.batch import RunInfo, run_batch
from topofix.errors import TopofixError

NAMES = ["a.png", "bad.png", "c.png", "d.png"]


def _inputs(folder: Path) -> list[str]:
    folder.mkdir()
    for i, name in enumerate(NAMES):
        image = sitk.GetImageFromArray(np.full((6, 7), 10 * i, np.uint8))
        sitk.WriteImage(image, str(folder / name))
    return [str(folder / n) for n in NAMES]


def _copy(path: str, plan, may_overwrite: bool, written: list[Path]) -> dict:
    """The case function: the input's pixels as its mask; ``bad.png`` fails with a one-line error."""
    if Path(path).name == "bad.png":
        raise TopofixError(f"{path}: cannot be read")
    sitk.WriteImage(sitk.ReadImage(path), str(plan.mask))
    written.append(plan.mask)
    return {"copied": True}


def _run(inputs: list[str], out: Path, workers: int, **options):
    started: list[tuple[str, int, int]] = []
    told: list[tuple[str, str]] = []
    report = run_batch(RunInfo("predict", "<module>", "", [], {}), inputs, out, _copy, workers=workers,
                       on_start=lambda path, i, n: started.append((Path(path).name, i, n)),
                       on_case=lambda record: told.append((record.key, record.status)), **options)
    return report, started, told


@pytest.mark.parametrize("workers", [1, 2])
def test_every_case_is_reported_in_input_order_and_told(tmp_path, workers):
    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    expectations = [
        ({}, ["done", "error", "done", "done"]),
        ({"resume": True}, ["resumed", "error", "resumed", "resumed"]),  # carried forward: not run again
        ({}, ["error", "error", "error", "error"]),  # outputs exist and are not this run's to replace
    ]
    for options, statuses in expectations:
        report, started, told = _run(inputs, out, workers, **options)
        assert [(c.key, c.status) for c in report.cases] == list(zip(NAMES, statuses))
        assert sorted(told) == sorted(zip(NAMES, statuses))  # each case told once, in completion order
        assert started == [(n, i, len(NAMES)) for i, n in enumerate(NAMES)]
        assert report.interrupted is None
    refused = [c.error for c in report.cases if c.key != "bad.png"]
    assert all(e is not None and "already exists" in e for e in refused)
    for name in ("a.png", "c.png", "d.png"):  # the first run's masks, untouched by the later runs
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / name))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "in" / name))))
    assert not (out / "bad.png").exists()
