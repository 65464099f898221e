"""Builders of small networks and model files (TorchScript, ONNX, pickles) for the tests.

Every builder writes into a folder the caller owns (``tmp_path``) and returns
the path.  Networks are :class:`~topofix.nets.SmallUNet`\\ s, small enough
(``base=4, depth=2``: 2D inputs of 16x16, 3D of 8x8x8) that building, loading
and a few Adam steps take milliseconds.  Their batch-norm statistics and
affine parameters are randomised, as in a trained network: batch norm then
matters (train and eval outputs differ), and the folded biases of an ONNX
export are all distinct (see :func:`fresh_unet` for the opposite case).
"""

from __future__ import annotations

import contextlib
import io
import pickle
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from topofix.nets import SmallUNet

BASE, DEPTH = 4, 2


def example_input(dims: int = 2, batch: int = 1, seed: int = 0) -> torch.Tensor:
    side = 16 if dims == 2 else 8
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, *([side] * dims), generator=generator)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=generator))
                module.bias.copy_(0.2 * torch.randn(n, generator=generator))
    return model


def unet(dims: int = 2, seed: int = 0, out_channels: int = 2) -> SmallUNet:
    """A SmallUNet in eval mode, with 'trained' batch norm."""
    torch.manual_seed(seed)
    model = SmallUNet(1, out_channels, base=BASE, depth=DEPTH, dims=dims)
    return randomize_batchnorm(model, seed).eval()


def fresh_unet(dims: int = 2, seed: int = 0) -> SmallUNet:
    """A freshly initialised SmallUNet: its eval-mode ONNX export has identical (zero)
    folded conv biases, which the TorchScript exporter deduplicates through Identity nodes."""
    torch.manual_seed(seed)
    return SmallUNet(1, 2, base=BASE, depth=DEPTH, dims=dims).eval()


class ResizePadNet(nn.Module):
    """Convolutions around F.pad (constant, reflect) and F.interpolate (bilinear, nearest):
    exported at opset 18+, it needs the Resize and Pad converters onnx2torch lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pad(self.conv(x), (1, 1, 1, 1))
        y = F.pad(y, (2, 2, 2, 2), mode="reflect")
        a = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        b = F.interpolate(y, scale_factor=2.0, mode="nearest")
        return self.head(a + b)


def resize_pad_net(seed: int = 0) -> ResizePadNet:
    torch.manual_seed(seed)
    return ResizePadNet().eval()


# ------------------------------------------------------------------ TorchScript


@contextlib.contextmanager
def quiet():
    """Silence torch.jit's DeprecationWarning, TracerWarning and the exporters' chatter."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def save_scripted(folder: Path, dims: int = 2, name: str | None = None, model: nn.Module | None = None) -> Path:
    path = Path(folder) / (name or f"scripted{dims}d.pt")
    with quiet():
        torch.jit.save(torch.jit.script(model if model is not None else unet(dims)), str(path))
    return path


class ConvBnDropout(nn.Module):
    """Conv, batch norm, dropout: the layers whose behaviour a trace freezes."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Conv2d(4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def save_traced(folder: Path, dims: int = 2, train: bool = False, name: str | None = None,
                model: nn.Module | None = None) -> Path:
    """``torch.jit.trace`` (0.4 s for the U-Net: the tracer records a Python stack per op)."""
    path = Path(folder) / (name or f"traced{dims}d{'_train' if train else ''}.pt")
    model = (model if model is not None else unet(dims)).train(train)
    with quiet():
        torch.jit.save(torch.jit.trace(model, example_input(dims), check_trace=False), str(path))
    return path


class _Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.head = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.inner(x))


def save_scripted_with_traced_part(folder: Path) -> Path:
    """A scripted network with a traced submodule."""
    path = Path(folder) / "mixed.pt"
    with quiet():
        inner = torch.jit.trace(nn.Conv2d(1, 2, 3, padding=1), example_input(2), check_trace=False)
        torch.jit.save(torch.jit.script(_Wrapper(inner).eval()), str(path))
    return path


def save_frozen(folder: Path) -> Path:
    path = Path(folder) / "frozen.pt"
    with quiet():
        torch.jit.save(torch.jit.freeze(torch.jit.script(unet(2))), str(path))
    return path


def save_optimized_for_inference(folder: Path) -> Path:
    path = Path(folder) / "optimized.pt"
    with quiet():
        torch.jit.save(torch.jit.optimize_for_inference(torch.jit.script(unet(2))), str(path))
    return path


# ------------------------------------------------------------------------- ONNX


def export_onnx(folder: Path, model: nn.Module, x: torch.Tensor, opset: int = 17, name: str | None = None) -> Path:
    """The TorchScript-based exporter (``dynamo=False``): one self-contained file."""
    path = Path(folder) / (name or f"model_opset{opset}.onnx")
    with quiet():
        torch.onnx.export(model, (x,), str(path), opset_version=opset, dynamo=False)
    return path


def export_onnx_default(folder: Path, model: nn.Module, x: torch.Tensor, name: str = "model_default.onnx") -> Path:
    """``torch.onnx.export`` with its defaults: the dynamo exporter (needs onnxscript),
    opset 20 with torch 2.13, weights in ``<name>.data`` next to the model."""
    path = Path(folder) / name
    with quiet():  # the dynamo exporter prints its progress
        torch.onnx.export(model, (x,), str(path))
    return path


def onnx_graph(folder: Path, name: str, nodes, inputs, outputs, initializers=(), opset: int = 17,
               check: bool = True) -> Path:
    """A hand-made ONNX model (onnx.helper), checked (unless ``check=False``), written to ``folder/name``."""
    import onnx
    from onnx import helper

    graph = helper.make_graph(list(nodes), name.split(".")[0], list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)  # onnxruntime 1.31 reads IR <= 11
    if check:
        onnx.checker.check_model(model)
    path = Path(folder) / name
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------- pickles


def save_state_dict(folder: Path) -> Path:
    path = Path(folder) / "state_dict.pth"
    torch.save(unet(2).state_dict(), path)
    return path


def save_whole_model(folder: Path) -> Path:
    path = Path(folder) / "whole_model.pt"
    torch.save(unet(2), path)
    return path


def save_legacy_state_dict(folder: Path) -> Path:
    path = Path(folder) / "legacy.pt"
    torch.save(unet(2).state_dict(), path, _use_new_zipfile_serialization=False)
    return path


class Trap:
    """Unpickling a Trap creates the file ``marker`` (proof that a file was unpickled)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def save_trap_pickle(folder: Path, marker: Path) -> Path:
    """A plain pickle (``.pth``) whose unpickling creates ``marker``."""
    path = Path(folder) / "trap.pth"
    path.write_bytes(pickle.dumps(Trap(marker), protocol=4))
    return path


def save_trap_checkpoint(folder: Path, marker: Path) -> Path:
    """A ``torch.save`` zip (``.pt``) whose unpickling creates ``marker``."""
    path = Path(folder) / "trap.pt"
    torch.save({"model": Trap(marker)}, path)
    return path


def trap_zip_payload(path: Path) -> bytes:
    """The ``data.pkl`` of a torch.save zip (the tests unpickle it to prove the trap works)."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        return archive.read(name)


def save_fake_pt2(folder: Path, name: str = "program.pt") -> Path:
    """A zip laid out like ``torch.export.save`` output (members only, no program)."""
    path = Path(folder) / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("program/archive_format", "pt2")
        archive.writestr("program/models/model.json", "{}")
    return path
