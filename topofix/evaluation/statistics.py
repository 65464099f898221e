"""Summaries over cases and paired comparisons with a baseline (Wilcoxon signed-rank).

Why apart: plain statistics over lists of numbers, with the rules for NaN
(both masks empty) and inf (a distance to an empty mask) in one place; they
know nothing of masks or files.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from topofix.evaluation.results import finite_or_none, lower_is_better


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
        return {"structure": self.structure, "metric": self.metric, "n": self.n, "mean": finite_or_none(self.mean),
                "sd": finite_or_none(self.sd), "n_nan": self.n_nan, "n_inf": self.n_inf}


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
            "mean_pred": finite_or_none(self.mean_pred), "mean_baseline": finite_or_none(self.mean_baseline),
            "mean_diff": finite_or_none(self.mean_diff), "sd_diff": finite_or_none(self.sd_diff),
            "test": "wilcoxon signed-rank (two-sided)", "statistic": finite_or_none(self.statistic),
            "p_value": finite_or_none(self.p_value), "note": self.note,
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


__all__ = ["MetricSummary", "PairedComparison", "paired_test", "summarise"]
