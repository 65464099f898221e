"""What ``evaluate`` measures for one case: the per-structure and per-label-map records.

Why apart: these records are what every other part of the package passes around
(the metrics fill them, the statistics read them, the report serialises them),
so they depend on nothing else in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from topofix.errors import InputFailure
from topofix.priors import Prior

Source = Literal["pred", "baseline"]

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


def finite_or_none(value: Any) -> Any:
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
            "dice": finite_or_none(self.dice),
            "hd": finite_or_none(self.hd),
            "hd95": finite_or_none(self.hd95),
            "assd": finite_or_none(self.assd),
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
                "empty": self.empty, "vi": finite_or_none(self.vi)}


EvaluationFailure = InputFailure
"""A case that could not be evaluated (or not fully), with its one-line reason (as ``check``'s)."""


__all__ = ["LABEL_MAPS", "STRUCTURE_METRICS", "EvaluationFailure", "LabelMapResult", "Source", "StructureResult",
           "finite_or_none", "lower_is_better", "metric_names"]
