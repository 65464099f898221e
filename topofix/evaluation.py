"""``topofix evaluate``: segmentation metrics against a ground truth, as a Python API.

:func:`evaluate` matches every prediction to the ground truth with the same
file name in a folder, and reports per case (or per slice) and per structure:
Dice, Hausdorff distance (max and 95th percentile) and ASSD in physical units,
Betti numbers of both masks, Betti error and Betti matching error per
dimension; and per case the variation of information between the label maps.
Definitions and the rules for empty masks are in :mod:`topofix.metrics`
(``overlap``, ``surface``, ``topology``).

Structures
    Each ``--prior``/``--label`` label set (a ``--prior``'s Betti numbers,
    alternatives such as ``2=1,1|0,0`` included, are not used here: the Betti
    error compares the prediction with the ground truth, not with a prior).
    Without any, every label present in the prediction or the
    ground truth (or the baseline), each on its own, plus the foreground (any
    non-zero label); for a batch of binary masks (one label), the foreground
    only.

Empty structures
    A structure absent from both the prediction and the ground truth of a case
    (or slice) is reported with ``empty=True`` and left out of the summaries:
    a slice above the heart is not a perfect segmentation of the myocardium.
    Likewise a slice where both label maps are all background for the VI.

Summaries
    Per structure and metric over cases (or slices with ``per_slice``):
    ``n``, mean and sample standard deviation (``ddof=1``; NaN for n < 2) of
    the finite values; NaN values (e.g. Dice with both masks empty) and
    infinite ones (a surface distance to an empty mask) are counted apart.

Baseline
    With ``baseline`` (a second prediction folder, matched by name, e.g. the
    masks before ``topofix correct``), every metric is also computed for the
    baseline, and :meth:`EvaluationReport.paired` compares them: per structure
    and metric the differences ``pred - baseline`` over the pairs where both
    values are finite (pairs where both are empty are left out), their mean
    and standard deviation, and a two-sided Wilcoxon signed-rank test
    (``scipy.stats.wilcoxon``, zero differences dropped as in Wilcoxon's
    original test). With n < 2 pairs, or only zero differences, there is no
    test (``p_value=None`` and a note).

Every input is processed even when others fail: a missing ground truth, an
unreadable file or a shape/geometry mismatch becomes an entry of
:attr:`EvaluationReport.errors` (one line, naming the file and what differs),
never an exception; :attr:`EvaluationReport.exit_code` is then 2.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from topofix._version import __version__
from topofix.errors import TopofixError
from topofix.priors import Prior, build_priors, parse_labels, parse_prior
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY, check_connectivity

Source = Literal["pred", "baseline"]
SLICE_AXES = {"x": 2, "y": 1, "z": 0}
"""Slice axis names -> numpy axis of a (z, y, x) array (as in ``topofix check``)."""

#: Metrics of one structure that are summarised (per-dimension names are added
#: for dimensions 0..2: ``betti_error_0``, ``betti_matching_error_1``...).
STRUCTURE_METRICS = ("dice", "hd", "hd95", "assd", "betti_error", "betti_matching_error")
LABEL_MAPS = "label maps"
"""Name used in summaries for the variation of information (a property of whole label maps)."""


def metric_names(ndim: int = 3) -> list[str]:
    """Every structure metric name, per-dimension ones included (``ndim`` 2 or 3)."""
    names = list(STRUCTURE_METRICS)
    for base in ("betti_error", "betti_matching_error"):
        names += [f"{base}_{k}" for k in range(ndim)]
    return names


def lower_is_better(metric: str) -> bool:
    """Every metric but Dice is an error or a distance."""
    return metric != "dice"


def _finite_or_none(value: Any) -> Any:
    """JSON-friendly float: NaN -> None, +-inf -> "inf"/"-inf"."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


@dataclass(frozen=True)
class StructureResult:
    """Metrics of one structure in one case (or one slice of it)."""

    path: str
    gt_path: str
    source: Source
    structure: Prior
    slice_index: int | None
    empty: bool
    pred_voxels: int
    gt_voxels: int
    dice: float
    hd: float
    hd95: float
    assd: float
    betti_pred: tuple[int, ...]
    betti_gt: tuple[int, ...]
    betti_matching_errors: tuple[int | None, ...]

    @property
    def betti_errors(self) -> tuple[int, ...]:
        return tuple(abs(a - b) for a, b in zip(self.betti_pred, self.betti_gt))

    @property
    def betti_error(self) -> int:
        return sum(self.betti_errors)

    @property
    def betti_matching_error(self) -> int:
        """Sum over the dimensions computed (0 and 2 for a 3D mask; see topofix.metrics.topology)."""
        return sum(e for e in self.betti_matching_errors if e is not None)

    def metric(self, name: str) -> float | None:
        """A metric by name (``"dice"``, ``"betti_error_1"``...); None when it does not apply."""
        if name in ("dice", "hd", "hd95", "assd"):
            return float(getattr(self, name))
        if name == "betti_error":
            return float(self.betti_error)
        if name == "betti_matching_error":
            return float(self.betti_matching_error)
        for base, values in (("betti_error_", self.betti_errors), ("betti_matching_error_", self.betti_matching_errors)):
            if name.startswith(base):
                k = int(name[len(base):])
                value = values[k] if k < len(values) else None
                return None if value is None else float(value)
        raise KeyError(f"unknown metric {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "gt": self.gt_path,
            "source": self.source,
            "slice": self.slice_index,
            "structure": self.structure.name,
            "labels": None if self.structure.labels is None else list(self.structure.labels),
            "empty": self.empty,
            "pred_voxels": self.pred_voxels,
            "gt_voxels": self.gt_voxels,
            "dice": _finite_or_none(self.dice),
            "hd": _finite_or_none(self.hd),
            "hd95": _finite_or_none(self.hd95),
            "assd": _finite_or_none(self.assd),
            "betti_pred": list(self.betti_pred),
            "betti_gt": list(self.betti_gt),
            "betti_error": list(self.betti_errors),
            "betti_error_total": self.betti_error,
            "betti_matching_error": list(self.betti_matching_errors),
            "betti_matching_error_total": self.betti_matching_error,
        }


@dataclass(frozen=True)
class LabelMapResult:
    """Variation of information between the label maps of one case (or slice)."""

    path: str
    gt_path: str
    source: Source
    slice_index: int | None
    empty: bool
    vi: float

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "gt": self.gt_path, "source": self.source, "slice": self.slice_index,
                "empty": self.empty, "vi": _finite_or_none(self.vi)}


@dataclass(frozen=True)
class EvaluationFailure:
    """A case that could not be evaluated (or not fully), with its one-line reason."""

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "error": self.message}


@dataclass(frozen=True)
class MetricSummary:
    """Mean and standard deviation of one metric of one structure over cases (or slices)."""

    structure: str
    metric: str
    n: int
    mean: float
    sd: float
    n_nan: int = 0
    n_inf: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"structure": self.structure, "metric": self.metric, "n": self.n, "mean": _finite_or_none(self.mean),
                "sd": _finite_or_none(self.sd), "n_nan": self.n_nan, "n_inf": self.n_inf}


@dataclass(frozen=True)
class PairedComparison:
    """``pred - baseline`` differences of one metric of one structure, with a Wilcoxon signed-rank test."""

    structure: str
    metric: str
    n: int
    mean_pred: float
    mean_baseline: float
    mean_diff: float
    sd_diff: float
    statistic: float | None
    p_value: float | None
    note: str | None = None

    @property
    def improved(self) -> bool | None:
        """Whether the mean difference goes the good way (Dice up; distances, errors, VI down)."""
        if self.n == 0 or not math.isfinite(self.mean_diff) or self.mean_diff == 0:
            return None
        return (self.mean_diff < 0) == lower_is_better(self.metric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "structure": self.structure, "metric": self.metric, "n": self.n,
            "mean_pred": _finite_or_none(self.mean_pred), "mean_baseline": _finite_or_none(self.mean_baseline),
            "mean_diff": _finite_or_none(self.mean_diff), "sd_diff": _finite_or_none(self.sd_diff),
            "test": "wilcoxon signed-rank (two-sided)", "statistic": _finite_or_none(self.statistic),
            "p_value": _finite_or_none(self.p_value), "note": self.note,
        }


def summarise(values: Iterable[float | None], structure: str, metric: str) -> MetricSummary:
    """n, mean and sample sd of the finite values; NaN and inf counted apart; None ignored."""
    finite: list[float] = []
    n_nan = n_inf = 0
    for v in values:
        if v is None:
            continue
        if math.isnan(v):
            n_nan += 1
        elif math.isinf(v):
            n_inf += 1
        else:
            finite.append(float(v))
    arr = np.asarray(finite, dtype=float)
    mean = float(arr.mean()) if arr.size else float("nan")
    sd = float(arr.std(ddof=1)) if arr.size >= 2 else float("nan")
    return MetricSummary(structure, metric, int(arr.size), mean, sd, n_nan, n_inf)


def paired_test(pred: Sequence[float], baseline: Sequence[float], structure: str, metric: str) -> PairedComparison:
    """Differences ``pred - baseline`` (finite pairs only) and a two-sided Wilcoxon signed-rank test."""
    pairs = [(float(a), float(b)) for a, b in zip(pred, baseline)
             if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    n = len(pairs)
    if n == 0:
        nan = float("nan")
        return PairedComparison(structure, metric, 0, nan, nan, nan, nan, None, None, "no pair with finite values")
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    diff = a - b
    sd = float(diff.std(ddof=1)) if n >= 2 else float("nan")
    statistic = p_value = None
    note = None
    if n < 2:
        note = "n < 2: no test"
    elif not np.any(diff != 0):
        note = "all differences are zero: no test"
    else:
        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = stats.wilcoxon(diff, alternative="two-sided")
                statistic, p_value = float(res.statistic), float(res.pvalue)
            except ValueError as exc:  # pragma: no cover - scipy edge cases
                note = f"no test: {exc}"
        if p_value is not None and not math.isfinite(p_value):
            statistic, p_value, note = None, None, "no test (scipy returned NaN)"
    return PairedComparison(structure, metric, n, float(a.mean()), float(b.mean()), float(diff.mean()), sd,
                            statistic, p_value, note)


@dataclass
class EvaluationReport:
    """Everything :func:`evaluate` found."""

    results: list[StructureResult] = field(default_factory=list)
    label_maps: list[LabelMapResult] = field(default_factory=list)
    errors: list[EvaluationFailure] = field(default_factory=list)
    structures: list[Prior] = field(default_factory=list)
    connectivity: str = DEFAULT_CONNECTIVITY
    per_slice: str | None = None
    gt: str | None = None
    baseline: str | None = None

    @property
    def paths(self) -> list[str]:
        """Evaluated predictions, in order, without repetition."""
        return list(dict.fromkeys(r.path for r in self.results if r.source == "pred"))

    @property
    def exit_code(self) -> int:
        """0: every case evaluated; 2: some case failed (unreadable, missing ground truth, mismatch)."""
        return 2 if self.errors else 0

    @property
    def counts(self) -> dict[str, int]:
        evaluated = len(self.paths)
        failed = len({e.path for e in self.errors})
        return {"evaluated": evaluated, "failed": failed,
                "slices": len({(r.path, r.slice_index) for r in self.label_maps if r.source == "pred"})}

    def _structure_names(self) -> list[str]:
        return [p.name for p in self.structures]

    def summary(self, source: Source = "pred") -> list[MetricSummary]:
        """Per structure and metric (per-dimension ones included), then the VI of the label maps."""
        rows = [r for r in self.results if r.source == source and not r.empty]
        ndim = max((len(r.betti_pred) for r in rows), default=2)
        out = []
        for name in self._structure_names():
            mine = [r for r in rows if r.structure.name == name]
            for metric in metric_names(ndim):
                out.append(summarise((r.metric(metric) for r in mine), name, metric))
        vi = [m.vi for m in self.label_maps if m.source == source and not m.empty]
        out.append(summarise(vi, LABEL_MAPS, "vi"))
        return out

    def paired(self) -> list[PairedComparison]:
        """``pred - baseline`` per structure and metric, then VI (empty without a baseline)."""
        if self.baseline is None:
            return []

        def case(path: str) -> str:
            return os.path.basename(path)

        base = {(case(r.path), r.slice_index, r.structure.name): r for r in self.results if r.source == "baseline"}
        pairs = []
        for r in self.results:
            if r.source != "pred":
                continue
            other = base.get((case(r.path), r.slice_index, r.structure.name))
            if other is not None and not (r.empty and other.empty):
                pairs.append((r, other))
        ndim = max((len(r.betti_pred) for r, _ in pairs), default=2)
        out = []
        for name in self._structure_names():
            mine = [(a, b) for a, b in pairs if a.structure.name == name]
            for metric in metric_names(ndim):
                values = [(a.metric(metric), b.metric(metric)) for a, b in mine]
                values = [(x, y) for x, y in values if x is not None and y is not None]
                out.append(paired_test([x for x, _ in values], [y for _, y in values], name, metric))
        base_vi = {(case(m.path), m.slice_index): m for m in self.label_maps if m.source == "baseline"}
        vi_pairs = [(m.vi, base_vi[(case(m.path), m.slice_index)].vi) for m in self.label_maps
                    if m.source == "pred" and (case(m.path), m.slice_index) in base_vi
                    and not (m.empty and base_vi[(case(m.path), m.slice_index)].empty)]
        out.append(paired_test([a for a, _ in vi_pairs], [b for _, b in vi_pairs], LABEL_MAPS, "vi"))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": "topofix evaluate",
            "version": __version__,
            "ground_truth": self.gt,
            "baseline": self.baseline,
            "connectivity": self.connectivity,
            "per_slice": self.per_slice,
            "structures": [{"name": p.name, "labels": None if p.labels is None else list(p.labels)}
                           for p in self.structures],
            "definitions": DEFINITIONS,
            "counts": self.counts,
            "exit_code": self.exit_code,
            "summary": [s.to_dict() for s in self.summary()],
            "baseline_summary": [s.to_dict() for s in self.summary("baseline")] if self.baseline else None,
            "paired": [p.to_dict() for p in self.paired()] if self.baseline else None,
            "results": [r.to_dict() for r in self.results],
            "label_maps": [m.to_dict() for m in self.label_maps],
            "errors": [e.to_dict() for e in self.errors],
        }


DEFINITIONS = {
    "dice": "2|P&G|/(|P|+|G|); NaN if both empty",
    "surface": "boundary voxels: foreground with a background face-neighbour (image border = background)",
    "hd": "max directed surface distance (physical units, Euclidean distance transform with the spacing)",
    "hd95": "max of the two directed 95th percentiles of surface distances (as MONAI)",
    "assd": "mean of both directed surface-distance sets pooled",
    "empty": "surface distances: NaN if both masks empty, inf if one is",
    "betti_error": "|b_k(pred) - b_k(gt)| per dimension k; total = sum",
    "betti_matching_error": "features of pred and gt left unmatched by the induced matching through the union "
                            "(Stucki et al. ICML 2023), ties broken as in topofix.metrics.topology; "
                            "every dimension, total = sum over dimensions",
    "vi": "variation of information H(P|G)+H(G|P) between label maps, natural log (nats)",
    "summary": "mean and sample sd (ddof=1) of finite values over non-empty cases/slices",
    "paired": "pred - baseline over pairs with finite values; two-sided Wilcoxon signed-rank (scipy.stats.wilcoxon)",
}


# --------------------------------------------------------------------------- #
# One case
# --------------------------------------------------------------------------- #


def _slices(array: np.ndarray, per_slice: str | None) -> Iterable[tuple[int | None, np.ndarray]]:
    if per_slice is None:
        yield None, array
    elif array.ndim == 2:
        yield 0, array
    else:
        axis = SLICE_AXES[per_slice]
        for index in range(array.shape[axis]):
            yield index, np.take(array, index, axis=axis)


def _slice_spacing(spacing: tuple[float, ...], ndim: int, per_slice: str | None) -> tuple[float, ...]:
    if per_slice is None or ndim == 2:
        return spacing
    axis = SLICE_AXES[per_slice]
    return tuple(s for a, s in enumerate(spacing) if a != axis)


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
    plane_spacing = _slice_spacing(full_spacing, pred.ndim, per_slice)
    results: list[StructureResult] = []
    maps: list[LabelMapResult] = []
    single = _single_label(structures)
    for (index, p), (_, g) in zip(_slices(pred, per_slice), _slices(gt, per_slice)):
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
    if len(singles) == 1 and len(singles[0].labels) == 1 and any(s.labels is None for s in structures):
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


# --------------------------------------------------------------------------- #
# Files
# --------------------------------------------------------------------------- #


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
class _Case:
    path: str
    gt_path: str
    baseline_path: str | None


def _load_pair(case: _Case, read, report: EvaluationReport):
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
        message = str(err)
        if not message.startswith(case.path) and not message.startswith(case.gt_path):
            message = f"{case.path}: {message}"
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


def _as_list(x: Any) -> list[Any]:
    if isinstance(x, (str, os.PathLike, np.ndarray)):
        return [x]
    return list(x)


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
    check_connectivity(connectivity)
    if per_slice is not None and per_slice not in SLICE_AXES:
        raise ValueError(f"per_slice must be one of x, y, z, got {per_slice!r}")
    if isinstance(priors, (str, Prior)):
        priors = [priors]
    fixed = structure_priors(label, priors or ())
    pred_list = _as_list(preds)
    arrays = [p for p in pred_list if isinstance(p, np.ndarray)]
    if arrays and len(arrays) != len(pred_list):
        raise TopofixError("give predictions either as files/folders or as arrays, not both")
    report = EvaluationReport(connectivity=connectivity, per_slice=per_slice)
    if arrays:
        cases = _array_cases(arrays, gt, baseline)
        report.gt, report.baseline = "<arrays>", None if baseline is None else "<arrays>"
    else:
        cases = _file_cases(pred_list, gt, baseline, report)
    if fixed is not None:
        report.structures = list(fixed)
    seen: dict[str, Prior] = {p.name: p for p in report.structures}

    iterator: Iterable[Any] = cases
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(cases, desc="evaluate", unit="case", disable=None, leave=False)
    for case in iterator:
        if isinstance(case, tuple):  # arrays: the baseline rows keep the prediction's name (pairing)
            name, p, g, b = case
            loaded = (p, g, b, spacing, name, name.replace("<array", "<gt"))
            baseline_path = name
        else:
            got = _load_pair(case, _read_mask, report)
            if got is None:
                continue
            p_img, g_img, b_img = got
            sp = tuple(reversed(g_img.geometry.spacing))
            loaded = (p_img.array, g_img.array, None if b_img is None else b_img.array, sp, case.path, case.gt_path)
            baseline_path = case.baseline_path
        p, g, b, sp, path, gt_path = loaded
        if p.ndim not in (2, 3):
            report.errors.append(EvaluationFailure(path, f"{path}: expected a 2D or 3D label map, got shape {p.shape}"))
            continue
        structures = fixed if fixed is not None else auto_structures([x for x in (p, g, b) if x is not None])
        for s in structures:
            seen.setdefault(s.name, s)
        res, maps = evaluate_labels(p, g, structures, spacing=sp, connectivity=connectivity, per_slice=per_slice,
                                    path=path, gt_path=gt_path, source="pred")
        report.results += res
        report.label_maps += maps
        if b is not None:
            res, maps = evaluate_labels(b, g, structures, spacing=sp, connectivity=connectivity,
                                        per_slice=per_slice, path=baseline_path, gt_path=gt_path, source="baseline")
            report.results += res
            report.label_maps += maps
    if fixed is None:
        labelled = [p for p in seen.values() if p.labels is not None]
        if len(labelled) <= 1:  # binary masks: the foreground is the label
            report.results = [r for r in report.results if r.structure.labels is None]
            structures_out = [p for p in seen.values() if p.labels is None] or [Prior()]
        else:
            structures_out = sorted(labelled, key=lambda p: p.labels) + [Prior()]
        report.structures = structures_out
    return report


def _read_mask(path: str):
    from topofix.io import read_mask

    return read_mask(path)


def _array_cases(arrays: list[np.ndarray], gt: Any, baseline: Any) -> list[tuple]:
    """(name, pred, gt, baseline) per prediction array; names pair baseline rows with prediction rows."""
    gts = _as_list(gt)
    if not all(isinstance(g, np.ndarray) for g in gts) or len(gts) != len(arrays):
        raise TopofixError(f"with prediction arrays, give one ground-truth array per prediction ({len(arrays)})")
    bases = [None] * len(arrays) if baseline is None else _as_list(baseline)
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


def _file_cases(specs: list[Any], gt: Any, baseline: Any, report: EvaluationReport) -> list[_Case]:
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
        cases.append(_Case(item.path, _paired(gt_dir, name), None if base_dir is None else _paired(base_dir, name)))
    return cases


def _paired(folder: str, name: str) -> str:
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


__all__ = [
    "DEFINITIONS",
    "EvaluationFailure",
    "EvaluationReport",
    "LabelMapResult",
    "MetricSummary",
    "PairedComparison",
    "StructureResult",
    "evaluate",
    "evaluate_labels",
    "geometry_mismatch",
    "paired_test",
    "structure_metrics",
    "summarise",
]
