"""topofix: test-time topological correction of medical image segmentations.

The public API mirrors the command line::

    import topofix
    topofix.betti_numbers(mask, connectivity="full")   # exact Betti numbers
    report = topofix.check("masks/", priors=["2=1,1"])   # what `topofix check` does
    report = topofix.evaluate("preds/", "labels/")        # what `topofix evaluate` does
    pred = topofix.predict(image, "model.pt")            # the network's own segmentation
    report = topofix.correct_files(["scans/"], "model.pt", ["2=1,1"], "fixed/")  # `topofix correct`
    image = topofix.read_mask("case.nii.gz")              # array + geometry

Names are imported lazily (PEP 562) so that ``import topofix`` and
``topofix --help`` stay fast: SimpleITK, cc3d and torch load only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from topofix._version import __version__

_EXPORTS: dict[str, str] = {
    "CheckReport": "topofix.checking",
    "CheckResult": "topofix.checking",
    "check": "topofix.checking",
    "correct": "topofix.correction",
    "CorrectionSettings": "topofix.correction",
    "CorrectionResult": "topofix.correction",
    "CaseReport": "topofix.correction",
    "load_model": "topofix.models.loading",
    "LoadedModel": "topofix.models.loading",
    "ModelContract": "topofix.models.contract",
    "check_labels": "topofix.checking",
    "TopofixError": "topofix.errors",
    "InputError": "topofix.errors",
    "OutputError": "topofix.errors",
    "PriorError": "topofix.errors",
    "Geometry": "topofix.io",
    "Image": "topofix.io",
    "read_image": "topofix.io",
    "read_mask": "topofix.io",
    "write_image": "topofix.io",
    "write_mask": "topofix.io",
    "Prior": "topofix.priors",
    "build_priors": "topofix.priors",
    "parse_betti": "topofix.priors",
    "parse_prior": "topofix.priors",
    "betti_numbers": "topofix.topology.betti",
    "persistence": "topofix.topology.persistence",
    "persistence_batch": "topofix.topology.persistence",
    "Persistence": "topofix.topology.persistence",
    "Diagram": "topofix.topology.persistence",
    "euler_characteristic": "topofix.topology.betti",
    "DEFAULT_CONNECTIVITY": "topofix.topology.connectivity",
    "CONNECTIVITIES": "topofix.topology.connectivity",
    "differentiable_persistence": "topofix.topology.differentiable",
    "TopologicalLoss": "topofix.losses",
    "LossTerms": "topofix.losses",
    "PriorTerm": "topofix.losses",
    "betti_prior_loss": "topofix.losses",
    "TopologyObjective": "topofix.losses",
    "DenseTopologicalLoss": "topofix.losses",
    "make_topology_loss": "topofix.losses",
    "LOSS_NAMES": "topofix.losses",
    "repair": "topofix.map_repair",
    "repair_labels": "topofix.repairing",
    "repair_files": "topofix.files",
    "RepairResult": "topofix.repairing",
    "Prediction": "topofix.prediction",
    "predict": "topofix.prediction",
    "correct_files": "topofix.files",
    "predict_files": "topofix.files",
    "Inference": "topofix.files",
    "write_reports": "topofix.files",
    "BatchReport": "topofix.batch",
    "CaseRecord": "topofix.batch",
    "evaluate": "topofix.evaluation",
    "EvaluationReport": "topofix.evaluation",
    "StructureResult": "topofix.evaluation",
    "render_html_report": "topofix.report",
    "write_html_report": "topofix.report",
    "HtmlReport": "topofix.report",
    "betti_matching": "topofix.metrics.topology",
    "BettiMatching": "topofix.metrics.topology",
}

__all__ = [
    "__version__",
    "BatchReport",
    "CaseRecord",
    "Inference",
    "correct_files",
    "predict_files",
    "repair_files",
    "repair_labels",
    "write_reports",
    "CONNECTIVITIES",
    "CheckReport",
    "CheckResult",
    "CaseReport",
    "CorrectionResult",
    "CorrectionSettings",
    "LoadedModel",
    "ModelContract",
    "DEFAULT_CONNECTIVITY",
    "BettiMatching",
    "Diagram",
    "EvaluationReport",
    "Geometry",
    "HtmlReport",
    "Image",
    "InputError",
    "LossTerms",
    "OutputError",
    "Persistence",
    "Prediction",
    "Prior",
    "PriorError",
    "PriorTerm",
    "TopofixError",
    "TopologicalLoss",
    "TopologyObjective",
    "DenseTopologicalLoss",
    "LOSS_NAMES",
    "RepairResult",
    "betti_matching",
    "betti_numbers",
    "betti_prior_loss",
    "build_priors",
    "check",
    "check_labels",
    "correct",
    "load_model",
    "make_topology_loss",
    "repair",
    "differentiable_persistence",
    "euler_characteristic",
    "evaluate",
    "parse_betti",
    "parse_prior",
    "persistence",
    "persistence_batch",
    "predict",
    "read_image",
    "read_mask",
    "render_html_report",
    "StructureResult",
    "write_html_report",
    "write_image",
    "write_mask",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'topofix' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs
    from topofix.batch import BatchReport, CaseRecord
    from topofix.checking import CheckReport, CheckResult, check, check_labels
    from topofix.files import Inference, correct_files, predict_files, repair_files, write_reports
    from topofix.correction import CaseReport, CorrectionResult, CorrectionSettings, correct
    from topofix.models.contract import ModelContract
    from topofix.models.loading import LoadedModel, load_model
    from topofix.errors import InputError, OutputError, PriorError, TopofixError
    from topofix.evaluation import EvaluationReport, StructureResult, evaluate
    from topofix.metrics.topology import BettiMatching, betti_matching
    from topofix.io import Geometry, Image, read_image, read_mask, write_image, write_mask
    from topofix.losses import (
        LOSS_NAMES,
        DenseTopologicalLoss,
        LossTerms,
        PriorTerm,
        TopologicalLoss,
        TopologyObjective,
        betti_prior_loss,
        make_topology_loss,
    )
    from topofix.map_repair import repair
    from topofix.repairing import RepairResult, repair_labels
    from topofix.prediction import Prediction, predict
    from topofix.priors import Prior, build_priors, parse_betti, parse_prior
    from topofix.report import HtmlReport, render_html_report, write_html_report
    from topofix.topology.betti import betti_numbers, euler_characteristic
    from topofix.topology.persistence import Diagram, Persistence, persistence, persistence_batch
    from topofix.topology.connectivity import CONNECTIVITIES, DEFAULT_CONNECTIVITY
    from topofix.topology.differentiable import differentiable_persistence
