"""Benchmark: persistence of super-level filtrations, topofix vs gudhi vs CubicalRipser.

Run:  python bench/bench_persistence.py             (about 10 minutes on 2 cores)
      python bench/bench_persistence.py --quick     (skips gudhi on the large volumes)
      python bench/bench_persistence.py --memory    (adds peak memory of the 96x240x256
                                                     and 256^3 cases, each library in a
                                                     child process)

All three libraries get the same float32 inputs in the same process, all
dimensions (0..d-1), with the connectivity that matches: topofix "full" =
gudhi top_dimensional_cells = cripser computePH_T; the table reports "full".
Times are the best of N runs after one warm-up call (numba compiles or loads its
cache on the first call; that cost is reported separately).

Threads: topofix uses at most 2 threads (3D passes, batch); cripser is run with
n_threads=1 and n_threads=2 and its better time is the one compared (column
"cripser best", with the setting in brackets). "loop" cases call each library
once per map, as ``correct`` does per slice; "batch" gives topofix its batch API.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np


def smooth(shape, sigma, seed=0) -> np.ndarray:
    from scipy import ndimage

    v = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return ((v - v.min()) / (v.max() - v.min())).astype(np.float32)


def noisy(shape, seed=0) -> np.ndarray:
    return np.clip(smooth(shape, 2, seed) + np.random.default_rng(seed + 1).normal(0, 0.1, shape), 0, 1).astype(np.float32)


def cases():
    yield "loop 100 x 80x80", np.stack([smooth((80, 80), 2, s) for s in range(100)]), 5
    yield "batch 100 x 80x80", np.stack([smooth((80, 80), 2, s) for s in range(100)]), 3
    yield "256x256", smooth((256, 256), 3), 5
    yield "512x512", smooth((512, 512), 4), 3
    yield "64^3 smooth", smooth((64, 64, 64), 2), 3
    yield "64^3 noisy", noisy((64, 64, 64)), 3
    yield "128^3 smooth", smooth((128, 128, 128), 3), 1
    yield "128^3 noisy", noisy((128, 128, 128)), 1
    yield "96x240x256", smooth((96, 240, 256), 4), 1
    yield "96x240x256 rough", smooth((96, 240, 256), 2, seed=1), 1
    yield "256^3 smooth", smooth((256, 256, 256), 4), 1


def run_topofix(x, batch):
    import topofix

    if batch == "batch":
        return topofix.persistence_batch(x)
    if batch == "loop":
        return [topofix.persistence(im) for im in x]
    return topofix.persistence(x)


def run_cripser(x, batch, n_threads=1):
    import cripser

    if batch:
        return [cripser.computePH_T(-im.astype(np.float64), maxdim=1, n_threads=n_threads) for im in x]
    return cripser.computePH_T(-x.astype(np.float64), maxdim=x.ndim - 1, n_threads=n_threads)


def run_cripser2(x, batch):
    return run_cripser(x, batch, 2)


def run_gudhi(x, batch):
    import gudhi

    def one(im):
        cc = gudhi.CubicalComplex(top_dimensional_cells=-im)
        cc.compute_persistence(homology_coeff_field=2)
        return cc.cofaces_of_persistence_pairs()  # critical cells, as topofix returns

    return [one(im) for im in x] if batch else one(x)


RUNNERS = {"topofix": run_topofix, "cripser": run_cripser, "cripser2": run_cripser2, "gudhi": run_gudhi}


def best_of(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def peak_memory_child(lib: str, path: str) -> None:
    RUNNERS[lib](smooth((6, 7, 8), 1), False)  # imports and JIT outside the measure
    x = np.load(path)
    # ru_maxrss survives fork+exec (it would report the parent's peak): reset the
    # kernel's high-water mark instead and read VmHWM (Linux).
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    base = _status_kb("VmRSS")
    RUNNERS[lib](x, False)
    print(f"{(_status_kb('VmHWM') - base) / 1024:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--volume", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_memory_child(args.child, args.volume)
        return
    import cripser
    import gudhi
    import numba

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"numpy {np.__version__}, numba {numba.__version__}, gudhi {gudhi.__version__}, "
          f"cripser {getattr(cripser, '__version__', '?')}")
    t = time.perf_counter()
    run_topofix(smooth((8, 9, 10), 1), False)
    run_topofix(smooth((8, 9), 1)[None], "batch")
    run_topofix(smooth((8, 9), 1)[None], "loop")
    print(f"first call (numba cache load or compile): {time.perf_counter() - t:.2f} s")
    print("| input | topofix (s) | cripser best (s) [n_threads] | gudhi (s) | topofix speed-up vs fastest |")
    print("|---|---|---|---|---|")
    for name, x, repeat in cases():
        batch = name.split()[0] if name.split()[0] in ("loop", "batch") else None
        times = {}
        for lib in ("topofix", "cripser", "cripser2", "gudhi"):
            if lib == "gudhi" and args.quick and x.size > 2_000_000:
                times[lib] = float("nan")
                continue
            if lib == "gudhi" and x.size > 10_000_000:
                times[lib] = float("nan")  # minutes and > 6 GB at 256^3 on this machine
                continue
            run = RUNNERS[lib]
            times[lib] = best_of(lambda run=run: run(x, batch), repeat)
        threads = 1 if times["cripser"] <= times["cripser2"] else 2
        cripser_best = min(times["cripser"], times["cripser2"])
        others = min(v for k, v in times.items() if k != "topofix" and v == v)
        print(f"| {name} | {times['topofix']:.3f} | {cripser_best:.3f} [{threads}] | {times['gudhi']:.3f} | "
              f"{others / times['topofix']:.1f}x |", flush=True)
    if args.memory:
        import tempfile

        for label, volume in (("96x240x256", smooth((96, 240, 256), 4)), ("256^3", smooth((256, 256, 256), 4))):
            print(f"\npeak memory (RSS) above the loaded input, {label} float32 (MB):")
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "volume.npy")
                np.save(path, volume)
                for lib in RUNNERS:
                    if lib == "gudhi" and volume.size > 10_000_000:
                        print("  gudhi: not run (over 6 GB expected)")
                        continue
                    out = subprocess.run([sys.executable, __file__, "--child", lib, "--volume", path],
                                         capture_output=True, text=True, check=True)
                    print(f"  {lib}: {out.stdout.strip()}")


if __name__ == "__main__":
    main()
