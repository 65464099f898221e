"""Run the user's network on a whole scan: per slice, padded, or in sliding windows.

:func:`predict_probabilities` is the single entry point, used both to segment
(``grad=False``) and, at every step of the test-time fine-tuning, to produce the
probability map the topological loss differentiates (``grad=True``).  It handles
the three ways a network meets an image:

* **whole image**: padded to the model's multiple (:class:`ModelContract`
  ``pad_multiple``), one forward pass, cropped back exactly;
* **per slice**: a 2D network on a 3D stack, the slices along ``per_slice``
  (``x``, ``y`` or ``z``, named as in :data:`topofix.slicing.SLICE_AXES`) taken
  as the batch axis, ``batch_size`` slices per forward pass, stacked back;
* **sliding windows** (``patch_size``): windows of exactly the patch size,
  overlapping by ``overlap``, the last one flush with the border so that every
  voxel is covered; each window's output is weighted by a Gaussian importance
  map (sigma = 1/8 of the patch side, nnU-Net's choice, MONAI's
  ``mode="gaussian"``), which down-weights window borders where the network
  lacks context.  An image smaller than the patch is padded up to it and run
  as a single window.

Blending is done on the network's **raw outputs** (logits), as nnU-Net v2
does, and the activation is applied once to the stitched map: one activation
instead of one per window, and with ``activation="none"`` (a network that
outputs probabilities) the same code averages probabilities.  Where windows
agree the two blendings give the same labels; averaging logits weighs a
confident window more, which is what the Gaussian already intends.

Axis order is numpy's ``(z, y, x)``, as in :mod:`topofix.io`; patch sizes too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from topofix.choices import Device
from topofix.errors import TopofixError, exception_line, shorten
from topofix.models.contract import (
    ContractError,
    ModelContract,
    crop_spatial,
    first_output,
    module_device_dtype,
    normalize_array,
    pad_amounts,
    pad_spatial,
    padded_shape,
    resolve_activation,
    resolve_contract,
    to_channel_first,
)
from topofix.slicing import SLICE_AXES

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_OVERLAP",
    "InferenceError",
    "apply_activation",
    "check_threshold",
    "gaussian_weights",
    "labels_from_probabilities",
    "predict_logits",
    "predict_probabilities",
    "prepare_input",
    "resolve_device",
    "threshold_applies",
    "window_starts",
]

DEFAULT_OVERLAP = 0.5
"""Fraction of a patch shared by neighbouring windows (nnU-Net's tile step 0.5)."""
SIGMA_SCALE = 1.0 / 8.0
"""Gaussian sigma of the window importance map, as a fraction of the patch side (nnU-Net)."""
_DEFAULT_BATCH = {2: 16, 3: 1}  # items (slices / windows) per forward pass


class InferenceError(TopofixError, RuntimeError):
    """The network failed on an image (out of memory, wrong shape...); one-line message."""


# --------------------------------------------------------------------------- #
# Device
# --------------------------------------------------------------------------- #


def resolve_device(device: Device | str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cpu"``; ``"cuda"`` / ``"cuda:N"``.

    Asking for CUDA where there is none raises a one-line :class:`TopofixError`
    instead of torch's lazy failure at the first tensor moved.
    """
    import torch

    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise TopofixError(
                f"device {name!r}: CUDA is not available ({build}, torch {torch.__version__}); use device='cpu' or 'auto'"
            )
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise TopofixError(f"device {name!r}: not a valid device name") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise TopofixError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return dev
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")


# --------------------------------------------------------------------------- #
# Windows
# --------------------------------------------------------------------------- #


def window_starts(size: int, patch: int, overlap: float = DEFAULT_OVERLAP) -> list[int]:
    """Start offsets of windows of side ``patch`` covering ``[0, size)``.

    nnU-Net's rule: ``k = ceil((size - patch) / (patch * (1 - overlap))) + 1``
    windows spread evenly from 0 to ``size - patch`` (the last one flush with
    the border), so neighbours overlap by at least ``overlap`` of a patch.
    ``size <= patch``: one window at 0 (the image is padded up to the patch).
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if patch < 1:
        raise ValueError(f"patch side must be positive, got {patch}")
    if size <= patch:
        return [0]
    step = patch * (1.0 - overlap)
    count = math.ceil((size - patch) / step - 1e-9) + 1
    actual = (size - patch) / (count - 1)
    return [int(round(i * actual)) for i in range(count)]


def gaussian_weights(patch_size: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """Importance map of a window: separable Gaussian centred on the patch, peak 1.

    ``w(i) = exp(-(i - c)^2 / (2 sigma^2))`` per axis with ``c = (n - 1) / 2``
    (exactly symmetric, also for even sides) and ``sigma = n * sigma_scale``;
    floored at 1e-6 so that no covered voxel ends with a zero total weight.
    float32, shape ``patch_size``.
    """
    w = np.ones((), np.float64)
    for n in patch_size:
        i = np.arange(n, dtype=np.float64)
        sigma = max(n * sigma_scale, 1e-6)
        axis = np.exp(-((i - (n - 1) / 2.0) ** 2) / (2.0 * sigma * sigma))
        w = np.multiply.outer(w, axis)
    w = w / w.max()
    return np.maximum(w, 1e-6).astype(np.float32)


# --------------------------------------------------------------------------- #
# Input preparation
# --------------------------------------------------------------------------- #


def prepare_input(
    image: np.ndarray, contract: ModelContract, *, device: str | torch.device | None = None
) -> torch.Tensor:
    """Normalised network input ``(C, *spatial)`` float32 (on ``device``).

    Give the result to :func:`predict_probabilities` instead of the array to
    normalise once for many calls (the fine-tuning loop).
    """
    import torch

    channels = to_channel_first(image, contract.in_channels)
    x = normalize_array(channels, contract.normalize, channel_axis=0)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device or "cpu")


def _as_input(image, contract: ModelContract, device) -> torch.Tensor:
    import torch

    if isinstance(image, torch.Tensor):
        x = image
        if x.ndim not in (3, 4) or x.shape[0] != contract.in_channels:
            raise ContractError(
                f"a prepared input must be (C={contract.in_channels}, *spatial) with 2 or 3 spatial axes; "
                f"got shape {tuple(x.shape)}"
            )
        return x.to(device=device, dtype=torch.float32)
    return prepare_input(image, contract, device=device)


# --------------------------------------------------------------------------- #
# Forward passes
# --------------------------------------------------------------------------- #


def _short(exc: BaseException, limit: int = 200) -> str:
    """The error of a forward pass on one line; an out-of-memory error says what to change."""
    text = exception_line(exc)
    if "out of memory" in str(exc).lower():
        text = "out of memory (" + text[:120] + "); use patch_size or a smaller batch_size"
    return shorten(text, limit)


def _forward(module, batch: torch.Tensor, dtype) -> torch.Tensor:
    """One forward pass with the output checked: ``(N, K, *spatial)`` of the input's spatial size."""
    try:
        out = first_output(module(batch.to(dtype)))
    except ContractError:
        raise
    except Exception as exc:  # the user's model: any failure becomes one line
        raise InferenceError(f"the model failed on an input of shape {tuple(batch.shape)}: {_short(exc)}") from None
    spatial = tuple(batch.shape[2:])
    if out.ndim != batch.ndim or out.shape[0] != batch.shape[0] or tuple(out.shape[2:]) != spatial:
        raise InferenceError(
            f"the model returned shape {tuple(out.shape)} for an input of shape {tuple(batch.shape)}; "
            "expected (N, classes, *same spatial size)"
        )
    return out.float()


def _run_batched(module, x: torch.Tensor, batch_size: int, dtype) -> torch.Tensor:
    """Forward ``x`` (N, C, *spatial) in chunks of ``batch_size`` along N, concatenated."""
    import torch

    outs = [_forward(module, x[i : i + batch_size], dtype) for i in range(0, x.shape[0], batch_size)]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)


def _whole(module, x: torch.Tensor, contract: ModelContract, pad_value, batch_size: int, dtype) -> torch.Tensor:
    spatial = tuple(x.shape[2:])
    multiple = contract.pad_multiple or 1
    pads = pad_amounts(spatial, padded_shape(spatial, multiple))
    xp = pad_spatial(x, pads, contract.pad_mode, pad_value)
    return crop_spatial(_run_batched(module, xp, batch_size, dtype), pads)


def _windows(
    module,
    x: torch.Tensor,
    patch: tuple[int, ...],
    overlap: float,
    contract: ModelContract,
    pad_value,
    batch_size: int,
    dtype,
) -> torch.Tensor:
    """Gaussian-weighted sliding windows over ``x`` (N, C, *spatial) -> (N, K, *spatial)."""
    import torch

    spatial = tuple(x.shape[2:])
    pads = pad_amounts(spatial, [max(n, p) for n, p in zip(spatial, patch)])
    xp = pad_spatial(x, pads, contract.pad_mode, pad_value)
    full = tuple(xp.shape[2:])
    starts = [window_starts(n, p, overlap) for n, p in zip(full, patch)]
    corners = list(itertools.product(*starts))
    if len(corners) == 1:  # the image fits in one patch: no blending
        return crop_spatial(_run_batched(module, xp, batch_size, dtype), pads)

    weight = torch.from_numpy(gaussian_weights(patch)).to(xp.device)
    total = torch.zeros(full, device=xp.device)
    for c in corners:
        total[tuple(slice(s, s + p) for s, p in zip(c, patch))] += weight
    jobs = [(n, c) for c in corners for n in range(xp.shape[0])]
    acc = None
    for i in range(0, len(jobs), batch_size):
        chunk = jobs[i : i + batch_size]
        batch = torch.stack(
            [xp[(n, slice(None)) + tuple(slice(s, s + p) for s, p in zip(c, patch))] for n, c in chunk]
        )
        out = _forward(module, batch, dtype)
        if acc is None:
            acc = torch.zeros((xp.shape[0], out.shape[1]) + full, device=xp.device)
        for (n, c), o in zip(chunk, out):
            region = (n, slice(None)) + tuple(slice(s, s + p) for s, p in zip(c, patch))
            acc[region] += o * weight
    return crop_spatial(acc / total, pads)


def _normalise_patch(patch_size, dims: int) -> tuple[int, ...]:
    if isinstance(patch_size, (int, np.integer)):
        patch_size = (patch_size,)
    patch = tuple(int(p) for p in patch_size)
    if len(patch) == 1:
        patch = patch * dims
    if len(patch) != dims or any(p < 1 for p in patch):
        raise ContractError(
            f"patch size {','.join(map(str, patch_size))} does not fit a {dims}D model "
            f"(give {dims} positive sides in array order, {'z,y,x' if dims == 3 else 'y,x'})"
        )
    return patch


def predict_logits(
    module: torch.nn.Module,
    image: np.ndarray | torch.Tensor,
    contract: ModelContract | None = None,
    *,
    per_slice: str | None = None,
    patch_size: Sequence[int] | int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
    grad: bool = False,
    batch_size: int | None = None,
) -> torch.Tensor:
    """The network's raw output ``(K, *spatial)`` over the whole image (see
    :func:`predict_probabilities`, which applies the activation to this)."""
    import torch

    contract = contract or ModelContract()
    if per_slice is not None and per_slice not in SLICE_AXES:
        raise ValueError(f"per_slice must be one of x, y, z or None; got {per_slice!r}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    param_device, dtype = module_device_dtype(module)
    dev = param_device if device is None else resolve_device(device)
    x = _as_input(image, contract, dev)
    image_ndim = x.ndim - 1
    contract = resolve_contract(module, contract, image_ndim=image_ndim, per_slice=per_slice, patch_size=patch_size)
    dims = contract.spatial_dims
    assert dims is not None
    patch = None if patch_size is None else _normalise_patch(patch_size, dims)
    batch = batch_size or _DEFAULT_BATCH[dims]
    if batch < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    # Constant padding uses the minimum of the whole normalised image, per
    # channel, so that every slice and window is padded alike.
    pad_value = x.detach().reshape(x.shape[0], -1).amin(dim=1) if contract.pad_mode == "constant" else None
    slice_axis = None
    if per_slice is not None and image_ndim == 3:
        slice_axis = 1 + SLICE_AXES[per_slice]
        xb = x.movedim(slice_axis, 0)  # (S, C, h, w)
    else:
        xb = x.unsqueeze(0)  # (1, C, *spatial)

    context = torch.enable_grad() if grad else torch.no_grad()
    with context:
        if patch is None:
            out = _whole(module, xb, contract, pad_value, batch, dtype)
        else:
            out = _windows(module, xb, patch, overlap, contract, pad_value, batch, dtype)
    return out.movedim(0, slice_axis) if slice_axis is not None else out[0]


def apply_activation(raw: torch.Tensor, activation: str, *, channel_dim: int = 0) -> torch.Tensor:
    """Probabilities from raw outputs: sigmoid, softmax over ``channel_dim``, or as is (``"none"``).

    ``"auto"`` is resolved from the number of channels (:func:`resolve_activation`).
    """
    import torch

    activation = resolve_activation(activation, raw.shape[channel_dim])
    if activation == "sigmoid":
        return torch.sigmoid(raw)
    if activation == "softmax":
        return torch.softmax(raw, dim=channel_dim)
    return raw


def predict_probabilities(
    module: torch.nn.Module,
    image: np.ndarray | torch.Tensor,
    contract: ModelContract | None = None,
    *,
    per_slice: str | None = None,
    patch_size: Sequence[int] | int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
    grad: bool = False,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Class probabilities ``(K, *spatial)`` (float32 torch tensor) of ``image``.

    Parameters
    ----------
    module:
        The network, already on ``device`` and in the mode wanted (use
        ``module.eval()`` for inference: batch-norm running statistics, no
        dropout).  It is not moved nor switched here.
    image:
        A numpy array ``(z, y, x)`` / ``(y, x)`` (``(*spatial, C)`` for several
        input channels), normalised here as ``contract.normalize`` says; or a
        tensor ``(C, *spatial)`` from :func:`prepare_input`, used as is (to
        normalise once across the steps of a fine-tuning loop).
    contract:
        :class:`ModelContract`; its ``"auto"``/``None`` fields are resolved on
        the model (cached per module; pass :func:`resolve_contract`'s result to
        skip even the lookup).
    per_slice:
        ``"x"``, ``"y"`` or ``"z"``: run a 2D network on every slice of a 3D
        image along that axis (``x``: numpy axis 2, ``y``: 1, ``z``: 0), the
        slices as the batch axis.  Ignored for 2D images.
    patch_size:
        Sliding-window inference with windows of this size (numpy order; one
        number for every axis).  The image is used whole when it fits in one
        patch (padded up to the patch).  ``None``: the whole image in one pass,
        padded to ``contract.pad_multiple``.
    overlap:
        Fraction of a patch shared by neighbouring windows, in [0, 1).
    device:
        Where the input goes; ``None``: the module's device.
    grad:
        Keep the autograd graph (the output is differentiable with respect to
        the module's parameters), for fine-tuning.  Otherwise runs under
        ``torch.no_grad()``.
    batch_size:
        Slices or windows per forward pass; default 16 for a 2D network, 1 for
        a 3D one (nnU-Net's and MONAI's default).
    """
    contract = contract or ModelContract()
    raw = predict_logits(
        module, image, contract, per_slice=per_slice, patch_size=patch_size, overlap=overlap,
        device=device, grad=grad, batch_size=batch_size,
    )
    return apply_activation(raw, contract.activation)


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float when it lies strictly between 0 and 1, else ValueError (one line).

    0 would make every voxel foreground and 1 almost none; NaN compares false
    with everything, so it would silently give an empty mask.
    """
    value = float(threshold)
    if not 0.0 < value < 1.0:  # False for NaN too
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold!r}")
    return value


def threshold_applies(activation: str, n_channels: int) -> bool:
    """Whether :func:`labels_from_probabilities` uses the threshold for this output:
    sigmoid outputs (or ``auto``/``none`` with one channel); never an argmax."""
    if activation == "sigmoid":
        return True
    return activation in ("auto", "none") and n_channels == 1


def labels_from_probabilities(
    prob: np.ndarray | torch.Tensor, activation: str | ModelContract = "auto", threshold: float = 0.5
) -> np.ndarray:
    """Label map (numpy ``uint8``, ``uint16`` for labels above 255) from probabilities ``(K, *spatial)``.

    ``activation`` is the one that produced ``prob`` (or a :class:`ModelContract`,
    whose ``activation`` is used):

    * softmax (or ``auto``/``none`` with K > 1): ``argmax`` over channels, so
      label ``k`` is channel ``k`` (0 = background in the usual convention);
    * sigmoid (or ``auto``/``none`` with K == 1): ``prob[0] >= threshold`` as 0/1.
      With K > 1 sigmoid channels (overlapping regions), channel ``k`` paints
      label ``k + 1`` where it reaches the threshold, later channels on top
      (nnU-Net's region-based convention: regions listed from largest to
      smallest, e.g. whole tumour, tumour core, enhancing tumour).
    """
    import torch

    if isinstance(prob, torch.Tensor):
        prob = prob.detach().cpu().numpy()
    prob = np.asarray(prob)
    if prob.ndim < 2:
        raise ValueError(f"expected probabilities (K, *spatial), got shape {prob.shape}")
    k = prob.shape[0]
    if isinstance(activation, ModelContract):
        activation = activation.activation
    if activation not in ("auto", "sigmoid", "softmax", "none"):
        raise ValueError(f"activation must be auto, sigmoid, softmax or none; got {activation!r}")
    check_threshold(threshold)
    kind = activation if activation in ("sigmoid", "softmax") else ("sigmoid" if k == 1 else "softmax")
    dtype = np.uint8 if (k - 1 if kind == "softmax" else k) <= 255 else np.uint16
    if kind == "softmax":
        return np.argmax(prob, axis=0).astype(dtype)
    labels = np.zeros(prob.shape[1:], dtype)
    for channel in range(k):
        labels[prob[channel] >= threshold] = channel + 1
    return labels
