"""``topofix predict``: the user's own network on a scan, as a Python API.

The segmentation topofix starts from (and compares against) is the network's
own: :func:`predict` runs it exactly as ``topofix correct`` will before any
fine-tuning, with the same contract (normalisation, padding, activation), so
that "before" and "after" differ only by the correction.

>>> import numpy as np, torch, topofix
>>> net = torch.nn.Conv2d(1, 2, 1)                      # any 2D network
>>> pred = topofix.predict(np.random.rand(32, 32), net, device="cpu")
>>> pred.labels.shape, pred.probabilities.shape
((32, 32), (2, 32, 32))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from topofix.models.contract import ModelContract

if TYPE_CHECKING:
    import torch

    from topofix.io import Image

__all__ = ["Prediction", "from_logits", "predict"]


@dataclass
class Prediction:
    """The network's segmentation of one image.

    Attributes
    ----------
    labels:
        Label map in the model's label space, shape of the image (``(z, y, x)``
        / ``(y, x)``): argmax of the softmax channels, or ``0/1`` from the
        sigmoid at ``threshold`` (see
        :func:`topofix.models.inference.labels_from_probabilities`).
    probabilities:
        ``(K, *spatial)`` float32, the network's output after the activation.
    contract:
        The contract actually used: ``spatial_dims``, ``pad_multiple`` (``None``
        with patches) and ``activation`` resolved.
    warnings:
        Things worth telling the user (one line each), e.g. outputs that look
        like probabilities already while an activation was applied.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    contract: ModelContract
    warnings: list[str] = field(default_factory=list)


def _load_module(model: Any, device: torch.device) -> tuple[torch.nn.Module, list[str]]:
    """``(module on device, loader warnings)`` from a module, a loaded model or a file path."""
    import torch

    if isinstance(model, torch.nn.Module):
        return model.to(device), []
    if isinstance(getattr(model, "module", None), torch.nn.Module):  # a LoadedModel
        return model.module.to(device), list(getattr(model, "warnings", []) or [])
    if isinstance(model, (str, os.PathLike)):
        from topofix.models.loading import load_model

        loaded = load_model(model, device=str(device))
        return loaded.module.to(device), list(loaded.warnings or [])
    raise TypeError(f"model must be a torch.nn.Module or a path to a TorchScript/ONNX file, got {type(model).__name__}")


def _probability_like(raw: torch.Tensor, activation: str) -> bool:
    """Whether raw outputs already look like probabilities (values in [0, 1], summing to 1 for softmax)."""
    import torch

    lo, hi = float(raw.min()), float(raw.max())
    if lo < 0.0 or hi > 1.0:
        return False
    if activation == "softmax":
        return bool(torch.allclose(raw.sum(0), torch.ones((), device=raw.device), atol=1e-3))
    return True


def predict(
    image: np.ndarray | Image | str | os.PathLike[str],
    model: torch.nn.Module | str | os.PathLike[str] | Any,
    *,
    contract: ModelContract | None = None,
    per_slice: str | None = None,
    patch_size: Sequence[int] | int | None = None,
    overlap: float = 0.5,
    device: str | torch.device = "auto",
    threshold: float = 0.5,
    batch_size: int | None = None,
) -> Prediction:
    """Segment ``image`` with ``model`` (no correction: the network's own output).

    Parameters
    ----------
    image:
        A numpy array in ``(z, y, x)`` / ``(y, x)`` order, a :class:`topofix.io.Image`,
        or a file path (read with :func:`topofix.io.read_image`).
    model:
        A ``torch.nn.Module`` (moved to ``device`` in place, as ``Module.to``
        does, and run in eval mode, its train/eval mode restored afterwards),
        a loaded model (``.module``), or a TorchScript/ONNX file path (loaded
        with :func:`topofix.models.loading.load_model`).
    contract:
        :class:`ModelContract` (default: z-score normalisation, pad multiple and
        dimensionality detected on the model, sigmoid for one output channel
        and softmax for more).
    per_slice:
        ``"x"``, ``"y"`` or ``"z"``: a 2D network on every slice of a 3D image.
    patch_size:
        Sliding-window inference with this window (numpy order; an int for
        every axis); ``None``: the whole image at once.
    overlap:
        Window overlap fraction (``patch_size`` only).
    device:
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    threshold:
        Sigmoid outputs: foreground where the probability is ``>= threshold``.
    batch_size:
        Slices / windows per forward pass (default 16 in 2D, 1 in 3D).

    Raises
    ------
    TopofixError
        One-line message: unreadable image or model, contract mismatch
        (:class:`~topofix.models.contract.ContractError`), the network failing
        on the image (:class:`~topofix.models.inference.InferenceError`), CUDA
        requested but unavailable.
    """
    from topofix.io import Image, read_image
    from topofix.models.contract import resolve_contract
    from topofix.models.inference import (
        predict_logits,
        resolve_device,
    )

    if isinstance(image, (str, os.PathLike)):
        image = read_image(image, allow_vector=contract is not None and contract.in_channels > 1)
    array = image.array if isinstance(image, Image) else np.asarray(image)
    if isinstance(patch_size, (int, np.integer)):
        patch_size = (int(patch_size),)
    dev = resolve_device(device)
    module, warnings = _load_module(model, dev)
    ndim = array.ndim - (1 if contract is not None and contract.in_channels > 1 else 0)
    contract = resolve_contract(
        module, contract, image_ndim=ndim, per_slice=per_slice if ndim == 3 else None, patch_size=patch_size
    )

    was_training = module.training
    module.eval()
    try:
        raw = predict_logits(
            module, array, contract, per_slice=per_slice, patch_size=patch_size, overlap=overlap,
            device=dev, grad=False, batch_size=batch_size,
        )
    finally:
        module.train(was_training)
    prob, labels, used, found = from_logits(raw, contract, threshold)
    return Prediction(labels, prob.detach().cpu().numpy().astype(np.float32, copy=False), used,
                      warnings + found)


def from_logits(raw: torch.Tensor, contract: ModelContract, threshold: float = 0.5):
    """``(probabilities tensor, labels, contract with the activation resolved, warnings)`` from the
    network's raw output: what :func:`predict` does after the forward pass, and what
    :func:`topofix.correct` does at step 0, so that step 0 of ``correct`` is exactly ``predict``."""
    from topofix.models.contract import resolve_activation
    from topofix.models.inference import apply_activation, labels_from_probabilities

    warnings: list[str] = []
    activation = resolve_activation(contract.activation, raw.shape[0])
    if contract.activation == "auto" and _probability_like(raw, activation):
        if activation == "sigmoid":
            problem = "all lie in [0, 1], so after the sigmoid every voxel has a probability >= 0.5"
        else:
            problem = "are already probabilities (in [0, 1], summing to 1), and a softmax was applied on top"
        warnings.append(
            f"the model's outputs {problem}; if the model ends with its own {activation}, "
            "use activation='none'"
        )
    prob = apply_activation(raw, activation)
    labels = labels_from_probabilities(prob, activation, threshold)
    return prob, labels, replace(contract, activation=activation), warnings
