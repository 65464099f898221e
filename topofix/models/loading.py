"""Load the user's trained network, TorchScript or ONNX, as a trainable torch module.

topofix fine-tunes the user's network on each scan, so what it needs is a
``torch.nn.Module`` whose floating parameters are leaf tensors with
``requires_grad=True``.  :func:`load_model` returns one, from

* a **TorchScript** archive (``.pt``, ``.pth``, ``.ts``, ``.jit``,
  ``.torchscript``: ``torch.jit.save`` of a scripted or traced network), or
* an **ONNX** model (``.onnx``, with its external data file(s) next to it),
  converted by onnx2torch (:mod:`topofix.models.onnx_import`).

and refuses everything else with a one-line :class:`~topofix.errors.InputError`
naming the file:

* **pickles are never unpickled.**  A ``torch.save`` checkpoint (state dict or
  whole model, zip or legacy format) can run arbitrary code when loaded; we
  recognise it from the zip member names (a TorchScript archive has ``code/``,
  a ``torch.save`` zip has ``data.pkl`` without ``code/``) or from the pickle
  protocol byte ``0x80`` at the start of a legacy file, without loading it.
  ``torch.load`` is not called anywhere.
* ``torch.export`` programs (``.pt2``) are not supported yet (their
  ``.train()``/``.eval()`` raise NotImplementedError).
* a **frozen** network (``torch.jit.freeze``, ``optimize_for_inference``) has
  its weights folded into constants: nothing left to fine-tune.

Traced networks load, with a warning (in :attr:`LoadedModel.warnings`, and as
a :class:`ModelWarning`): ``torch.jit.trace`` records the train/eval mode of
the moment (``.eval()`` no longer changes its batch norm or dropout) and runs
the Python code once, freezing shape-dependent logic to the traced input size.
Tracing is recognised from the source ranges TorchScript keeps (in the
archive's ``.debug_pkl`` files) for each graph node: the tracer records a
Python stack (``file.py(12): forward`` lines), the compiler a source excerpt
(``File "file.py", line 12`` or ``Serialized   File ...``).
A network traced in *training* mode gets a second warning: its batch-norm and
dropout nodes carry ``training=True`` as a constant.

The module is returned in eval mode, on ``device``.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from topofix.errors import InputError, exception_line

__all__ = [
    "FROZEN_PROBLEM",
    "ONNX_SUFFIXES",
    "PICKLE_PROBLEM",
    "PT2_PROBLEM",
    "TORCHSCRIPT_SUFFIXES",
    "TRACED_TRAINING_WARNING",
    "TRACED_WARNING",
    "LoadedModel",
    "ModelWarning",
    "load_model",
    "make_trainable",
    "trace_info",
]

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".torchscript")
ONNX_SUFFIXES = (".onnx",)

_EXPORT_HINT = (
    "export your network with torch.jit.script/trace + torch.jit.save, "
    "or torch.onnx.export(..., opset_version=17)"
)
PICKLE_PROBLEM = (
    "pickled checkpoint, not a TorchScript or ONNX model: topofix never unpickles files "
    f"(they can run arbitrary code); {_EXPORT_HINT}"
)
PT2_PROBLEM = f"torch.export programs (.pt2) are not supported yet: {_EXPORT_HINT}"
FROZEN_PROBLEM = "model has no trainable parameters (frozen / optimize_for_inference?): export it without freezing"
_ONNX_FROZEN_PROBLEM = (
    "model has no trainable parameters: none of its weights is an initializer of a "
    "Conv/ConvTranspose/Gemm/BatchNormalization node"
)
TRACED_WARNING = (
    "traced model (torch.jit.trace): it keeps the train/eval mode it was traced in "
    "(.eval() does not change its dropout or batch norm) and its Python shape logic is frozen "
    "to the traced input size; torch.jit.script avoids both"
)
TRACED_TRAINING_WARNING = (
    "traced in training mode: its batch norm normalises each input with its own statistics "
    "and its dropout stays on; trace it after model.eval()"
)

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_PICKLE_MAGIC = 0x80  # PROTO opcode: first byte of every pickle of protocol >= 2
_FRAME = re.compile(r"^.*\(\d+\): [\w<>.]+$")  # a tracer's "file.py(12): forward" line
# Nodes whose "training" argument a tracer records as a constant.
_TRAINING_ARGUMENT = {
    "aten::batch_norm": 5,
    "aten::dropout": 2,
    "aten::dropout_": 2,
    "aten::feature_dropout": 2,
    "aten::feature_dropout_": 2,
    "aten::alpha_dropout": 2,
    "aten::feature_alpha_dropout": 2,
}


class ModelWarning(UserWarning):
    """A model loads but may not behave as the user expects (traced, training mode...)."""


@dataclass
class LoadedModel:
    """A network ready for fine-tuning.

    Attributes
    ----------
    module:
        The network, in eval mode; every floating parameter is a leaf tensor
        with ``requires_grad=True``.
    path:
        The file it was loaded from.
    kind:
        ``"torchscript"`` or ``"onnx"``.
    traced:
        ``True`` when (part of) a TorchScript network was made by
        ``torch.jit.trace``, ``False`` when scripted, ``None`` when unknown
        (no debug information in the archive) or for ONNX.
    warnings:
        One-line warnings for the user (also emitted as :class:`ModelWarning`).
    n_parameters:
        Number of trainable scalars (the sum of the parameters' ``numel``).
    """

    module: torch.nn.Module
    path: str
    kind: Literal["torchscript", "onnx"]
    traced: bool | None = None
    warnings: list[str] = field(default_factory=list)
    n_parameters: int = 0


# ----------------------------------------------------------------------- sniffing


def _zip_kind(path: Path) -> str:
    """``torchscript``, ``pt2``, ``pickle`` or ``zip`` (something else), from member names only."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(path, f"corrupt or truncated zip archive ({exception_line(exc, line='first')})") from None
    # torch writes every member under one top folder named after the file.
    relative = {name.split("/", 1)[1] if "/" in name else name for name in names}
    if any(name.startswith("code/") for name in relative) and (
        "constants.pkl" in relative or "data.pkl" in relative
    ):
        return "torchscript"
    if "archive_format" in relative or any(name.startswith("models/") for name in relative):
        return "pt2"
    if "data.pkl" in relative:
        return "pickle"
    return "zip"


def _file_kind(path: Path) -> str:
    """What the file holds, by content: ``zip`` kinds, ``pickle`` or ``other``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror or exception_line(exc, line='first')})") from None
    if not head:
        raise InputError(path, "empty file")
    if head[:4] in _ZIP_MAGIC:
        return _zip_kind(path)
    if head[0] == _PICKLE_MAGIC:
        return "pickle"
    return "other"


# -------------------------------------------------------------------- TorchScript


def _graphs(module: torch.nn.Module):
    """The graph of every compiled method of ``module`` and its submodules."""
    for submodule in module.modules():
        compiled = getattr(submodule, "_c", None)
        if compiled is None:
            continue
        for name in compiled._method_names():
            yield compiled._get_method(name).graph


def _nodes(block):
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _nodes(inner)


def _is_traced_range(source_range: str) -> bool:
    # A traced node's range starts with the tracer's Python stack; after loading, a
    # "Serialized   File ..." excerpt of the saved code follows.  A compiled node's
    # range starts with '  File "x.py", line 12' or "Serialized   File".
    first = next((line for line in source_range.splitlines() if line.strip()), "")
    return bool(_FRAME.match(first))


def trace_info(module: torch.nn.Module) -> tuple[bool | None, bool]:
    """``(traced, traced_in_training_mode)`` of a loaded TorchScript module.

    ``traced`` is ``True`` if any graph node carries a tracer's source range,
    ``False`` if nodes carry compiler ranges only, ``None`` without debug info.
    """
    traced = scripted = training = False
    for graph in _graphs(module):
        for node in _nodes(graph):
            source_range = node.sourceRange()
            if not source_range:
                continue
            if _is_traced_range(source_range):
                traced = True
                index = _TRAINING_ARGUMENT.get(node.kind())
                if index is not None and index < node.inputsSize():
                    value = node.inputsAt(index)
                    if value.node().kind() == "prim::Constant" and value.toIValue() is True:
                        training = True
            else:
                scripted = True
    if traced:
        return True, training
    return (False if scripted else None), False


def _load_torchscript(path: Path, device: torch.device) -> tuple[torch.nn.Module, bool | None, list[str]]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # every torch.jit call warns
            module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise InputError(path, f"cannot load the TorchScript archive: {exception_line(exc, line='first')}") from None
    traced, training = trace_info(module)
    notes = []
    if traced:
        notes.append(TRACED_WARNING)
        if training:
            notes.append(TRACED_TRAINING_WARNING)
    return module, traced, notes


# ------------------------------------------------------------------------ common


def make_trainable(module: torch.nn.Module) -> int:
    """Make every floating parameter a leaf with ``requires_grad=True``; return their numel.

    A ``copy.deepcopy`` of a ScriptModule has parameters that are *not* leaves
    (made by ``clone``), on which Adam raises "can't optimize a non-leaf
    Tensor"; ``detach_`` turns them back into leaves in place.
    """
    total = 0
    for parameter in module.parameters():
        if not parameter.is_leaf:
            parameter.detach_()
        if parameter.is_floating_point() or parameter.is_complex():
            parameter.requires_grad_(True)
            total += parameter.numel()
    return total


def load_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a TorchScript or ONNX network for fine-tuning.

    Raises :class:`~topofix.errors.InputError` (one line naming the file) for
    a missing, unreadable, corrupt or truncated file, a pickle, a ``.pt2``
    program, an unsupported extension or ONNX operator, or a network without
    trainable parameters.  See the module documentation.
    """
    path = Path(path)
    device = torch.device(device)
    _refuse_non_files(path)
    module, traced, notes, kind = _load_network(path, device)

    module.eval()
    n_parameters = make_trainable(module)
    if n_parameters == 0:
        raise InputError(path, FROZEN_PROBLEM if kind == "torchscript" else _ONNX_FROZEN_PROBLEM)
    for note in notes:
        warnings.warn(f"{path}: {note}", ModelWarning, stacklevel=2)
    return LoadedModel(
        module=module, path=str(path), kind=kind, traced=traced, warnings=notes, n_parameters=n_parameters
    )


def _refuse_non_files(path: Path) -> None:
    """A missing path, a folder (an nnU-Net model folder named as such) or a ``.pt2`` program: one line."""
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.is_dir():
        from topofix.models.nnunet import is_nnunet_folder

        if is_nnunet_folder(path):
            raise InputError(path, "an nnU-Net model folder: use topofix predict/correct -m FOLDER (or "
                                   "topofix.predict_files/correct_files; topofix.models.nnunet.load_nnunet)")
        raise InputError(path, "is a folder, not a model file")
    if path.suffix.lower() == ".pt2":
        raise InputError(path, PT2_PROBLEM)


def _load_network(
    path: Path, device: torch.device
) -> tuple[torch.nn.Module, bool | None, list[str], Literal["torchscript", "onnx"]]:
    """``(module, traced, notes, kind)`` by what the file holds (its bytes first, then its extension)."""
    suffix = path.suffix.lower()
    content = _file_kind(path)
    if content == "pickle":
        raise InputError(path, PICKLE_PROBLEM)
    if content == "pt2":
        raise InputError(path, PT2_PROBLEM)
    if content == "torchscript":
        module, traced, notes = _load_torchscript(path, device)
        return module, traced, notes, "torchscript"
    if suffix in ONNX_SUFFIXES:
        if content == "zip":
            raise InputError(path, "a zip archive, not an ONNX model")
        from topofix.models.onnx_import import onnx_to_torch

        return onnx_to_torch(path).to(device), None, [], "onnx"
    if suffix == ".safetensors":
        raise InputError(path, f"a safetensors file holds weights only, not the network: {_EXPORT_HINT}")
    if suffix in TORCHSCRIPT_SUFFIXES:
        problem = "not a TorchScript archive"
        if content == "zip":
            problem += " (a zip archive without TorchScript code)"
        raise InputError(path, f"{problem}: {_EXPORT_HINT}")
    raise InputError(
        path,
        f"unsupported model file {suffix or '(no extension)'}: expected a TorchScript archive "
        f"({', '.join(TORCHSCRIPT_SUFFIXES)}) or an ONNX model (.onnx)",
    )
