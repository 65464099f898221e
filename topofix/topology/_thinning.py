"""Numba kernel of the 2D thinning used by :mod:`topofix.repairing` (deleting simple points)."""

from __future__ import annotations

import numpy as np

from topofix.topology._jit import njit


@njit(nogil=True)
def thin_kernel(mask: np.ndarray, order: np.ndarray, table: np.ndarray) -> int:
    """Delete from the padded 2D ``mask`` (uint8, modified in place) the pixels of ``order``
    (flat indices, in that order) that are simple according to ``table`` (256 entries, bit k
    = k-th neighbour clockwise from the top-left), pass after pass until none is deleted.

    Returns the number of deleted pixels. The caller pads the mask by one pixel, so
    neighbours are never read outside the array.
    """
    width = mask.shape[1]
    dy = (-1, -1, -1, 0, 1, 1, 1, 0)
    dx = (-1, 0, 1, 1, 1, 0, -1, -1)
    deleted = 0
    changed = True
    while changed:
        changed = False
        for idx in order:
            y = idx // width
            x = idx - y * width
            if mask[y, x] == 0:
                continue
            code = 0
            for k in range(8):
                if mask[y + dy[k], x + dx[k]] != 0:
                    code |= 1 << k
            if table[code]:
                mask[y, x] = 0
                deleted += 1
                changed = True
    return deleted
