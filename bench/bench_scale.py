"""Scans per minute of ``topofix correct`` on the 27 sample scans: one process, ``--workers``, ``--cluster``.

Each configuration is one CLI run in a fresh output folder, timed from the command's start to its exit
(so process start, model loading and, for ``--cluster local:N``, starting the scheduler and the worker
processes are included). The load average before and after is printed: on a shared machine it matters.

    PYTHONPATH=. python bench/bench_scale.py [--repeat 1] [--only cluster] [--in-process]

``--in-process``: the same three through :func:`topofix.correct_files` in this process, twice each, so
that the fixed costs (the cluster's start, the workers importing torch and loading the network) are
told apart from the rate once running: the seconds to the first case, then the scans per minute.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["correct", str(ROOT / "sample_data" / "images"), "-m", str(ROOT / "sample_data" / "models" / "demo_unet.pt"),
          "--per-slice", "z", "-p", "2=1,1", "--device", "cpu", "-q"]
CONFIGS = {
    "sequential": ["--threads", "1"],
    "workers": ["--workers", "2", "--threads", "1"],
    "cluster": ["--cluster", "local:2", "--threads", "1"],
}


def in_process(names: list[str]) -> None:
    from topofix.files import Inference, correct_files
    from topofix.threads import set_threads

    set_threads(1)
    images, model = ROOT / "sample_data" / "images", ROOT / "sample_data" / "models" / "demo_unet.pt"
    for name in names:
        kwargs: dict = {"workers": 2} if name == "workers" else {}
        client = local = None
        if name == "cluster":
            from topofix.cluster import connect

            start = time.perf_counter()
            client, local, _ = connect("local:2", 1)
            print(f"cluster    LocalCluster(2 processes) started in {time.perf_counter() - start:.1f} s")
            kwargs = {"cluster": local.scheduler_address}
        for attempt in ("first", "again"):
            stamps: list[float] = []
            with tempfile.TemporaryDirectory() as tmp:
                load, start = os.getloadavg()[0], time.perf_counter()
                report = correct_files([images], model, ["2=1,1"], tmp, inference=Inference(per_slice="z", device="cpu"),
                                       threads=1, on_case=lambda c, s=stamps: s.append(time.perf_counter()), **kwargs)
                seconds = time.perf_counter() - start
            assert report.exit_status == 0
            rate = 60 * (len(stamps) - 1) / (stamps[-1] - stamps[0])
            print(f"{name:10s} {attempt}: {seconds:5.1f} s ({60 * len(stamps) / seconds:5.1f} scans/min), first case "
                  f"after {stamps[0] - start:4.1f} s, then {rate:5.1f} scans/min; load {load:.2f} -> "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
        if client is not None:
            client.close()
            local.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", choices=list(CONFIGS), action="append")
    parser.add_argument("--in-process", action="store_true")
    args = parser.parse_args()
    if args.in_process:
        in_process(args.only or list(CONFIGS))
        return
    scans = len(list((ROOT / "sample_data" / "images").glob("*.png")))
    for name in args.only or list(CONFIGS):
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                command = [sys.executable, "-m", "topofix.cli.app", *COMMON, "-o", tmp, *CONFIGS[name]]
                load = os.getloadavg()[0]
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                seconds = time.perf_counter() - start
                assert done.returncode == 0, done.stdout + done.stderr
                print(f"{name:10s} {seconds:6.1f} s  {60 * scans / seconds:6.1f} scans/min  "
                      f"load {load:.2f} -> {os.getloadavg()[0]:.2f}   topofix {' '.join(COMMON[:1] + CONFIGS[name])}",
                      flush=True)


if __name__ == "__main__":
    main()
