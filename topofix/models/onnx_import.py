"""ONNX models as trainable torch modules, through onnx2torch.

:func:`onnx_to_torch` turns an ``.onnx`` file into a ``torch.fx.GraphModule``
whose weights are ordinary ``nn.Parameter``\\ s (Conv, ConvTranspose, Gemm,
BatchNormalization... become the matching ``nn`` modules), so topofix can
fine-tune it like any torch network.  Every failure is a one-line
:class:`~topofix.errors.InputError` naming the file.

What onnx2torch 1.5.15 needs here (measured with torch 2.13, onnx 1.23)
-------------------------------------------------------------------------
* **torchvision.**  ``import onnx2torch`` imports torchvision, for its
  NonMaxSuppression and RoiAlign converters only.  The torchvision wheels on
  the registry are CUDA builds whose import fails with a CPU torch ("operator
  torchvision::nms does not exist"), and without torchvision the import fails
  too.  :func:`import_onnx2torch` imports onnx2torch with a stand-in
  ``torchvision`` module when the real one is missing or broken; the stand-in
  is in ``sys.modules`` only during that import, and its ``ops.nms`` /
  ``ops.roi_align`` raise :class:`NotImplementedError` if a model uses them.
* **Opsets 18-20.**  Both torch exporters write opset 20 by default (the
  dynamo exporter always, the TorchScript one when asked), and onnx2torch has
  no converter for Resize 18/19, Pad 18/19, nor for the versions of Identity,
  Constant, Cast, Shape, Reshape, Equal, ConstantOfShape, AveragePool,
  GreaterOrEqual, LessOrEqual that only added data types (bfloat16, float8,
  int4...) or an attribute a float network leaves at its default.
  :func:`register_extra_converters` adds them, each delegating to onnx2torch's
  converter of the previous version and refusing clearly when the new feature
  is used (Resize ``antialias``/``axes``/``keep_aspect_ratio_policy``/
  ``half_pixel_symmetric``, Pad ``axes``/``wrap``, AveragePool ``dilations``).
* **Deduplicated initializers.**  The TorchScript exporter stores identical
  constants once and feeds the copies through ``Identity`` nodes (a freshly
  initialised network whose folded conv biases are all zero, for instance);
  onnx2torch's Conv converter then fails with a ``KeyError``.  We replace
  such Identity nodes, and ``Constant`` nodes, by initializers before the
  conversion.  (Weights that were really shared become independent copies.)
* Any other operator without a converter (GroupNormalization, Gelu, Mish...)
  is reported with its name and opset, and the advice to re-export at
  opset 17, which every exporter decomposes into supported operators.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import threading
import types
from pathlib import Path
from typing import Any

from topofix.errors import InputError, exception_line

__all__ = ["REEXPORT_HINT", "import_onnx2torch", "onnx_to_torch", "register_extra_converters"]

#: The advice appended to every "cannot convert" message.
REEXPORT_HINT = (
    "re-export at opset 17: torch.onnx.export(model, x, f, opset_version=17, dynamo=False)"
)

_IMPORT_LOCK = threading.RLock()
_CONVERT_LOCK = threading.Lock()
_TORCHVISION_OPS = ("nms", "batched_nms", "box_convert", "roi_align", "roi_pool")
_UNIMPLEMENTED = re.compile(r"operation_type='([^']*)', version=(\d+)")


# --------------------------------------------------------------------------- import


def _torchvision_problem() -> str | None:
    """``None`` when torchvision imports, else why not (one line)."""
    module = sys.modules.get("torchvision")
    if module is not None and not getattr(module, "__topofix_stub__", False):
        return None
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed"
    try:
        importlib.import_module("torchvision")
    except Exception as exc:  # ImportError, or RuntimeError from a CUDA wheel on a CPU torch
        return f"torchvision does not import ({type(exc).__name__}: {exception_line(exc, line='first')})"
    return None


def _torchvision_stub(reason: str) -> tuple[types.ModuleType, types.ModuleType]:
    """A ``torchvision`` with only the ``ops`` onnx2torch names, each raising."""

    def unavailable(name: str):
        def op(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError(
                f"this model needs torchvision.ops.{name} (ONNX NonMaxSuppression/RoiAlign), "
                f"which topofix cannot run: {reason}"
            )

        op.__name__ = name
        return op

    torchvision = types.ModuleType("torchvision", "topofix stand-in: torchvision is not usable here")
    ops = types.ModuleType("torchvision.ops")
    for name in _TORCHVISION_OPS:
        setattr(ops, name, unavailable(name))
    torchvision.ops = ops  # type: ignore[attr-defined]
    torchvision.__path__ = []  # type: ignore[attr-defined]  # a package, so `torchvision.ops` resolves
    torchvision.__topofix_stub__ = True  # type: ignore[attr-defined]
    torchvision.__topofix_reason__ = reason  # type: ignore[attr-defined]
    return torchvision, ops


def import_onnx2torch() -> types.ModuleType:
    """Import onnx2torch (with a torchvision stand-in if needed) and add our converters.

    Raises :class:`ImportError` with an installation hint when onnx2torch
    itself is missing.
    """
    with _IMPORT_LOCK:
        module = sys.modules.get("onnx2torch")
        if module is None or not hasattr(module, "convert"):
            module = _import_fresh()
        register_extra_converters()
        return module


def _import_fresh() -> types.ModuleType:
    if importlib.util.find_spec("onnx2torch") is None:
        raise ImportError(
            "ONNX models need onnx2torch: pip install --no-deps onnx2torch "
            "(--no-deps: its torchvision requirement would replace torch)"
        )
    reason = _torchvision_problem()
    if reason is None:
        return importlib.import_module("onnx2torch")
    saved = {name: mod for name, mod in sys.modules.items() if name == "torchvision" or name.startswith("torchvision.")}
    for name in saved:
        del sys.modules[name]
    torchvision, ops = _torchvision_stub(reason)
    sys.modules["torchvision"] = torchvision
    sys.modules["torchvision.ops"] = ops
    try:
        return importlib.import_module("onnx2torch")
    finally:
        for name, stub in (("torchvision", torchvision), ("torchvision.ops", ops)):
            if sys.modules.get(name) is stub:
                del sys.modules[name]
        sys.modules.update(saved)


# --------------------------------------------------------------------- converters


def register_extra_converters() -> None:
    """Register converters for Resize/Pad 18-19 and the type-only version bumps.

    Idempotent, and leaves alone any version onnx2torch already converts (a
    later onnx2torch may add them).
    """
    from onnx2torch.node_converters import registry

    for (op, version), make in _EXTRA_CONVERTERS.items():
        key = registry.OperationDescription(domain="", operation_type=op, version=version)
        if key not in registry._CONVERTER_REGISTRY:
            registry.add_converter(operation_type=op, version=version)(make(op, version))


def _previous(op: str, version: int):
    """onnx2torch's converter of the newest version of ``op`` before ``version``."""
    from onnx2torch.node_converters.registry import get_converter

    return get_converter(operation_type=op, version=version - 1)


def _delegate(check=None):
    """Converter factory: run ``check(node)`` (raises if unsupported), then delegate."""

    def make(op: str, version: int):
        def convert(node, graph):
            if check is not None:
                check(node)
            return _previous(op, version)(node, graph)

        convert.__name__ = f"convert_{op}_{version}"
        return convert

    return make


def _optional_input(node, index: int) -> str:
    values = node.input_values
    return values[index] if len(values) > index else ""


def _check_resize(node) -> None:
    attrs = node.attributes
    if attrs.get("antialias", 0):
        raise NotImplementedError("Resize with antialias=1 is not supported")
    if attrs.get("axes"):
        raise NotImplementedError("Resize with the axes attribute is not supported")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise NotImplementedError(
            f"Resize with keep_aspect_ratio_policy={attrs['keep_aspect_ratio_policy']} is not supported"
        )
    if attrs.get("coordinate_transformation_mode") == "half_pixel_symmetric":
        raise NotImplementedError("Resize with coordinate_transformation_mode=half_pixel_symmetric is not supported")


def _check_pad(node) -> None:
    if _optional_input(node, 3):
        raise NotImplementedError("Pad with the axes input is not supported")
    if node.attributes.get("mode", "constant") == "wrap":
        raise NotImplementedError("Pad with mode=wrap is not supported")


def _check_average_pool(node) -> None:
    if any(d != 1 for d in node.attributes.get("dilations", [])):
        raise NotImplementedError("AveragePool with dilations is not supported")


def _pad_converter(op: str, version: int):
    check_then_delegate = _delegate(_check_pad)(op, version)

    def convert(node, graph):
        result = check_then_delegate(node, graph)
        # Pad 13 takes (data, pads, constant_value): drop the empty ``axes`` slot.
        mapping = result.onnx_mapping._replace(inputs=tuple(node.input_values[:3]))
        return result._replace(onnx_mapping=mapping)

    convert.__name__ = f"convert_{op}_{version}"
    return convert


_EXTRA_CONVERTERS = {
    ("Resize", 18): _delegate(_check_resize),
    ("Resize", 19): _delegate(_check_resize),
    ("Pad", 18): _pad_converter,
    ("Pad", 19): _pad_converter,
    # Versions that only added data types, or an attribute float networks leave unset.
    ("Identity", 19): _delegate(),
    ("Constant", 19): _delegate(),
    ("Cast", 19): _delegate(),  # + ``saturate``, which applies to float8 targets only
    ("Shape", 19): _delegate(),
    ("Reshape", 19): _delegate(),
    ("Equal", 19): _delegate(),
    ("ConstantOfShape", 20): _delegate(),
    ("GreaterOrEqual", 16): _delegate(),
    ("LessOrEqual", 16): _delegate(),
    ("AveragePool", 19): _delegate(_check_average_pool),
}


# ----------------------------------------------------------------------- loading


class _NodeError(Exception):
    def __init__(self, node, version: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.node, self.version, self.cause = node, version, cause


def _read_model(path: Path):
    """Parse the protobuf, load its external data, check it; InputError otherwise."""
    import onnx
    from onnx import external_data_helper

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except FileNotFoundError:
        raise InputError(path, "file does not exist") from None
    except Exception as exc:  # DecodeError on garbage or a truncated file
        raise InputError(path, f"corrupt or truncated ONNX file ({exception_line(exc, line='first')})") from None
    if not model.HasField("graph") or not model.graph.node or not model.graph.output:
        raise InputError(path, "not an ONNX model (no graph): corrupt, truncated or another kind of file")

    base = path.parent
    all_tensors = getattr(external_data_helper, "_get_all_tensors", lambda m: m.graph.initializer)
    locations = sorted(
        {
            info.value
            for tensor in all_tensors(model)
            if external_data_helper.uses_external_data(tensor)
            for info in tensor.external_data
            if info.key == "location"
        }
    )
    for location in locations:
        if not (base / location).is_file():
            raise InputError(
                path,
                f"external data file {location!r} is missing: the model's weights are stored in it, "
                f"keep it next to {path.name}",
            )
    if locations:
        try:
            external_data_helper.load_external_data_for_model(model, str(base))
        except Exception as exc:
            problem = f"cannot read the external data {', '.join(locations)}: {exception_line(exc, line='first')}"
            raise InputError(path, problem) from None

    return model


def _check_model(path: Path, model) -> None:
    """onnx.checker, for what it catches that parsing does not (a file cut between two
    fields parses: its graph then uses values nothing defines)."""
    import onnx

    try:
        if model.ByteSize() < 2**31 - 1:
            onnx.checker.check_model(model)
        else:
            onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx.checker.ValidationError and friends
        message = exception_line(exc, line="first")
        if "is deprecated" in message:  # e.g. GroupNormalization-18: onnxruntime still runs it
            return
        raise InputError(path, f"invalid ONNX model: {message}") from None


_NOT_FOLDED = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
               "Bernoulli", "Dropout"}


def _inline_constants(model) -> None:
    """Replace ``Constant`` nodes, and every node computed from constants only, by initializers.

    onnx2torch's Conv/ConvTranspose/Gemm converters read their weights from
    initializers only, so a weight fed through ``Identity`` (the TorchScript
    exporter's deduplication) or computed from constants fails to convert.
    Folding also spares the torch module the exporters' constant subgraphs
    (the TorchScript exporter computes each ``F.pad`` amount with
    ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast), which onnx2torch runs
    at every forward, its Slice with a deprecated indexing form.  Values are
    computed with onnx's reference implementation; if that fails, nothing
    more is folded.  Graph outputs are left alone.
    """
    import numpy as np
    from onnx import AttributeProto, numpy_helper

    graph = model.graph
    outputs = {value.name for value in graph.output}
    constants = {tensor.name: tensor for tensor in graph.initializer}
    known = set(constants)
    keep, folded = [], []
    for node in graph.node:
        default_domain = node.domain in ("", "ai.onnx")
        single_output = len(node.output) == 1 and node.output[0] not in outputs
        if (
            default_domain
            and single_output
            and node.op_type == "Constant"
            and len(node.attribute) == 1
            and node.attribute[0].name == "value"
            and node.attribute[0].type == AttributeProto.TENSOR
        ):
            tensor = graph.initializer.add()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            constants[tensor.name] = tensor
            known.add(tensor.name)
            continue
        if (
            default_domain
            and node.op_type not in _NOT_FOLDED
            and any(node.input)
            and all(not name or name in known for name in node.input)
            and all(name and name not in outputs for name in node.output)
            and not any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute)
        ):
            folded.append(node)
            known.update(node.output)
        else:
            keep.append(node)
    used = {name for node in keep for name in node.input} | outputs
    wanted = [o for node in folded for o in node.output if o in used]
    if wanted:
        try:
            values = _evaluate(model, folded, wanted, constants)
        except Exception:  # fold nothing but the Constant nodes
            keep = [node for node in graph.node if node.op_type != "Constant" or node.output[0] not in constants]
        else:
            graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in zip(wanted, values))
    del graph.node[:]
    graph.node.extend(keep)


def _evaluate(model, nodes, wanted, constants):
    """Values of ``wanted`` computed by ``nodes`` from ``constants`` (onnx's reference implementation)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    needed = sorted({name for node in nodes for name in node.input if name in constants})
    graph = helper.make_graph(
        nodes, "constants", [], [helper.make_empty_tensor_value_info(o) for o in wanted],
        [constants[name] for name in needed],
    )
    sub = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return ReferenceEvaluator(sub).run(None, {})


def _domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def _opsets(model) -> dict[str, int]:
    return {_domain(entry.domain): entry.version for entry in model.opset_import}


def _unsupported_ops(model) -> list[tuple[str, str, int]]:
    from onnx2torch.node_converters.registry import get_converter

    opsets = _opsets(model)
    missing: dict[tuple[str, str, int], None] = {}
    for node in model.graph.node:
        domain = _domain(node.domain)
        version = opsets.get(domain, 0)
        try:
            get_converter(domain=domain, operation_type=node.op_type, version=version)
        except NotImplementedError:
            missing[(domain, node.op_type, version)] = None
    return list(missing)


def _describe(domain: str, op: str, version: int, extra: str = "") -> str:
    name = f"{domain}::{op}" if domain else op
    return f"{name} (opset {version}{extra})"


def _unsupported_message(missing: list[tuple[str, str, int]]) -> str:
    ops = ", ".join(_describe(*item) for item in missing)
    plural = "s" if len(missing) > 1 else ""
    return f"unsupported ONNX operator{plural} {ops}: {REEXPORT_HINT}"


def _convert(model):
    """onnx2torch.convert, with each converter failure tagged with its node."""
    converter_module = sys.modules["onnx2torch.converter"]
    original = converter_module.get_converter

    def annotated(domain: str, operation_type: str, version: int):
        converter = original(domain=domain, operation_type=operation_type, version=version)

        def convert(node, graph):
            try:
                return converter(node, graph)
            except Exception as exc:
                raise _NodeError(node, version, exc) from exc

        return convert

    with _CONVERT_LOCK:
        converter_module.get_converter = annotated
        try:
            return converter_module.convert(model)
        finally:
            converter_module.get_converter = original


def onnx_to_torch(path: str | os.PathLike[str]):
    """Convert the ONNX model at ``path`` into a trainable ``torch.fx.GraphModule``.

    Raises :class:`~topofix.errors.InputError` (one line, naming the file) when
    the file is missing, corrupt, truncated, lacks its external data, or uses an
    operator that cannot be converted (named with its opset).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file does not exist" if not path.exists() else "not a regular file")
    try:
        import_onnx2torch()
    except ImportError as exc:
        raise InputError(path, exception_line(exc, line="first")) from None
    model = _read_model(path)
    _inline_constants(model)
    missing = _unsupported_ops(model)
    if missing:
        raise InputError(path, _unsupported_message(missing))
    _check_model(path, model)
    try:
        return _convert(model)
    except _NodeError as exc:
        node = exc.node
        label = f", node {node.name!r}" if node.name else ""
        domain = _domain(node.domain)
        what = _describe(domain, node.operation_type, _opsets(model).get(domain, exc.version), label)
        problem = f"cannot convert ONNX operator {what}: {exception_line(exc.cause, line='first')}; {REEXPORT_HINT}"
        raise InputError(path, problem) from None
    except NotImplementedError as exc:  # "Converter is not implemented (OperationDescription(...))"
        match = _UNIMPLEMENTED.search(str(exc))
        if match:
            raise InputError(path, _unsupported_message([("", match.group(1), int(match.group(2)))])) from None
        reason = exception_line(exc, line="first")
        raise InputError(path, f"cannot convert the ONNX model: {reason}; {REEXPORT_HINT}") from None
    except Exception as exc:
        reason = exception_line(exc, line="first")
        raise InputError(path, f"cannot convert the ONNX model: {type(exc).__name__}: {reason}") from None
