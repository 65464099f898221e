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
