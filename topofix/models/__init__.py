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

import importlib
from typing import TYPE_CHECKING, Any

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

__all__ = [
    "LoadedModel",
    "ModelWarning",
    "WeightsSnapshot",
    "clone_module",
    "fresh_optimizer",
    "import_onnx2torch",
    "load_model",
    "make_trainable",
    "onnx_to_torch",
    "trace_info",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'topofix.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs
    from topofix.models.loading import LoadedModel, ModelWarning, load_model, make_trainable, trace_info
    from topofix.models.onnx_import import import_onnx2torch, onnx_to_torch
    from topofix.models.weights import WeightsSnapshot, clone_module, fresh_optimizer
