"""Benchmark: exact Betti numbers of large 3D masks (topofix check's hot path).

Run:  python bench/bench_betti.py            (about a minute on 2 cores)
      python bench/bench_betti.py --quick    (skips the gudhi comparison)

Cases, 512x512x300 (the issue's size; a CT volume):
  organ   - an ellipsoid filling most of the volume, with a tunnel and a cavity
  liver   - a smaller lobed blob (about 12% of the voxels) with holes
  noise   - i.i.d. 50% random voxels: a worst case (millions of components)
and a 128^3 smooth random-field mask to compare with gudhi and scipy on the same input.
Prints a Markdown table; copy it into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from topofix import betti_numbers


def organ(shape=(300, 512, 512)) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    m = ((z - 150) / 140.0) ** 2 + ((y - 256) / 250.0) ** 2 + ((x - 256) / 250.0) ** 2 < 1
    m &= ~(((y - 256) ** 2 + (x - 300) ** 2) < 20**2)  # a tunnel through z
    m &= ~(((z - 100) ** 2 + (y - 200) ** 2 + (x - 200) ** 2) < 15**2)  # a cavity
    return m


def liver(shape=(300, 512, 512)) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    m = ((z - 150) / 90.0) ** 2 + ((y - 230) / 140.0) ** 2 + ((x - 200) / 160.0) ** 2 < 1
    m |= ((z - 170) / 60.0) ** 2 + ((y - 300) / 90.0) ** 2 + ((x - 330) / 100.0) ** 2 < 1
    for cz, cy, cx, r in [(150, 230, 200, 12), (120, 260, 150, 8), (180, 300, 330, 10)]:
        m &= ((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) >= r**2  # vessels' cavities
    return m


def smooth_field(n=128, seed=0) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal((n, n, n)), 3) > 0


def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def scipy_betti(mask: np.ndarray) -> tuple[int, int]:
    """b0 and b2 with scipy.ndimage.label (the library alternative to cc3d)."""
    from scipy import ndimage

    b0 = ndimage.label(mask, ndimage.generate_binary_structure(3, 3))[1]
    b2 = ndimage.label(~np.pad(mask, 1))[1] - 1
    return b0, b2


def gudhi_betti(mask: np.ndarray) -> tuple[int, ...]:
    import gudhi

    cc = gudhi.CubicalComplex(top_dimensional_cells=np.where(mask, 0.0, 1.0))
    cc.compute_persistence(homology_coeff_field=2, min_persistence=-1)
    return tuple(cc.persistent_betti_numbers(0.0, 0.0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print("| case | shape | foreground | connectivity | topofix betti_numbers (s) | result | scipy.ndimage b0+b2 only (s) | gudhi (s) |")
    print("|---|---|---|---|---|---|---|---|")
    cases = [("organ", organ()), ("liver", liver()), ("noise 50%", np.random.default_rng(0).random((300, 512, 512)) < 0.5),
             ("smooth field", smooth_field())]
    for name, mask in cases:
        for conn in ("full", "face"):
            t, b = timed(lambda: betti_numbers(mask, conn), repeat=1 if name.startswith("noise") else 3)
            ts = tg = "-"
            if conn == "full" and not name.startswith("noise"):
                ts = f"{timed(lambda: scipy_betti(mask), repeat=1)[0]:.2f}"
                if mask.size <= 128**3 and not args.quick:
                    tg_val, gb = timed(lambda: gudhi_betti(mask), repeat=1)
                    assert tuple(gb)[:3] == b, (gb, b)
                    tg = f"{tg_val:.2f}"
            print(f"| {name} | {'x'.join(map(str, mask.shape))} | {mask.mean():.1%} | {conn} | {t:.3f} | {b} | {ts} | {tg} |", flush=True)


if __name__ == "__main__":
    main()
