"""Benchmark: ``topofix.repair`` (no network) on a 2D 256x256 map and a 3D 128^3 map.

Run: python bench/bench_map_repair.py [--threads 1]

Without a network in the loop the cost of a step is the topology (persistence of
the region of interest, the loss, Adam on the logits). Scenes (synthetic, built
here, probabilities of a foreground label):

* 2D 256x256: a ring (p 0.9) whose wall has a gap at p 0.01, prior (1,1);
* 3D 128^3: a solid ball (p 0.95) with a confident extra blob beside it (p 0.9)
  and a cavity inside (p 0.05), prior (1,0,0).

Peers in the same process: keep-largest + fill-holes (scipy, 2D/3D), which fixes
the 3D scene but cannot close the 2D gap; the results say which prior is met.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def ring_2d(size: int = 256) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = size // 2
    d = np.hypot(yy - c, xx - c)
    wall = (d > 0.3 * c) & (d <= 0.45 * c)
    p = np.where(wall, 0.9, np.where(d <= 0.3 * c, 0.001, 0.002))
    p[(np.abs(yy - c) <= 2) & (xx > c) & wall] = 0.01
    return np.stack([1 - p, p]).astype(np.float32)


def ball_3d(size: int = 128) -> np.ndarray:
    zz, yy, xx = np.mgrid[:size, :size, :size]
    c = size // 2
    d = np.sqrt((zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2)
    p = np.where(d <= 0.35 * size, 0.95, 0.01)
    p[d <= 0.06 * size] = 0.05  # a cavity inside (a void)
    blob = np.sqrt((zz - c) ** 2 + (yy - c) ** 2 + (xx - int(0.9 * size)) ** 2) <= 0.05 * size
    p[blob] = 0.9  # an extra component
    return np.stack([1 - p, p]).astype(np.float32)


def keep_largest_fill(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    comp, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    if n > 1:
        sizes = np.bincount(comp.ravel())[1:]
        mask = comp == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(mask)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    import torch

    import topofix

    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s), "
          f"torch {torch.__version__}, topofix {topofix.__version__}")
    topofix.repair(ring_2d(64), "1=1,1")  # compile / load the kernels once
    for name, prob, prior in (("2D 256x256 ring, gap at p 0.01", ring_2d(), "1=1,1"),
                              ("3D 128^3 ball + blob + cavity", ball_3d(), "1=1,0,0")):
        t0 = time.perf_counter()
        result = topofix.repair(prob, prior)
        total = time.perf_counter() - t0
        r = result.report
        per_step = total / max(r.steps, 1)
        print(f"{name}: topofix.repair {total:.2f} s, {r.steps} steps ({per_step * 1e3:.0f} ms per step incl. "
              f"setup), stop {r.stop_reason}, met {r.met_after}, repaired {r.repaired}, Betti after "
              f"{topofix.betti_numbers(result.labels == 1)}")
        mask = prob.argmax(0) == 1
        t0 = time.perf_counter()
        klf = keep_largest_fill(mask)
        print(f"{name}: keep-largest + fill-holes {time.perf_counter() - t0:.3f} s, Betti after "
              f"{topofix.betti_numbers(klf)}")


if __name__ == "__main__":
    main()
