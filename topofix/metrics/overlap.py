"""Overlap metrics: Dice between binary masks, variation of information between label maps.

Conventions (what ``topofix evaluate`` reports):

Dice
    ``2 |P & G| / (|P| + |G|)`` over voxels. Both masks empty: NaN (nothing to
    compare: left out of means). One empty and the other not: 0.

Mean label Dice (:func:`mean_label_dice`)
    How much ``topofix correct`` changed a label map (its ``dice_original_corrected``):
    the mean of :func:`dice` over the non-zero labels present in either map.
    Two all-background maps: 1.0 (they are identical; a change measure, unlike
    Dice against a ground truth, has no case to leave out).

Variation of information (Meila, J. Multivariate Anal. 2007)
    Between two label maps seen as partitions of the voxels:
    ``VI = H(P|G) + H(G|P) = H(P) + H(G) - 2 I(P; G)``, with the joint
    distribution of (prediction label, ground-truth label) over all voxels,
    background included, and **natural logarithms** (nats). 0 when the two
    maps are the same partition (label values may differ: it compares
    partitions, not names); at most ``log(n_voxels)``. ``H(P|G)`` is the
    *over-segmentation* (split) term, ``H(G|P)`` the *under-segmentation*
    (merge) term; :func:`vi_terms` returns both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["dice", "mean_label_dice", "variation_of_information", "vi_terms"]


def _pair(pred: Any, gt: Any, *, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred)
    g = np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction and ground truth differ in shape: {p.shape} vs {g.shape}")
    if binary:
        p = p if p.dtype == np.bool_ else p != 0
        g = g if g.dtype == np.bool_ else g != 0
    return p, g


def dice(pred: Any, gt: Any) -> float:
    """Dice coefficient of two binary masks (non-zero = foreground).

    NaN when both are empty; 0 when exactly one is.

    >>> import numpy as np
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4), bool); b[1:3] = True
    >>> dice(a, b)
    0.5
    """
    p, g = _pair(pred, gt, binary=True)
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(g))
    if total == 0:
        return float("nan")
    return 2.0 * int(np.count_nonzero(p & g)) / total


def mean_label_dice(a: Any, b: Any) -> float:
    """Mean :func:`dice` over the non-zero labels present in either label map; 1.0 when both are all 0.

    >>> import numpy as np
    >>> mean_label_dice(np.array([1, 1, 2, 0]), np.array([1, 1, 0, 0]))  # label 1: 1.0, label 2: 0.0
    0.5
    """
    x, y = _pair(a, b, binary=False)
    labels = np.union1d(np.unique(x), np.unique(y))
    labels = labels[labels != 0]
    if labels.size == 0:
        return 1.0
    return float(np.mean([dice(x == label, y == label) for label in labels]))  # never NaN: each label is somewhere


def _codes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels as compact non-negative codes 0..n-1 (flat), and n."""
    flat = labels.ravel()
    if flat.size and np.issubdtype(flat.dtype, np.integer):
        lo, hi = int(flat.min()), int(flat.max())
        if hi - lo < 1 << 16:  # small range: a shift is enough (no sort)
            return (flat - lo).astype(np.int64, copy=False), hi - lo + 1
    uniq, inverse = np.unique(flat, return_inverse=True)
    return inverse.astype(np.int64, copy=False), int(uniq.size)


def _entropy(counts: np.ndarray, total: int) -> float:
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def vi_terms(pred: Any, gt: Any) -> tuple[float, float]:
    """``(H(P|G), H(G|P))`` in nats: the split and merge terms of the VI."""
    p, g = _pair(pred, gt, binary=False)
    n = p.size
    if n == 0:
        return 0.0, 0.0
    pc, np_ = _codes(p)
    gc, ng = _codes(g)
    joint = np.bincount(pc * ng + gc, minlength=np_ * ng) if np_ * ng <= 1 << 24 else None
    if joint is None:  # many labels on both sides: count only the pairs that occur
        _, joint = np.unique(pc * ng + gc, return_counts=True)
    h_joint = _entropy(joint, n)
    h_p = _entropy(np.bincount(pc), n)
    h_g = _entropy(np.bincount(gc), n)
    # H(P|G) = H(P,G) - H(G); clip the rounding error of exact zeros.
    return max(h_joint - h_g, 0.0), max(h_joint - h_p, 0.0)


def variation_of_information(pred: Any, gt: Any) -> float:
    """Variation of information between two label maps, in nats (natural log).

    ``VI = H(P|G) + H(G|P)``; every voxel counts, background included.

    >>> import numpy as np
    >>> a = np.array([[0, 0, 1, 1]]); b = np.array([[0, 0, 0, 0]])
    >>> round(variation_of_information(a, b), 6)  # H(P|G) = log 2, H(G|P) = 0
    0.693147
    """
    split, merge = vi_terms(pred, gt)
    return split + merge
