"""Benchmark: the topological term of one correction step on a stack with several broken slices.

Run: python bench/bench_stack_step.py [--slices 12] [--side 128] [--threads 2]

A per-slice stack (``--per-slice z``) evaluates one loss per broken slice at every step.
``topofix.losses.loss_terms`` (what the loop uses since issue 13) computes the persistence of
all slices as one batch on ``--threads`` threads, after one copy of the probabilities to the
host; the peer is the earlier way, one ``loss.terms(slice)`` call after another. Both run here
in the same process on the same maps (dense loss, prior (1,1), ROI 0.5 + 2), forward and
backward, median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from topofix.losses import DenseTopologicalLoss, loss_terms
from topofix.threads import set_threads


def broken_ring(side: int, rng: np.random.Generator) -> np.ndarray:
    """Softmax-like (2, side, side) map: a ring with a faint gap, a faint blob and noise."""
    y, x = np.mgrid[:side, :side] - (side - 1) / 2
    r = np.hypot(y, x)
    p = np.exp(-((r - side / 4) ** 2) / (2 * (side / 18) ** 2))
    angle = rng.uniform(-np.pi, np.pi)
    p[np.abs(np.angle(np.exp(1j * (np.arctan2(y, x) - angle)))) < 0.15] *= 0.1
    p += 0.6 * np.exp(-((y - side / 2.5) ** 2 + (x + side / 2.5) ** 2) / (2 * (side / 25) ** 2))
    p = np.clip(p + rng.normal(0, 0.03, p.shape), 0, 1)
    return np.stack([1 - p, p]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    set_threads(args.threads)
    rng = np.random.default_rng(0)
    stack = torch.tensor(np.stack([broken_ring(args.side, rng) for _ in range(args.slices)], axis=1))
    loss = DenseTopologicalLoss("1=1,1", roi_threshold=0.5, roi_margin=2, spatial_dims=2)

    def one_by_one() -> None:
        prob = stack.clone().requires_grad_(True)
        total = sum(loss.terms(prob[:, i]).total for i in range(args.slices))
        total.backward()

    def batched() -> None:
        prob = stack.clone().requires_grad_(True)
        host = prob.detach().to("cpu")
        terms = loss_terms([(loss, prob[:, i], host[:, i]) for i in range(args.slices)], workers=args.threads)
        torch.stack([t.total for t in terms]).sum().backward()

    one_by_one(), batched()  # compile the kernels, warm the caches
    timings: dict[str, list[float]] = {"one slice after another": [], "loss_terms (batched)": []}
    for _ in range(args.repeats):  # interleaved: a load change hits both
        for name, run in (("one slice after another", one_by_one), ("loss_terms (batched)", batched)):
            t0 = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - t0)
    print(f"{args.slices} slices of {args.side}x{args.side}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}")
    base = float(np.median(timings["one slice after another"]))
    for name, values in timings.items():
        median = float(np.median(values))
        print(f"| {name} | {median * 1000:.1f} ms | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
