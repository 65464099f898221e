"""`topofix evaluate` end to end: files on disk, tables, JSON/CSV reports, failures, exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from topofix import Geometry, read_mask, write_mask
from topofix.cli.app import app
from topofix.cli.evaluate_cmd import CSV_FIELDS
from topofix.metrics import assd, betti_matching, dice, hd95, variation_of_information

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _ring_map(shape=(32, 32), centre=(16, 16), broken=False, extra_blob=False) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(yy - centre[0], xx - centre[1])
    m = np.zeros(shape, np.uint8)
    m[r < 9] = 2
    m[r < 5] = 3
    m[(np.abs(yy - centre[0]) < 3) & (xx < centre[1] - 8) & (xx > centre[1] - 14)] = 1
    if broken:
        m[centre[0], centre[1] + 5 : centre[1] + 10] = 0
    if extra_blob:
        m[1:3, 1:3] = 2
    return m


def _stack(broken_slices=(), depth=5) -> np.ndarray:
    return np.stack([_ring_map(broken=z in broken_slices) if 0 < z < depth - 1 else np.zeros((32, 32), np.uint8)
                     for z in range(depth)])


SPACING_3D = Geometry((0.7, 0.9, 3.0), (10.0, -5.0, 2.0), tuple(np.eye(3).ravel()))


@pytest.fixture
def folders(tmp_path):
    pred, gt, base = tmp_path / "pred", tmp_path / "gt", tmp_path / "base"
    for folder in (pred, gt, base):
        folder.mkdir()
    return pred, gt, base


def test_help_teaches():
    result = run("evaluate", "--help")
    assert result.exit_code == 0
    for word in ("--gt", "--baseline", "--prior", "--label", "--per-slice", "--connectivity", "--json", "--csv",
                 "HD95", "Betti matching", "Exit status", "Examples"):
        assert word in result.stdout, word
    assert "evaluate" in run("--help").stdout


def test_nifti_3d_anisotropic_spacing_json_and_csv(folders, tmp_path):
    pred_dir, gt_dir, _ = folders
    gt = _stack()
    pred = _stack(broken_slices=(2,))
    pred[1] = _ring_map(centre=(17, 15))
    write_mask(gt_dir / "case.nii.gz", gt, geometry=SPACING_3D)
    write_mask(pred_dir / "case.nii.gz", pred, geometry=SPACING_3D)
    out_json, out_csv = tmp_path / "r.json", tmp_path / "sub" / "r.csv"
    result = run("evaluate", pred_dir, "--gt", gt_dir, "-p", "2", "-p", "2+3", "--json", out_json, "--csv", out_csv)
    assert result.exit_code == 0, result.output
    assert "summary over cases" in result.stdout and "1 case(s) evaluated" in result.stdout
    data = json.loads(out_json.read_text())
    assert data["tool"] == "topofix evaluate" and data["exit_code"] == 0 and data["errors"] == []
    assert [s["name"] for s in data["structures"]] == ["2", "2+3"]
    rows = {r["structure"]: r for r in data["results"]}
    spacing = (3.0, 0.9, 0.7)  # array order (z, y, x)
    myo_p, myo_g = pred == 2, gt == 2
    assert rows["2"]["hd95"] == pytest.approx(hd95(myo_p, myo_g, spacing))
    assert rows["2"]["assd"] == pytest.approx(assd(myo_p, myo_g, spacing))
    assert rows["2"]["dice"] == pytest.approx(dice(myo_p, myo_g))
    m = betti_matching(myo_p, myo_g)
    assert rows["2"]["betti_pred"] == list(m.pred_betti) and rows["2"]["betti_gt"] == list(m.gt_betti)
    assert rows["2"]["betti_matching_error"] == list(m.errors)
    assert data["label_maps"][0]["vi"] == pytest.approx(variation_of_information(pred, gt))
    summary = {(s["structure"], s["metric"]): s for s in data["summary"]}
    assert summary[("2", "hd95")]["n"] == 1 and summary[("2", "hd95")]["sd"] is None
    with open(out_csv, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == CSV_FIELDS
        csv_rows = list(reader)
    assert [r["structure"] for r in csv_rows] == ["2", "2+3"]
    assert float(csv_rows[0]["hd95"]) == pytest.approx(rows["2"]["hd95"])
    assert csv_rows[0]["betti_matching_error_1"] == str(m.errors[1]) and csv_rows[0]["source"] == "pred"


def test_png_2d_default_structures(folders):
    pred_dir, gt_dir, _ = folders
    for name, pred in (("a.png", _ring_map()), ("b.png", _ring_map(broken=True, extra_blob=True))):
        write_mask(gt_dir / name, _ring_map())
        write_mask(pred_dir / name, pred)
    result = run("evaluate", str(pred_dir / "*.png"), "--gt", gt_dir)
    assert result.exit_code == 0, result.output
    for word in ("foreground", "Betti", "BM", "summary over cases", "2 case(s) evaluated"):
        assert word in result.stdout, word
    lines = result.stdout.splitlines()
    myo_b = [line for line in lines if " 2 " in line and "2,0/1,1" in line]  # b.png, MYO: broken, plus a blob
    assert len(myo_b) == 1 and myo_b[0].split()[-2:] == ["1,1", "1,1"], result.stdout  # Betti and BM errors


def test_per_slice_3d_and_quiet(folders, tmp_path):
    pred_dir, gt_dir, _ = folders
    write_mask(gt_dir / "s.mha", _stack(), geometry=SPACING_3D)
    write_mask(pred_dir / "s.mha", _stack(broken_slices=(1, 3)), geometry=SPACING_3D)
    out_json = tmp_path / "r.json"
    result = run("evaluate", pred_dir / "s.mha", "--gt", gt_dir, "--per-slice", "z", "--label", "2", "--json", out_json)
    assert result.exit_code == 0, result.output
    assert "(5 slices along z)" in result.stdout and "summary over slices" in result.stdout
    data = json.loads(out_json.read_text())
    rows = data["results"]
    assert [r["slice"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["empty"] for r in rows] == [True, False, False, False, True]
    assert [r["betti_matching_error"] for r in rows[1:4]] == [[0, 1], [0, 0], [0, 1]]
    summary = {(s["structure"], s["metric"]): s for s in data["summary"]}
    assert summary[("2", "betti_matching_error")]["n"] == 3
    assert summary[("2", "betti_matching_error")]["mean"] == pytest.approx(2 / 3)
    quiet = run("evaluate", pred_dir, "--gt", gt_dir, "--per-slice", "z", "--label", "2", "-q")
    assert quiet.exit_code == 0 and "topofix evaluate" not in quiet.stdout and "summary over slices" in quiet.stdout


def test_missing_ground_truth_and_mismatches_do_not_stop_the_batch(folders, tmp_path):
    pred_dir, gt_dir, _ = folders
    write_mask(gt_dir / "ok.nii.gz", _ring_map())
    write_mask(pred_dir / "ok.nii.gz", _ring_map(broken=True))
    write_mask(pred_dir / "orphan.nii.gz", _ring_map())
    write_mask(pred_dir / "small.nii.gz", _ring_map())
    write_mask(gt_dir / "small.nii.gz", _ring_map()[:30])
    (pred_dir / "corrupt.nii.gz").write_bytes(b"not a nifti file at all")
    write_mask(gt_dir / "corrupt.nii.gz", _ring_map())
    out_json = tmp_path / "r.json"
    result = run("evaluate", pred_dir, "--gt", gt_dir, "--json", out_json)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, result.stderr
    text = "\n".join(errors)
    assert f"orphan.nii.gz: no ground truth {gt_dir / 'orphan.nii.gz'}" in text
    assert "small.nii.gz" in text and "shape" in text and "(30, 32)" in text
    assert "corrupt.nii.gz" in text
    data = json.loads(out_json.read_text())
    assert data["exit_code"] == 2 and len(data["errors"]) == 3
    assert {Path(r["path"]).name for r in data["results"]} == {"ok.nii.gz"}
    assert "1 case(s) evaluated" in result.stdout and "3 case(s) failed" in result.stdout


def test_baseline_paired_summary(folders, tmp_path):
    pred_dir, gt_dir, base_dir = folders
    for i in range(5):
        name = f"c{i}.png"
        write_mask(gt_dir / name, _ring_map())
        write_mask(base_dir / name, _ring_map(broken=True, extra_blob=i % 2 == 0))
        write_mask(pred_dir / name, _ring_map(extra_blob=i == 4))
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    result = run("evaluate", pred_dir, "--gt", gt_dir, "--baseline", base_dir, "-l", "2",
                 "--json", out_json, "--csv", out_csv)
    assert result.exit_code == 0, result.output
    assert "prediction - baseline" in result.stdout
    data = json.loads(out_json.read_text())
    paired = {(p["structure"], p["metric"]): p for p in data["paired"]}
    bm = paired[("2", "betti_matching_error")]
    # baseline: broken ring (loop unmatched) + blobs on cases 0, 2, 4; prediction: blob on case 4
    assert bm["n"] == 5 and bm["mean_baseline"] == pytest.approx((2 + 1 + 2 + 1 + 2) / 5)
    assert bm["mean_pred"] == pytest.approx(1 / 5) and bm["mean_diff"] == pytest.approx(-7 / 5)
    from scipy import stats

    assert bm["p_value"] == pytest.approx(stats.wilcoxon([-2, -1, -2, -1, -1]).pvalue)
    assert bm["test"].startswith("wilcoxon")
    assert paired[("label maps", "vi")]["n"] == 5
    with open(out_csv, newline="") as fh:
        sources = [r["source"] for r in csv.DictReader(fh)]
    assert sources.count("pred") == 5 and sources.count("baseline") == 5


def test_missing_baseline_is_a_case_error(folders):
    pred_dir, gt_dir, base_dir = folders
    write_mask(gt_dir / "a.png", _ring_map())
    write_mask(pred_dir / "a.png", _ring_map())
    result = run("evaluate", pred_dir, "--gt", gt_dir, "--baseline", base_dir)
    assert result.exit_code == 2
    assert f"no baseline {base_dir / 'a.png'}" in result.stderr
    assert "1 case(s) evaluated" in result.stdout


def test_usage_errors(folders, tmp_path):
    pred_dir, gt_dir, _ = folders
    write_mask(pred_dir / "a.png", _ring_map())
    write_mask(gt_dir / "a.png", _ring_map())
    result = run("evaluate", pred_dir, "--gt", tmp_path / "nope")
    assert result.exit_code == 2 and "ground-truth folder does not exist" in result.stderr
    assert run("evaluate", pred_dir).exit_code == 2  # --gt is required
    result = run("evaluate", pred_dir, "--gt", gt_dir, "-p", "2=x")
    assert result.exit_code == 2 and "malformed" in result.stderr
    report = tmp_path / "r.json"
    report.write_text("{}")
    result = run("evaluate", pred_dir, "--gt", gt_dir, "--json", report)
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert run("evaluate", pred_dir, "--gt", gt_dir, "--json", report, "--overwrite").exit_code == 0
    assert json.loads(report.read_text())["tool"] == "topofix evaluate"
    result = run("evaluate", tmp_path / "none*.png", "--gt", gt_dir)
    assert result.exit_code == 2 and "no file matches" in result.stderr


def test_evaluate_does_not_import_torch(folders):
    pred_dir, gt_dir, _ = folders
    write_mask(pred_dir / "a.png", _ring_map())
    write_mask(gt_dir / "a.png", _ring_map())
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from topofix.cli.app import app\n"
        f"r = CliRunner().invoke(app, ['evaluate', {str(pred_dir)!r}, '--gt', {str(gt_dir)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_written_masks_keep_the_spacing_used(folders):
    # guard for the test above: the NIfTI geometry really is anisotropic on disk
    pred_dir, _, _ = folders
    write_mask(pred_dir / "x.nii.gz", _stack(), geometry=SPACING_3D)
    assert read_mask(pred_dir / "x.nii.gz").geometry.spacing == pytest.approx((0.7, 0.9, 3.0))
