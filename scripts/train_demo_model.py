#!/usr/bin/env python3
"""Train the demo segmenter (``sample_data/models/demo_unet.pt`` and ``.onnx``).

A small 2D U-Net (:class:`topofix.nets.SmallUNet`) trained on the CPU for a
few minutes on synthetic short-axis slices from ``scripts/make_sample_data.py``
(:func:`training_case`, seeds from 1,000,000 on: never the sample data's).
It is good enough to be plausible and bad enough to make real topological
mistakes on the hard sample images: exactly what ``topofix correct`` is for.

Usage::

    python scripts/train_demo_model.py                 # train, export, check, evaluate
    python scripts/train_demo_model.py --out /tmp/m    # write the model files elsewhere

Input: one channel, z-score normalised over the whole image,
``(x - mean) / std`` (topofix's default ``--normalize zscore``); any size that
is a multiple of 2**depth.  Output: 4 logits (0 background, 1 RV, 2 MYO,
3 LV); apply a softmax.

Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)``,
2 threads.  The same torch version on the same kind of CPU gives the same
weights; elsewhere the last bits may differ.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import multiprocessing
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from topofix.nets import SmallUNet  # after the sys.path insert


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


data = _load("make_sample_data")
evaluation = _load("evaluate_demo_model")

TRAIN_SEED0 = 1_000_000


def _case(args: tuple[int, float, float]) -> tuple[np.ndarray, np.ndarray]:
    seed, p_hard, max_strength = args
    img, lab = data.training_case(seed, data.SHAPE_2D, p_hard, max_strength)
    return evaluation.zscore(img), lab


def make_training_set(n: int, p_hard: float, max_strength: float, workers: int) -> tuple[np.ndarray, np.ndarray]:
    jobs = [(TRAIN_SEED0 + i, p_hard, max_strength) for i in range(n)]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            out = pool.map(_case, jobs, chunksize=16)
    else:
        out = [_case(j) for j in jobs]
    x = np.stack([o[0] for o in out])[:, None]
    y = np.stack([o[1] for o in out]).astype(np.int64)
    return x, y


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice of the foreground classes."""
    prob = logits.softmax(1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(prob.dtype)
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1.0 - ((2 * inter + 1.0) / (denom + 1.0)).mean()


def random_crops(x: np.ndarray, y: np.ndarray, idx: np.ndarray, crop: int, rng: np.random.Generator):
    H, W = x.shape[-2:]
    xs, ys = [], []
    for i in idx:
        r0 = int(rng.integers(0, H - crop + 1))
        c0 = int(rng.integers(0, W - crop + 1))
        xs.append(x[i, :, r0:r0 + crop, c0:c0 + crop])
        ys.append(y[i, r0:r0 + crop, c0:c0 + crop])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def train(args) -> tuple[SmallUNet, dict]:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    x, y = make_training_set(args.cases, args.p_hard, args.max_strength, args.workers)
    t_data = time.perf_counter() - t0
    print(f"training set: {len(x)} slices of {x.shape[-2:]} in {t_data:.0f} s", flush=True)
    model = SmallUNet(1, 4, base=args.base, depth=args.depth)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    model.train()
    t1 = time.perf_counter()
    log = []
    for step in range(1, args.steps + 1):
        idx = rng.integers(0, len(x), args.batch)
        xb, yb = random_crops(x, y, idx, args.crop, rng) if args.crop < x.shape[-1] else (
            torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))
        logits = model(xb)
        loss = F.cross_entropy(logits, yb) + soft_dice_loss(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == args.steps:
            log.append((step, round(loss.item(), 4)))
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - t1:6.0f} s", flush=True)
    t_train = time.perf_counter() - t1
    model.eval()
    info = {"data_seconds": round(t_data, 1), "train_seconds": round(t_train, 1), "loss_log": log,
            "parameters": sum(p.numel() for p in model.parameters())}
    return model, info


def export(model: SmallUNet, out: Path) -> dict:
    """TorchScript (script) and ONNX (opset 17, single file); checked against the eager model."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    pt, onnx_path = out / "demo_unet.pt", out / "demo_unet.onnx"
    scripted = torch.jit.script(model)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    pt.write_bytes(buf.getvalue())
    example = torch.zeros(1, 1, 128, 128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces its deprecation
        torch.onnx.export(
            model, (example,), str(onnx_path), opset_version=17, dynamo=False,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "logits": {0: "batch", 2: "height", 3: "width"}},
        )
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)], proto.opset_import
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    loaded = torch.jit.load(str(pt))
    rng = np.random.default_rng(0)
    diffs = {}
    for shape in ((2, 1, 128, 128), (3, 1, 96, 96), (1, 1, 64, 160)):
        xin = rng.standard_normal(shape).astype(np.float32)
        with torch.inference_mode():
            ref = model(torch.from_numpy(xin)).numpy()
            ts = loaded(torch.from_numpy(xin)).numpy()
        ox = sess.run(None, {"image": xin})[0]
        diffs[str(shape)] = {"torchscript": float(np.abs(ts - ref).max()), "onnx": float(np.abs(ox - ref).max())}
        assert diffs[str(shape)]["torchscript"] < 1e-5 and diffs[str(shape)]["onnx"] < 1e-4, diffs
    try:  # topofix loads ONNX files through onnx2torch
        from onnx2torch import convert

        conv = convert(proto).eval()
        xin = torch.from_numpy(rng.standard_normal((1, 1, 96, 96)).astype(np.float32))
        with torch.inference_mode():
            diffs["onnx2torch (1, 1, 96, 96)"] = float((conv(xin) - model(xin)).abs().max())
    except ImportError as exc:  # onnx2torch needs torchvision
        diffs["onnx2torch"] = f"not checked: {exc}"
    sizes = {p.name: p.stat().st_size for p in (pt, onnx_path)}
    return {"max_abs_diff": diffs, "sizes": sizes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "sample_data" / "models")
    ap.add_argument("--cases", type=int, default=1600, help="training slices (generated, 128 x 128)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=96, help="random crops of this side (128: whole slices)")
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--p-hard", type=float, default=0.25, help="fraction of hard training cases")
    ap.add_argument("--max-strength", type=float, default=0.5, help="hard cases are at most this hard (0..1)")
    ap.add_argument("--workers", type=int, default=2, help="processes generating the training set")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    model, info = train(args)
    ex = export(model, args.out)
    print(json.dumps({"config": vars(args) | {"out": str(args.out)}, **info, **ex}, indent=2, default=str))
    t = time.perf_counter()
    rows = evaluation.evaluate(evaluation.torchscript_forward(args.out / "demo_unet.pt"))
    print(evaluation.markdown(rows))
    print(json.dumps(evaluation.summary(rows), indent=2))
    print(f"evaluation: {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
