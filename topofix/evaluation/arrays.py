"""Metrics of one label map against its ground truth, in memory: per structure, per case or slice.

Why apart: this is the part a notebook calls on arrays (:func:`evaluate_labels`),
and the only one that touches voxels; the metric definitions themselves live in
:mod:`topofix.metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from topofix.evaluation.results import LabelMapResult, Source, StructureResult
from topofix.priors import Prior, build_priors, parse_labels, parse_prior
from topofix.slicing import iter_slices, slice_spacing
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY


def structure_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    structure: Prior,
    *,
    spacing: Sequence[float] | None = None,
    connectivity: str = DEFAULT_CONNECTIVITY,
    path: str = "<array>",
    gt_path: str = "<array>",
    source: Source = "pred",
    slice_index: int | None = None,
) -> StructureResult:
    """Every structure metric of ``structure`` between two label maps (2D or 3D, same shape).

    ``spacing`` per array axis (numpy order); default 1.
    """
    from topofix.metrics import betti_matching, dice, surface_distances

    pm = structure.select(pred)
    gm = structure.select(gt)
    pv, gv = int(np.count_nonzero(pm)), int(np.count_nonzero(gm))
    nan = float("nan")
    if pv == 0 and gv == 0:
        zeros = (0,) * pm.ndim
        bm = (0,) * pm.ndim if pm.ndim == 2 else (0, None, 0)
        return StructureResult(path, gt_path, source, structure, slice_index, True, 0, 0, nan, nan, nan, nan,
                               zeros, zeros, bm)
    distances = surface_distances(pm, gm, spacing)
    matching = betti_matching(pm, gm, connectivity)
    return StructureResult(
        path, gt_path, source, structure, slice_index, False, pv, gv, dice(pm, gm),
        distances.hd, distances.hd95, distances.assd,
        matching.pred_betti, matching.gt_betti, matching.errors,
    )


def evaluate_labels(
    pred: np.ndarray,
    gt: np.ndarray,
    structures: Sequence[Prior] | None = None,
    *,
    spacing: Sequence[float] | None = None,
    connectivity: str = DEFAULT_CONNECTIVITY,
    per_slice: str | None = None,
    path: str = "<array>",
    gt_path: str = "<array>",
    source: Source = "pred",
) -> tuple[list[StructureResult], list[LabelMapResult]]:
    """Evaluate one label map (in memory) against its ground truth.

    ``structures=None``: every label present in either map, plus the
    foreground. ``spacing`` per array axis (numpy order). Returns the
    structure results (case x slice x structure) and the label-map results
    (VI per case or slice).
    """
    from topofix.metrics import variation_of_information
    from topofix.metrics.surface import array_spacing

    pred = _label_array(pred, "prediction")
    gt = _label_array(gt, "ground truth")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction and ground truth differ in shape: {pred.shape} vs {gt.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"expected 2D or 3D label maps, got shape {pred.shape}")
    if structures is None:
        structures = auto_structures([pred, gt])
    full_spacing = array_spacing(spacing, pred.ndim)
    plane_spacing = slice_spacing(full_spacing, pred.ndim, per_slice)
    results: list[StructureResult] = []
    maps: list[LabelMapResult] = []
    single = _single_label(structures)
    for (index, p), (_, g) in zip(iter_slices(pred, per_slice), iter_slices(gt, per_slice)):
        done: dict[str, StructureResult] = {}
        for structure in structures:
            if structure.labels is None and single is not None and single.name in done:
                result = replace(done[single.name], structure=structure)  # the foreground is that one label
            else:
                result = structure_metrics(p, g, structure, spacing=plane_spacing, connectivity=connectivity,
                                           path=path, gt_path=gt_path, source=source, slice_index=index)
            done[structure.name] = result
            results.append(result)
        empty = not (np.any(p) or np.any(g))
        maps.append(LabelMapResult(path, gt_path, source, index, empty, variation_of_information(p, g)))
    return results, maps


def _label_array(array: Any, what: str) -> np.ndarray:
    """A label map as an integer (or bool) array; refuses probabilities and NaN."""
    a = np.asarray(array)
    if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer):
        return a
    if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
        raise ValueError(f"the {what} is not a label map (non-integer values): threshold probability maps first")
    return a.astype(np.int64)


def _single_label(structures: Sequence[Prior]) -> Prior | None:
    """With structures [L, foreground] exactly, label L (so the foreground result can be reused)."""
    singles = [s for s in structures if s.labels is not None]
    if len(singles) == 1 and len(singles[0].labels or ()) == 1 and any(s.labels is None for s in structures):
        return singles[0]
    return None


def present_labels(arrays: Iterable[np.ndarray]) -> list[int]:
    labels: set[int] = set()
    for a in arrays:
        labels.update(int(v) for v in np.unique(np.asarray(a)))
    labels.discard(0)
    return sorted(labels)


def auto_structures(arrays: Iterable[np.ndarray]) -> list[Prior]:
    """Every label present in ``arrays``, each on its own, then the foreground."""
    return [Prior(labels=(label,)) for label in present_labels(arrays)] + [Prior()]


def structure_priors(label: str | int | None = None, priors: Iterable[str | Prior] = ()) -> list[Prior] | None:
    """The structures named by ``--label`` and ``--prior`` (``LABELS`` or ``LABELS=BETTI``); None: automatic."""
    parsed: list[Prior] = []
    for spec in priors:
        if isinstance(spec, Prior):
            parsed.append(spec)
        elif "=" in str(spec):
            parsed.append(parse_prior(str(spec)))
        else:
            parsed.append(Prior(labels=parse_labels(spec)))
    if label is None and not parsed:
        return None
    return build_priors(None, label, parsed)


__all__ = ["auto_structures", "evaluate_labels", "present_labels", "structure_metrics", "structure_priors"]
