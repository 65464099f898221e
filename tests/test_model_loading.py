"""topofix.models: loading TorchScript / ONNX networks for fine-tuning, refusals, weight resets."""

from __future__ import annotations

import importlib.util
import pickle
import sys
import warnings
from pathlib import Path

import model_factory as mf
import numpy as np
import pytest
import torch

from topofix.errors import InputError
from topofix.models import (
    LoadedModel,
    ModelWarning,
    WeightsSnapshot,
    clone_module,
    fresh_optimizer,
    import_onnx2torch,
    load_model,
    loading,
    onnx_import,
)

HAVE_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime", "onnx2torch"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs onnx, onnxruntime and onnx2torch")
if HAVE_ONNX:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper


def one_line_error(excinfo, path: Path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(str(path) + ": ")
    return message


def load_quietly(path: Path, **kwargs) -> LoadedModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)
        return load_model(path, **kwargs)


def onnxruntime_output(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def assert_trainable(loaded: LoadedModel, x: torch.Tensor) -> None:
    """Leaf parameters requiring grad, gradients reaching every one, an Adam step that works."""
    module = loaded.module
    parameters = list(module.parameters())
    assert parameters and all(p.is_leaf and p.requires_grad for p in parameters)
    assert loaded.n_parameters == sum(p.numel() for p in parameters)
    before = [p.detach().clone() for p in parameters]
    optimizer = fresh_optimizer(module, lr=1e-2)
    optimizer.zero_grad()
    module(x).square().mean().backward()
    for p in parameters:
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0
    optimizer.step()
    assert all(not torch.equal(b, p.detach()) for b, p in zip(before, parameters))


# ------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny: one thread is fastest, and immune to a busy machine (with
    two OpenMP threads and the other core taken, a 16x16 convolution took 16 ms, not 0.02)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Every model file, built once per module (about 0.3 s)."""
    folder = tmp_path_factory.mktemp("models")
    x2, x3 = mf.example_input(2), mf.example_input(3)
    files = {
        "scripted2d": mf.save_scripted(folder, 2),
        "scripted3d": mf.save_scripted(folder, 3),
        "traced2d": mf.save_traced(folder, 2),
        "traced2d_train": mf.save_traced(folder, 2, train=True, model=mf.ConvBnDropout()),
        "mixed": mf.save_scripted_with_traced_part(folder),
    }
    if not HAVE_ONNX:
        return files
    return files | {
        "onnx17_2d": mf.export_onnx(folder, mf.unet(2), x2, name="unet2d_opset17.onnx"),
        "onnx17_3d": mf.export_onnx(folder, mf.unet(3), x3, name="unet3d_opset17.onnx"),
        "onnx17_fresh": mf.export_onnx(folder, mf.fresh_unet(2), x2, name="fresh_opset17.onnx"),
        "resize_pad18": mf.export_onnx(folder, mf.resize_pad_net(), x2, opset=18, name="resize_pad18.onnx"),
        "resize_pad20": mf.export_onnx(folder, mf.resize_pad_net(), x2, opset=20, name="resize_pad20.onnx"),
    }


@pytest.fixture(scope="module")
def default_exports(tmp_path_factory) -> dict[str, Path]:
    """``torch.onnx.export`` with its defaults (dynamo exporter, opset 20, external data)."""
    pytest.importorskip("onnxscript", reason="the default (dynamo) ONNX exporter of torch 2.13 needs onnxscript")
    folder = tmp_path_factory.mktemp("default_exports")
    return {
        "unet2d": mf.export_onnx_default(folder, mf.unet(2), mf.example_input(2), name="unet2d.onnx"),
        "unet3d": mf.export_onnx_default(folder, mf.unet(3), mf.example_input(3), name="unet3d.onnx"),
        "resize_pad": mf.export_onnx_default(folder, mf.resize_pad_net(), mf.example_input(2), name="rp.onnx"),
    }


# ------------------------------------------------------------------ TorchScript


@pytest.mark.parametrize("name, dims", [("scripted2d", 2), ("scripted3d", 3), ("traced2d", 2)])
def test_torchscript_loads_trainable(models, name, dims):
    loaded = load_quietly(models[name])
    assert loaded.kind == "torchscript" and loaded.path == str(models[name])
    assert not loaded.module.training
    x = mf.example_input(dims, seed=1)
    with torch.no_grad():
        expected = mf.unet(dims)(x)
        assert torch.allclose(loaded.module(x), expected, atol=1e-6)
    assert_trainable(loaded, x)


def test_scripted_is_not_traced(models):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelWarning)
        loaded = load_model(models["scripted2d"])
    assert loaded.traced is False and loaded.warnings == []


def test_traced_warns(models):
    with pytest.warns(ModelWarning, match="traced model"):
        loaded = load_model(models["traced2d"])
    assert loaded.traced is True
    assert loaded.warnings == [loading.TRACED_WARNING]


def test_traced_in_training_mode_warns_twice(models):
    with pytest.warns(ModelWarning) as record:
        loaded = load_model(models["traced2d_train"])
    assert loaded.traced is True
    assert loaded.warnings == [loading.TRACED_WARNING, loading.TRACED_TRAINING_WARNING]
    assert len(record) == 2 and all(str(w.message).startswith(str(models["traced2d_train"])) for w in record)


def test_scripted_network_with_traced_submodule_is_traced(models):
    loaded = load_quietly(models["mixed"])
    assert loaded.traced is True and loaded.warnings == [loading.TRACED_WARNING]


def test_frozen_refused(tmp_path):
    path = mf.save_frozen(tmp_path)
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert one_line_error(excinfo, path).endswith(loading.FROZEN_PROBLEM)


def test_optimize_for_inference_refused_in_one_line(tmp_path):
    # Such an archive does not even load back with torch 2.13 ("required keyword attribute
    # 'value' is undefined"); had it loaded, it would have no parameters either.
    path = mf.save_optimized_for_inference(tmp_path)
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    message = one_line_error(excinfo, path)
    assert "TorchScript" in message or "no trainable parameters" in message


def test_deepcopy_of_script_module_made_trainable(models):
    loaded = load_quietly(models["scripted2d"])
    clone = clone_module(loaded.module)
    assert all(p.is_leaf and p.requires_grad for p in clone.parameters())
    original = [p.detach().clone() for p in loaded.module.parameters()]
    optimizer = fresh_optimizer(clone, lr=1e-2)
    clone(mf.example_input()).square().mean().backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(original, loaded.module.parameters()))


# ------------------------------------------------------------------------- ONNX


@needs_onnx
@pytest.mark.parametrize(
    "name, dims",
    [("onnx17_2d", 2), ("onnx17_3d", 3), ("onnx17_fresh", 2), ("resize_pad18", 2), ("resize_pad20", 2)],
)
def test_onnx_matches_onnxruntime_and_trains(models, name, dims):
    path = models[name]
    loaded = load_quietly(path)
    assert loaded.kind == "onnx" and loaded.traced is None and loaded.warnings == []
    x = mf.example_input(dims, seed=2)
    with torch.no_grad():
        ours = loaded.module(x).numpy()
    np.testing.assert_allclose(ours, onnxruntime_output(path, x), atol=1e-4, rtol=0)
    assert_trainable(loaded, x)


@needs_onnx
def test_onnx_opset17_export_folds_batchnorm_but_keeps_conv_weights(models):
    loaded = load_quietly(models["onnx17_2d"])
    reference = mf.unet(2)
    convs = [m for m in reference.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert loaded.n_parameters == sum(p.numel() for m in convs for p in m.parameters()) + sum(
        m.out_channels for m in convs if m.bias is None  # folded batch norm adds a bias
    )


@needs_onnx
def test_identity_deduplicated_biases_become_parameters(models):
    """A fresh network's folded biases are all zero: the exporter stores one and feeds the
    others through Identity nodes, which onnx2torch alone cannot convert (KeyError)."""
    proto = onnx.load(str(models["onnx17_fresh"]))
    assert any(node.op_type == "Identity" for node in proto.graph.node)
    assert load_quietly(models["onnx17_fresh"]).n_parameters == load_quietly(models["onnx17_2d"]).n_parameters


@needs_onnx
@pytest.mark.parametrize("name, dims", [("unet2d", 2), ("unet3d", 3), ("resize_pad", 2)])
def test_default_exporter(default_exports, name, dims):
    path = default_exports[name]
    proto = onnx.load(str(path), load_external_data=False)
    assert proto.opset_import[0].version >= 18  # 20 with torch 2.13
    assert Path(f"{path}.data").is_file()  # weights stored next to the model
    loaded = load_quietly(path)
    x = mf.example_input(dims, seed=3)
    with torch.no_grad():
        ours = loaded.module(x).numpy()
    np.testing.assert_allclose(ours, onnxruntime_output(path, x), atol=1e-4, rtol=0)
    assert_trainable(loaded, x)


@needs_onnx
def test_missing_external_data(default_exports, tmp_path):
    path = tmp_path / "alone.onnx"
    path.write_bytes(default_exports["unet2d"].read_bytes())
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    message = one_line_error(excinfo, path)
    assert "external data file 'unet2d.onnx.data' is missing" in message


def _tensor(name, shape, seed=0):
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def _value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


@needs_onnx
def test_type_only_version_bumps_convert(tmp_path):
    """Identity 19, Shape 19, Reshape 19, Cast 19, AveragePool 19 at opset 20, against onnxruntime."""
    nodes = [
        helper.make_node("Identity", ["b0"], ["b"]),  # initializer through Identity (deduplication)
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Identity", ["p"], ["q"]),
        helper.make_node("Shape", ["q"], ["s"]),
        helper.make_node("Cast", ["s"], ["s64"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["q", "s64"], ["y"]),
    ]
    path = mf.onnx_graph(
        tmp_path, "bumps.onnx", nodes, [_value("x", [1, 1, 16, 16])], [_value("y", [1, 2, 8, 8])],
        [_tensor("w", [2, 1, 3, 3]), _tensor("b0", [2], seed=1)], opset=20,
    )
    loaded = load_quietly(path)
    x = mf.example_input(2, seed=4)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.module(x).numpy(), onnxruntime_output(path, x), atol=1e-5, rtol=0)
    assert loaded.n_parameters == 2 * 9 + 2


@needs_onnx
def test_comparison_and_constant_of_shape_bumps_convert(tmp_path):
    """ConstantOfShape 20, GreaterOrEqual/LessOrEqual 16, Equal 19 (opset 20), against onnxruntime."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [0.5])
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ConstantOfShape", ["s"], ["c"], value=one),
        helper.make_node("GreaterOrEqual", ["x", "c"], ["ge"]),
        helper.make_node("LessOrEqual", ["x", "c"], ["le"]),
        helper.make_node("Equal", ["ge", "le"], ["eq"]),
        helper.make_node("Cast", ["eq"], ["y"], to=TensorProto.FLOAT),
    ]
    path = mf.onnx_graph(tmp_path, "compare.onnx", nodes, [_value("x", [1, 1, 4, 4])], [_value("y", [1, 1, 4, 4])],
                         opset=20)
    module = onnx_import.onnx_to_torch(path)
    x = torch.tensor([0.5, 0.0, 1.0, 0.5]).repeat(4).reshape(1, 1, 4, 4)
    with torch.no_grad():
        np.testing.assert_array_equal(module(x).numpy(), onnxruntime_output(path, x))


@needs_onnx
def test_constant_subgraphs_are_folded(models):
    """The TorchScript exporter computes F.pad amounts with ConstantOfShape/Concat/Reshape/
    Slice/Transpose/Cast: folded before conversion, only the network's own ops remain."""
    proto = onnx.load(str(models["resize_pad20"]))
    assert {"Slice", "ConstantOfShape"} <= {node.op_type for node in proto.graph.node}
    module = load_quietly(models["resize_pad20"]).module
    kinds = {type(child).__name__ for child in module.children()}
    assert kinds == {"Conv2d", "Module", "OnnxPadDynamic", "OnnxResize", "OnnxBinaryMathOperation"}


@needs_onnx
@pytest.mark.parametrize(
    "op, opset, attrs",
    [("GroupNormalization", 18, {"num_groups": 1}), ("Gelu", 20, {})],
)
def test_unsupported_operator_named_with_opset(tmp_path, op, opset, attrs):
    inputs = ["x", "scale", "bias"] if op == "GroupNormalization" else ["x"]
    initializers = [_tensor("scale", [1]), _tensor("bias", [1])] if op == "GroupNormalization" else []
    path = mf.onnx_graph(
        tmp_path, f"{op}.onnx", [helper.make_node(op, inputs, ["y"], **attrs)],
        [_value("x", [1, 1, 4, 4])], [_value("y", [1, 1, 4, 4])], initializers, opset=opset,
        check=False,  # the checker of onnx 1.23 calls GroupNormalization-18 deprecated
    )
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    message = one_line_error(excinfo, path)
    assert f"unsupported ONNX operator {op} (opset {opset})" in message
    assert "opset_version=17" in message


@needs_onnx
def test_several_unsupported_operators_listed_once(tmp_path):
    nodes = [helper.make_node("Gelu", ["x"], ["a"]), helper.make_node("Mish", ["a"], ["b"]),
             helper.make_node("Gelu", ["b"], ["y"])]
    path = mf.onnx_graph(tmp_path, "many.onnx", nodes, [_value("x", [1, 1, 4, 4])], [_value("y", [1, 1, 4, 4])],
                         opset=20)
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert "unsupported ONNX operators Gelu (opset 20), Mish (opset 20): re-export" in one_line_error(excinfo, path)


def _resize_graph(tmp_path, opset, **attrs):
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="linear", **attrs)
    return mf.onnx_graph(tmp_path, "resize.onnx", [node], [_value("x", [1, 1, 4, 4])], [_value("y", [1, 1, 8, 8])],
                         [scales], opset=opset)


@needs_onnx
@pytest.mark.parametrize(
    "attrs, feature",
    [
        ({"antialias": 1}, "antialias"),
        ({"axes": [2, 3]}, "axes"),
        ({"coordinate_transformation_mode": "half_pixel_symmetric"}, "half_pixel_symmetric"),
    ],
)
def test_resize_new_features_refused(tmp_path, attrs, feature):
    path = _resize_graph(tmp_path, 19, **attrs)
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    message = one_line_error(excinfo, path)
    assert "cannot convert ONNX operator Resize (opset 19, node 'up')" in message and feature in message


@needs_onnx
def test_pad_axes_refused(tmp_path):
    pads = numpy_helper.from_array(np.array([1, 1, 1, 1], np.int64), "pads")
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    node = helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], name="pad")
    path = mf.onnx_graph(tmp_path, "pad.onnx", [node], [_value("x", [1, 1, 4, 4])], [_value("y", [1, 1, 6, 6])],
                         [pads, axes], opset=18)
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert "Pad (opset 18, node 'pad'): Pad with the axes input is not supported" in one_line_error(excinfo, path)


@needs_onnx
def test_onnx_without_weights_refused(tmp_path):
    path = mf.onnx_graph(tmp_path, "relu.onnx", [helper.make_node("Relu", ["x"], ["y"])],
                         [_value("x", [1, 1, 4, 4])], [_value("y", [1, 1, 4, 4])])
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert "no trainable parameters" in one_line_error(excinfo, path)


# -------------------------------------------------------------- refused files


@pytest.mark.parametrize(
    "builder", [mf.save_state_dict, mf.save_whole_model, mf.save_legacy_state_dict], ids=lambda b: b.__name__
)
def test_pickled_checkpoints_refused(tmp_path, builder):
    path = builder(tmp_path)
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert one_line_error(excinfo, path).endswith(loading.PICKLE_PROBLEM)


@pytest.mark.parametrize("kind", ["plain pickle", "torch.save zip"])
def test_pickles_are_never_unpickled(tmp_path, kind):
    marker = tmp_path / "unpickled"
    if kind == "plain pickle":
        path = mf.save_trap_pickle(tmp_path, marker)
        payload = path.read_bytes()
    else:
        path = mf.save_trap_checkpoint(tmp_path, marker)
        payload = mf.trap_zip_payload(path)
    pickle.loads(payload)  # the trap works: unpickling creates the marker
    assert marker.exists()
    marker.unlink()
    for name in (path.name, path.with_suffix(".onnx").name, path.with_suffix(".ts").name):
        target = path.with_name(name)
        if target != path:
            target.write_bytes(path.read_bytes())
        with pytest.raises(InputError) as excinfo:
            load_model(target)
        assert one_line_error(excinfo, target).endswith(loading.PICKLE_PROBLEM)
    assert not marker.exists()


def test_torch_load_is_never_called(tmp_path, monkeypatch, models):
    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    for builder in (mf.save_state_dict, mf.save_whole_model, mf.save_legacy_state_dict):
        with pytest.raises(InputError):
            load_model(builder(tmp_path))
    load_quietly(models["scripted2d"])
    if HAVE_ONNX:
        load_quietly(models["onnx17_2d"])


def test_pt2_refused(tmp_path):
    path = tmp_path / "program.pt2"
    path.write_bytes(b"anything")
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert one_line_error(excinfo, path).endswith(loading.PT2_PROBLEM)
    renamed = mf.save_fake_pt2(tmp_path, "program.pt")  # recognised from its members too
    with pytest.raises(InputError) as excinfo:
        load_model(renamed)
    assert one_line_error(excinfo, renamed).endswith(loading.PT2_PROBLEM)


def test_missing_file(tmp_path):
    for name in ("missing.pt", "missing.onnx"):
        with pytest.raises(InputError) as excinfo:
            load_model(tmp_path / name)
        assert one_line_error(excinfo, tmp_path / name).endswith("file does not exist")


def test_folder_refused(tmp_path):
    with pytest.raises(InputError) as excinfo:
        load_model(tmp_path)
    assert "folder" in one_line_error(excinfo, tmp_path)


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("garbage.pt", b"this is not a model" * 10, "not a TorchScript archive"),
        pytest.param("garbage.onnx", b"this is not a model" * 10, "corrupt or truncated ONNX file", marks=needs_onnx),
        ("empty.onnx", b"", "empty file"),
        ("empty.pt", b"", "empty file"),
        ("weights.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}", "weights only"),
        ("model.h5", b"\x89HDF\r\n\x1a\n", "unsupported model file .h5"),
    ],
)
def test_garbage_refused(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert expected in one_line_error(excinfo, path)


@needs_onnx
def test_truncated_onnx(models, tmp_path):
    data = models["onnx17_2d"].read_bytes()
    for fraction in (0.3, 0.6, 0.9):
        path = tmp_path / f"truncated{fraction}.onnx"
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(InputError) as excinfo:
            load_model(path)
        message = one_line_error(excinfo, path)
        assert "corrupt or truncated" in message or "invalid ONNX model" in message


def test_truncated_torchscript(models, tmp_path):
    data = models["scripted2d"].read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert "corrupt or truncated zip archive" in one_line_error(excinfo, path)


def test_onnx_file_with_torchscript_content_loads(models, tmp_path):
    """The content decides, not the extension (a TorchScript archive named .onnx)."""
    path = tmp_path / "actually_torchscript.onnx"
    path.write_bytes(models["scripted2d"].read_bytes())
    assert load_quietly(path).kind == "torchscript"


# ------------------------------------------------------------ torchvision stub


@pytest.fixture
def fresh_onnx2torch(monkeypatch):
    """Forget onnx2torch for the test (so it is imported again); put it back afterwards."""
    for name in [n for n in sys.modules if n == "onnx2torch" or n.startswith("onnx2torch.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [n for n in sys.modules if n.split(".")[0] in ("onnx2torch", "torchvision")]:
        del sys.modules[name]  # monkeypatch then restores the originals


def _stub_checks(module, reason_part: str) -> None:
    nms = sys.modules["onnx2torch.node_converters.nms"]
    roialign = sys.modules["onnx2torch.node_converters.roialign"]
    assert getattr(nms.torchvision, "__topofix_stub__", False)
    assert "torchvision" not in sys.modules and "torchvision.ops" not in sys.modules  # only during the import
    for op in (nms.torchvision.ops.nms, nms.torchvision.ops.box_convert, roialign.roi_align):
        with pytest.raises(NotImplementedError, match=reason_part):
            op(torch.zeros(1, 4), torch.zeros(1), 0.5)
    assert hasattr(module, "convert")


@needs_onnx
def test_onnx2torch_imports_without_torchvision(fresh_onnx2torch, monkeypatch, models):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # "not installed", wherever this runs
    module = import_onnx2torch()
    assert sys.modules["torchvision"] is None  # put back as it was
    monkeypatch.delitem(sys.modules, "torchvision")
    nms = sys.modules["onnx2torch.node_converters.nms"]
    assert getattr(nms.torchvision, "__topofix_stub__", False)
    with pytest.raises(NotImplementedError, match="torchvision is not installed"):
        nms.torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    assert hasattr(module, "convert")
    # the fresh onnx2torch got the extra converters too
    assert load_quietly(models["resize_pad20"]).kind == "onnx"


@needs_onnx
def test_onnx2torch_imports_with_broken_torchvision(fresh_onnx2torch, monkeypatch, tmp_path):
    package = tmp_path / "torchvision"
    package.mkdir()
    (package / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    module = import_onnx2torch()
    _stub_checks(module, "operator torchvision::nms does not exist")


@needs_onnx
def test_onnx2torch_uses_a_working_torchvision(fresh_onnx2torch, monkeypatch, tmp_path):
    package = tmp_path / "torchvision"
    package.mkdir()
    (package / "__init__.py").write_text("from torchvision import ops\n")
    (package / "ops.py").write_text("def nms(*a): return 'nms'\ndef box_convert(*a): pass\ndef roi_align(*a): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import_onnx2torch()
    nms = sys.modules["onnx2torch.node_converters.nms"]
    assert not getattr(nms.torchvision, "__topofix_stub__", False)
    assert nms.torchvision.ops.nms() == "nms"


@needs_onnx
def test_extra_converters_registered_once():
    import_onnx2torch()
    onnx_import.register_extra_converters()  # idempotent
    from onnx2torch.node_converters.registry import get_converter

    for op, version in (("Resize", 18), ("Resize", 19), ("Pad", 18), ("Pad", 19), ("Reshape", 19)):
        assert get_converter(operation_type=op, version=version).__name__ == f"convert_{op}_{version}"


# ----------------------------------------------------------------- snapshots


def _fine_tune(module: torch.nn.Module, x: torch.Tensor, steps: int = 3) -> None:
    target = (x > 0).float()
    optimizer = fresh_optimizer(module, lr=1e-2)
    module.train()
    for _ in range(steps):
        optimizer.zero_grad()
        out = module(x)[:, :1]
        torch.nn.functional.binary_cross_entropy_with_logits(out, target).backward()
        optimizer.step()
    module.eval()


def _state(module: torch.nn.Module, x: torch.Tensor):
    with torch.no_grad():
        out = module(x)
    return [t.detach().clone() for t in module.parameters()], [b.clone() for b in module.buffers()], out


@pytest.mark.parametrize("name", ["scripted2d", pytest.param("onnx17_2d", marks=needs_onnx), "traced2d"])
def test_restore_then_fine_tune_is_bit_identical(models, name):
    scan_a, scan_b = mf.example_input(2, seed=10), mf.example_input(2, seed=11)
    reference = load_quietly(models[name]).module
    _fine_tune(reference, scan_b)
    expected = _state(reference, scan_b)

    module = load_quietly(models[name]).module
    snapshot = WeightsSnapshot(module)
    _fine_tune(module, scan_a)
    assert not all(torch.equal(a, b) for a, b in zip(expected[0], module.parameters()))
    snapshot.restore()
    _fine_tune(module, scan_b)
    got = _state(module, scan_b)
    for e, g in zip(expected[0] + expected[1], got[0] + got[1]):
        assert torch.equal(e, g)
    assert torch.equal(expected[2], got[2])


def test_restore_resets_buffers_modes_and_gradients(models):
    module = load_quietly(models["scripted2d"]).module
    original = {name: b.clone() for name, b in module.named_buffers()}
    snapshot = WeightsSnapshot(module)
    assert snapshot.nbytes > 0
    module.train()
    module(mf.example_input(seed=5)).sum().backward()  # train-mode forward: running stats move
    changed = [name for name, b in module.named_buffers() if not torch.equal(b, original[name])]
    assert any(name.endswith("running_mean") for name in changed)
    assert any(name.endswith("num_batches_tracked") for name in changed)
    snapshot.restore()
    assert all(torch.equal(b, original[name]) for name, b in module.named_buffers())
    assert not module.training and not any(m.training for m in module.modules())
    assert all(p.grad is None for p in module.parameters())


def test_fresh_optimizer_has_no_state(models):
    module = load_quietly(models["scripted2d"]).module
    first = fresh_optimizer(module, lr=1e-3)
    module(mf.example_input()).sum().backward()
    first.step()
    assert first.state
    second = fresh_optimizer(module, lr=1e-3, betas=(0.8, 0.9))
    assert second is not first and not second.state
    assert second.param_groups[0]["betas"] == (0.8, 0.9)
