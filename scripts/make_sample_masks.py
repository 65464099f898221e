#!/usr/bin/env python3
"""Generate the bundled synthetic cardiac short-axis label maps (``sample_data/masks``).

Label maps (uint8): 0 background, 1 RV (right-ventricular blood pool),
2 MYO (left-ventricular myocardium), 3 LV (left-ventricular blood pool).

Usage::

    python scripts/make_sample_masks.py            # (re)write sample_data/masks
    python scripts/make_sample_masks.py --verify   # ... and check everything
    python scripts/make_sample_masks.py --out DIR  # write somewhere else

Everything is deterministic (fixed seeds, no timestamps): running it twice gives
byte-identical files.  The Betti numbers in ``MANIFEST.json`` come from the
*design* (which defect was drawn where); ``--verify`` recomputes them with
``scipy.ndimage.label`` and fails if anything differs.

Geometry model (reusable, e.g. by an image generator)
-----------------------------------------------------
Every slice is described by a :class:`SliceGeometry` and drawn by
:func:`draw_short_axis`.  All boundaries are star-shaped around the LV centre,
i.e. given in polar coordinates ``(r, theta)`` around ``center``:

* LV (3):  ``r <  rho_endo(theta)`` -- an ellipse (mean radius ``lv_radius``,
  ``eccentricity``, ``orientation_deg``) with a small low-frequency wobble;
* MYO (2): ``rho_endo <= r < rho_epi = rho_endo + t(theta)`` -- a ring whose
  thickness ``t`` is ``wall_thickness`` modulated by ``wall_variation``
  (thickest on the septum, towards the RV); with ``lv_radius == 0`` (apex) the
  MYO is a filled disc of radius ``t``;
* RV (1):  ``rho_epi <= r < rho_epi + w(theta)`` for ``theta`` within
  ``rv_span_deg`` around ``rv_angle_deg`` -- a crescent glued to the epicardium
  (touching the MYO, never overlapping it), thickest in the middle
  (``rv_width``) and ``rv_min_width`` thick at its blunt tips.

Angles are in degrees, mathematical convention on the screen: 0 = +x (right),
90 = up (towards row 0).  Coordinates are ``(row, col)`` pixel indices.

To reuse it: ``sys.path.insert(0, "scripts"); import make_sample_masks`` (with
``importlib.util`` register the module in ``sys.modules`` before executing it,
the dataclasses need that).  Top-level imports are numpy only; SimpleITK is
imported when writing, scipy only by ``--verify``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

BACKGROUND, RV, MYO, LV = 0, 1, 2, 3
LABEL_NAMES = {BACKGROUND: "background", RV: "RV", MYO: "MYO", LV: "LV"}

# Minimal widths (pixels) the design relies on for its topology claims under
# 8-connectivity of the foreground / 4-connectivity of the background.
MIN_WALL_PX = 3.0  # ring / crescent thickness
MIN_GAP_PX = 3.0  # chord width of a cut: > sqrt(2), so no diagonal bridge
MIN_BORDER_PX = 3  # free margin to the image border

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "sample_data" / "masks"


# --------------------------------------------------------------------------- #
# Geometry model
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class SliceGeometry:
    """Parameters of one short-axis slice (all lengths in pixels)."""

    center: tuple[float, float]  # LV centre (row, col)
    lv_radius: float  # mean endocardial radius; 0 -> no cavity (apex: MYO disc)
    wall_thickness: float  # mean myocardial thickness
    eccentricity: float = 0.0  # of the endocardial ellipse (0 = circle)
    orientation_deg: float = 0.0  # direction of the ellipse's major axis
    wall_variation: float = 0.0  # t(theta) = t * (1 + v * cos(theta - rv_angle))
    rv_angle_deg: float = 170.0  # direction of the RV, seen from the LV centre
    rv_span_deg: float = 140.0  # angular extent of the RV crescent
    rv_width: float = 0.0  # maximal radial RV thickness; 0 -> no RV
    rv_min_width: float = 3.0  # RV thickness at the (blunt) tips
    wobble: tuple[tuple[int, float, float], ...] = ()  # (harmonic, rel. amplitude, phase deg)

    @property
    def has_lv(self) -> bool:
        return self.lv_radius > 0

    @property
    def has_rv(self) -> bool:
        return self.rv_width > 0


def polar_grid(shape: tuple[int, int], center: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Radius and angle (radians, up = +pi/2) of every pixel centre around ``center``."""
    rows, cols = np.indices(shape, dtype=np.float64)
    dy = -(rows - center[0])  # screen "up" is positive
    dx = cols - center[1]
    return np.hypot(dx, dy), np.arctan2(dy, dx)


def wrap_angle(a: np.ndarray | float) -> np.ndarray | float:
    """Wrap radians into [-pi, pi)."""
    return (np.asarray(a) + math.pi) % (2 * math.pi) - math.pi


def endocardial_radius(theta: np.ndarray, g: SliceGeometry) -> np.ndarray:
    """rho_endo(theta): rotated ellipse of mean radius ``lv_radius`` times a wobble."""
    theta = np.asarray(theta, dtype=np.float64)
    if not g.has_lv:
        return np.zeros_like(theta)
    q = (1.0 - g.eccentricity**2) ** 0.25
    a, b = g.lv_radius / q, g.lv_radius * q  # sqrt(a*b) == lv_radius
    phi = theta - math.radians(g.orientation_deg)
    rho = a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)
    mod = np.ones_like(theta)
    for k, amp, phase in g.wobble:
        mod += amp * np.cos(k * theta + math.radians(phase))
    return rho * mod


def wall_thickness_at(theta: np.ndarray, g: SliceGeometry) -> np.ndarray:
    theta = np.asarray(theta, dtype=np.float64)
    return g.wall_thickness * (1.0 + g.wall_variation * np.cos(theta - math.radians(g.rv_angle_deg)))


def epicardial_radius(theta: np.ndarray, g: SliceGeometry) -> np.ndarray:
    return endocardial_radius(theta, g) + wall_thickness_at(theta, g)


def rv_width_at(theta: np.ndarray, g: SliceGeometry) -> np.ndarray:
    """Radial RV thickness at ``theta``; 0 outside the crescent's angular span."""
    theta = np.asarray(theta, dtype=np.float64)
    if not g.has_rv:
        return np.zeros_like(theta)
    half = math.radians(g.rv_span_deg) / 2
    d = wrap_angle(theta - math.radians(g.rv_angle_deg))
    u = np.clip((d + half) / (2 * half), 0.0, 1.0)  # 0..1 across the span
    w = g.rv_min_width + (g.rv_width - g.rv_min_width) * np.sin(math.pi * u) ** 0.6
    return np.where(np.abs(d) <= half, w, 0.0)


def check_geometry(g: SliceGeometry) -> None:
    """Assert the preconditions the topology-by-design relies on."""
    th = np.linspace(-math.pi, math.pi, 3600, endpoint=False)
    if g.has_lv:
        assert endocardial_radius(th, g).min() >= 3.0, "LV cavity too small"
    assert wall_thickness_at(th, g).min() >= MIN_WALL_PX, "myocardial wall too thin"
    if g.has_rv:
        assert g.rv_min_width >= MIN_WALL_PX and g.rv_width >= g.rv_min_width, "RV too thin"
        assert g.rv_span_deg < 300, "RV crescent must not close into a ring"


def outer_radius(g: SliceGeometry) -> float:
    """Largest radius of any labelled pixel around the centre (for margin checks)."""
    th = np.linspace(-math.pi, math.pi, 3600, endpoint=False)
    return float((epicardial_radius(th, g) + rv_width_at(th, g)).max())


def draw_short_axis(shape: tuple[int, int], g: SliceGeometry) -> np.ndarray:
    """Draw one correct short-axis label map (uint8) of ``shape`` from ``g``."""
    check_geometry(g)
    r, th = polar_grid(shape, g.center)
    endo = endocardial_radius(th, g)
    epi = endo + wall_thickness_at(th, g)
    rvw = rv_width_at(th, g)
    out = np.zeros(shape, dtype=np.uint8)
    out[(r >= epi) & (r < epi + rvw)] = RV
    out[(r >= endo) & (r < epi)] = MYO
    out[r < endo] = LV
    # keep clear of the border (so nothing is cut by the field of view)
    m = MIN_BORDER_PX
    assert not out[:m].any() and not out[-m:].any() and not out[:, :m].any() and not out[:, -m:].any(), (
        "shape touches the image border"
    )
    return out


def sector(shape: tuple[int, int], center: tuple[float, float], angle_deg: float, chord_px: float,
           radius_px: float) -> tuple[np.ndarray, float]:
    """Pixels whose angle is within the sector around ``angle_deg`` whose chord
    at ``radius_px`` is ``chord_px`` wide.  Returns (mask, sector angle in deg)."""
    delta = 2 * math.asin(min(1.0, chord_px / (2 * radius_px)))
    _, th = polar_grid(shape, center)
    return np.abs(wrap_angle(th - math.radians(angle_deg))) <= delta / 2, math.degrees(delta)


# --------------------------------------------------------------------------- #
# Realistic segmentation mistakes
# --------------------------------------------------------------------------- #
def break_myocardium(labels: np.ndarray, g: SliceGeometry, angle_deg: float, gap_px: float = 4.0,
                     fill: int = BACKGROUND) -> np.ndarray:
    """Open the MYO ring: a radial gap (chord >= ``gap_px`` everywhere in the wall)."""
    assert gap_px >= MIN_GAP_PX and g.has_lv
    th = np.linspace(-math.pi, math.pi, 3600, endpoint=False)
    r_min = float(endocardial_radius(th, g).min())  # the chord is narrowest on the inside
    cut, delta = sector(labels.shape, g.center, angle_deg, gap_px, r_min)
    if g.has_rv:  # keep the gap clear of the RV so that the LV touches the background
        sep = abs(float(wrap_angle(math.radians(angle_deg - g.rv_angle_deg))))
        assert math.degrees(sep) > (g.rv_span_deg + delta) / 2 + 10, "gap too close to the RV"
    out = labels.copy()
    out[cut & (labels == MYO)] = fill
    return out


def split_rv(labels: np.ndarray, g: SliceGeometry, offset_deg: float = 0.0, gap_px: float = 4.0) -> np.ndarray:
    """Cut the RV crescent in two (radial gap at ``rv_angle + offset``)."""
    assert gap_px >= MIN_GAP_PX and g.has_rv
    th = np.linspace(-math.pi, math.pi, 3600, endpoint=False)
    r_min = float(epicardial_radius(th, g).min())
    cut, delta = sector(labels.shape, g.center, g.rv_angle_deg + offset_deg, gap_px, r_min)
    assert abs(offset_deg) + delta / 2 + 15 < g.rv_span_deg / 2, "both RV pieces must stay substantial"
    out = labels.copy()
    out[cut & (labels == RV)] = BACKGROUND
    return out


def punch_lv_hole(labels: np.ndarray, g: SliceGeometry, offset: tuple[float, float], radius: float) -> np.ndarray:
    """A background hole inside the LV cavity (disc of ``radius`` at centre + offset)."""
    c = (g.center[0] + offset[0], g.center[1] + offset[1])
    th = np.linspace(-math.pi, math.pi, 3600, endpoint=False)
    # disc (with 2 px margin) inside the star-shaped cavity: checked along every ray
    assert radius >= 1.5 and math.hypot(*offset) + radius + 2 <= float(endocardial_radius(th, g).min())
    rows, cols = np.indices(labels.shape)
    disc = np.hypot(rows - c[0], cols - c[1]) <= radius
    assert (labels[disc] == LV).all()
    out = labels.copy()
    out[disc] = BACKGROUND
    return out


def add_blob(labels: np.ndarray, center: tuple[float, float], radius: float, label: int = MYO) -> np.ndarray:
    """A spurious isolated blob of ``label`` at least 2 px away from everything else."""
    rows, cols = np.indices(labels.shape)
    dist = np.hypot(rows - center[0], cols - center[1])
    assert radius >= 1.5 and dist[labels > 0].min() > radius + 2.5, "blob would touch other labels"
    out = labels.copy()
    out[dist <= radius] = label
    return out


# --------------------------------------------------------------------------- #
# Topology by design
# --------------------------------------------------------------------------- #
# Label sets reported in the manifest: "2" = MYO, "2+3" = MYO union LV, etc.
LABEL_SETS_2D = ("2", "2+3", "1", "3", "1+2", "1+3")
LABEL_SETS_3D = ("2", "2+3")

CORRECT_2D = {
    "2": [1, 1],  # ring
    "2+3": [1, 0],  # filled (ring + cavity)
    "1": [1, 0],  # crescent
    "3": [1, 0],  # cavity
    "1+2": [1, 1],  # ring with a crescent glued on
    "1+3": [2, 0],  # RV and LV are separated by the MYO
}

DEFECT_2D = {
    None: {},
    # MYO ring opened towards the background: the wall is an arc, the LV leaks out.
    "myo_gap": {"2": [1, 0], "1+2": [1, 0]},
    # An isolated MYO blob away from everything.
    "myo_blob": {"2": [2, 1], "2+3": [2, 0], "1+2": [2, 1]},
    # A background hole inside the LV cavity.
    "lv_hole": {"3": [1, 1], "2+3": [1, 1], "1+3": [2, 1]},
    # RV crescent cut in two.
    "rv_split": {"1": [2, 0], "1+3": [3, 0]},
}


def designed_betti_2d(defect: str | None) -> dict[str, list[int]]:
    out = {k: list(v) for k, v in CORRECT_2D.items()}
    out.update({k: list(v) for k, v in DEFECT_2D[defect].items()})
    return out


def designed_betti_slice(g: SliceGeometry | None, defect: str | None) -> dict[str, object]:
    """Per-slice design for 3D stacks: MYO and MYO+LV."""
    if g is None:
        return {"2": "empty", "2+3": "empty"}
    if not g.has_lv:  # apex: filled MYO disc
        return {"2": [1, 0], "2+3": [1, 0]}
    if defect == "myo_gap":
        return {"2": [1, 0], "2+3": [1, 0]}
    assert defect is None
    return {"2": [1, 1], "2+3": [1, 0]}


# --------------------------------------------------------------------------- #
# The sample set
# --------------------------------------------------------------------------- #
SHAPE_2D = (128, 128)
SPACING_2D = (1.25, 1.25)
ORIGIN_2D = (-80.0, -76.25)

# name, format, defect
SLICES_2D = [
    ("sa_001", "png", None),
    ("sa_002", "png", None),
    ("sa_003", "png", "myo_gap"),
    ("sa_004", "png", None),
    ("sa_005", "png", "myo_blob"),
    ("sa_006", "png", None),
    ("sa_007", "nii.gz", None),
    ("sa_008", "nii.gz", "lv_hole"),
    ("sa_009", "nii.gz", None),
    ("sa_010", "nii.gz", "rv_split"),
]

DEFECT_TEXT = {
    "myo_gap": "myocardial ring broken open (radial gap >= 4 px on the free wall, set to background): "
               "LV touches the background",
    "myo_blob": "spurious isolated MYO blob (disc, r = 3.5 px) outside the heart",
    "lv_hole": "background hole (disc, r = 2.5 px) punched into the LV cavity",
    "rv_split": "RV crescent split in two by a radial gap >= 4 px",
}


def random_slice_geometry(seed: int, shape: tuple[int, int] = SHAPE_2D) -> SliceGeometry:
    """A plausible mid-ventricular slice; parameters drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    u = lambda lo, hi: float(lo + (hi - lo) * rng.random())  # noqa: E731
    cy, cx = shape[0] / 2, shape[1] / 2
    return SliceGeometry(
        center=(round(cy + u(-6, 6), 2), round(cx + u(0, 10), 2)),  # RV goes to the left
        lv_radius=round(u(13, 19), 2),
        wall_thickness=round(u(4.5, 7.5), 2),
        eccentricity=round(u(0.0, 0.6), 3),
        orientation_deg=round(u(0, 180), 1),
        wall_variation=round(u(0.0, 0.25), 3),
        rv_angle_deg=round(u(150, 205), 1),
        rv_span_deg=round(u(110, 160), 1),
        rv_width=round(u(8, 15), 2),
        rv_min_width=3.0,
        wobble=tuple((k, round(u(0, 0.03), 4), round(u(0, 360), 1)) for k in (2, 3, 4)),
    )


def make_2d(name: str, defect: str | None, seed: int) -> tuple[np.ndarray, SliceGeometry, dict]:
    g = random_slice_geometry(seed)
    lab = draw_short_axis(SHAPE_2D, g)
    info: dict = {}
    if defect == "myo_gap":
        ang = g.rv_angle_deg + 180 + 20  # lateral free wall, opposite the RV
        lab = break_myocardium(lab, g, ang, gap_px=4.0)
        info = {"gap_angle_deg": round(ang % 360, 1), "gap_px": 4.0}
    elif defect == "myo_blob":
        ang = math.radians(g.rv_angle_deg + 180 - 35)
        th = np.linspace(-math.pi, math.pi, 3600, endpoint=False)
        rad = float(epicardial_radius(th, g).max()) + 9.0
        c = (round(g.center[0] - rad * math.sin(ang), 2), round(g.center[1] + rad * math.cos(ang), 2))
        lab = add_blob(lab, c, 3.5, MYO)
        info = {"blob_center_rc": list(c), "blob_radius_px": 3.5}
    elif defect == "lv_hole":
        off = (2.0, -3.0)
        lab = punch_lv_hole(lab, g, off, 2.5)
        info = {"hole_center_rc": [g.center[0] + off[0], g.center[1] + off[1]], "hole_radius_px": 2.5}
    elif defect == "rv_split":
        lab = split_rv(lab, g, offset_deg=10.0, gap_px=4.0)
        info = {"split_angle_deg": round((g.rv_angle_deg + 10.0) % 360, 1), "gap_px": 4.0}
    else:
        assert defect is None
    return lab, g, info


@dataclass(frozen=True)
class StackSpec:
    name: str
    fmt: str
    seed: int
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    n_empty_base: int  # empty slices above the base
    n_rings: int  # slices with a MYO ring (LV cavity present)
    apex_disc_radii: tuple[float, ...]  # MYO-only apical discs
    n_empty_apex: int  # empty slices below the apex
    broken_slice: int | None = None  # index (in the stack) of a ring with a gap


SHAPE_3D_XY = (96, 96)
STACKS = [
    # The stacks stop at the last slice with an LV cavity: correct stacks then meet the
    # per-slice MYO prior (1,1) on every non-empty slice, and a failing slice is always a
    # segmentation error, never the apical cap (a MYO disc, (1,0), that a per-slice ring
    # prior would flag). Apical discs stay available through ``apex_disc_radii``.
    StackSpec("stack_01", "nii.gz", 301, (1.5, 1.5, 8.0), (-71.25, -68.5, -36.0), 1, 8, (), 1),
    StackSpec("stack_02", "mha", 302, (1.40625, 1.40625, 10.0), (-60.5, -72.0, 12.0), 2, 8, (), 0),
    StackSpec("stack_03", "nii.gz", 303, (1.5, 1.5, 8.0), (-69.75, -70.5, -28.0), 1, 9, (), 0,
              broken_slice=5),
]


def stack_geometries(base: SliceGeometry, n_empty_base: int, n_rings: int, apex_disc_radii: tuple[float, ...],
                     n_empty_apex: int, apex_lv_radius: float = 4.5, apex_shift: tuple[float, float] = (2.0, 2.5),
                     rv_extent: float = 0.8) -> list[SliceGeometry | None]:
    """Base-to-apex list of slice geometries (``None`` = empty slice).

    The cavity radius follows an ellipsoidal profile from ``base.lv_radius`` down
    to ``apex_lv_radius``, the wall thickens slightly, the ellipse rounds off,
    the RV crescent thins linearly towards ``rv_min_width`` and is absent from
    the ring slices beyond the fraction ``rv_extent`` of the way to the apex,
    and the centre drifts by ``apex_shift``.  Then come MYO-only discs
    (``lv_radius = 0``) of the given radii, then empty slices.
    """
    geoms: list[SliceGeometry | None] = [None] * n_empty_base
    k = 1.0 - (apex_lv_radius / base.lv_radius) ** 2
    last = base
    for j in range(n_rings):
        u = j / (n_rings - 1)
        rv_w = base.rv_min_width + (base.rv_width - base.rv_min_width) * (1.0 - u) if u <= rv_extent else 0.0
        g = replace(
            base,
            center=(round(base.center[0] + u * apex_shift[0], 3), round(base.center[1] + u * apex_shift[1], 3)),
            lv_radius=round(base.lv_radius * math.sqrt(1.0 - k * u * u), 3),
            wall_thickness=round(base.wall_thickness * (1.0 + 0.15 * u), 3),
            eccentricity=round(base.eccentricity * (1.0 - u), 4),
            rv_width=round(rv_w, 3),
            rv_span_deg=round(base.rv_span_deg * (1.0 - 0.35 * u), 2),
        )
        geoms.append(g)
        last = g
    for rad in apex_disc_radii:
        geoms.append(replace(last, lv_radius=0.0, wall_thickness=rad, wall_variation=0.0, rv_width=0.0,
                             eccentricity=0.0))
    geoms.extend([None] * n_empty_apex)
    return geoms


def make_stack(spec: StackSpec) -> tuple[np.ndarray, list[SliceGeometry | None], dict]:
    rng = np.random.default_rng(spec.seed)
    u = lambda lo, hi: float(lo + (hi - lo) * rng.random())  # noqa: E731
    cy, cx = SHAPE_3D_XY[0] / 2, SHAPE_3D_XY[1] / 2
    base = SliceGeometry(  # 1.5 mm pixels: basal cavity radius ~ 22-26 mm
        center=(round(cy + u(-3, 1), 2), round(cx + u(6, 10), 2)),
        lv_radius=round(u(14.5, 16.5), 2),
        wall_thickness=round(u(4.5, 5.5), 2),
        eccentricity=round(u(0.2, 0.45), 3),
        orientation_deg=round(u(0, 180), 1),
        wall_variation=round(u(0.0, 0.15), 3),
        rv_angle_deg=round(u(160, 195), 1),
        rv_span_deg=round(u(130, 150), 1),
        rv_width=round(u(10, 13), 2),
        rv_min_width=3.0,
        wobble=tuple((k, round(u(0, 0.025), 4), round(u(0, 360), 1)) for k in (2, 3)),
    )
    geoms = stack_geometries(base, spec.n_empty_base, spec.n_rings, spec.apex_disc_radii, spec.n_empty_apex)
    vol = np.zeros((len(geoms),) + SHAPE_3D_XY, dtype=np.uint8)
    info: dict = {}
    for z, g in enumerate(geoms):
        if g is None:
            continue
        vol[z] = draw_short_axis(SHAPE_3D_XY, g)
        if z == spec.broken_slice:
            assert g.has_lv
            ang = g.rv_angle_deg + 180 - 25
            vol[z] = break_myocardium(vol[z], g, ang, gap_px=4.0)
            info = {"broken_slice": z, "gap_angle_deg": round(ang % 360, 1), "gap_px": 4.0}
    return vol, geoms, info


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #
def write_image(arr: np.ndarray, path: Path, spacing, origin) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(arr, dtype=np.uint8))
    if not path.name.endswith(".png"):  # PNG carries no geometry
        img.SetSpacing(tuple(float(s) for s in spacing))
        img.SetOrigin(tuple(float(o) for o in origin))
    sitk.WriteImage(img, str(path), useCompression=path.name.endswith(".mha"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate(out_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Write every sample and MANIFEST.json into ``out_dir``; return (manifest, arrays)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    files = []
    for i, (name, fmt, defect) in enumerate(SLICES_2D, start=1):
        lab, g, info = make_2d(name, defect, seed=1000 + i)
        fname = f"{name}.{fmt}"
        png = fmt == "png"
        spacing = (1.0, 1.0) if png else SPACING_2D
        origin = (0.0, 0.0) if png else ORIGIN_2D
        write_image(lab, out_dir / fname, spacing, origin)
        arrays[fname] = lab
        files.append({
            "file": fname,
            "dim": 2,
            "shape": list(lab.shape),
            "spacing": list(spacing),
            "origin": list(origin),
            "dtype": "uint8",
            "labels_present": sorted(int(v) for v in np.unique(lab)),
            "broken": defect is not None,
            "defect": defect,
            "defect_description": DEFECT_TEXT.get(defect),
            "defect_params": info or None,
            "betti": designed_betti_2d(defect),
            "sha256": sha256(out_dir / fname),
        })
    for spec in STACKS:
        vol, geoms, info = make_stack(spec)
        fname = f"{spec.name}.{spec.fmt}"
        write_image(vol, out_dir / fname, spec.spacing, spec.origin)
        arrays[fname] = vol
        per_slice = [designed_betti_slice(g, "myo_gap" if z == spec.broken_slice else None)
                     for z, g in enumerate(geoms)]
        kinds = ["empty" if g is None else ("apex_disc" if not g.has_lv else
                 ("ring_broken" if z == spec.broken_slice else "ring")) for z, g in enumerate(geoms)]
        files.append({
            "file": fname,
            "dim": 3,
            "shape": list(vol.shape),
            "spacing": list(spec.spacing),
            "origin": list(spec.origin),
            "dtype": "uint8",
            "labels_present": sorted(int(v) for v in np.unique(vol)),
            "broken": spec.broken_slice is not None,
            "defect": "myo_gap" if spec.broken_slice is not None else None,
            "defect_description": (f"MYO ring broken open on slice {spec.broken_slice} (radial gap >= 4 px, "
                                   "set to background)") if spec.broken_slice is not None else None,
            "defect_params": info or None,
            "slice_kind": kinds,
            "betti_per_slice": {key: [s[key] for s in per_slice] for key in LABEL_SETS_3D},
            "sha256": sha256(out_dir / fname),
        })
    manifest = {
        "description": "Synthetic cardiac short-axis label maps (demo data for `topofix check`), "
                       "generated by scripts/make_sample_masks.py",
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "conventions": {
            "shape": "numpy order as returned by SimpleITK.GetArrayFromImage: (rows, cols) or (slices, rows, cols)",
            "spacing_origin": "ITK order (x, y[, z]) in mm; PNG stores no geometry (reads as spacing 1, origin 0)",
            "betti": "[b0, b1] by design: b0 = 8-connected components of the foreground, b1 = holes = "
                     "4-connected components of the zero-padded background minus one",
            "label_sets": "'2' = label 2 (MYO); '2+3' = union of labels 2 and 3 (MYO+LV); etc.",
            "betti_per_slice": "3D stacks: per slice along the first array axis (slice 0 = most basal), "
                               "2D Betti numbers of each slice, 'empty' when the label set is absent",
        },
        "files": files,
    }
    text = json.dumps(manifest, indent=2) + "\n"
    (out_dir / "MANIFEST.json").write_text(text, encoding="utf-8")
    return manifest, arrays


# --------------------------------------------------------------------------- #
# Verification (independent of the design: scipy.ndimage.label)
# --------------------------------------------------------------------------- #
def measured_betti_2d(mask: np.ndarray) -> list[int] | str:
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return "empty"
    _, b0 = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    comp = np.pad(~mask, 1, constant_values=True)
    _, nbg = ndimage.label(comp, structure=ndimage.generate_binary_structure(2, 1))
    return [int(b0), int(nbg) - 1]


def label_set_mask(arr: np.ndarray, key: str) -> np.ndarray:
    return np.isin(arr, [int(v) for v in key.split("+")])


def touches(a: np.ndarray, b: np.ndarray, eight: bool) -> bool:
    from scipy import ndimage

    st = np.ones((3, 3), bool) if eight else ndimage.generate_binary_structure(2, 1)
    return bool((ndimage.binary_dilation(a, structure=st) & b).any())


def verify(out_dir: Path, manifest: dict, arrays: dict[str, np.ndarray]) -> list[str]:
    import SimpleITK as sitk

    errors: list[str] = []
    names = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    expected = sorted([f["file"] for f in manifest["files"]] + ["MANIFEST.json"])
    if names != expected:
        errors.append(f"unexpected directory content: {sorted(set(names) ^ set(expected))}")
    on_disk = json.loads((out_dir / "MANIFEST.json").read_text(encoding="utf-8"))
    if on_disk != manifest:
        errors.append("MANIFEST.json on disk differs from the generated manifest")
    for f in manifest["files"]:
        path = out_dir / f["file"]
        if sha256(path) != f["sha256"]:
            errors.append(f"{f['file']}: sha256 differs from the manifest")
        img = sitk.ReadImage(str(path))
        arr = sitk.GetArrayFromImage(img)
        if img.GetDimension() != f["dim"] or list(arr.shape) != f["shape"] or arr.dtype != np.uint8:
            errors.append(f"{f['file']}: read back dim/shape/dtype {img.GetDimension()} {arr.shape} {arr.dtype}")
            continue
        if not np.array_equal(arr, arrays[f["file"]]):
            errors.append(f"{f['file']}: pixels read back differ from the generated array")
        if not np.allclose(img.GetSpacing(), f["spacing"], atol=1e-6, rtol=0):
            errors.append(f"{f['file']}: spacing {img.GetSpacing()} != {f['spacing']}")
        if not np.allclose(img.GetOrigin(), f["origin"], atol=1e-5, rtol=0):
            errors.append(f"{f['file']}: origin {img.GetOrigin()} != {f['origin']}")
        if not np.allclose(np.array(img.GetDirection()), np.eye(f["dim"]).ravel()):
            errors.append(f"{f['file']}: direction is not the identity")
        if f["dim"] == 2:
            for key, want in f["betti"].items():
                got = measured_betti_2d(label_set_mask(arr, key))
                if got != want:
                    errors.append(f"{f['file']}: label set {key}: measured {got}, designed {want}")
            rv, myo, lv = arr == RV, arr == MYO, arr == LV
            if not touches(rv, myo, eight=False):
                errors.append(f"{f['file']}: RV does not touch the MYO")
            if touches(rv, lv, eight=True):
                errors.append(f"{f['file']}: RV touches the LV")
            lv_leaks = touches(lv, arr == BACKGROUND, eight=False)
            if lv_leaks != (f["defect"] in ("myo_gap", "lv_hole")):
                errors.append(f"{f['file']}: LV touches background = {lv_leaks} (defect {f['defect']})")
        else:
            for key, want_list in f["betti_per_slice"].items():
                got_list = [measured_betti_2d(label_set_mask(s, key)) for s in arr]
                if got_list != want_list:
                    errors.append(f"{f['file']}: label set {key}: measured {got_list}, designed {want_list}")
    # idempotence: a second generation into a scratch directory is byte-identical
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        for name in expected:
            if (Path(tmp) / name).read_bytes() != (out_dir / name).read_bytes():
                errors.append(f"{name}: not byte-identical when regenerated")
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: sample_data/masks)")
    ap.add_argument("--verify", action="store_true",
                    help="after writing, re-read every file and check the designed Betti numbers with "
                         "scipy.ndimage.label, geometry metadata, hashes and byte-identical regeneration")
    args = ap.parse_args(argv)
    manifest, arrays = generate(args.out)
    total = 0
    for f in manifest["files"]:
        size = (args.out / f["file"]).stat().st_size
        total += size
        tag = f"BROKEN ({f['defect']})" if f["broken"] else "ok"
        print(f"{f['file']:18s} {size:7d} B  {str(tuple(f['shape'])):14s} {tag}")
    total += (args.out / "MANIFEST.json").stat().st_size
    print(f"{len(manifest['files'])} files + MANIFEST.json, {total} bytes in {args.out}")
    if args.verify:
        errors = verify(args.out, manifest, arrays)
        for e in errors:
            print("VERIFY FAILED:", e, file=sys.stderr)
        if errors:
            return 1
        print("verify: all designed Betti numbers, metadata and hashes match; regeneration is byte-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
