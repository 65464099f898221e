"""bounding_box against np.argwhere (an independent oracle)."""

from __future__ import annotations

import numpy as np

from topofix.topology.regions import bounding_box


def test_bounding_box_equals_argwhere_extent():
    rng = np.random.default_rng(0)
    for _ in range(200):
        shape = tuple(int(rng.integers(1, 12)) for _ in range(int(rng.integers(2, 4))))
        mask = rng.random(shape) < rng.uniform(0.0, 0.1)
        margin = int(rng.integers(0, 3))
        box = bounding_box(mask, margin)
        if not mask.any():
            assert box is None
            continue
        where = np.argwhere(mask)
        lo = np.maximum(where.min(0) - margin, 0)
        hi = np.minimum(where.max(0) + 1 + margin, shape)
        assert box == tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        assert mask[box].sum() == mask.sum()
