"""Benchmark: cost of one topological loss step vs one network step, 256x256.

Run: python bench/bench_loss_step.py

`topofix correct` pays, at every optimisation step, a forward+backward pass of the
network plus the topological loss (persistence, gather, backward). The loss must
not be the bottleneck: it is compared here with a forward+backward pass of a
small U-Net (about 1.9 M parameters) on the same 256x256 map, on the CPU.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch

from topofix import TopologicalLoss
from topofix.nets import SmallUNet


def best_of(fn, repeat=10):
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    net = SmallUNet(1, 1, base=16, depth=4).eval()
    params = sum(p.numel() for p in net.parameters())
    image = torch.randn(1, 1, 256, 256)

    def network_step():
        net.zero_grad()
        net(image).sum().backward()

    # a realistic map: a noisy ring, as a segmentation network would output
    y, x = np.mgrid[:256, :256]
    r = np.hypot(y - 128, x - 128)
    ring = ((r > 50) & (r < 70)).astype(np.float32)
    logits = torch.tensor(6 * ring - 3 + np.random.default_rng(0).normal(0, 1.0, ring.shape), dtype=torch.float32,
                          requires_grad=True)
    rows = []
    for roi in (0.5, None):
        loss_fn = TopologicalLoss((1, 1), roi_threshold=roi)

        def loss_step(loss_fn=loss_fn):
            logits.grad = None
            loss_fn(torch.sigmoid(logits)).backward()

        rows.append((f"topological loss (1,1), roi={roi}", best_of(loss_step)))
    net_time = best_of(network_step, 5)
    print("| step, 256x256 | seconds |")
    print("|---|---|")
    print(f"| U-Net forward+backward ({params / 1e6:.1f} M parameters) | {net_time:.4f} |")
    for name, t in rows:
        print(f"| {name}, forward+backward | {t:.4f} ({net_time / t:.0f}x cheaper) |")


if __name__ == "__main__":
    main()
