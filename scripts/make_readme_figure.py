"""Make docs/images/before_after.png: the demo network's myocardium before and after
``topofix correct`` on broken sample images (run the README's first command first,
or pass the output folder of a ``topofix correct ... --save-original`` run).

Usage: python scripts/make_readme_figure.py OUTPUT_DIR [--out docs/images/before_after.png]
Numpy + SimpleITK only (no plotting library): grey image, MYO in orange, LV in blue.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import topofix

COLOURS = {1: (90, 200, 90), 2: (255, 140, 0), 3: (60, 120, 255)}  # RV, MYO, LV


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    lo, hi = np.percentile(image, (1, 99))
    grey = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None] * 255, 3, axis=2)
    for label, colour in COLOURS.items():
        m = labels == label
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.array(colour)
    return rgb.astype(np.uint8)


def crop(a: np.ndarray, labels: np.ndarray, margin: int = 10) -> tuple[slice, slice]:
    ys, xs = np.nonzero(labels)
    return (slice(max(ys.min() - margin, 0), ys.max() + margin), slice(max(xs.min() - margin, 0), xs.max() + margin))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--images", type=Path, default=Path("sample_data/images"))
    parser.add_argument("--names", nargs="+", default=["img_002.png", "img_010.png", "img_022.nii.gz"])
    parser.add_argument("--out", type=Path, default=Path("docs/images/before_after.png"))
    args = parser.parse_args()
    rows = []
    for name in args.names:
        ext = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix
        stem = name[: -len(ext)]
        image = topofix.read_image(args.images / name).array.astype(float)
        before = topofix.read_mask(args.output_dir / f"{stem}_original{ext}").array
        after = topofix.read_mask(args.output_dir / name).array
        box = crop(image, before > 0, 12)
        panels = [overlay(image[box], before[box]), overlay(image[box], after[box])]
        h = max(p.shape[0] for p in panels)
        panels = [np.pad(p, ((0, h - p.shape[0]), (0, 4), (0, 0)), constant_values=255) for p in panels]
        rows.append(np.concatenate(panels, axis=1))
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    picture = np.concatenate(rows, axis=0)
    picture = np.kron(picture, np.ones((3, 3, 1), np.uint8))  # nearest-neighbour upscaling
    import SimpleITK as sitk

    args.out.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(picture, isVector=True), str(args.out))
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})")


if __name__ == "__main__":
    main()
