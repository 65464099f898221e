"""Which files are compared: predictions matched by name to ground truths (and baselines), checked.

Why apart: the rules that pair a prediction with its ground truth and baseline
(same file name in a folder; or one array per prediction), and the geometry
check that refuses a pair which does not overlay, are what make an evaluation
trustworthy; every problem here becomes a one-line entry of the report's
``errors`` (or a :class:`~topofix.errors.TopofixError` for a bad argument).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from topofix.errors import TopofixError, with_path
from topofix.evaluation.report import EvaluationReport
from topofix.evaluation.results import EvaluationFailure


def _fmt(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.6g}" for v in values)


def geometry_mismatch(pred: Any, other: Any) -> str | None:
    """What differs between two images (shape, spacing, origin, direction), or None.

    Tolerances absorb what file formats do to geometry (NIfTI stores float32;
    PNG rounds the spacing to ~5 digits): spacing relative 1e-4, origin 1e-3
    of the largest spacing, direction 1e-4.
    """
    if pred.array.shape != other.array.shape:
        return f"shape (array order) {tuple(other.array.shape)} vs prediction {tuple(pred.array.shape)}"
    a, b = pred.geometry, other.geometry
    axes = ", ".join("xyz"[: len(a.spacing)])
    if not np.allclose(a.spacing, b.spacing, rtol=1e-4, atol=1e-9):
        return f"spacing ({axes}) {_fmt(b.spacing)} vs prediction {_fmt(a.spacing)}"
    if not np.allclose(a.origin, b.origin, rtol=0, atol=1e-3 * max(max(a.spacing), 1e-6)):
        return f"origin ({axes}) {_fmt(b.origin)} vs prediction {_fmt(a.origin)}"
    if not np.allclose(a.direction, b.direction, rtol=0, atol=1e-4):
        return f"direction {_fmt(b.direction)} vs prediction {_fmt(a.direction)}"
    return None


@dataclass(frozen=True)
class Case:
    """One prediction file and the ground truth (and baseline) of the same name it is compared with."""

    path: str
    gt_path: str
    baseline_path: str | None


def load_pair(case: Case, read: Callable[[str], Any], report: EvaluationReport) -> tuple[Any, Any, Any] | None:
    """Read a prediction and its ground truth (and baseline); record failures; return what could be read."""
    try:
        if not os.path.isfile(case.gt_path):
            raise TopofixError(f"{case.path}: no ground truth {case.gt_path} (ground truths are matched by file name)")
        pred = read(case.path)
        gt = read(case.gt_path)
        problem = geometry_mismatch(pred, gt)
        if problem:
            raise TopofixError(f"{case.path}: ground truth {case.gt_path} differs in {problem}")
    except TopofixError as err:
        message = with_path(str(err), case.path, case.gt_path)
        report.errors.append(EvaluationFailure(case.path, message))
        return None
    base = None
    if case.baseline_path is not None:
        try:
            if not os.path.isfile(case.baseline_path):
                raise TopofixError(f"{case.path}: no baseline {case.baseline_path} (baselines are matched by file name)")
            base = read(case.baseline_path)
            problem = geometry_mismatch(pred, base)
            if problem:
                raise TopofixError(f"{case.path}: baseline {case.baseline_path} differs in {problem}")
        except TopofixError as err:
            report.errors.append(EvaluationFailure(case.path, str(err)))
            base = None
    return pred, gt, base


def as_list(x: Any) -> list[Any]:
    """One input (a path or an array) or several, as a list."""
    if isinstance(x, (str, os.PathLike, np.ndarray)):
        return [x]
    return list(x)


def read_mask(path: str) -> Any:
    """:func:`topofix.io.read_mask`, imported on first use (SimpleITK is slow to import)."""
    from topofix.io import read_mask as read

    return read(path)


def array_cases(arrays: list[np.ndarray], gt: Any, baseline: Any) -> list[tuple]:
    """(name, pred, gt, baseline) per prediction array; names pair baseline rows with prediction rows."""
    gts = as_list(gt)
    if not all(isinstance(g, np.ndarray) for g in gts) or len(gts) != len(arrays):
        raise TopofixError(f"with prediction arrays, give one ground-truth array per prediction ({len(arrays)})")
    bases = [None] * len(arrays) if baseline is None else as_list(baseline)
    if len(bases) != len(arrays) or not all(b is None or isinstance(b, np.ndarray) for b in bases):
        raise TopofixError(f"with prediction arrays, give one baseline array per prediction ({len(arrays)})")
    cases = []
    for i, (p, g, b) in enumerate(zip(arrays, gts, bases)):
        name = "<array>" if len(arrays) == 1 else f"<array {i}>"
        p, g = np.asarray(p), np.asarray(g)
        if p.shape != g.shape:
            raise TopofixError(f"{name}: ground truth differs in shape (array order) {g.shape} vs prediction {p.shape}")
        if b is not None and np.shape(b) != p.shape:
            raise TopofixError(f"{name}: baseline differs in shape (array order) {np.shape(b)} vs prediction {p.shape}")
        cases.append((name, p, g, None if b is None else np.asarray(b)))
    return cases


def file_cases(specs: list[Any], gt: Any, baseline: Any, report: EvaluationReport) -> list[Case]:
    from topofix.inputs import expand_inputs

    if isinstance(gt, np.ndarray) or not isinstance(gt, (str, os.PathLike)):
        raise TopofixError("the ground truth must be a folder (files are matched by name)")
    gt_dir = os.fspath(gt)
    if not os.path.isdir(gt_dir):
        raise TopofixError(f"{gt_dir}: ground-truth folder does not exist" if not os.path.exists(gt_dir)
                           else f"{gt_dir}: is a file; the ground truth must be a folder (files are matched by name)")
    base_dir = None
    if baseline is not None:
        if not isinstance(baseline, (str, os.PathLike)):
            raise TopofixError("the baseline must be a folder when predictions are files")
        base_dir = os.fspath(baseline)
        if not os.path.isdir(base_dir):
            raise TopofixError(f"{base_dir}: baseline folder does not exist" if not os.path.exists(base_dir)
                               else f"{base_dir}: is a file; the baseline must be a folder (matched by name)")
    report.gt, report.baseline = gt_dir, base_dir
    cases = []
    for item in expand_inputs(specs):
        if item.error is not None:
            report.errors.append(EvaluationFailure(item.path, str(item.error)))
            continue
        name = os.path.basename(item.path)
        cases.append(Case(item.path, paired_path(gt_dir, name), None if base_dir is None else paired_path(base_dir, name)))
    return cases


def paired_path(folder: str, name: str) -> str:
    """``folder/name``; when there is no such file, the one mask of ``folder`` with the same stem in
    another format (a DICOM-SEG ``case_01.dcm`` against a NIfTI ``case_01.nii.gz``, or back)."""
    from topofix.outputs import split_name

    exact = os.path.join(folder, name)
    if os.path.isfile(exact):
        return exact
    stem = split_name(name)[0]
    try:
        same = sorted(f for f in os.listdir(folder) if split_name(f)[1] and split_name(f)[0] == stem)
    except OSError:
        return exact
    return os.path.join(folder, same[0]) if len(same) == 1 else exact


__all__ = ["Case", "array_cases", "as_list", "file_cases", "geometry_mismatch", "load_pair", "paired_path", "read_mask"]
