"""No evidence, no invention: a real network on a slice without a heart.

The demo network (sample_data/models) on the hard benchmark's apical slice below the
heart (bench/quality/data, stack_b slice 9; the ground truth has no myocardium) gives
the myocardium a probability of at most ~0.05. `correct` must leave it as predicted
and say "absent", not fine-tune toward a ring. Topofix before the evidence floor ran
100 steps there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import topofix

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "sample_data" / "models" / "demo_unet.pt"
SLICE = ROOT / "bench" / "quality" / "data" / "images" / "sigma0.00" / "stack_b.nii.gz"
LABEL = ROOT / "bench" / "quality" / "data" / "labels" / "stack_b.nii.gz"


@pytest.fixture(scope="module")
def no_heart():
    image = topofix.read_image(SLICE).array[9].astype(np.float32)
    truth = topofix.read_mask(LABEL).array[9]
    assert not (truth == 2).any()  # the ground truth: no myocardium on this slice
    return image


def test_slice_without_a_heart_is_left_as_predicted(no_heart):
    model = topofix.load_model(MODEL, device="cpu")
    settings = topofix.CorrectionSettings(evidence_floor=0.2)
    result = topofix.correct(no_heart, model, "2=1,1", settings=settings, device="cpu")
    report = result.report
    assert report.stop_reason == "absent" and report.steps == 0 and report.absent
    assert report.priors[0].absent and not report.met_after  # reported, not hidden
    np.testing.assert_array_equal(result.labels, result.original_labels)
    assert not (result.labels == 2).any()
    # a ring-or-absent prior is met as it is
    result = topofix.correct(no_heart, model, "2=1,1|0,0", settings=settings, device="cpu")
    assert result.report.met_after and result.report.stop_reason in ("already met", "absent")
    np.testing.assert_array_equal(result.labels, result.original_labels)


def test_without_the_floor_the_loop_would_run(no_heart):
    """The same slice with the floor at 0: the structure counts as present and broken, the loop runs:
    what the floor prevents is real on this network."""
    model = topofix.load_model(MODEL, device="cpu")
    settings = topofix.CorrectionSettings(evidence_floor=0.0, steps=5, plateau=None, repair=False)
    result = topofix.correct(no_heart, model, "2=1,1", settings=settings, device="cpu")
    assert result.report.stop_reason != "absent" and result.report.steps == 5


def test_cli_exit_status_and_report_for_an_absent_structure(no_heart, tmp_path):
    """What a pipeline sees: exit 1 and `absent` in the report when the prior expects the structure,
    exit 0 when the prior allows absence; the mask is the prediction either way."""
    from typer.testing import CliRunner

    from topofix.cli.app import app

    scan = tmp_path / "apex.nii.gz"
    topofix.write_image(scan, no_heart)
    for prior, code, reason in (("2=1,1", 1, "absent"), ("2=1,1|0,0", 0, "already met")):
        out = tmp_path / f"out{code}"
        result = CliRunner().invoke(app, ["correct", str(scan), "-m", str(MODEL), "-o", str(out), "-p", prior,
                                          "--device", "cpu", "--quiet"])
        assert result.exit_code == code, result.output
        case = json.loads((out / "topofix_report.json").read_text())["cases"][0]
        assert case["steps"] == 0 and case["stop_reason"] == reason
        assert case["absent"] and case["priors"][0]["absent"]  # reported in both cases
        assert not (topofix.read_mask(out / "apex.nii.gz").array == 2).any()
        assert "structure absent" in result.output  # the summary line says so
