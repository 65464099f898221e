"""Benchmark: seconds per scan and per step of `topofix correct`, network time vs topology time.

Run: python bench/bench_correct.py            (2D 256x256 and 3D 96^3; minutes on 2 cores)
     python bench/bench_correct.py --quick    (fewer steps, smaller 3D volume, for a smoke test)
     python bench/bench_correct.py --device cuda   (the network on the GPU; persistence stays on the CPU)

Every step of the correction loop (topofix.correction.correct) does:

    prob = network(image)                       forward, with autograd      -> network
    mask = labels(prob); check prior            Betti numbers of the mask   -> check
    L = TopologicalLoss(prob) + lambda * MSE    persistence of the ROI      -> topology
    L.backward()                                                            -> topology (dL/dprob)
                                                                               + network (dprob/dtheta)
    Adam step                                                               -> optimizer

The loop below mirrors those calls one by one (same functions, same arguments) and times
each part; the backward pass is split at the probability map: ``torch.autograd.grad(L, prob)``
is the topology's share (the gather at the critical cells and the MSE), ``prob.backward(g)``
the network's. Then ``topofix.correct`` itself is timed on the same scan (seconds per scan,
including the first prediction, the model probes and the weight snapshot/restore).

The networks are SmallUNets (2D: base 16, depth 4, 1.9 M parameters; 3D: base 8, depth 3)
inside :class:`Segmenter`, which adds the intensity-following logits a trained network would
produce, so that the output looks like a segmentation (a sharp object with a faint defect:
a gap in a ring, a hole in a hollow ball, and a faint extra blob), not like the noise of an
untrained network, which would make persistence far more expensive than on a real prediction.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from topofix import CorrectionSettings, TopologicalLoss, betti_numbers, correct
from topofix.assessment import assess
from topofix.models.contract import ModelContract, resolve_contract
from topofix.models.inference import (
    labels_from_probabilities,
    predict_probabilities,
    prepare_input,
)
from topofix.models.weights import WeightsSnapshot, fresh_optimizer
from topofix.nets import SmallUNet
from topofix.priors import build_priors

SOFT = 0.08  # width of the soft targets: P(object) = logistic((intensity - 0.5) / SOFT)


# --------------------------------------------------------------------------- scenes


def ring_scene(size: int, gap: float | None = 0.3, blob: float | None = 0.7) -> np.ndarray:
    """Clean intensity of a ring (1.0, radius 70, half-width 9 at 256) with a faint gap
    (12 pixels of intensity ``gap``) and a faint blob (radius 7, intensity ``blob``)."""
    y, x = np.mgrid[:size, :size].astype(np.float64)
    s = size / 256
    c = size / 2
    radius, width = 70 * s, 9 * s
    r = np.hypot(y - c, x - c)
    theta = np.arctan2(y - c, x - c)
    img = np.zeros((size, size))
    img[np.abs(r - radius) <= width] = 1.0
    if gap is not None:
        along = np.abs(np.angle(np.exp(1j * (theta - 1.0)))) * radius
        img[(np.abs(r - radius) <= width + 1) & (along <= 6 * s)] = gap
    if blob is not None:
        img[np.hypot(y - 0.15 * size, x - 0.85 * size) <= 7 * s] = blob
    return img


def shell_scene(size: int, hole: float | None = 0.3, blob: float | None = 0.7) -> np.ndarray:
    """Clean intensity of a hollow ball (1.0, radii 23-30 at 96) with a faint hole through its
    shell (radius 4, intensity ``hole``) and a faint blob (radius 5, intensity ``blob``)."""
    z, y, x = np.mgrid[:size, :size, :size].astype(np.float64)
    s = size / 96
    c = size / 2
    outer, inner = 30 * s, 23 * s
    r = np.sqrt((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2)
    img = np.zeros((size,) * 3)
    img[(r <= outer) & (r >= inner)] = 1.0
    if hole is not None:
        img[(r <= outer + 1) & (r >= inner - 1) & (x > c) & (np.hypot(z - c, y - c) <= 4 * s)] = hole
    if blob is not None:
        d = np.sqrt((z - 0.12 * size) ** 2 + (y - 0.12 * size) ** 2 + (x - 0.88 * size) ** 2)
        img[d <= 5 * s] = blob
    return img


class Segmenter(torch.nn.Module):
    """A SmallUNet whose output is already a segmentation: ``logits = unet(x) + (I - 0.5) / SOFT``,
    ``I`` the scan's intensity recovered from the z-scored input ``x`` (a fixed affine map).

    The second term is what a network trained on these scenes learns (the soft targets of
    tests/correct_models.py); a freshly initialised U-Net adds about 1e-3 to it. All the cost
    (forward, backward, Adam) and every trainable parameter are the U-Net's: the correction
    works by changing the U-Net's share of the logits. Training a 1.9 M parameter network to
    the same point would take minutes on 2 cores and would time the same operations.
    """

    def __init__(self, unet: torch.nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.unet = unet
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intensity = x * self.std + self.mean
        return self.unet(x) + (intensity - 0.5) / SOFT


def make_case(dims: int, side: int, unet: torch.nn.Module, seed: int = 123):
    rng = np.random.default_rng(seed)
    clean = (ring_scene if dims == 2 else shell_scene)(side)
    raw = clean + rng.normal(0, 0.05, clean.shape)
    image = ((raw - raw.mean()) / raw.std()).astype(np.float32)  # what --normalize zscore feeds the network
    return image, Segmenter(unet, raw.mean(), raw.std()).eval()


# --------------------------------------------------------------------------- the loop, timed


def timed_steps(net, image: np.ndarray, prior: str, settings: CorrectionSettings, steps: int,
                device: str = "cpu") -> dict[str, float]:
    """Median seconds per step of each part of the correction loop (mirrors topofix.correction.correct).

    On a GPU every clock reading waits for the device first, so that each part is charged
    with its own kernels (CUDA runs asynchronously)."""
    def clock() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter()

    priors = build_priors(priors=[prior])
    net = net.to(device)
    contract = resolve_contract(net, ModelContract(), image_ndim=image.ndim)
    x = prepare_input(image, contract, device=torch.device(device))
    loss_fn = TopologicalLoss(priors, connectivity=settings.connectivity, form=settings.form,
                              roi_threshold=settings.roi_threshold, roi_margin=settings.roi_margin,
                              spatial_dims=image.ndim)
    snapshot = WeightsSnapshot(net)
    net.eval()
    samples: dict[str, list[float]] = {key: [] for key in ("network forward", "network backward", "topology forward",
                                                          "topology backward", "check", "optimizer")}
    try:
        with torch.no_grad():
            s0 = predict_probabilities(net, x, contract, device=torch.device(device))
        optimizer = fresh_optimizer(net, settings.lr)
        for _ in range(steps):
            t0 = clock()
            prob = predict_probabilities(net, x, contract, grad=True, device=torch.device(device))
            t1 = clock()
            host = prob.detach().to("cpu")  # the loop's one copy per step
            labels = labels_from_probabilities(host, contract, threshold=settings.threshold)
            assess(labels, priors, connectivity=settings.connectivity, per_slice=None)  # what the loop checks per step
            t2 = clock()
            topo = loss_fn.terms(prob, host=host).total
            similarity = torch.mean((prob - s0) ** 2)
            total = topo + settings.lam * similarity
            float(topo.detach())
            t3 = clock()
            (grad,) = torch.autograd.grad(total, prob)
            t4 = clock()
            optimizer.zero_grad(set_to_none=True)
            prob.backward(grad)
            t5 = clock()
            optimizer.step()
            t6 = clock()
            for key, seconds in zip(samples, (t1 - t0, t5 - t4, t3 - t2, t4 - t3, t2 - t1, t6 - t5)):
                samples[key].append(seconds)
    finally:
        snapshot.restore()
    # the median: robust to another process taking the cores for a moment
    return {key: float(np.median(values)) for key, values in samples.items()}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"Python {platform.python_version()}, numpy {np.__version__}")


def load() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and a 48^3 volume")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    settings = CorrectionSettings(steps=100, lr=1e-3, lam=10.0, seed=0)
    side3 = 48 if args.quick else 96
    cases = [
        # name, dims, side, U-Net, prior, timed steps, correct() steps
        ("2D 256x256", 2, 256, SmallUNet(1, 1, base=16, depth=4), "1=1,1", 5 if args.quick else 10,
         30 if args.quick else 100),
        (f"3D {side3}^3", 3, side3, SmallUNet(1, 1, base=8, depth=3, dims=3), "1=1,0,1", 2 if args.quick else 3,
         5 if args.quick else 10),
    ]
    print(f"machine: {machine()}")
    if args.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name()}")
    print(f"load average at start: {load()}")
    print(f"settings: lr {settings.lr}, lambda {settings.lam}, {settings.form} persistence, ROI "
          f"{settings.roi_threshold} + {settings.roi_margin} voxels, connectivity {settings.connectivity}")
    rows = []
    for name, dims, side, unet, prior, steps, correct_steps in cases:
        params = sum(p.numel() for p in unet.parameters())
        image, net = make_case(dims, side, unet)
        parts = timed_steps(net, image, prior, settings, steps, device=args.device)
        net = net.to("cpu")
        started = time.perf_counter()
        result = correct(image, net, prior, device=args.device,
                         settings=CorrectionSettings(**{**settings.__dict__, "steps": correct_steps}))
        per_scan = time.perf_counter() - started
        report = result.report
        before, after = betti_numbers(result.original_labels), betti_numbers(result.labels)
        rows.append((name, params, parts, per_scan, report, before, after, correct_steps))
        print(f"{name}: prediction {before} -> {after}, {report.stop_reason} after {report.steps} steps "
              f"(max {correct_steps}), {per_scan:.1f} s; median step parts: "
              + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()), flush=True)
    print(f"load average at end: {load()}")
    print()
    print("| scan | network (params) | network fwd (s) | network bwd (s) | topology fwd (s) | topology bwd (s) "
          "| check (s) | optimizer (s) | per step (s) | network share | `correct()` per scan (s) | steps, stop | "
          "Betti before -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, params, parts, per_scan, report, before, after, max_steps in rows:
        step = sum(parts.values())
        network = parts["network forward"] + parts["network backward"]
        topology = parts["topology forward"] + parts["topology backward"]
        print(f"| {name} | SmallUNet {params / 1e6:.2f} M | {parts['network forward']:.3f} | "
              f"{parts['network backward']:.3f} | {parts['topology forward']:.3f} | {parts['topology backward']:.4f} | "
              f"{parts['check']:.4f} | {parts['optimizer']:.4f} | {step:.3f} | {network / step:.0%} "
              f"(topology {topology / step:.0%}) | {per_scan:.1f} | {report.steps} of {max_steps}, {report.stop_reason} "
              f"| {','.join(map(str, before))} -> {','.join(map(str, after))} |")


if __name__ == "__main__":
    main()
