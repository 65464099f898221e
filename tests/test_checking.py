"""topofix.check as a Python API: statuses, per-slice rules, exit codes, sample data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import topofix
from topofix import Prior, check, check_labels

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data" / "masks"


def ring_slice(n: int = 16, broken: bool = False, label: int = 2, lv: int = 3) -> np.ndarray:
    """A myocardium ring (label) around an LV (lv); broken: a 3-pixel gap in the wall."""
    y, x = np.mgrid[:n, :n]
    r = np.hypot(y - n / 2 + 0.5, x - n / 2 + 0.5)
    out = np.zeros((n, n), np.uint8)
    out[r < n / 2 - 1] = label
    out[r < n / 2 - 4] = lv
    if broken:
        out[n // 2 - 1 : n // 2 + 2, n - 5 :] = 0
    return out


def test_ring_passes_and_broken_ring_fails():
    report = check([ring_slice(), ring_slice(broken=True)], ["2=1,1"])
    statuses = [(r.path, r.betti, r.status) for r in report.results]
    assert statuses == [("<array 0>", (1, 1), "pass"), ("<array 1>", (1, 0), "fail")]
    assert report.exit_code == 1
    assert report.summary["files_failed"] == 1 and report.summary["files_passed"] == 1


def test_union_prior_and_default_foreground():
    labels = ring_slice()
    report = check(labels, ["2+3=1,0"], betti="1,0")  # --betti alone: any non-zero voxel
    assert {r.prior.name: r.betti for r in report.results} == {"foreground": (1, 0), "2+3": (1, 0)}
    assert report.exit_code == 0


def test_report_only_without_prior():
    report = check(ring_slice(broken=True))
    (result,) = report.results
    assert result.status == "measured" and result.expected is None and report.exit_code == 0


def test_whole_mask_missing_structure_fails():
    report = check(np.zeros((8, 8), np.uint8), "2=1,1")
    assert report.results[0].status == "fail" and report.results[0].empty


def test_prior_expecting_absence_passes_on_empty():
    assert check(np.zeros((8, 8), np.uint8), "4=0,0").exit_code == 0


def _stack() -> np.ndarray:
    # z slices: empty, ring, broken ring, ring
    return np.stack([np.zeros((16, 16), np.uint8), ring_slice(), ring_slice(broken=True), ring_slice()])


def test_per_slice_empty_slices_are_not_failures_by_default():
    results = check_labels(_stack(), [Prior((1, 1), (2,))], per_slice="z")
    assert [r.slice_index for r in results] == [0, 1, 2, 3]
    assert [r.status for r in results] == ["empty", "pass", "fail", "pass"]
    assert [r.betti for r in results] == [(0, 0), (1, 1), (1, 0), (1, 1)]


def test_per_slice_empty_fail_counts_them():
    report = check(_stack(), "2=1,1", per_slice="z", empty="fail")
    assert [r.status for r in report.results] == ["fail", "pass", "fail", "pass"]
    assert report.summary["failed"] == 2


def test_per_slice_axes_follow_image_axes():
    stack = _stack()  # numpy (z, y, x)
    along_x = check_labels(np.transpose(stack, (2, 1, 0)), [Prior((1, 1), (2,))], per_slice="x")
    assert [r.status for r in along_x] == ["empty", "pass", "fail", "pass"]
    with pytest.raises(ValueError, match="per_slice"):
        check(stack, "2=1,1", per_slice="w")


def test_3d_prior_and_2d_mask_with_cavity_prior_is_an_error_for_that_mask():
    shell = np.ones((5, 5, 5), np.uint8)
    shell[2, 2, 2] = 0
    report = check([shell, ring_slice()], ["1=1,0,1"])
    assert report.results[0].betti == (1, 0, 1) and report.results[0].status == "pass"
    assert len(report.errors) == 1 and "no cavities" in report.errors[0].message
    assert report.exit_code == 2


def test_connectivity_changes_the_answer():
    diamond = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.uint8)
    assert check(diamond, betti="1,1").exit_code == 0
    assert check(diamond, betti="1,1", connectivity="face").results[0].betti == (4, 0)


def test_unreadable_input_does_not_stop_the_batch(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image at all")
    report = check([str(SAMPLES / "sa_001.png"), str(bad), str(tmp_path / "missing.png"),
                    str(SAMPLES / "sa_003.png")], "2=1,1")
    assert [Path(p).name for p in report.paths] == ["sa_001.png", "sa_003.png"]
    assert [Path(e.path).name for e in report.errors] == ["bad.nii.gz", "missing.png"]
    assert all("\n" not in e.message and e.path in e.message for e in report.errors)
    assert report.exit_code == 2


def test_report_dict_is_json_serialisable():
    report = check(_stack(), "2=1,1", per_slice="z")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["summary"]["empty"] == 1 and data["exit_code"] == 1
    assert data["results"][2] == {"path": "<array 0>", "slice": 2, "prior": "2", "betti": [1, 0],
                                  "expected": [1, 1], "alternatives": [[1, 1]], "status": "fail",
                                  "empty": False}


MANIFEST = json.loads((SAMPLES / "MANIFEST.json").read_text())


@pytest.mark.parametrize("entry", MANIFEST["files"], ids=lambda e: e["file"])
def test_sample_masks_match_their_designed_betti_numbers(entry):
    """The generator designed these numbers and checked them with scipy labelling."""
    path = str(SAMPLES / entry["file"])
    if entry["dim"] == 2:
        report = topofix.check(path, [f"{k}=1,0" for k in entry["betti"]])
        assert {r.prior.name: list(r.betti) for r in report.results} == entry["betti"]
    else:
        report = topofix.check(path, "2=1,1", per_slice="z")
        got = ["empty" if r.empty else list(r.betti) for r in report.results]
        assert got == entry["betti_per_slice"]["2"]


# --------------------------------------------------------------------------- #
# Alternatives: "2=1,1|0,0" (a ring, or absent)
# --------------------------------------------------------------------------- #


def oracle_betti_2d(mask: np.ndarray) -> tuple[int, int]:
    """Betti numbers of a 2D mask (full connectivity) by scipy labelling, independent of topofix:
    b0 = 8-connected foreground components, b1 = 4-connected background components that do
    not reach the border (the mask is padded with background, whose outer component is dropped)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    b0 = ndimage.label(mask, structure=np.ones((3, 3)))[1]
    background = np.pad(~mask, 1, constant_values=True)
    b1 = ndimage.label(background, structure=ndimage.generate_binary_structure(2, 1))[1] - 1
    return b0, b1


def _absent_ring_broken() -> np.ndarray:
    # z slices: no label 2 at all, an intact ring, a ring broken open
    return np.stack([np.zeros((16, 16), np.uint8), ring_slice(), ring_slice(broken=True)])


def test_oracle_agrees_on_the_test_slices():
    stack = _absent_ring_broken()
    assert [oracle_betti_2d(s == 2) for s in stack] == [(0, 0), (1, 1), (1, 0)]
    results = check_labels(stack, [Prior((1, 1), (2,))], per_slice="z")
    assert [r.betti for r in results] == [oracle_betti_2d(s == 2) for s in stack]


@pytest.mark.parametrize("empty", ["skip", "fail"])
def test_ring_or_absent_passes_empty_and_ring_slices(empty):
    stack = _absent_ring_broken()
    oracle = [oracle_betti_2d(s == 2) for s in stack]
    report = check(stack, "2=1,1|0,0", per_slice="z", empty=empty)
    assert [r.betti for r in report.results] == oracle
    # the absent slice passes (it is not "empty": absence is what the prior allows),
    # whatever --empty says; the broken ring (1,0) meets neither alternative
    assert [r.status for r in report.results] == ["pass", "pass", "fail"]
    assert [r.empty for r in report.results] == [True, False, False]
    # expected: the alternative nearest to what was measured; (1,0) is as far from
    # (1,1) as from (0,0): the first listed
    assert [r.expected for r in report.results] == [(0, 0), (1, 1), (1, 1)]
    assert report.summary["passed"] == 2 and report.summary["empty"] == 0
    assert report.exit_code == 1
    # without the broken slice, every slice meets the prior
    assert check(stack[:2], "2=1,1|0,0", per_slice="z", empty=empty).exit_code == 0


def test_single_ring_prior_still_reports_or_fails_the_absent_slice():
    stack = _absent_ring_broken()[:2]
    skip = check(stack, "2=1,1", per_slice="z")
    assert [r.status for r in skip.results] == ["empty", "pass"] and skip.exit_code == 0
    fail = check(stack, "2=1,1", per_slice="z", empty="fail")
    assert [r.status for r in fail.results] == ["fail", "pass"] and fail.exit_code == 1
    # alternatives without an all-zero one do not allow absence either
    fail = check(stack, "2=1,1|2,2", per_slice="z", empty="fail")
    assert [r.status for r in fail.results] == ["fail", "pass"]
    assert [r.status for r in check(stack, "2=1,1|2,2", per_slice="z").results] == ["empty", "pass"]


def test_whole_mask_absent_passes_a_prior_that_allows_it():
    empty_3d = np.zeros((4, 8, 8), np.uint8)
    assert check(empty_3d, "2=1,0,0").exit_code == 1
    (result,) = check(empty_3d, "2=1,0,0|0").results
    assert result.status == "pass" and result.empty and result.expected == (0, 0, 0)
    assert check(ring_slice(), "3=2,0|0,0").results[0].status == "fail"  # the LV is one blob


def test_expected_is_the_nearest_alternative_not_always_the_first():
    broken = ring_slice(broken=True)
    assert oracle_betti_2d(broken == 2) == (1, 0)
    (result,) = check(broken, "2=3,0|1,1").results
    assert result.status == "fail" and result.expected == (1, 1)  # 1 away, (3,0) is 2 away
    (result,) = check(broken, "2=0,0|1,1").results
    assert result.expected == (0, 0)  # a tie: the first listed
    # the --betti/--label form
    report = check([ring_slice(), broken], betti="1,1|0,0", label="2")
    assert [r.status for r in report.results] == ["pass", "fail"]


def test_alternative_with_a_cavity_is_refused_on_a_2d_mask():
    report = check(ring_slice(), "2=1,1|1,0,1")
    assert not report.results and len(report.errors) == 1
    assert "alternative 1,0,1" in report.errors[0].message and "no cavities" in report.errors[0].message


def test_report_dict_lists_the_alternatives():
    report = check(_absent_ring_broken(), "2=1,1|0,0", per_slice="z")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["priors"] == [{"name": "2", "labels": [2], "betti": [1, 1], "alternatives": [[1, 1], [0, 0]]}]
    assert data["results"][0] == {"path": "<array 0>", "slice": 0, "prior": "2", "betti": [0, 0],
                                  "expected": [0, 0], "alternatives": [[1, 1], [0, 0]],
                                  "status": "pass", "empty": True}
    assert data["results"][2]["expected"] == [1, 1] and data["results"][2]["status"] == "fail"
    measured = check(ring_slice()).to_dict()["results"][0]
    assert measured["expected"] is None and measured["alternatives"] is None
