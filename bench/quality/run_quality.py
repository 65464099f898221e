#!/usr/bin/env python3
"""Run correction methods on the hard quality set (``bench/quality/data``) and report.

For every method, noise level and slice (2D slices, and every slice of the
stacks along z) it measures, against the ground truth MYO (label 2):

* **wrong topology**: the Betti numbers of the MYO mask (``topofix.betti_numbers``,
  8-connected foreground) differ from the ground truth's: (1, 1) for a ring,
  (0, 0) on slices without MYO;
* **Dice** (``topofix.metrics.dice``): mean over the slices whose ground truth has
  MYO (on slices without MYO, Dice is 0 or undefined: those count as
  "false-positive MYO" slices when the method paints any MYO there);
* **HD95** in mm (``topofix.metrics.hd95``, spacing 1.25 mm): mean over the
  slices where both masks have MYO; slices where exactly one is empty are
  skipped and counted (``hd95_skipped``);
* **Betti matching error** (``topofix.metrics.topology.betti_matching_error``,
  sum of both dimensions), mean per slice;
* time: seconds per slice (wall time of the method over all slices / slices,
  network prediction included) and seconds per broken slice (the same total /
  slices the network alone breaks); steps (mean over the scans that were
  fine-tuned).

The hard set is every slice whose kind is not ``none`` (controls are reported
apart).  Methods are small functions in ``METHODS`` (add one with
``@method("name")``); ``--settings key=value`` overrides the ``topofix``
method's :class:`topofix.CorrectionSettings` (parsed with the field's type).

Usage::

    python bench/quality/run_quality.py --methods network,keep_largest_fill,topofix_v1 --out results.json
    python bench/quality/run_quality.py --methods topofix --settings lr=3e-4,lam=300 --noise 0.03 --limit 10
    python bench/quality/run_quality.py --merge a.json b.json --markdown table.md   # tables only

Prior: ``2=1,1`` on the 2D slices, ``per_slice="z"`` on the stacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DATA = HERE / "data"
MODEL = ROOT / "sample_data" / "models" / "demo_unet.pt"
PRIOR = "2=1,1"
MYO = 2
SPACING_2D = (1.25, 1.25)  # (y, x) mm

# ----------------------------------------------------------------------------------------------
# Settings of the named topofix methods. Every field is spelled out; fields that other work adds
# to CorrectionSettings are pinned to the value that switches the new feature off (as documented in
# topofix/correction.py when this was written). A field of CorrectionSettings that is in neither
# dict is left at its default and listed as "unpinned" in the results: TODO pin it here.
# ----------------------------------------------------------------------------------------------
REFERENCE = dict(steps=100, lr=1e-5, lam=1000.0, form="linear", roi_threshold=0.5)  # Byrne et al.
TOPOFIX_V1 = dict(steps=100, lr=1e-4, lam=100.0, threshold=0.5, connectivity="full", form="squared",
                  roi_threshold=0.5, roi_margin=2, patience=3, always=False, seed=0)
NEW_FEATURES_OFF = dict(temperature=1.0, plateau=None, escalate=0, evidence_floor=0.0, repair=False)
# TODO: pin here any other field added to CorrectionSettings later (e.g. early_stop=...).


def _setup_threads() -> None:
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
@dataclass
class Item:
    """One scan at one noise level: a 2D slice or a stack (z, y, x)."""

    case: str
    dim: int
    noise: str
    image: np.ndarray
    label: np.ndarray
    kinds: list[str]  # per slice

    @property
    def per_slice(self) -> str | None:
        return "z" if self.dim == 3 else None


def read_array(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def load_items(data: Path, noise: list[str] | None, limit: int | None, only: str | None) -> list[Item]:
    manifest = json.loads((data / "MANIFEST.json").read_text(encoding="utf-8"))
    cases = [c for c in manifest["cases"] if only is None or (only == "2d") == (c["dim"] == 2)]
    if limit is not None and limit < len(cases):  # spread over the kinds (cases are ordered by kind)
        idx = np.unique(np.linspace(0, len(cases) - 1, limit).round().astype(int))
        cases = [cases[i] for i in idx]
    items = []
    for level in noise or manifest["noise_levels"]:
        for c in cases:
            items.append(Item(c["case"], c["dim"], level, read_array(data / c["images"][level]["file"]),
                              read_array(data / c["label"]), list(c["slice_kinds"])))
    return items


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------
@dataclass
class Output:
    labels: np.ndarray
    seconds: float
    steps: int | None = None  # optimisation steps (None: not an optimiser / not run)
    info: dict = field(default_factory=dict)


@dataclass
class Context:
    model: typing.Any
    settings_overrides: dict
    cache: dict = field(default_factory=dict)
    prior: str = PRIOR  # the 'topofix' method's prior (--prior); v1 and reference keep PRIOR


Method = Callable[[Item, Context], Output]
METHODS: dict[str, Method] = {}


def method(name: str) -> Callable[[Method], Method]:
    def register(fn: Method) -> Method:
        METHODS[name] = fn
        return fn

    return register


def network_prediction(item: Item, ctx: Context):
    """(labels, probabilities (K, ...), seconds) of the network alone, cached per item."""
    key = (item.case, item.noise)
    if key not in ctx.cache:
        import topofix

        t0 = time.perf_counter()
        pred = topofix.predict(item.image, ctx.model, per_slice=item.per_slice, device="cpu")
        ctx.cache[key] = (pred.labels, pred.probabilities, time.perf_counter() - t0)
    return ctx.cache[key]


@method("network")
def run_network(item: Item, ctx: Context) -> Output:
    labels, _, seconds = network_prediction(item, ctx)
    return Output(labels, seconds)


def keep_largest_fill_slice(labels: np.ndarray, prob: np.ndarray, label: int = MYO) -> np.ndarray:
    """The classical baseline on one 2D slice.

    1. Keep the largest 8-connected component of ``label``; the pixels of the other
       components go to their most probable other label (argmax of ``prob`` without
       ``label``; ``prob`` is (K, H, W)).
    2. Fill every hole of ``label`` (4-connected background component not touching
       the image border) except the largest one with ``label``.
    A slice without ``label`` is left as it is.
    """
    from scipy import ndimage

    out = labels.copy()
    mask = out == label
    if not mask.any():
        return out
    comp, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n > 1:
        sizes = np.bincount(comp.ravel())[1:]
        drop = mask & (comp != 1 + int(np.argmax(sizes)))
        other = prob.copy()
        other[label] = -np.inf
        out[drop] = np.argmax(other, axis=0)[drop]
        mask = out == label
    holes, nh = ndimage.label(~mask, structure=ndimage.generate_binary_structure(2, 1))
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    inner = [h for h in range(1, nh + 1) if h not in set(border.tolist())]
    if len(inner) > 1:
        sizes = {h: int((holes == h).sum()) for h in inner}
        keep = max(inner, key=lambda h: (sizes[h], -h))
        for h in inner:
            if h != keep:
                out[holes == h] = label
    return out


@method("keep_largest_fill")
def run_keep_largest_fill(item: Item, ctx: Context) -> Output:
    labels, prob, seconds = network_prediction(item, ctx)
    t0 = time.perf_counter()
    if labels.ndim == 2:
        out = keep_largest_fill_slice(labels, prob)
    else:
        out = np.stack([keep_largest_fill_slice(labels[z], prob[:, z]) for z in range(labels.shape[0])])
    return Output(out, seconds + time.perf_counter() - t0)


def _map_settings(ctx: Context):
    from topofix.map_repair import MAP_SETTINGS

    return dataclasses.replace(MAP_SETTINGS, **ctx.settings_overrides)


def _run_map_repair(item: Item, ctx: Context, from_labels: bool) -> Output:
    """``topofix.repair`` on what the network wrote: its probabilities, or its label map only.

    The network's time counts (it produced the input), as for keep_largest_fill.
    """
    from topofix.map_repair import repair

    labels, prob, seconds = network_prediction(item, ctx)
    t0 = time.perf_counter()
    data = labels if from_labels else prob
    res = repair(data, ctx.prior, labels=labels, settings=_map_settings(ctx), per_slice=item.per_slice,
                 n_labels=prob.shape[0])
    r = res.report
    ran = r.stop_reason not in ("already met", "absent")
    return Output(res.labels, seconds + time.perf_counter() - t0, r.steps if ran else None,
                  {"stop_reason": r.stop_reason, "met_after": bool(r.met_after), "repaired": bool(r.repaired)})


@method("repair_prob")
def run_repair_prob(item: Item, ctx: Context) -> Output:
    return _run_map_repair(item, ctx, from_labels=False)


@method("repair_labels")
def run_repair_labels(item: Item, ctx: Context) -> Output:
    return _run_map_repair(item, ctx, from_labels=True)


def settings_fields() -> dict[str, dataclasses.Field]:
    import topofix

    return {f.name: f for f in dataclasses.fields(topofix.CorrectionSettings)}


def make_settings(values: dict):
    """CorrectionSettings from ``values`` (+ the new features off); fields it lacks are ignored."""
    import topofix

    names = settings_fields()
    full = {**NEW_FEATURES_OFF, **values}
    return topofix.CorrectionSettings(**{k: v for k, v in full.items() if k in names})


def unpinned(values: dict) -> list[str]:
    return sorted(set(settings_fields()) - set(values) - set(NEW_FEATURES_OFF))


def run_correct(item: Item, ctx: Context, settings, prior: str = PRIOR) -> Output:
    import topofix

    t0 = time.perf_counter()
    res = topofix.correct(item.image, ctx.model, prior, settings=settings, per_slice=item.per_slice, device="cpu")
    seconds = time.perf_counter() - t0
    r = res.report
    ran = r.stop_reason not in ("already met", "absent")
    return Output(res.labels, seconds, r.steps if ran else None,
                  {"stop_reason": r.stop_reason, "met_after": bool(r.met_after),
                   "repaired": bool(getattr(r, "repaired", False))})


@method("reference")
def run_reference(item: Item, ctx: Context) -> Output:
    return run_correct(item, ctx, make_settings(dict(TOPOFIX_V1, **REFERENCE)))


@method("topofix_v1")
def run_topofix_v1(item: Item, ctx: Context) -> Output:
    return run_correct(item, ctx, make_settings(TOPOFIX_V1))


@method("topofix")
def run_topofix(item: Item, ctx: Context) -> Output:
    import topofix

    return run_correct(item, ctx, dataclasses.replace(topofix.CorrectionSettings(), **ctx.settings_overrides),
                       prior=ctx.prior)


def parse_settings(text: str | None) -> dict:
    """``"lr=3e-4,lam=300,form=linear,roi_threshold=none"`` -> typed dict (by the dataclass field)."""
    if not text:
        return {}
    fields = settings_fields()
    hints = typing.get_type_hints(__import__("topofix").CorrectionSettings)
    out = {}
    for part in text.split(","):
        key, _, raw = part.partition("=")
        key, raw = key.strip(), raw.strip()
        if key not in fields:
            raise SystemExit(f"--settings: unknown field {key!r} (fields: {', '.join(fields)})")
        hint = hints[key]
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if raw.lower() == "none" and type(None) in typing.get_args(hint):
            out[key] = None
            continue
        base = args[0]
        if base is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise SystemExit(f"--settings: {key} needs true/false, got {raw!r}")
            out[key] = raw.lower() in ("true", "1", "yes")
        else:
            try:
                out[key] = base(raw)
            except (TypeError, ValueError) as exc:
                raise SystemExit(f"--settings: {key}={raw!r}: {exc}") from None
    return out


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------
def slice_rows(item: Item, out: Output, method_name: str, net_broken: list[bool]) -> list[dict]:
    import topofix
    from topofix.metrics import dice, hd95
    from topofix.metrics.topology import betti_matching_error

    labels = out.labels[None] if out.labels.ndim == 2 else out.labels
    gts = item.label[None] if item.label.ndim == 2 else item.label
    rows = []
    for z, (p, g) in enumerate(zip(labels, gts)):
        pm, gm = p == MYO, g == MYO
        bp, bg = tuple(int(v) for v in topofix.betti_numbers(pm)), tuple(int(v) for v in topofix.betti_numbers(gm))
        d = float(dice(pm, gm)) if gm.any() else None
        h = float(hd95(pm, gm, SPACING_2D)) if (pm.any() and gm.any()) else None
        bme = int(sum(v or 0 for v in betti_matching_error(pm, gm)))
        rows.append({"method": method_name, "case": item.case, "slice": z if item.dim == 3 else None,
                     "dim": item.dim, "noise": item.noise, "kind": item.kinds[z], "betti": list(bp),
                     "gt_betti": list(bg), "wrong": bp != bg, "net_wrong": bool(net_broken[z]), "dice": d, "hd95": h,
                     "hd95_skipped": bool(pm.any() != gm.any()), "false_positive": bool(pm.any() and not gm.any()),
                     "bme": bme})
    return rows


def summarise(rows: list[dict], scans: list[dict]) -> dict:
    """Aggregate of slice rows (and of the scans they come from, for time and steps)."""
    n = len(rows)
    if not n:
        return {"slices": 0}
    dices = [r["dice"] for r in rows if r["dice"] is not None]
    hds = [r["hd95"] for r in rows if r["hd95"] is not None]
    seconds = sum(s["seconds"] for s in scans)
    net_broken = sum(r["net_wrong"] for r in rows)
    steps = [s["steps"] for s in scans if s["steps"] is not None]
    return {
        "slices": n,
        "wrong": sum(r["wrong"] for r in rows),
        "wrong_share": sum(r["wrong"] for r in rows) / n,
        "net_wrong": net_broken,
        "dice": float(np.mean(dices)) if dices else None,
        "dice_slices": len(dices),
        "hd95": float(np.mean(hds)) if hds else None,
        "hd95_skipped": sum(r["hd95_skipped"] for r in rows),
        "false_positive": sum(r["false_positive"] for r in rows),
        "bme": float(np.mean([r["bme"] for r in rows])),
        "seconds": seconds,
        "s_per_slice": seconds / n,
        "s_per_broken_slice": seconds / net_broken if net_broken else None,
        "scans_tuned": len(steps),
        "steps_mean": float(np.mean(steps)) if steps else None,
    }


def groups(rows: list[dict], scans: list[dict]) -> dict:
    """Summaries per method and noise level: hard set, 2D hard, stack hard, controls, per kind."""
    out: dict = {}
    for m in sorted({r["method"] for r in rows}, key=list(METHODS).index if rows else None):
        for lv in sorted({r["noise"] for r in rows if r["method"] == m}) + ["all"]:
            sel = [r for r in rows if r["method"] == m and (lv == "all" or r["noise"] == lv)]
            sc = [s for s in scans if s["method"] == m and (lv == "all" or s["noise"] == lv)]

            def part(pred, scan_pred=None):
                rs = [r for r in sel if pred(r)]
                keys = {(r["case"], r["noise"]) for r in rs}
                ss = [s for s in sc if (s["case"], s["noise"]) in keys] if scan_pred is None else \
                    [s for s in sc if scan_pred(s)]
                # a stack's time is shared by its slices: prorate it by the slices selected
                prorated = []
                for s in ss:
                    k = sum(1 for r in rs if (r["case"], r["noise"]) == (s["case"], s["noise"]))
                    prorated.append(dict(s, seconds=s["seconds"] * k / s["slices"]))
                return summarise(rs, prorated)

            g = {"hard": part(lambda r: r["kind"] != "none"),
                 "hard_2d": part(lambda r: r["kind"] != "none" and r["dim"] == 2),
                 "hard_stacks": part(lambda r: r["kind"] != "none" and r["dim"] == 3),
                 "control": part(lambda r: r["kind"] == "none"),
                 "all": part(lambda r: True)}
            for k in sorted({r["kind"] for r in sel}):
                g[f"kind:{k}"] = part(lambda r, k=k: r["kind"] == k)
            out.setdefault(m, {})[lv] = g
    return out


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------
def _f(v, fmt="{:.3f}", none="-"):
    return none if v is None else fmt.format(v)


def markdown(summary: dict) -> str:
    lines = ["| method | noise | hard slices | wrong MYO topology | of those the network broke | MYO Dice | "
             "HD95 (mm) | HD95 skipped | false-pos. MYO | BME / slice | s / slice | s / broken slice | "
             "mean steps (scans tuned) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, levels in summary.items():
        for lv, g in levels.items():
            h = g["hard"]
            if not h["slices"]:
                continue
            lines.append(
                f"| {m} | {lv} | {h['slices']} | {h['wrong']} ({100 * h['wrong_share']:.0f}%) | {h['net_wrong']} | "
                f"{_f(h['dice'])} | {_f(h['hd95'], '{:.2f}')} | {h['hd95_skipped']} | {h['false_positive']} | "
                f"{h['bme']:.2f} | {h['s_per_slice']:.2f} | {_f(h['s_per_broken_slice'], '{:.2f}')} | "
                f"{_f(h['steps_mean'], '{:.1f}')} ({h['scans_tuned']}) |")
    lines += ["", "Wrong MYO topology per subset (hard set; noise levels pooled):", ""]
    subsets = ["hard_2d", "hard_stacks", "control"]
    kinds = sorted({k for levels in summary.values() for k in levels.get("all", {})
                    if k.startswith("kind:") and k != "kind:none"})
    cols = subsets + kinds
    lines.append("| method | " + " | ".join(c.replace("kind:", "") for c in cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for m, levels in summary.items():
        g = levels.get("all", {})
        cells = []
        for c in cols:
            p = g.get(c)
            cells.append("-" if not p or not p["slices"] else f"{p['wrong']}/{p['slices']}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Dice / HD95 (mm) per subset (noise levels pooled):", "",
              "| method | " + " | ".join(c.replace("kind:", "") for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for m, levels in summary.items():
        g = levels.get("all", {})
        cells = []
        for c in cols:
            p = g.get(c)
            cells.append("-" if not p or not p["slices"] else f"{_f(p['dice'], '{:.3f}')} / {_f(p['hd95'], '{:.1f}')}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def environment() -> dict:
    import scipy
    import torch

    import topofix

    return {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "torch": torch.__version__, "topofix": getattr(topofix, "__version__", "?"),
            "topofix_path": str(Path(topofix.__file__).parent), "machine": platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _json(o):
    return o.item() if hasattr(o, "item") else str(o)


def main(argv: list[str] | None = None) -> int:
    _setup_threads()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="network,keep_largest_fill,topofix_v1",
                    help=f"comma-separated, from: {', '.join(METHODS)}")
    ap.add_argument("--settings", help="overrides of the 'topofix' method's CorrectionSettings: key=value,...")
    ap.add_argument("--prior", default=PRIOR,
                    help=f"prior of the 'topofix' method (default {PRIOR}; e.g. '2=1,1|0,0': a ring, or absent)")
    ap.add_argument("--noise", help="noise levels, e.g. 0.00,0.06 (default: all)")
    ap.add_argument("--limit", type=int, help="at most this many cases (2D slices and stacks), spread over kinds")
    ap.add_argument("--only", choices=("2d", "stacks"), help="only 2D slices or only stacks")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--out", type=Path, help="results JSON (slice rows, scans, summary)")
    ap.add_argument("--markdown", type=Path, help="write the tables here too")
    ap.add_argument("--merge", nargs="+", type=Path, help="only merge these result JSONs into tables")
    args = ap.parse_args(argv)

    if args.merge:
        rows, scans = [], []
        for p in args.merge:
            d = json.loads(p.read_text(encoding="utf-8"))
            rows += d["rows"]
            scans += d["scans"]
        summary = groups(rows, scans)
        text = markdown(summary)
        print(text)
        if args.markdown:
            args.markdown.write_text(text, encoding="utf-8")
        if args.out:
            args.out.write_text(json.dumps({"rows": rows, "scans": scans, "summary": summary}, indent=1, default=_json) + "\n")
        return 0

    import torch
    from tqdm import tqdm

    import topofix

    torch.set_num_threads(1)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in names:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; known: {', '.join(METHODS)}")
    overrides = parse_settings(args.settings)
    noise = [f"{float(v):.2f}" for v in args.noise.split(",")] if args.noise else None
    items = load_items(args.data, noise, args.limit, args.only)
    ctx = Context(model=topofix.load_model(str(args.model), device="cpu"), settings_overrides=overrides,
                  prior=args.prior)
    # the network's own verdict per slice (needed for "seconds per broken slice")
    net_broken = {}
    for it in items:
        lab = network_prediction(it, ctx)[0]
        lab = lab[None] if lab.ndim == 2 else lab
        gts = it.label[None] if it.label.ndim == 2 else it.label
        net_broken[(it.case, it.noise)] = [topofix.betti_numbers(p == MYO) != topofix.betti_numbers(g == MYO)
                                           for p, g in zip(lab, gts)]
    rows, scans = [], []
    settings_used = {
        "reference": dataclasses.asdict(make_settings(dict(TOPOFIX_V1, **REFERENCE))),
        "topofix_v1": dataclasses.asdict(make_settings(TOPOFIX_V1)),
        "topofix": dataclasses.asdict(dataclasses.replace(topofix.CorrectionSettings(), **overrides)),
        "topofix_prior": args.prior,
        "unpinned_fields_v1": unpinned(TOPOFIX_V1),
    }
    if settings_used["unpinned_fields_v1"]:
        print(f"warning: CorrectionSettings fields left at their defaults in topofix_v1/reference: "
              f"{settings_used['unpinned_fields_v1']} (TODO: pin them in NEW_FEATURES_OFF)", file=sys.stderr)
    for m in names:
        for it in tqdm(items, desc=m, unit="scan", file=sys.stderr):
            out = METHODS[m](it, ctx)
            nb = net_broken[(it.case, it.noise)]
            rows += slice_rows(it, out, m, nb)
            scans.append({"method": m, "case": it.case, "noise": it.noise, "dim": it.dim,
                          "slices": len(it.kinds), "seconds": out.seconds, "steps": out.steps, **out.info})
        if args.out:  # after every method, so that a long run keeps what it has
            summary = groups(rows, scans)
            args.out.write_text(json.dumps({"command": " ".join(sys.argv), "environment": environment(),
                                            "settings": settings_used, "summary": summary, "scans": scans,
                                            "rows": rows}, indent=1, default=_json) + "\n", encoding="utf-8")
    summary = groups(rows, scans)
    text = markdown(summary)
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
