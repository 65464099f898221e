"""The batch driver of ``topofix evaluate``: :func:`evaluate` over files, folders or arrays.

Why apart: it only strings the other parts together (pairing, per-array
metrics, the report) and owns the run's options (structures, connectivity,
per-slice, progress).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from topofix.errors import TopofixError
from topofix.evaluation.arrays import auto_structures, evaluate_labels, structure_priors
from topofix.evaluation.pairing import array_cases, as_list, file_cases, load_pair, read_mask
from topofix.evaluation.report import EvaluationReport
from topofix.evaluation.results import EvaluationFailure
from topofix.priors import Prior
from topofix.slicing import SLICE_AXES
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY, check_connectivity


def evaluate(
    preds: str | os.PathLike[str] | np.ndarray | Sequence[str | os.PathLike[str] | np.ndarray],
    gt: str | os.PathLike[str] | np.ndarray | Sequence[np.ndarray],
    *,
    baseline: str | os.PathLike[str] | np.ndarray | Sequence[np.ndarray] | None = None,
    label: str | int | None = None,
    priors: Sequence[Prior | str] | Prior | str | None = None,
    connectivity: str = DEFAULT_CONNECTIVITY,
    per_slice: str | None = None,
    spacing: Sequence[float] | None = None,
    progress: bool = False,
) -> EvaluationReport:
    """Segmentation metrics of predictions against ground truths.

    Parameters
    ----------
    preds:
        Prediction files, folders (their images, not recursive), glob patterns;
        or label arrays.
    gt:
        The ground-truth folder: each prediction is compared with the file of
        the same name there. With arrays: one ground-truth array per prediction.
    baseline:
        Optional second prediction folder (or arrays) matched by name, e.g.
        the masks before correction: see :meth:`EvaluationReport.paired`.
    label, priors:
        The structures: ``--label 2``, ``--prior 2+3``, ``--prior 2=1,1`` or
        ``--prior 2=1,1|0,0`` (Betti numbers and alternatives ignored).
        Default: every label present, plus the foreground (foreground only
        for binary batches).
    connectivity:
        ``"full"`` (default) or ``"face"``, for Betti numbers and matching.
    per_slice:
        ``"x"``, ``"y"`` or ``"z"``: evaluate every 2D slice of 3D masks.
    spacing:
        For arrays only: voxel size per array axis (numpy order). Files use
        their own spacing (the ground truth's, equal to the prediction's).
    progress:
        Show a progress bar over cases (on a terminal only).

    Returns
    -------
    EvaluationReport
        ``results`` (case x slice x structure, for ``source`` ``"pred"`` and
        ``"baseline"``), ``label_maps`` (VI), ``errors``, :meth:`summary`,
        :meth:`paired`, ``exit_code``.

    Examples
    --------
    >>> import numpy as np, topofix
    >>> gt = np.zeros((9, 9), np.uint8); gt[2:7, 2:7] = 1; gt[4, 4] = 0   # a ring
    >>> pred = gt.copy(); pred[4, 4] = 1                                    # filled in
    >>> r = topofix.evaluate(pred, gt).results[0]
    >>> r.betti_pred, r.betti_gt, r.betti_matching_errors
    ((1, 0), (1, 1), (0, 1))
    """
    connectivity = check_connectivity(connectivity)
    if per_slice is not None and per_slice not in SLICE_AXES:
        raise ValueError(f"per_slice must be one of x, y, z, got {per_slice!r}")
    per_slice = None if per_slice is None else str(per_slice)  # a topofix.choices.SliceAxis member -> its value
    if isinstance(priors, (str, Prior)):
        priors = [priors]
    fixed = structure_priors(label, priors or ())
    report = EvaluationReport(connectivity=connectivity, per_slice=per_slice)
    cases = _cases(preds, gt, baseline, report)
    if fixed is not None:
        report.structures = list(fixed)
    seen: dict[str, Prior] = {p.name: p for p in report.structures}

    iterator: Iterable[Any] = cases
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(cases, desc="evaluate", unit="case", disable=None, leave=False)
    for case in iterator:
        loaded = _load(case, spacing, report)
        if loaded is not None:
            _evaluate_case(loaded, report, fixed, seen, connectivity, per_slice)
    if fixed is None:
        report.structures = _found_structures(report, seen)
    return report


class _Loaded(NamedTuple):
    """One case's arrays and the names its rows carry."""

    pred: np.ndarray
    gt: np.ndarray
    baseline: np.ndarray | None
    spacing: Any  # per array axis (numpy order); None: unit spacing
    path: str
    gt_path: str
    baseline_path: str | None  # the baseline rows' path (arrays: the prediction's name, for pairing)


def _cases(preds: Any, gt: Any, baseline: Any, report: EvaluationReport) -> Sequence[Any]:
    """The cases to evaluate: ``(name, pred, gt, baseline)`` tuples for arrays, :class:`Case` for files.

    Files and arrays are not mixed: arrays have no names to pair them with the ground truth by.
    """
    pred_list = as_list(preds)
    arrays = [p for p in pred_list if isinstance(p, np.ndarray)]
    if arrays and len(arrays) != len(pred_list):
        raise TopofixError("give predictions either as files/folders or as arrays, not both")
    if arrays:
        report.gt, report.baseline = "<arrays>", None if baseline is None else "<arrays>"
        return array_cases(arrays, gt, baseline)
    return file_cases(pred_list, gt, baseline, report)


def _load(case: Any, spacing: Sequence[float] | None, report: EvaluationReport) -> _Loaded | None:
    """A case's arrays, spacing and names; ``None`` when it failed (its error is in ``report.errors``).

    Arrays keep the given spacing and their baseline rows keep the prediction's name (pairing);
    files use the ground truth's spacing (equal to the prediction's, checked by :func:`load_pair`).
    """
    if isinstance(case, tuple):
        name, p, g, b = case
        loaded = _Loaded(p, g, b, spacing, name, name.replace("<array", "<gt"), name)
    else:
        got = load_pair(case, read_mask, report)
        if got is None:
            return None
        p_img, g_img, b_img = got
        sp = g_img.geometry.array_spacing
        loaded = _Loaded(p_img.array, g_img.array, None if b_img is None else b_img.array, sp, case.path,
                         case.gt_path, case.baseline_path)
    if loaded.pred.ndim not in (2, 3):
        path = loaded.path
        report.errors.append(EvaluationFailure(path, f"{path}: expected a 2D or 3D label map, got shape "
                                                     f"{loaded.pred.shape}"))
        return None
    return loaded


def _evaluate_case(loaded: _Loaded, report: EvaluationReport, fixed: Sequence[Prior] | None,
                   seen: dict[str, Prior], connectivity: str, per_slice: str | None) -> None:
    """The rows of one case (and of its baseline) into ``report``; the structures met go to ``seen``."""
    p, g, b = loaded.pred, loaded.gt, loaded.baseline
    structures = fixed if fixed is not None else auto_structures([x for x in (p, g, b) if x is not None])
    for s in structures:
        seen.setdefault(s.name, s)
    res, maps = evaluate_labels(p, g, structures, spacing=loaded.spacing, connectivity=connectivity,
                                per_slice=per_slice, path=loaded.path, gt_path=loaded.gt_path, source="pred")
    report.results += res
    report.label_maps += maps
    if b is not None:
        assert loaded.baseline_path is not None  # a baseline array comes with its name (load_pair, array_cases)
        res, maps = evaluate_labels(b, g, structures, spacing=loaded.spacing, connectivity=connectivity,
                                    per_slice=per_slice, path=loaded.baseline_path, gt_path=loaded.gt_path,
                                    source="baseline")
        report.results += res
        report.label_maps += maps


def _found_structures(report: EvaluationReport, seen: dict[str, Prior]) -> list[Prior]:
    """The structures to report when none were asked for: every label found, then the foreground.

    For binary masks the foreground *is* the label, so its per-label rows are dropped from
    ``report.results`` (the same numbers twice would count twice in the summaries).
    """
    labelled = [p for p in seen.values() if p.labels is not None]
    if len(labelled) <= 1:  # binary masks: the foreground is the label
        report.results = [r for r in report.results if r.structure.labels is None]
        return [p for p in seen.values() if p.labels is None] or [Prior()]
    return sorted(labelled, key=lambda p: p.labels or ()) + [Prior()]


__all__ = ["evaluate"]
