"""The :class:`EvaluationReport` of a run: its results, summaries, paired comparisons and JSON form.

Why apart: the report is the contract with the CLI and with pipelines reading the
JSON; how the results were computed (:mod:`topofix.evaluation.arrays`) or matched
to files (:mod:`topofix.evaluation.pairing`) does not change it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from topofix._version import __version__
from topofix.evaluation.results import (
    LABEL_MAPS,
    EvaluationFailure,
    LabelMapResult,
    Source,
    StructureResult,
    metric_names,
)
from topofix.evaluation.statistics import MetricSummary, PairedComparison, paired_test, summarise
from topofix.priors import Prior
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY


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
                both = [(x, y) for x, y in values if x is not None and y is not None]
                out.append(paired_test([x for x, _ in both], [y for _, y in both], name, metric))
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


__all__ = ["DEFINITIONS", "EvaluationReport"]
