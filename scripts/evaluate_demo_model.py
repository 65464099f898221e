#!/usr/bin/env python3
"""Recompute the figures of ``sample_data/models/MODEL_CARD.md`` from the committed model and sample data.

For every sample image (``sample_data/images``; 2D slices, and every slice of
the 3D stacks) it runs the demo network by hand -- z-score normalisation over
the whole image (the whole volume for a stack, as topofix's default
``--normalize zscore`` does), forward pass, softmax, argmax -- and reports the
MYO Dice against ``sample_data/labels`` and the MYO Betti numbers of the
prediction and of the ground truth (``topofix.betti_numbers``, 8-connected
foreground).  A slice "breaks the prior" when the predicted MYO is not one
ring, (b0, b1) != (1, 1).

Usage::

    python scripts/evaluate_demo_model.py                   # TorchScript model, prints the table
    python scripts/evaluate_demo_model.py --onnx            # the same with the ONNX file (onnxruntime)
    python scripts/evaluate_demo_model.py --compare-exports # ... and ONNX logits == TorchScript logits (< 1e-4)
    python scripts/evaluate_demo_model.py --check-card      # exit 1 if MODEL_CARD.md's figures differ
    python scripts/evaluate_demo_model.py --write-card      # rewrite the figures block of MODEL_CARD.md

Takes a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
MODELS = SAMPLE / "models"
CARD = MODELS / "MODEL_CARD.md"
BEGIN, END = "<!-- figures:begin (scripts/evaluate_demo_model.py --write-card) -->", "<!-- figures:end -->"
MYO = 2
RING = (1, 1)


def zscore(x: np.ndarray) -> np.ndarray:
    """topofix's ``--normalize zscore``: (x - mean) / std over the whole image, float64 -> float32."""
    x = np.asarray(x, dtype=np.float64)
    return ((x - x.mean()) / max(float(x.std()), 1e-8)).astype(np.float32)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def torchscript_forward(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return forward


def onnx_forward(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def logits_of(forward: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Logits (N, 4, H, W) of a 2D image (N = 1) or of every slice of a 3D stack (normalised as a whole)."""
    x = zscore(image)
    batch = x[None, None] if x.ndim == 2 else x[:, None]
    return forward(np.ascontiguousarray(batch))


def segment(forward: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Labels of a 2D image or (slice by slice, normalised as a whole) of a 3D stack."""
    logits = logits_of(forward, image)
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)  # softmax over the 4 classes
    labels = np.argmax(prob, axis=1).astype(np.uint8)
    return labels[0] if np.ndim(image) == 2 else labels


def compare_exports(sample: Path = SAMPLE) -> float:
    """Max |logits(TorchScript) - logits(ONNX via onnxruntime)| over every sample image."""
    import SimpleITK as sitk

    ts, ox = torchscript_forward(MODELS / "demo_unet.pt"), onnx_forward(MODELS / "demo_unet.onnx")
    worst = 0.0
    for path in sorted((sample / "images").iterdir()):
        if path.name == "MANIFEST.json":
            continue
        img = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        worst = max(worst, float(np.abs(logits_of(ts, img) - logits_of(ox, img)).max()))
    return worst


@dataclass
class Row:
    file: str
    slice: int | None
    hard: str | None
    gt_betti: tuple[int, int]
    pred_betti: tuple[int, int]
    dice: float

    @property
    def name(self) -> str:
        return self.file if self.slice is None else f"{self.file} [{self.slice}]"

    @property
    def broken(self) -> bool:
        return self.pred_betti != RING


def evaluate(forward: Callable[[np.ndarray], np.ndarray], sample: Path = SAMPLE) -> list[Row]:
    import SimpleITK as sitk

    from topofix import betti_numbers

    manifest = json.loads((sample / "images" / "MANIFEST.json").read_text(encoding="utf-8"))
    rows: list[Row] = []
    for f in manifest["files"]:
        img = sitk.GetArrayFromImage(sitk.ReadImage(str(sample / "images" / f["file"])))
        gt = sitk.GetArrayFromImage(sitk.ReadImage(str(sample / "labels" / f["file"])))
        pred = segment(forward, img)
        if f["dim"] == 2:
            items = [(None, f["hard"], gt, pred)]
        else:
            items = [(z, f["hard_slices"].get(str(z)), gt[z], pred[z]) for z in range(gt.shape[0])]
        for z, hard, g, p in items:
            rows.append(Row(f["file"], z, hard, tuple(betti_numbers(g == MYO)), tuple(betti_numbers(p == MYO)),
                            dice(p == MYO, g == MYO)))
    return rows


def _fmt(b: tuple[int, int]) -> str:
    return f"({b[0]},{b[1]})"


def _how(r: Row) -> str:
    b0, b1 = r.pred_betti
    what = []
    if b0 == 0:
        return "no MYO at all"
    if b1 == 0:
        what.append("ring broken open")
    if b0 > 1:
        what.append(f"{b0 - 1} extra piece{'s' if b0 > 2 else ''}")
    if b1 > 1:
        what.append(f"{b1 - 1} extra hole{'s' if b1 > 2 else ''}")
    return ", ".join(what)


def summary(rows: list[Row]) -> dict:
    def part(sel):
        sel = list(sel)
        return {"n": len(sel), "mean_dice": float(np.mean([r.dice for r in sel])) if sel else float("nan"),
                "broken": sum(r.broken for r in sel)}

    return {
        "all": part(rows),
        "2d": part(r for r in rows if r.slice is None),
        "stack_slices": part(r for r in rows if r.slice is not None),
        "hard": part(r for r in rows if r.hard),
        "hard_2d": part(r for r in rows if r.slice is None and r.hard),
        "easy_2d": part(r for r in rows if r.slice is None and not r.hard),
        "hard_stack_slices": part(r for r in rows if r.slice is not None and r.hard),
        "easy_stack_slices": part(r for r in rows if r.slice is not None and not r.hard),
        "gt_rings": sum(r.gt_betti == RING for r in rows),
    }


def markdown(rows: list[Row]) -> str:
    s = summary(rows)
    out = ["| image | hard case | GT MYO (b0,b1) | predicted MYO (b0,b1) | MYO Dice | prior |",
           "|---|---|---|---|---:|---|"]
    for r in rows:
        verdict = f"**broken**: {_how(r)}" if r.broken else "ok"
        out.append(f"| `{r.name}` | {r.hard or ''} | {_fmt(r.gt_betti)} | {_fmt(r.pred_betti)} | "
                   f"{r.dice:.3f} | {verdict} |")
    out.append("")

    def line(label: str, key: str) -> str:
        p = s[key]
        rate = 100.0 * p["broken"] / p["n"] if p["n"] else float("nan")
        return f"| {label} | {p['n']} | {p['mean_dice']:.3f} | {p['broken']} ({rate:.0f}%) |"

    out += ["| subset | images | mean MYO Dice | MYO prior (1,1) broken |", "|---|---:|---:|---:|",
            line("all (2D images + stack slices)", "all"), line("all hard (2D images + stack slices)", "hard"),
            line("2D images", "2d"),
            line("2D images, hard", "hard_2d"), line("2D images, not hard", "easy_2d"),
            line("stack slices", "stack_slices"), line("stack slices, hard", "hard_stack_slices"),
            line("stack slices, not hard", "easy_stack_slices")]
    out.append("")
    out.append(f"Ground truth: MYO is one ring (1,1) on {s['gt_rings']} of {s['all']['n']} slices.")
    return "\n".join(out)


def card_block(card: Path) -> str | None:
    text = card.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", action="store_true", help="evaluate demo_unet.onnx with onnxruntime instead")
    ap.add_argument("--model", type=Path, help="model file (default: sample_data/models/demo_unet.pt or .onnx)")
    ap.add_argument("--check-card", action="store_true", help="exit 1 if MODEL_CARD.md's figures block differs")
    ap.add_argument("--write-card", action="store_true", help="rewrite the figures block of MODEL_CARD.md")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON too")
    ap.add_argument("--compare-exports", action="store_true",
                    help="also check that the ONNX file (onnxruntime) gives the TorchScript logits "
                         "(max abs difference < 1e-4 on every sample image)")
    args = ap.parse_args(argv)
    path = args.model or MODELS / ("demo_unet.onnx" if args.onnx else "demo_unet.pt")
    forward = onnx_forward(path) if args.onnx or path.suffix == ".onnx" else torchscript_forward(path)
    rows = evaluate(forward)
    table = markdown(rows)
    print(f"model: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}\n")
    print(table)
    if args.json:
        print(json.dumps(summary(rows), indent=2))
    status = 0
    if args.compare_exports:
        diff = compare_exports()
        ok = diff < 1e-4
        print(f"\nTorchScript vs ONNX (onnxruntime) logits on the sample images: max abs difference {diff:.2e}"
              f" ({'ok' if ok else 'TOO LARGE'}, limit 1e-4)")
        status = 0 if ok else 1
    if args.write_card:
        text = CARD.read_text(encoding="utf-8")
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        CARD.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")
        print(f"\nwrote the figures into {CARD.relative_to(ROOT)}")
    if args.check_card:
        block = card_block(CARD)
        if block != table:
            print("\nMODEL_CARD.md's figures differ from the ones above", file=sys.stderr)
            return 1
        print("\nMODEL_CARD.md's figures match")
    return status


if __name__ == "__main__":
    sys.exit(main())
