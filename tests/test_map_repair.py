"""``topofix.repair``: the probability map optimised directly, no network (hand-made maps, scipy oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import topofix

EIGHT = np.ones((3, 3), bool)


def betti_2d(mask: np.ndarray) -> tuple[int, int]:
    """Oracle: components 8-connected, holes = 4-connected background components off the border."""
    b0 = ndimage.label(mask, structure=EIGHT)[1]
    _, n = ndimage.label(np.pad(~mask, 1))
    return b0, n - 1


def ring_map(gap_p: float | None = None, blob_p: float | None = None, size: int = 64) -> np.ndarray:
    """Two-channel probabilities of a ring (p 0.9 on the wall, 0.002 outside, 0.001 in the cavity, as
    where a network is sure of the LV); optionally a gap at ``gap_p`` through the right wall and a
    blob at ``blob_p`` in a corner."""
    yy, xx = np.mgrid[:size, :size]
    d = np.hypot(yy - size // 2, xx - size // 2)
    p = np.where((d <= 14) & (d > 8), 0.9, np.where(d <= 8, 0.001, 0.002))
    if gap_p is not None:
        p[(np.abs(yy - size // 2) <= 1) & (xx > size // 2) & (d > 8) & (d <= 14)] = gap_p
    if blob_p is not None:
        p[np.hypot(yy - 6, xx - 6) <= 3] = blob_p
    return np.stack([1 - p, p]).astype(np.float32)


def test_a_gap_at_p_001_is_closed():
    prob = ring_map(gap_p=0.01)
    assert betti_2d(prob.argmax(0) == 1) == (1, 0)
    result = topofix.repair(prob, "1=1,1")
    assert result.report.met_after and betti_2d(result.labels == 1) == (1, 1)
    assert result.report.stop_reason == "met" and result.report.steps > 0
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-5)  # a softmax: labels stay consistent
    # only the gap changed (the wall's pixels between the two ends), nothing in the cavity
    changed = result.labels != prob.argmax(0)
    yy, xx = np.mgrid[:64, :64]
    gap_zone = (np.abs(yy - 32) <= 2) & (xx >= 40) & (xx <= 47)
    assert changed.any() and not (changed & ~gap_zone).any()


def test_a_confident_extra_blob_is_removed():
    prob = ring_map(blob_p=0.95)
    assert betti_2d(prob.argmax(0) == 1) == (2, 1)
    result = topofix.repair(prob, "1=1,1")
    assert result.report.met_after and betti_2d(result.labels == 1) == (1, 1)
    assert not (result.labels[:12, :12] == 1).any()


def test_a_map_that_meets_its_prior_is_left_byte_identical():
    prob = ring_map()
    result = topofix.repair(prob, "1=1,1")
    assert result.report.stop_reason == "already met" and result.report.steps == 0
    np.testing.assert_array_equal(result.labels, prob.argmax(0))
    np.testing.assert_array_equal(result.probabilities, prob)


def test_given_labels_are_judged_and_kept():
    """nnU-Net's segmentation stands for the map: when it meets the prior it is returned as it is,
    even where it differs from the argmax."""
    prob = ring_map()
    labels = prob.argmax(0).astype(np.uint8)
    labels[0, 0] = 0
    labels[40, 20] = 1  # inside the wall already; an arbitrary but valid segmentation
    result = topofix.repair(prob, "1=1,1", labels=labels)
    np.testing.assert_array_equal(result.labels, labels)


def test_nothing_is_invented_without_evidence():
    prob = np.stack([np.full((32, 32), 0.95), np.full((32, 32), 0.05)]).astype(np.float32)
    result = topofix.repair(prob, "1=1,1")
    assert result.report.stop_reason == "absent" and not result.labels.any()


def test_per_slice_stack_changes_only_the_broken_slice():
    good, broken = ring_map(), ring_map(gap_p=0.01)
    prob = np.stack([good, broken, good], axis=1)  # (C, z, y, x)
    result = topofix.repair(prob, "1=1,1", per_slice="z")
    assert [betti_2d(result.labels[z] == 1) for z in range(3)] == [(1, 1)] * 3
    np.testing.assert_array_equal(result.labels[[0, 2]], prob.argmax(0)[[0, 2]])
    np.testing.assert_array_equal(result.probabilities[:, [0, 2]], prob[:, [0, 2]])


@pytest.mark.parametrize("bad, message", [
    (lambda p: p * 0.7, "do not sum to 1"),
    (lambda p: np.where(np.arange(64)[None, None, :] == 3, np.nan, p), "NaN"),
])
def test_bad_probabilities_are_refused_in_one_line(bad, message):
    with pytest.raises(ValueError, match=message):
        topofix.repair(bad(ring_map()), "1=1,1")


# ------------------------------------------------------------------------------------------------
# `topofix repair` end to end: an nnU-Net-style output made here
# ------------------------------------------------------------------------------------------------
def _nnunet_case(folder, name: str, prob: np.ndarray, geometry) -> None:
    """``name.npz`` (probabilities, channel first, numpy order) + ``name.nii.gz`` (the argmax) + a pickle
    that must never be opened."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"{name}.npz", probabilities=prob)
    topofix.write_mask(folder / f"{name}.nii.gz", prob.argmax(0).astype(np.uint8), geometry)
    (folder / f"{name}.pkl").write_bytes(b"\x80\x04not a pickle to open")


def test_cli_repair_on_nnunet_outputs_keeps_the_segmentation_geometry(tmp_path):
    import json

    import SimpleITK as sitk
    from typer.testing import CliRunner

    from topofix.cli.app import app
    from topofix.io import Geometry

    geometry = Geometry(spacing=(0.7, 0.8, 1.5), origin=(10.0, -20.0, 5.0),
                        direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    broken = np.stack([ring_map(gap_p=0.01), ring_map(), ring_map(blob_p=0.95)], axis=1)  # (C, z, y, x)
    good = np.stack([ring_map()] * 3, axis=1)
    _nnunet_case(tmp_path / "nnunet", "case_001", broken, geometry)
    _nnunet_case(tmp_path / "nnunet", "case_002", good, geometry)
    (tmp_path / "nnunet" / "case_003.npz").write_bytes(b"not a zip")  # one bad input: the batch goes on
    out = tmp_path / "fixed"
    result = CliRunner().invoke(app, ["repair", str(tmp_path / "nnunet"), "-o", str(out), "--per-slice", "z",
                                      "-p", "1=1,1", "-q", "--html"])
    assert result.exit_code == 2, result.output  # case_003 failed
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "case_003.npz" in errors[0]
    fixed = sitk.ReadImage(str(out / "case_001.nii.gz"))
    assert fixed.GetSpacing() == pytest.approx((0.7, 0.8, 1.5)) and fixed.GetOrigin() == pytest.approx((10, -20, 5))
    assert fixed.GetDirection() == pytest.approx(geometry.direction)
    labels = sitk.GetArrayFromImage(fixed)
    assert [betti_2d(labels[z] == 1) for z in range(3)] == [(1, 1)] * 3
    np.testing.assert_array_equal(labels[1], broken.argmax(0)[1])  # the slice that met its prior: as it was
    same = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case_002.nii.gz")))
    np.testing.assert_array_equal(same, good.argmax(0))  # a correct input: its segmentation, unchanged
    cases = {c["key"]: c for c in json.loads((out / "topofix_report.json").read_text())["cases"]}
    assert cases["case_001.nii.gz"]["kind"] == "nnunet" and cases["case_001.nii.gz"]["met_after"]
    assert cases["case_002.nii.gz"]["stop_reason"] == "already met"
    page = (out / "topofix_report.html").read_text(encoding="utf-8")  # the HTML of a repair run, masks found
    assert "case_001.npz" in page and "data:image/png" in page
    assert "no mask found" not in page and "corrected mask not found" not in page and "not found (run" not in page


def test_label_maps_gaps_are_bridged_inside_the_gap_and_nothing_is_invented():
    """A label map only (TotalSegmentator): a ring cut by a 1-row gap and by a 7-row gap is closed,
    with a bridge one voxel wide in the gap or on its rim (the optimisation, like correct's, closes gaps whatever their
    probability); a label map without the structure is left as it is (absent)."""
    labels = (ring_map().argmax(0) == 1).astype(np.uint8)
    yy, xx = np.mgrid[:64, :64]
    for rows in ((32, 33), (29, 36)):
        cut = labels.copy()
        cut[rows[0]:rows[1], 40:48] = 0
        assert betti_2d(cut == 1) == (1, 0)
        closed = topofix.repair(cut, "1=1,1")
        assert closed.report.met_after and betti_2d(closed.labels == 1) == (1, 1)
        changed = closed.labels != cut
        gap = (yy >= rows[0] - 1) & (yy <= rows[1]) & (xx >= 39) & (xx <= 48)  # the gap and its rim
        assert changed.any() and not (changed & ~gap).any()
        assert int(changed.sum()) <= rows[1] - rows[0]  # a bridge one voxel wide
    nothing = np.zeros((64, 64), np.uint8)
    nothing[5:10, 5:10] = 2  # another structure only
    result = topofix.repair(nothing, "1=1,1", n_labels=3)
    assert result.report.stop_reason == "absent" and np.array_equal(result.labels, nothing)


def test_an_extra_hole_is_filled():
    """A solid disc (prior (1,0)) with a punched hole where the probability dips to 0.3: filled, and
    nothing else changes."""
    yy, xx = np.mgrid[:48, :48]
    disc = np.hypot(yy - 24, xx - 24) <= 15
    p = np.where(disc, 0.95, 0.01)
    hole = np.hypot(yy - 20, xx - 28) <= 2
    p[hole] = 0.3
    prob = np.stack([1 - p, p]).astype(np.float32)
    assert betti_2d(prob.argmax(0) == 1) == (1, 1)
    result = topofix.repair(prob, "1=1,0")
    assert result.report.met_after and betti_2d(result.labels == 1) == (1, 0)
    changed = result.labels != prob.argmax(0)
    assert changed.any() and not (changed & ~hole).any()


def test_a_label_map_with_many_labels_works_on_the_priors_labels_only():
    """TotalSegmentator-like: labels 3, 5 and 7; prior on 5 only. The optimised map has 2 channels, not 8;
    the gap of ring 5 is closed with label 5; an extra blob of 5 lying inside label 7 goes back to 7
    (the nearest label of no prior); labels 3 and 7 are otherwise untouched; the report names label 5."""
    ring = ring_map().argmax(0) == 1
    labels = np.zeros((64, 64), np.int64)
    labels[ring] = 5
    labels[32, 40:48] = 0  # the gap
    labels[50:60, 2:12] = 7
    labels[54:57, 5:8] = 5  # a blob of 5 inside 7
    labels[2:6, 50:60] = 3
    assert betti_2d(labels == 5) == (2, 0)
    result = topofix.repair(labels, "5=1,1")
    assert result.probabilities.shape[0] == 2 and result.channel_labels == [None, 5]
    assert result.report.met_after and betti_2d(result.labels == 5) == (1, 1)
    assert (result.labels[54:57, 5:8] == 7).all() and (result.labels[50:60, 2:12] == 7).all()
    assert np.array_equal(result.labels == 3, labels == 3)
    changed = result.labels != labels
    assert not (changed & ~((np.abs(np.mgrid[:64, :64][0] - 32) <= 1) & (np.mgrid[:64, :64][1] >= 39)
                            | ((labels == 5) & (np.mgrid[:64, :64][0] >= 50)))).any()
    assert [p.prior for p in result.report.priors] == ["5=1,1"]
    np.testing.assert_array_equal(result.original_labels, labels)
