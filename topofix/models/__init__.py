"""The user's network: load it (TorchScript or ONNX) and reset it between scans.

::

    from topofix.models import load_model, WeightsSnapshot, fresh_optimizer
    loaded = load_model("net.pt")            # or "net.onnx"; InputError if unusable
    snapshot = WeightsSnapshot(loaded.module)
    for scan in scans:
        snapshot.restore()                   # every scan starts from the original weights
        optimizer = fresh_optimizer(loaded.module, lr=1e-4)

Names are imported lazily (PEP 562), so ``import topofix.models`` does not
import torch or onnx until one of them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from topofix._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "LoadedModel": "topofix.models.loading",
    "ModelWarning": "topofix.models.loading",
    "load_model": "topofix.models.loading",
    "make_trainable": "topofix.models.loading",
    "trace_info": "topofix.models.loading",
    "WeightsSnapshot": "topofix.models.weights",
    "clone_module": "topofix.models.weights",
    "fresh_optimizer": "topofix.models.weights",
    "import_onnx2torch": "topofix.models.onnx_import",
    "onnx_to_torch": "topofix.models.onnx_import",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; tests/test_lazy_exports.py checks it matches _EXPORTS
    from topofix.models.loading import LoadedModel, ModelWarning, load_model, make_trainable, trace_info  # noqa: F401
    from topofix.models.onnx_import import import_onnx2torch, onnx_to_torch  # noqa: F401
    from topofix.models.weights import WeightsSnapshot, clone_module, fresh_optimizer  # noqa: F401
