"""topofix.evaluate: structures, slices, empty structures, summaries, paired tests, failures."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import topofix
from topofix import Prior, write_mask
from topofix.errors import PriorError
from topofix.evaluation import (
    evaluate,
    evaluate_labels,
    geometry_mismatch,
    paired_test,
    structure_metrics,
    summarise,
)
from topofix.metrics import betti_matching, dice, hd95, variation_of_information


def _cardiac(shift: int = 0, break_myo: bool = False) -> np.ndarray:
    """A 2D short-axis-like map: 1 RV, 2 MYO ring, 3 LV blood pool."""
    m = np.zeros((24, 24), np.uint8)
    yy, xx = np.mgrid[:24, :24]
    r = np.hypot(yy - 12, xx - 12 - shift)
    m[r < 7] = 2
    m[r < 4] = 3
    m[(np.abs(yy - 12) < 4) & (xx < 6 + shift) & (xx > 1)] = 1
    if break_myo:
        m[12, 12 + shift + 4 : 12 + shift + 8] = 0
    return m


def test_api_is_lazy_and_exported():
    code = (
        "import sys, topofix\n"
        "assert 'scipy' not in sys.modules and 'torch' not in sys.modules\n"
        "topofix.evaluate, topofix.betti_matching, topofix.EvaluationReport\n"
        "import topofix.metrics\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert topofix.evaluate is evaluate


def test_default_structures_are_every_label_and_foreground():
    gt = _cardiac()
    pred = _cardiac(shift=1, break_myo=True)
    report = evaluate(pred, gt)
    assert [s.name for s in report.structures] == ["1", "2", "3", "foreground"]
    by = {r.structure.name: r for r in report.results}
    myo = by["2"]
    assert myo.betti_gt == (1, 1) and myo.betti_pred == (1, 0)
    assert myo.betti_errors == (0, 1) and myo.betti_matching_errors == (0, 1)
    assert myo.dice == pytest.approx(dice(pred == 2, gt == 2))
    assert myo.hd95 == pytest.approx(hd95(pred == 2, gt == 2))
    assert by["foreground"].pred_voxels == int(np.count_nonzero(pred))
    (vi,) = report.label_maps
    assert vi.vi == pytest.approx(variation_of_information(pred, gt))
    assert report.exit_code == 0 and not report.errors


def test_binary_batch_reports_the_foreground_only():
    gt = (_cardiac() > 0).astype(np.uint8)
    report = evaluate([gt, gt], [gt, gt])
    assert [s.name for s in report.structures] == ["foreground"]
    assert {r.structure.name for r in report.results} == {"foreground"}
    assert all(r.dice == 1.0 and r.betti_matching_error == 0 for r in report.results)


def test_labels_and_priors_choose_the_structures():
    gt = _cardiac()
    pred = _cardiac(shift=1)
    assert [s.name for s in evaluate(pred, gt, label="2").structures] == ["2"]
    report = evaluate(pred, gt, priors=["2=1,1", "2+3"])
    assert [s.name for s in report.structures] == ["2", "2+3"]
    union = next(r for r in report.results if r.structure.name == "2+3")
    assert union.dice == pytest.approx(dice(np.isin(pred, (2, 3)), np.isin(gt, (2, 3))))
    assert union.betti_gt == (1, 0)
    with pytest.raises(PriorError):
        evaluate(pred, gt, priors=["2=x"])
    with pytest.raises(PriorError):
        evaluate(pred, gt, priors=["2", "2"])


def test_absent_structure_is_empty_and_left_out_of_summaries():
    gt = _cardiac()
    report = evaluate([gt, gt], [gt, np.where(gt == 1, 0, gt)], priors=["1", "4"])
    four = [r for r in report.results if r.structure.name == "4"]
    assert all(r.empty and math.isnan(r.dice) and r.betti_matching_errors == (0, 0) for r in four)
    by = {(s.structure, s.metric): s for s in report.summary()}
    assert by[("4", "dice")].n == 0 and math.isnan(by[("4", "dice")].mean)
    # structure 1: case 0 perfect; case 1 gt without RV, prediction with: Dice 0, distances inf
    assert by[("1", "dice")].n == 2 and by[("1", "dice")].mean == 0.5
    assert by[("1", "hd95")].n == 1 and by[("1", "hd95")].n_inf == 1
    assert by[("1", "betti_matching_error")].mean == 0.5
    assert by[("1", "betti_matching_error_0")].mean == 0.5


def test_per_slice_3d():
    gt2 = _cardiac()
    gt = np.stack([np.zeros_like(gt2), gt2, gt2, gt2])
    pred = gt.copy()
    pred[2] = _cardiac(break_myo=True)
    spacing = (8.0, 1.5, 1.5)
    report = evaluate(pred, gt, per_slice="z", label="2", spacing=spacing)
    rows = report.results
    assert [r.slice_index for r in rows] == [0, 1, 2, 3]
    assert rows[0].empty and not any(r.empty for r in rows[1:])
    assert [r.betti_matching_errors for r in rows] == [(0, 0), (0, 0), (0, 1), (0, 0)]
    assert rows[2].hd95 == pytest.approx(hd95(pred[2] == 2, gt[2] == 2, spacing[1:]))
    by = {(s.structure, s.metric): s for s in report.summary()}
    assert by[("2", "betti_matching_error")].n == 3
    assert by[("2", "betti_matching_error")].mean == pytest.approx(1 / 3)
    assert [m.empty for m in report.label_maps] == [True, False, False, False]
    assert by[("label maps", "vi")].n == 3
    # along x: slices of the other axis, spacing of the remaining axes (z, y)
    along_x = evaluate(pred, gt, per_slice="x", label="2", spacing=spacing)
    assert len(along_x.label_maps) == gt.shape[2]
    # whole volume: 3D Betti numbers and Betti matching in every dimension
    whole = evaluate(pred, gt, label="2", spacing=spacing).results[0]
    expected = betti_matching(pred == 2, gt == 2).errors
    assert len(whole.betti_pred) == 3 and list(whole.betti_matching_errors) == list(expected)
    assert whole.hd95 == pytest.approx(hd95(pred == 2, gt == 2, spacing))
    assert whole.metric("betti_matching_error_1") == expected[1]
    with pytest.raises(ValueError, match="per_slice"):
        evaluate(pred, gt, per_slice="w")


def test_connectivity_is_passed_on():
    diagonal = np.eye(6, dtype=np.uint8)
    gt = np.zeros_like(diagonal)
    gt[1:5, 1] = 1
    full = evaluate(diagonal, gt).results[0]
    face = evaluate(diagonal, gt, connectivity="face").results[0]
    assert full.betti_pred == (1, 0) and face.betti_pred == (6, 0)
    assert full.betti_matching_errors == (0, 0) and face.betti_matching_errors == (5, 0)
    with pytest.raises(ValueError, match="connectivity"):
        evaluate(diagonal, gt, connectivity="corner")


def test_2d_input_with_per_slice_is_one_slice():
    gt = _cardiac()
    report = evaluate(gt, gt, per_slice="z", label="2")
    assert [r.slice_index for r in report.results] == [0]


def test_summarise_and_paired_test():
    s = summarise([1.0, 2.0, 4.0, float("nan"), float("inf"), None], "2", "hd95")
    assert (s.n, s.n_nan, s.n_inf) == (3, 1, 1)
    assert s.mean == pytest.approx(7 / 3) and s.sd == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert math.isnan(summarise([1.0], "2", "dice").sd)
    pred = [0.9, 0.8, 0.95, 0.7, 0.85, 0.9]
    base = [0.8, 0.82, 0.9, 0.6, 0.7, 0.88]
    c = paired_test(pred, base, "2", "dice")
    ref = stats.wilcoxon(np.subtract(pred, base))
    assert c.n == 6 and c.p_value == pytest.approx(ref.pvalue) and c.statistic == pytest.approx(ref.statistic)
    assert c.mean_diff == pytest.approx(np.mean(np.subtract(pred, base)))
    assert c.sd_diff == pytest.approx(np.std(np.subtract(pred, base), ddof=1))
    assert c.improved is True
    one = paired_test([1.0], [2.0], "2", "hd95")
    assert one.n == 1 and one.p_value is None and "n < 2" in one.note and one.improved is True
    same = paired_test([1.0, 2.0], [1.0, 2.0], "2", "hd95")
    assert same.p_value is None and "zero" in same.note
    none = paired_test([float("inf")], [1.0], "2", "hd95")
    assert none.n == 0 and none.p_value is None


def test_baseline_pairs_by_case_and_structure():
    gt = [_cardiac() for _ in range(4)]
    base = [_cardiac(break_myo=True), _cardiac(1, True), _cardiac(), _cardiac(1, True)]
    pred = [_cardiac(), _cardiac(1), _cardiac(), _cardiac(1)]
    report = evaluate(pred, gt, baseline=base, label="2")
    assert {r.source for r in report.results} == {"pred", "baseline"}
    paired = {(c.structure, c.metric): c for c in report.paired()}
    bm = paired[("2", "betti_matching_error")]
    assert bm.n == 4 and bm.mean_pred == 0 and bm.mean_baseline == 0.75 and bm.mean_diff == -0.75
    assert bm.p_value == pytest.approx(stats.wilcoxon([-1, -1, 0, -1]).pvalue)
    assert bm.improved is True
    assert paired[("label maps", "vi")].n == 4
    data = report.to_dict()
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN/inf tokens
    assert data["paired"] and data["baseline_summary"]
    assert evaluate(pred, gt).paired() == []


def test_array_inputs_are_checked():
    gt = _cardiac()
    with pytest.raises(topofix.TopofixError, match="one ground-truth array"):
        evaluate([gt, gt], [gt])
    with pytest.raises(topofix.TopofixError, match="shape"):
        evaluate(gt, gt[:10])
    with pytest.raises(topofix.TopofixError, match="folder"):
        evaluate("somewhere/", gt)


def test_structure_metrics_and_evaluate_labels_directly():
    gt = _cardiac()
    pred = _cardiac(1)
    r = structure_metrics(pred, gt, Prior(labels=(2,)), spacing=(1.0, 2.0))
    assert r.hd95 == pytest.approx(hd95(pred == 2, gt == 2, (1.0, 2.0)))
    assert r.betti_matching_errors == betti_matching(pred == 2, gt == 2).errors
    results, maps = evaluate_labels(pred, gt)
    assert [x.structure.name for x in results] == ["1", "2", "3", "foreground"]
    assert len(maps) == 1


def test_files_missing_ground_truth_and_geometry_mismatch(tmp_path):
    preds, gts = tmp_path / "pred", tmp_path / "gt"
    preds.mkdir()
    gts.mkdir()
    ref = _cardiac()
    geometry = topofix.Geometry((0.8, 1.6), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    write_mask(preds / "a.nii.gz", ref, geometry=geometry)
    write_mask(gts / "a.nii.gz", ref, geometry=geometry)
    write_mask(preds / "b.nii.gz", ref, geometry=geometry)  # no ground truth
    write_mask(preds / "c.nii.gz", ref, geometry=geometry)
    write_mask(gts / "c.nii.gz", ref, geometry=topofix.Geometry((0.8, 2.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)))
    write_mask(preds / "d.nii.gz", ref, geometry=geometry)
    write_mask(gts / "d.nii.gz", ref[:20], geometry=geometry)
    report = evaluate(preds, gts)
    assert report.paths == [str(preds / "a.nii.gz")]
    messages = {e.path.rsplit("/", 1)[-1]: e.message for e in report.errors}
    assert "no ground truth" in messages["b.nii.gz"] and str(gts / "b.nii.gz") in messages["b.nii.gz"]
    assert "ground truth" in messages["c.nii.gz"] and "spacing (x, y) 0.8, 2 vs prediction 0.8, 1.6" in messages["c.nii.gz"]
    assert "shape" in messages["d.nii.gz"] and "(20, 24)" in messages["d.nii.gz"]
    assert all("\n" not in m for m in messages.values())
    assert report.exit_code == 2 and report.counts == {"evaluated": 1, "failed": 3, "slices": 1}


def test_geometry_mismatch_tolerates_float32_rounding():
    a = topofix.Image(np.zeros((3, 3)), topofix.Geometry((1.0, 1.0), (10.0, 20.0), (1, 0, 0, 1)))
    b = topofix.Image(np.zeros((3, 3)), topofix.Geometry((1.0000001, 1.0), (10.0000004, 20.0), (1, 0, 0, 1)))
    assert geometry_mismatch(a, b) is None
    c = topofix.Image(np.zeros((3, 3)), topofix.Geometry((1.0, 1.0), (11.0, 20.0), (1, 0, 0, 1)))
    assert "origin" in geometry_mismatch(a, c)
    d = topofix.Image(np.zeros((3, 3)), topofix.Geometry((1.0, 1.0), (10.0, 20.0), (0, 1, 1, 0)))
    assert "direction" in geometry_mismatch(a, d)


def test_prior_alternatives_only_choose_the_structure():
    """evaluate compares the prediction with the ground truth: a prior's alternatives
    (``2=1,1|0,0``) select the structure and play no part in the Betti error."""
    gt = _cardiac()
    pred = _cardiac(shift=1, break_myo=True)
    with_alternatives = evaluate(pred, gt, priors=["2=1,1|0,0", "2+3=1,0|0"])
    plain = evaluate(pred, gt, priors=["2", "2+3"])
    assert [s.name for s in with_alternatives.structures] == ["2", "2+3"]
    for a, b in zip(with_alternatives.results, plain.results):
        assert a.to_dict() == b.to_dict()
    myo = with_alternatives.results[0]
    assert (myo.betti_pred, myo.betti_gt, myo.betti_error) == ((1, 0), (1, 1), 1)
    with pytest.raises(PriorError, match="repeats"):
        evaluate(pred, gt, priors=["2=1,1|1,1"])
