"""Component labelling against scipy.ndimage.label (an independent oracle).

cc3d 4.1.1 mislabels some 2D masks with 8-connectivity (a background pixel gets a
label, or a component gets two), while its count stays right: these random masks
include such cases, so a direct 2D call to cc3d fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from topofix.repairing import _components
from topofix.topology.labelling import label_components


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    if ((a > 0) != (b > 0)).any():
        return False
    pairs = set(zip(a[a > 0].tolist(), b[b > 0].tolist()))
    return len(pairs) == len(np.unique(a[a > 0])) == len(np.unique(b[b > 0]))


def random_masks(ndim: int, count: int):
    rng = np.random.default_rng(0)
    for _ in range(count):
        shape = tuple(int(rng.integers(5, 40 if ndim == 2 else 12)) for _ in range(ndim))
        yield rng.random(shape) < rng.uniform(0.2, 0.8)


@pytest.mark.parametrize("ndim, connectivity, structure", [
    (2, 8, np.ones((3, 3))), (2, 4, None), (3, 26, np.ones((3, 3, 3))), (3, 6, None),
])
def test_labels_equal_scipy(ndim, connectivity, structure):
    for mask in random_masks(ndim, 300):
        expected, n = ndimage.label(mask, structure=structure)
        for labels, count in (label_components(mask, connectivity), _components(mask, connectivity)):
            assert count == n
            assert labels.shape == mask.shape and set(np.unique(labels)) == set(range(n + 1))
            assert same_partition(labels, expected)


def test_empty_and_bad_connectivity():
    labels, n = label_components(np.zeros((4, 5), bool), 8)
    assert n == 0 and not labels.any() and labels.shape == (4, 5)
    with pytest.raises(ValueError):
        label_components(np.ones((3, 3), bool), 6)
