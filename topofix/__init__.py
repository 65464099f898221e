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

from typing import TYPE_CHECKING

from topofix._lazy import lazy_exports
from topofix._version import __version__ as __version__  # public, eager (in __all__ below)

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

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, eager=("__version__",))

if TYPE_CHECKING:  # for type checkers and IDEs; tests/test_lazy_exports.py checks it matches _EXPORTS
    from topofix.batch import BatchReport, CaseRecord  # noqa: F401
    from topofix.checking import CheckReport, CheckResult, check, check_labels  # noqa: F401
    from topofix.correction import CaseReport, CorrectionResult, CorrectionSettings, correct  # noqa: F401
    from topofix.errors import InputError, OutputError, PriorError, TopofixError  # noqa: F401
    from topofix.evaluation import EvaluationReport, StructureResult, evaluate  # noqa: F401
    from topofix.files import Inference, correct_files, predict_files, repair_files, write_reports  # noqa: F401
    from topofix.io import Geometry, Image, read_image, read_mask, write_image, write_mask  # noqa: F401
    from topofix.losses import (  # noqa: F401
        LOSS_NAMES,
        DenseTopologicalLoss,
        LossTerms,
        PriorTerm,
        TopologicalLoss,
        TopologyObjective,
        betti_prior_loss,
        make_topology_loss,
    )
    from topofix.map_repair import repair  # noqa: F401
    from topofix.metrics.topology import BettiMatching, betti_matching  # noqa: F401
    from topofix.models.contract import ModelContract  # noqa: F401
    from topofix.models.loading import LoadedModel, load_model  # noqa: F401
    from topofix.prediction import Prediction, predict  # noqa: F401
    from topofix.priors import Prior, build_priors, parse_betti, parse_prior  # noqa: F401
    from topofix.repairing import RepairResult, repair_labels  # noqa: F401
    from topofix.report import HtmlReport, render_html_report, write_html_report  # noqa: F401
    from topofix.topology.betti import betti_numbers, euler_characteristic  # noqa: F401
    from topofix.topology.connectivity import CONNECTIVITIES, DEFAULT_CONNECTIVITY  # noqa: F401
    from topofix.topology.differentiable import differentiable_persistence  # noqa: F401
    from topofix.topology.persistence import Diagram, Persistence, persistence, persistence_batch  # noqa: F401
