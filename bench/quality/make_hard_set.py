#!/usr/bin/env python3
"""Generate the hard quality benchmark set (``bench/quality/data``).

Synthetic cardiac short-axis MR-like slices and short-axis stacks that
reproduce the failure kinds seen on real cardiac MR, built on the image model
of ``scripts/make_sample_data.py`` (imported with importlib, not modified):

==================  ==========================================================
kind                what the image does (ground truth keeps the MYO ring)
==================  ==========================================================
``faint_blood``     a free-wall sector fades towards the blood pool (existing)
``faint_dark``      a lateral sector fades into the touching lung (existing)
``thin_wall``       a sector thins to ~2 px, strong blur and noise (existing)
``low_contrast``    surroundings as dark as the wall, thin faint sector (existing)
``papillary``       large myocardium-like papillary muscles (existing)
``gap``             a free-wall sector 80-120 deg wide fully at blood-pool
                    intensity: nothing in the image shows the wall there, the
                    network's MYO probability is ~0 in the gap
``extra_ring``      a ring-like structure about the size of the LV (bright lumen,
                    4-5.5 px dark wall of MYO intensity) abutting the heart, e.g.
                    an outflow tract: painted MYO in part, as an extra piece or
                    an extra loop (the demo network ignores smaller rings and
                    dark bands beside the heart: tried, not kept)
``filled_cavity``   an apical slice whose small cavity is at myocardium-like
                    intensity (trabeculae / partial volume): the network paints
                    the cavity MYO, a disc instead of a ring
``no_heart``        (stacks only) slices above the base / below the apex: no
                    heart, ground truth has no MYO; above the base a ring-like
                    outflow tract / aortic root (dark wall, bright lumen) sits
                    where the heart was
``none``            a plain case (control, not part of the hard set)
==================  ==========================================================

Noise: every image is rendered once (with the generator's own mild Rician
noise), scaled to [0, 1] by its maximum (a stack by the stack's maximum), then
Gaussian noise of standard deviation ``sigma`` in {0, 0.03, 0.06} is added
(fixed seeds), clipped to [0, 1] and stored as uint8 (``round(255 x)``).  The
same cases are used at every noise level, so noise is the only difference.

Layout::

    data/MANIFEST.json                       kinds, seeds, noise, sha256 of every array
    data/labels/<case>.nii.gz                ground truth (uint8: 0 bg, 1 RV, 2 MYO, 3 LV)
    data/images/sigma0.00/<case>.nii.gz      images (uint8), one folder per noise level

Usage::

    python bench/quality/make_hard_set.py            # (re)write bench/quality/data
    python bench/quality/make_hard_set.py --verify   # ... and check: ring topology, hashes, determinism
    python bench/quality/make_hard_set.py --check    # only check existing files against MANIFEST.json

Deterministic: fixed seeds and no timestamps; ``MANIFEST.json`` records the
sha256 of every array (of the pixel bytes, not of the gzip stream, which
depends on the zlib version), and ``--check`` compares them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DATA = HERE / "data"
NOISE_LEVELS = (0.0, 0.03, 0.06)
SHAPE = (128, 128)
SPACING_2D = (1.25, 1.25)  # (x, y) mm, ITK order
SPACING_3D = (1.25, 1.25, 8.0)


def _load_sample_data_module():
    """scripts/make_sample_data.py as a module (registered in sys.modules: its dataclasses need that)."""
    name = "make_sample_data"
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / "scripts" / "make_sample_data.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


msd = _load_sample_data_module()
mms = msd.mms
Sector, Ellipse = msd.Sector, msd.Ellipse
MYO, LV = msd.MYO, msd.LV

EXISTING_KINDS = tuple(msd.HARD_KINDS)  # faint_blood, faint_dark, thin_wall, low_contrast, papillary
NEW_KINDS = ("gap", "extra_ring", "filled_cavity")
KINDS_2D = EXISTING_KINDS + NEW_KINDS
HARD_KINDS = KINDS_2D + ("no_heart",)

KIND_TEXT = {
    "faint_blood": "a free-wall sector fades towards the blood-pool intensity",
    "faint_dark": "a lateral-wall sector fades into the adjacent (touching) lung",
    "thin_wall": "a free-wall sector thins to ~2 px, strong blur and noise",
    "low_contrast": "surroundings as dark as the myocardium and touching it, thin faint sector",
    "papillary": "large papillary muscles (myocardium-like) near the wall inside the cavity",
    "gap": "a free-wall sector 80-120 deg wide fully at blood-pool intensity (wall erased: MYO probability ~0)",
    "extra_ring": "an LV-sized ring-like structure (bright lumen, dark MYO-intensity wall) abutting the heart",
    "filled_cavity": "apical slice whose small cavity is at myocardium-like intensity (painted MYO: a disc)",
    "no_heart": "slice above the base / below the apex: no heart, ground truth has no MYO",
    "none": "plain case (control, not in the hard set)",
}

# 2D slices: 4 cases of every hard kind + 4 controls = 36 per noise level
N_PER_KIND_2D = 4
N_CONTROL_2D = 4
SEED_2D = 71000

# stacks (base -> apex, 10 slices of 128 x 128): slice 0 above the base and slice 9 below the
# apex have no heart; hard kinds on some ring slices
STACKS = (
    ("stack_a", 72001, {2: "gap", 4: "faint_blood", 7: "filled_cavity"}),
    ("stack_b", 72002, {1: "extra_ring", 3: "thin_wall", 5: "low_contrast", 8: "filled_cavity"}),
    ("stack_c", 72003, {2: "extra_ring", 4: "faint_dark", 6: "gap", 8: "papillary"}),
)
STACK_SLICES = 10


# --------------------------------------------------------------------------- #
# Scene modifications for the new kinds
# --------------------------------------------------------------------------- #
def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * rng.random())


def _inner_body(sc) -> Ellipse:
    b = sc.body
    return replace(b, radii=(b.radii[0] - sc.skin_fat_px, b.radii[1] - sc.skin_fat_px))


def _place_beside(g, sc, rng: np.random.Generator, radius: float, gap: tuple[float, float],
                  shape=SHAPE) -> tuple[float, float]:
    """A centre for a disc of ``radius`` beside the heart, ``gap`` px from its outer boundary, inside the
    body and the image (drawn on top of the organs)."""
    inner = _inner_body(sc)
    rows, cols = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    body = inner.inside(rows, cols)
    for _ in range(400):
        ang = _u(rng, 0, 360)
        c = msd._point(g, ang, msd._extent(g, ang, sc.thin) + _u(rng, *gap) + radius)
        disc = np.hypot(rows - c[0], cols - c[1]) <= radius + 1.0
        if disc.any() and body[disc].all():
            return c
    raise RuntimeError("no room beside the heart")


def modify(kind: str, g, sc, rng: np.random.Generator):
    """(geometry, scene) with the feature of ``kind`` (the existing kinds are drawn by random_scene)."""
    if kind == "gap":
        ang = msd.free_wall_angle(g, rng, spread=40.0)
        sc = replace(sc, faint=Sector(round(ang % 360, 2), round(_u(rng, 40, 60), 2), 1.0), faint_target=sc.blood)
    elif kind == "extra_ring":
        # a second ring-like structure about the size of the LV (dark wall at MYO intensity, bright
        # lumen) abutting the heart, e.g. an outflow tract or a dilated vessel with a thick wall
        rad = _u(rng, 15.0, 18.0)
        wall = _u(rng, 4.0, 5.5)
        c = _place_beside(g, sc, rng, rad, (-1.0, 1.0))
        ring = (Ellipse(c, (rad, rad * _u(rng, 0.9, 1.1)), _u(rng, 0, 180), sc.myo * _u(rng, 0.85, 1.0)),
                Ellipse(c, (rad - wall, rad - wall), 0.0, sc.blood * _u(rng, 0.9, 1.0)))
        sc = replace(sc, organs=sc.organs + ring)
    elif kind == "filled_cavity":
        sc = replace(sc, blood=sc.myo * _u(rng, 1.05, 1.35), papillary=())
    elif kind == "no_heart":
        g = replace(g, lv_radius=0.0, wall_thickness=0.0, rv_width=0.0, wobble=())
        sc = replace(sc, groove_fat=None, papillary=(), faint=None, thin=None)
    else:
        assert kind in EXISTING_KINDS or kind == "none", kind
    return g, sc


def no_heart_extra(g, sc, rng: np.random.Generator, above_base: bool):
    """What a slice beyond the heart shows where the heart was: above the base an outflow tract /
    aortic root (bright lumen, dark wall), below the apex a small dark patch (apex tip, partial volume)."""
    if above_base:
        rad = _u(rng, 8.0, 11.0)
        wall = _u(rng, 2.5, 4.0)
        c = (g.center[0] + _u(rng, -3, 3), g.center[1] + _u(rng, -3, 3))
        extra = (Ellipse(c, (rad, rad * _u(rng, 0.85, 1.15)), _u(rng, 0, 180), sc.myo),
                 Ellipse(c, (rad - wall, rad - wall), 0.0, sc.blood))
    else:
        rad = _u(rng, 3.0, 5.0)
        extra = (Ellipse(g.center, (rad, rad * _u(rng, 0.8, 1.2)), 0.0, sc.myo * _u(rng, 1.0, 1.3)),)
    return replace(sc, organs=sc.organs + extra)


def _geometry_and_scene(seed: int, kind: str):
    """A 2D case: as make_sample_data.make_case for the existing kinds; new kinds modify a plain case."""
    rng = np.random.default_rng(seed)
    base_hard = kind if kind in EXISTING_KINDS else None
    apical = 0.0
    if kind == "filled_cavity":
        apical = _u(np.random.default_rng([seed, 3]), 0.75, 0.88)
    g = msd.random_geometry(rng, SHAPE, base_hard, apical)
    sc = msd.random_scene(g, SHAPE, rng, base_hard, 1.0)
    g, sc = modify(kind, g, sc, np.random.default_rng([seed, 1]))
    return g, sc, rng


def labels_of(g, sc) -> np.ndarray:
    if g.lv_radius == 0 and g.wall_thickness == 0:
        return np.zeros(SHAPE, np.uint8)
    return msd.ground_truth(SHAPE, g, sc.thin)


def make_2d(seed: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(clean image float64, ground truth uint8) of one 2D case."""
    g, sc, rng = _geometry_and_scene(seed, kind)
    return msd.render_case(SHAPE, g, sc, rng), labels_of(g, sc)


def make_stack_case(seed: int, hard: dict[int, str], n: int = STACK_SLICES) -> tuple[np.ndarray, np.ndarray, list]:
    """Base-to-apex stack, slice 0 above the base and slice n-1 below the apex without heart.

    As make_sample_data.make_stack: one scene for the stack (intensities, body, organs, bias),
    each slice its own noise and hard feature.
    """
    rng = np.random.default_rng(seed)
    u = lambda lo, hi: _u(rng, lo, hi)  # noqa: E731
    cy, cx = SHAPE[0] / 2, SHAPE[1] / 2
    base = mms.SliceGeometry(
        center=(round(cy + u(-4, 2), 2), round(cx + u(4, 10), 2)),
        lv_radius=round(u(16.0, 19.0), 2),
        wall_thickness=round(u(4.2, 5.2), 2),
        eccentricity=round(u(0.2, 0.45), 3),
        orientation_deg=round(u(0, 180), 1),
        wall_variation=round(u(0.0, 0.15), 3),
        rv_angle_deg=round(u(160, 195), 1),
        rv_span_deg=round(u(130, 150), 1),
        rv_width=round(u(10, 13), 2),
        rv_min_width=3.0,
        wobble=tuple((k, round(u(0, 0.025), 4), round(u(0, 360), 1)) for k in (2, 3)),
    )
    rings = mms.stack_geometries(base, 0, n - 2, (), 0, apex_lv_radius=4.5)
    geoms = [rings[0]] + rings + [rings[-1]]  # the ends get their heart removed below
    scene0 = msd.random_scene(base, SHAPE, np.random.default_rng([seed, 0]), None)
    imgs, labs, info = [], [], []
    for z, g in enumerate(geoms):
        kind = "no_heart" if z in (0, n - 1) else hard.get(z, "none")
        srng = np.random.default_rng([seed, z + 1])
        base_hard = kind if kind in EXISTING_KINDS else None
        sc = msd.random_scene(g, SHAPE, srng, base_hard)
        own = kind in EXISTING_KINDS and kind in ("faint_dark", "low_contrast")
        sc = replace(sc, blood=scene0.blood, rv_blood=scene0.rv_blood, myo=scene0.myo,
                     tissue=sc.tissue if kind == "low_contrast" else scene0.tissue, fat=scene0.fat,
                     body=scene0.body, skin_fat_px=scene0.skin_fat_px, bias=scene0.bias,
                     organs=sc.organs if own else scene0.organs, texture_seed=scene0.texture_seed)
        mrng = np.random.default_rng([seed, z + 1, 1])
        g, sc = modify(kind, g, sc, mrng)
        if kind == "no_heart":
            sc = no_heart_extra(geoms[z], sc, mrng, above_base=z == 0)
        imgs.append(msd.render_case(SHAPE, g, sc, srng))
        labs.append(labels_of(g, sc))
        info.append(kind)
    return np.stack(imgs), np.stack(labs), info


# --------------------------------------------------------------------------- #
# Noise, cases, writing
# --------------------------------------------------------------------------- #
def add_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Scale to [0, 1] by the maximum, add Gaussian noise (sigma of the [0, 1] range), clip, uint8."""
    x = clean / float(clean.max())
    if sigma > 0:
        x = x + sigma * np.random.default_rng([seed, int(round(sigma * 1000)), 77]).standard_normal(x.shape)
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def noise_dir(sigma: float) -> str:
    return f"sigma{sigma:.2f}"


def case_list() -> list[dict]:
    """Every case: name, dim, seed, kind (2D) or per-slice kinds (stacks)."""
    cases = []
    i = 0
    for kind in KINDS_2D:
        for _ in range(N_PER_KIND_2D):
            i += 1
            cases.append({"case": f"s2d_{i:03d}", "dim": 2, "seed": SEED_2D + i, "kind": kind})
    for _ in range(N_CONTROL_2D):
        i += 1
        cases.append({"case": f"s2d_{i:03d}", "dim": 2, "seed": SEED_2D + i, "kind": "none"})
    for name, seed, hard in STACKS:
        cases.append({"case": name, "dim": 3, "seed": seed, "hard": {str(k): v for k, v in hard.items()}})
    return cases


def build(case: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if case["dim"] == 2:
        img, lab = make_2d(case["seed"], case["kind"])
        return img, lab, [case["kind"]]
    return make_stack_case(case["seed"], {int(k): v for k, v in case["hard"].items()})


def array_sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


def write_nifti(arr: np.ndarray, path: Path, spacing) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing(tuple(float(s) for s in spacing))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)


def generate(out: Path = DATA, write: bool = True) -> tuple[dict, dict]:
    """Build every case; write ``out`` (unless ``write`` is False); return (manifest, arrays)."""
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for case in case_list():
        clean, lab, kinds = build(case)
        spacing = SPACING_2D if case["dim"] == 2 else SPACING_3D
        name = case["case"]
        arrays[f"labels/{name}"] = lab
        entry = dict(case)
        entry["slice_kinds"] = kinds
        entry["gt_has_myo"] = [bool((s == MYO).any()) for s in (lab[None] if lab.ndim == 2 else lab)]
        entry["shape"] = list(lab.shape)
        entry["spacing"] = list(spacing)
        entry["label"] = f"labels/{name}.nii.gz"
        entry["label_sha256"] = array_sha256(lab)
        entry["images"] = {}
        for sigma in NOISE_LEVELS:
            img = add_noise(clean, sigma, case["seed"])
            key = f"images/{noise_dir(sigma)}/{name}"
            arrays[key] = img
            entry["images"][f"{sigma:.2f}"] = {"file": f"{key}.nii.gz", "sha256": array_sha256(img)}
        if write:
            write_nifti(lab, out / entry["label"], spacing)
            for sigma in NOISE_LEVELS:
                write_nifti(arrays[f"images/{noise_dir(sigma)}/{name}"], out / entry["images"][f"{sigma:.2f}"]["file"],
                            spacing)
        entries.append(entry)
    manifest = {
        "description": "Hard quality benchmark of topofix: synthetic cardiac short-axis MR-like 2D slices and "
                       "stacks (base -> apex, z first), generated by bench/quality/make_hard_set.py",
        "labels": {"0": "background", "1": "RV", "2": "MYO", "3": "LV"},
        "ground_truth": "MYO (2) is one ring, Betti numbers (1, 1) (8-connected foreground, 4-connected "
                        "background), on every slice where gt_has_myo; no MYO at all elsewhere",
        "noise": "image / max(image) (a stack: the stack's max) + N(0, sigma^2), clipped to [0, 1], "
                 "stored as uint8 round(255 x); sigma in " + ", ".join(f"{s:.2f}" for s in NOISE_LEVELS),
        "noise_levels": [f"{s:.2f}" for s in NOISE_LEVELS],
        "kinds": KIND_TEXT,
        "hard_set": "every 2D slice and stack slice whose kind is not 'none'",
        "sha256": "of the array bytes (dtype, shape and pixels; numpy order), not of the .nii.gz stream",
        "cases": entries,
    }
    if write:
        (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest, arrays


# --------------------------------------------------------------------------- #
# Checks
# --------------------------------------------------------------------------- #
betti_scipy = msd._betti_scipy  # the sample data's oracle: (b0, b1), 8-connected foreground, border outside


def read_array(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def check(out: Path = DATA) -> list[str]:
    """Existing files against MANIFEST.json: hashes, ground-truth topology."""
    errors = []
    manifest = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
    for e in manifest["cases"]:
        lab = read_array(out / e["label"])
        if array_sha256(lab) != e["label_sha256"]:
            errors.append(f"{e['label']}: sha256 differs from the manifest")
        for z, sl in enumerate(lab[None] if lab.ndim == 2 else lab):
            want = (1, 1) if e["gt_has_myo"][z] else (0, 0)
            if betti_scipy(sl == MYO) != want:
                errors.append(f"{e['case']} slice {z}: ground-truth MYO {betti_scipy(sl == MYO)} != {want}")
        for sigma, im in e["images"].items():
            arr = read_array(out / im["file"])
            if array_sha256(arr) != im["sha256"]:
                errors.append(f"{im['file']}: sha256 differs from the manifest")
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DATA)
    ap.add_argument("--verify", action="store_true", help="after writing: check, and regenerate in memory "
                    "to check determinism")
    ap.add_argument("--check", action="store_true", help="only check existing files against MANIFEST.json")
    args = ap.parse_args(argv)
    if not args.check:
        manifest, _ = generate(args.out)
        total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
        n2 = sum(e["dim"] == 2 for e in manifest["cases"])
        ns = sum(len(e["slice_kinds"]) for e in manifest["cases"] if e["dim"] == 3)
        print(f"{n2} 2D slices + {len(manifest['cases']) - n2} stacks ({ns} slices) x {len(NOISE_LEVELS)} noise "
              f"levels, {total} bytes under {args.out}")
    errors = check(args.out) if (args.check or args.verify) else []
    if args.verify:
        again, _ = generate(args.out, write=False)
        if again != json.loads((args.out / "MANIFEST.json").read_text(encoding="utf-8")):
            errors.append("regenerating gives a different manifest (not deterministic)")
    for e in errors:
        print("CHECK FAILED:", e, file=sys.stderr)
    if args.check or args.verify:
        print("ok: hashes match, ground truth MYO (1,1) or absent" + (", deterministic" if args.verify else "")
              if not errors else f"{len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
