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

Layout (one concept per module; every name below is importable from here)
    :mod:`~topofix.evaluation.results` per-case records (:class:`StructureResult`,
    :class:`LabelMapResult`, :data:`EvaluationFailure`); :mod:`~topofix.evaluation.statistics`
    summaries and the Wilcoxon test; :mod:`~topofix.evaluation.report` the
    :class:`EvaluationReport` and its JSON; :mod:`~topofix.evaluation.arrays` metrics of
    one label map in memory; :mod:`~topofix.evaluation.pairing` which files are compared
    and whether their geometries agree; :mod:`~topofix.evaluation.driver` :func:`evaluate`.
"""

from __future__ import annotations

# Module-level names of the former single-file topofix.evaluation, still importable from here.
from topofix.evaluation.arrays import (  # noqa: F401
    auto_structures,
    evaluate_labels,
    present_labels,
    structure_metrics,
    structure_priors,
)
from topofix.evaluation.driver import evaluate
from topofix.evaluation.pairing import geometry_mismatch
from topofix.evaluation.report import DEFINITIONS, EvaluationReport
from topofix.evaluation.results import (  # noqa: F401
    LABEL_MAPS,
    STRUCTURE_METRICS,
    EvaluationFailure,
    LabelMapResult,
    Source,
    StructureResult,
    lower_is_better,
    metric_names,
)
from topofix.evaluation.statistics import MetricSummary, PairedComparison, paired_test, summarise
from topofix.slicing import SLICE_AXES  # noqa: F401

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
