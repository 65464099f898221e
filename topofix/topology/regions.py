"""Bounding boxes of masks: one helper for every place that works on a crop.

Why: Betti numbers, the Betti matching metric and the repair stage all do their work
in the bounding box of a structure (everything outside is background, so the topology
is the same in the box), and each used to write the same loop.
"""

from __future__ import annotations

import numpy as np


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``mask``'s non-zero voxels, grown by ``margin`` and clipped
    to the array; ``None`` when the mask is empty.

    >>> import numpy as np
    >>> m = np.zeros((5, 6), bool); m[1:3, 2] = True
    >>> bounding_box(m), bounding_box(m, margin=1)
    ((slice(1, 3, None), slice(2, 3, None)), (slice(0, 4, None), slice(1, 4, None)))
    """
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        nonzero = np.flatnonzero(mask.any(axis=other) if other else mask)
        if nonzero.size == 0:
            return None
        box.append(slice(max(int(nonzero[0]) - margin, 0), min(int(nonzero[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)
