"""The input/output contract between topofix and the user's segmentation network.

A trained network only works on inputs prepared exactly as during its training:
intensities normalised the same way, a channel axis, a batch axis, spatial
sizes it accepts (a U-Net with ``k`` poolings wants multiples of ``2**k``), and
its outputs are logits to pass through a sigmoid or a softmax.  None of this is
stored in a TorchScript or ONNX file, so :class:`ModelContract` states it, and
:func:`resolve_contract` fills in what can be *measured* safely on the model
itself with a few forward passes on small dummy inputs:

* ``spatial_dims`` (2 or 3): a 2D and a 3D dummy forward;
* ``pad_multiple``: per axis, the smallest power of two ``m <= 32`` such that
  inputs whose side along that axis is an odd multiple of ``m`` run and come
  back at the same size (a network that never downsamples z gets 1 there: its
  slices are not padded, which matters for instance norm, which sees the
  padding);
* ``activation="auto"``: sigmoid for one output channel, softmax for more
  (decided from the output itself, see :func:`resolve_activation`).

What cannot be measured is an option: the intensity normalisation (a network
runs on any input; it just segments badly when normalised wrongly) and the
input channel count.

Layout conventions: an image is a numpy array in ``(z, y, x)`` / ``(y, x)``
order as :mod:`topofix.io` returns it, with a trailing channel axis when the
model takes several channels (io's layout for vector images).  The network sees
``(N, C, *spatial)``; its output ``(N, K, *spatial)`` comes back as
``(K, *spatial)``.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from topofix.choices import Activation, Normalize
from topofix.errors import TopofixError, exception_line

if TYPE_CHECKING:  # torch is imported lazily: `import topofix` must stay light
    import torch

PadMode = Literal["constant", "reflect"]

NORMALIZATIONS: tuple[str, ...] = Normalize.values()
ACTIVATIONS: tuple[str, ...] = Activation.values()
PAD_MODES: tuple[str, ...] = ("constant", "reflect")
PERCENTILES = (0.5, 99.5)
"""Clipping percentiles of ``normalize="percentile"`` (nnU-Net's CT scheme)."""
MAX_AUTO_MULTIPLE = 32
"""Largest pad multiple :func:`detect_pad_multiple` tries (5 poolings)."""
_EPS = 1e-8  # nnU-Net's floor on the standard deviation

__all__ = [
    "ACTIVATIONS",
    "NORMALIZATIONS",
    "ContractError",
    "ModelContract",
    "add_batch_channel",
    "crop_spatial",
    "detect_pad_multiple",
    "detect_pad_multiples",
    "detect_spatial_dims",
    "format_multiple",
    "first_output",
    "module_device_dtype",
    "normalize_array",
    "pad_amounts",
    "pad_spatial",
    "padded_shape",
    "remove_batch",
    "resolve_activation",
    "resolve_contract",
    "to_channel_first",
]


class ContractError(TopofixError, ValueError):
    """The model cannot be run with the given (or detected) contract; one-line message."""


@dataclass(frozen=True)
class ModelContract:
    """How to feed the network and read its output.

    Attributes
    ----------
    in_channels:
        Image channels the network takes (1 for a scalar scan).  With more, the
        image array needs a trailing channel axis of that length (the layout of
        :func:`topofix.io.read_image` with ``allow_vector=True``).
    normalize:
        Intensity normalisation applied to each channel of the whole image
        (never per slice or per window, so that every slice and window sees
        the same mapping), computed in float64 and fed as float32:

        * ``"zscore"`` (default): ``(x - mean) / max(std, 1e-8)`` with the mean
          and (population) standard deviation of all voxels.  This is nnU-Net's
          scheme for MR and every non-CT modality, and MONAI's
          ``NormalizeIntensity``: the most common normalisation of trained
          segmentation networks, hence the default.
        * ``"percentile"``: clip to the image's 0.5 and 99.5 percentiles
          (``numpy.percentile``, linear interpolation), then z-score the
          clipped image as above.  This is nnU-Net's CT scheme computed per
          image (nnU-Net takes the percentiles, mean and std over the
          foreground of the whole training set, which a single scan cannot
          give); robust to metal and air outliers.
        * ``"minmax"``: ``(x - min) / (max - min)``, into [0, 1]; a constant
          image becomes 0.
        * ``"none"``: the voxel values unchanged (as float32): for networks
          that normalise internally or were trained on raw values.
    pad_multiple:
        Spatial sides are padded up to a multiple of this before the forward
        pass and the output is cropped back: one number for every axis, or
        one per axis of the network in array order (``(1, 8, 8)`` for a 3D
        network that does not downsample z; ``(y, x)`` for a 2D one, per
        slice too).  ``None``: detected on the model, per axis
        (:func:`detect_pad_multiples`); the result is one number when every
        axis has the same.  Unused with patch-based inference, whose windows
        have the patch size.
    activation:
        What turns the network's output into probabilities: ``"sigmoid"``,
        ``"softmax"`` (over the channel axis), ``"none"`` (the network already
        outputs probabilities) or ``"auto"``: sigmoid for one output channel,
        softmax for more.
    spatial_dims:
        2 or 3, the network's own dimensionality.  ``None``: taken from the
        image (3D, or 2D for 2D images and per-slice inference) and checked on
        the model with a dummy forward (:func:`detect_spatial_dims` on failure).
    pad_mode:
        ``"constant"`` (default): pad with the minimum of the normalised image
        (per channel).  The minimum is the scan's background (air in CT and
        MR), so the padded margin looks like more background: it creates no
        structure that the network could segment and it works for any pad size.
        ``"reflect"``: mirror the image at its border (without repeating the
        edge voxel, repeated periodically when the pad exceeds the image);
        continues textures, but mirrors anatomy that touches the border.
    """

    in_channels: int = 1
    normalize: Normalize | str = "zscore"
    pad_multiple: int | tuple[int, ...] | None = None
    activation: Activation | str = "auto"
    spatial_dims: int | None = None
    pad_mode: PadMode = "constant"

    def __post_init__(self) -> None:
        if not isinstance(self.in_channels, (int, np.integer)) or self.in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {self.in_channels!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}; got {self.normalize!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}; got {self.pad_mode!r}")
        object.__setattr__(self, "normalize", str(self.normalize))  # a topofix.choices member -> its value
        object.__setattr__(self, "activation", str(self.activation))
        object.__setattr__(self, "pad_multiple", _check_pad_multiple(self.pad_multiple))
        if self.spatial_dims not in (None, 2, 3):
            raise ValueError(f"spatial_dims must be 2, 3 or None, got {self.spatial_dims!r}")
        if isinstance(self.pad_multiple, tuple) and self.spatial_dims not in (None, len(self.pad_multiple)):
            raise ContractError(
                f"pad multiple {format_multiple(self.pad_multiple)} has {len(self.pad_multiple)} numbers but the "
                f"model is {self.spatial_dims}D: give {self.spatial_dims} (array order, "
                f"{'z,y,x' if self.spatial_dims == 3 else 'y,x'}) or one for every axis"
            )

    def describe(self) -> str:
        """One line for logs: ``2D, 1 channel, normalize zscore, pad to x4 (constant), activation softmax``."""
        dims = "?D" if self.spatial_dims is None else f"{self.spatial_dims}D"
        chans = f"{self.in_channels} channel" + ("s" if self.in_channels > 1 else "")
        parts = [dims, chans, f"normalize {self.normalize}"]
        if self.pad_multiple is not None:
            parts.append(f"pad to x{format_multiple(self.pad_multiple)} ({self.pad_mode})")
        elif self.spatial_dims is None:  # not resolved yet
            parts.append("pad auto")
        parts.append(f"activation {self.activation}")
        return ", ".join(parts)


def _check_pad_multiple(value: object) -> int | tuple[int, ...] | None:
    """``None``, a positive int, or a tuple of 2 or 3 positive ints (a 1-tuple becomes its int)."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value
    ):
        values = tuple(int(v) for v in value)
        if len(values) == 1:
            return values[0]
        if len(values) in (2, 3):
            return values
    raise ValueError(
        f"pad_multiple must be a positive integer, 2 or 3 of them (one per axis), or None; got {value!r}"
    )


def format_multiple(multiple: int | Sequence[int]) -> str:
    """``8`` -> ``"8"``; ``(1, 8, 8)`` -> ``"1,8,8"`` (the ``--pad-multiple`` syntax)."""
    if isinstance(multiple, (int, np.integer)):
        return str(int(multiple))
    return ",".join(str(int(m)) for m in multiple)


# --------------------------------------------------------------------------- #
# Layout: channel, batch
# --------------------------------------------------------------------------- #


def to_channel_first(image: np.ndarray, in_channels: int) -> np.ndarray:
    """``(*spatial)`` -> ``(1, *spatial)``; ``(*spatial, C)`` -> ``(C, *spatial)`` when ``in_channels == C > 1``.

    Raises :class:`ContractError` when the array does not match ``in_channels``.
    """
    array = np.asarray(image)
    if in_channels == 1:
        if array.ndim not in (2, 3):
            raise ContractError(f"expected a 2D or 3D scalar image, got an array of shape {array.shape}")
        return array[np.newaxis]
    if array.ndim not in (3, 4) or array.shape[-1] != in_channels:
        raise ContractError(
            f"the model takes {in_channels} channels: expected an array (*spatial, {in_channels}) "
            f"with 2 or 3 spatial axes, got shape {array.shape}"
        )
    return np.moveaxis(array, -1, 0)


def add_batch_channel(x: torch.Tensor, *, has_channel: bool = False) -> torch.Tensor:
    """``(*spatial)`` -> ``(1, 1, *spatial)``, or ``(C, *spatial)`` -> ``(1, C, *spatial)`` with ``has_channel``."""
    return x.unsqueeze(0) if has_channel else x.unsqueeze(0).unsqueeze(0)


def remove_batch(x: torch.Tensor) -> torch.Tensor:
    """``(1, K, *spatial)`` -> ``(K, *spatial)``; refuses a batch of more than one item."""
    if x.shape[0] != 1:
        raise ValueError(f"expected a batch of one item, got shape {tuple(x.shape)}")
    return x[0]


# --------------------------------------------------------------------------- #
# Normalisation
# --------------------------------------------------------------------------- #


def _zscore(x: np.ndarray) -> np.ndarray:
    mean = x.mean()
    std = x.std()
    return (x - mean) / max(float(std), _EPS)


def normalize_array(image: np.ndarray, mode: str, *, channel_axis: int | None = None) -> np.ndarray:
    """Normalise intensities as :attr:`ModelContract.normalize` says; returns float32.

    ``channel_axis``: normalise each channel along that axis separately (as
    nnU-Net does); ``None``: the whole array is one channel.  Statistics are
    computed in float64 over every voxel.  Non-finite values are refused
    (:class:`ContractError`): one NaN would turn the whole image into NaN.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}; got {mode!r}")
    array = np.asarray(image)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(array):
        raise ContractError(f"cannot normalise an image of dtype {array.dtype}")
    if array.size == 0:
        raise ContractError(f"empty image (shape {array.shape})")
    if channel_axis is not None:
        moved = np.moveaxis(array, channel_axis, 0)
        out = np.stack([normalize_array(c, mode) for c in moved])
        return np.moveaxis(out, 0, channel_axis)
    x = array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(x).all():
        raise ContractError("image contains NaN or Inf values")
    if mode == "none":
        pass
    elif mode == "zscore":
        x = _zscore(x)
    elif mode == "minmax":
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    else:  # percentile
        lo, hi = np.percentile(x, PERCENTILES)
        x = _zscore(np.clip(x, lo, hi))
    return x.astype(np.float32)


# --------------------------------------------------------------------------- #
# Padding and cropping
# --------------------------------------------------------------------------- #


def pad_amounts(shape: Sequence[int], target: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Symmetric ``(before, after)`` pads taking ``shape`` to ``target`` (extra voxel after).

    Symmetric padding keeps the image centred in what the network sees, so both
    borders get the same context (nnU-Net pads the same way).
    """
    pads = []
    for n, t in zip(shape, target):
        total = max(int(t) - int(n), 0)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def padded_shape(shape: Sequence[int], multiple: int | Sequence[int]) -> tuple[int, ...]:
    """Each side of ``shape`` rounded up to a multiple of ``multiple`` (an int or one per axis)."""
    mults = [multiple] * len(shape) if isinstance(multiple, (int, np.integer)) else list(multiple)
    return tuple(int(math.ceil(n / m) * m) for n, m in zip(shape, mults))


def _reflect_index(n: int, before: int, after: int) -> np.ndarray:
    """Indices of a reflect-padded axis of length ``n`` (edge not repeated; periodic for big pads)."""
    idx = np.arange(-before, n + after)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.abs(idx) % period
    return np.where(idx > n - 1, period - idx, idx)


def pad_spatial(
    x: torch.Tensor,
    pads: Sequence[tuple[int, int]],
    mode: str = "constant",
    value: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Pad the trailing ``len(pads)`` axes of ``x`` (``(N, C, *spatial)``) by ``(before, after)`` each.

    ``mode="constant"`` fills with ``value``: a number, a per-channel tensor of
    shape ``(C,)``, or ``None`` for the minimum of each channel of ``x``.
    ``mode="reflect"`` mirrors ``x`` (any pad size).  Differentiable.
    """
    import torch

    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {', '.join(PAD_MODES)}; got {mode!r}")
    d = len(pads)
    if not any(b or a for b, a in pads):
        return x
    spatial = x.shape[x.ndim - d :]
    if mode == "reflect":
        for k, ((b, a), n) in enumerate(zip(pads, spatial)):
            if b or a:
                index = torch.as_tensor(_reflect_index(int(n), b, a), device=x.device)
                x = torch.index_select(x, x.ndim - d + k, index)
        return x
    lead = x.shape[: x.ndim - d]
    new = tuple(n + b + a for n, (b, a) in zip(spatial, pads))
    if value is None:
        value = x.detach().amin(dim=tuple(range(x.ndim - d, x.ndim)), keepdim=True)
        if x.ndim - d >= 2:  # (N, C, ...): one minimum per channel, over the batch too
            value = value.amin(dim=0, keepdim=True)
    if isinstance(value, torch.Tensor):
        value = value.to(dtype=x.dtype, device=x.device)
        if value.ndim == 1:  # per channel
            value = value.view((1, -1) + (1,) * d)
        out = value.expand(lead + new).clone()
    else:
        out = x.new_full(lead + new, float(value))
    region = (Ellipsis,) + tuple(slice(b, b + n) for (b, _), n in zip(pads, spatial))
    out[region] = x
    return out


def crop_spatial(x: torch.Tensor, pads: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Undo :func:`pad_spatial`: drop ``(before, after)`` voxels of the trailing axes (a view)."""
    d = len(pads)
    spatial = x.shape[x.ndim - d :]
    region = (Ellipsis,) + tuple(slice(b, n - a) for (b, a), n in zip(pads, spatial))
    return x[region]


# --------------------------------------------------------------------------- #
# Detection on the model
# --------------------------------------------------------------------------- #

# module -> {(spatial_dims, in_channels[, "per-axis"]): pad multiple(s) or the failure message}
_PROBE_CACHE: "weakref.WeakKeyDictionary[object, dict[tuple, int | tuple[int, ...] | str]]" = (
    weakref.WeakKeyDictionary()
)
_MIN_PROBE_SIDE = 16


def _probe_shape(multiple: int | Sequence[int], dims: int) -> tuple[int, ...]:
    """Spatial sides that are *odd* multiples of ``multiple`` (one for every axis,
    or one per axis), so that a larger multiple cannot pass by accident; at least
    16, the last axis longer (a model that mixes up axes fails the same-size test)."""
    multiples = [int(multiple)] * dims if isinstance(multiple, (int, np.integer)) else [int(m) for m in multiple]
    sides = []
    for axis, m in enumerate(multiples):
        q = max(1, math.ceil(_MIN_PROBE_SIDE / m))
        q += 1 - q % 2  # odd
        sides.append(m * (q + 2 if axis == dims - 1 else q))
    return tuple(sides)


@contextlib.contextmanager
def _frozen_for_probe(module: torch.nn.Module) -> Iterator[None]:
    """eval() and no_grad during probes; restore mode and buffers afterwards.

    Buffers are restored because a model *traced* in training mode keeps
    updating batch-norm running statistics whatever ``.eval()`` says.
    """
    import torch

    saved = {name: buf.detach().clone() for name, buf in module.named_buffers()}
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)
        with torch.no_grad():
            for name, buf in module.named_buffers():
                if name in saved:
                    buf.copy_(saved[name])


def module_device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the module's first floating parameter (or buffer); CPU float32 if none."""
    import torch

    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def first_output(out: object) -> torch.Tensor:
    """The network's segmentation output: the tensor, or the first of a list/tuple
    (deep-supervision networks return the full-resolution output first)."""
    import torch

    while isinstance(out, (list, tuple)) and out:
        out = out[0]
    if isinstance(out, dict) and len(out) == 1:
        out = next(iter(out.values()))
    if not isinstance(out, torch.Tensor):
        raise ContractError(f"the model returned {type(out).__name__}, expected a tensor")
    return out


def _try_forward(module: torch.nn.Module, shape: tuple[int, ...], in_channels: int) -> str | None:
    """``None`` when a ``(1, in_channels, *shape)`` input comes back as ``(1, K, *shape)``, else why not."""
    import torch

    device, dtype = module_device_dtype(module)
    x = torch.zeros((1, in_channels) + shape, device=device, dtype=dtype)
    try:
        out = first_output(module(x))
    except Exception as exc:  # any failure of the user's model is a "no"
        return exception_line(exc, limit=160)  # TorchScript tracebacks end with the Python-side message
    if out.ndim != len(shape) + 2 or out.shape[0] != 1 or tuple(out.shape[2:]) != shape:
        return f"input of shape {tuple(x.shape)} gave an output of shape {tuple(out.shape)}"
    return None


def _in_channels_hint(module: torch.nn.Module, in_channels: int) -> str:
    """' (its first convolution takes 3 channels)' when that explains a failure."""
    for param in module.parameters():
        if param.ndim in (4, 5):
            if param.shape[1] != in_channels:
                return f" (its first convolution takes {param.shape[1]} channels, in_channels is {in_channels})"
            return ""
    return ""


def detect_pad_multiple(module: torch.nn.Module, spatial_dims: int, in_channels: int = 1) -> int:
    """Smallest ``m`` in 1, 2, 4, ... 32 such that the model maps inputs whose sides
    are odd multiples of ``m`` to outputs of the same spatial size.

    A U-Net with ``k`` poolings gives ``2**k``.  Forward passes run in eval mode
    without gradients on zeros; buffers are restored afterwards.  The result is
    cached per module object (a fresh copy is probed again: pass the resolved
    contract around instead).  Raises :class:`ContractError` when no multiple
    up to 32 works.
    """
    key = (int(spatial_dims), int(in_channels))
    cached = _PROBE_CACHE.get(module, {}).get(key)
    if isinstance(cached, int):
        return cached
    if isinstance(cached, str):
        raise ContractError(cached)
    reasons = []
    found: int | None = None
    with _frozen_for_probe(module):
        m = 1
        while m <= MAX_AUTO_MULTIPLE:
            reason = _try_forward(module, _probe_shape(m, spatial_dims), in_channels)
            if reason is None:
                found = m
                break
            reasons.append(reason)
            m *= 2
    if found is None:
        message = (
            f"the model does not run on {spatial_dims}D inputs of {in_channels} channel(s) padded to any "
            f"multiple up to {MAX_AUTO_MULTIPLE}{_in_channels_hint(module, in_channels)}: {reasons[-1]}"
        )
        _PROBE_CACHE.setdefault(module, {})[key] = message
        raise ContractError(message)
    _PROBE_CACHE.setdefault(module, {})[key] = found
    return found


def detect_pad_multiples(module: torch.nn.Module, spatial_dims: int, in_channels: int = 1) -> tuple[int, ...]:
    """Per axis (array order), the smallest power of two ``m_k`` such that the model
    maps inputs whose side ``k`` is an odd multiple of ``m_k`` to outputs of the same size.

    Why per axis: a 3D network that does not downsample z (strides (1, 2, 2),
    common for anisotropic short-axis stacks) accepts any number of slices, and
    padding them to the in-plane multiple changes its output wherever a layer
    sees the whole volume (instance norm).  Starts from the common multiple
    ``m`` of :func:`detect_pad_multiple` and lowers one axis at a time (m/2,
    m/4...: one failing forward per axis for a network that downsamples every
    axis), each trial keeping the axes already lowered, so that the result is
    a combination a forward pass accepted.  Cached like :func:`detect_pad_multiple`.
    """
    key = (int(spatial_dims), int(in_channels), "per-axis")
    cached = _PROBE_CACHE.get(module, {}).get(key)
    if isinstance(cached, tuple):
        return cached
    common = detect_pad_multiple(module, spatial_dims, in_channels)
    multiples = [common] * int(spatial_dims)
    with _frozen_for_probe(module):
        for axis in range(int(spatial_dims)):
            candidate = common // 2
            while candidate >= 1:
                trial = list(multiples)
                trial[axis] = candidate
                if _try_forward(module, _probe_shape(trial, spatial_dims), in_channels) is not None:
                    break
                multiples[axis] = candidate
                candidate //= 2
    found = tuple(multiples)
    _PROBE_CACHE.setdefault(module, {})[key] = found
    return found


def detect_spatial_dims(module: torch.nn.Module, in_channels: int = 1) -> tuple[int, ...]:
    """The dimensionalities (subset of ``(2, 3)``) the model runs on: one dummy
    forward each, with sides that are multiples of 32 (cached like
    :func:`detect_pad_multiple`).  A purely voxel-wise model runs on both."""
    found = []
    for dims in (2, 3):
        try:
            detect_pad_multiple(module, dims, in_channels)
        except ContractError:
            continue
        found.append(dims)
    return tuple(found)


def resolve_activation(activation: str, out_channels: int) -> str:
    """``"auto"`` -> ``"sigmoid"`` for one output channel, ``"softmax"`` for more; others unchanged."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    if activation == "auto":
        return "sigmoid" if out_channels == 1 else "softmax"
    if activation == "softmax" and out_channels == 1:
        raise ContractError("softmax over a single output channel is always 1; use sigmoid (or auto)")
    return activation


def resolve_contract(
    module: torch.nn.Module,
    contract: ModelContract | None = None,
    *,
    image_ndim: int,
    per_slice: str | None = None,
    patch_size: Sequence[int] | None = None,
) -> ModelContract:
    """Fill ``spatial_dims`` and ``pad_multiple`` of ``contract`` for an image of ``image_ndim`` spatial axes.

    The detected ``pad_multiple`` is one number when every axis has the same
    (a network that downsamples every axis), else one per axis
    (:func:`detect_pad_multiples`).

    The network's dimensionality follows from the image: 3D volumes go to a 3D
    network, 2D images and per-slice inference to a 2D one.  It is checked on
    the model (dummy forwards, cached per module) unless ``patch_size`` is
    given: then the windows have the patch size, no pad multiple is needed, and
    a model traced at one fixed shape still works.  A mismatch (a 2D network
    on a 3D volume without ``per_slice``...) is a :class:`ContractError` saying
    what to do.  ``activation`` stays as given (``"auto"`` is decided from the
    output's channel count, see :func:`resolve_activation`).
    """
    contract = contract or ModelContract()
    if image_ndim not in (2, 3):
        raise ContractError(f"expected a 2D or 3D image, got {image_ndim} spatial axes")
    needed = 2 if (image_ndim == 2 or per_slice is not None) else 3
    given = contract.spatial_dims
    if given is not None and given != needed:
        if given == 2:
            raise ContractError("a 2D model on a 3D image must run slice by slice: set per_slice to x, y or z")
        what = "per slice" if per_slice is not None else "on a 2D image"
        raise ContractError(f"a 3D model cannot run {what}")
    if patch_size is not None:
        return replace(contract, spatial_dims=needed)
    if contract.pad_multiple is not None and given is not None:
        return contract
    try:
        multiple = detect_pad_multiple(module, needed, contract.in_channels)
    except ContractError as exc:
        other = 5 - needed
        if given is None and other in detect_spatial_dims(module, contract.in_channels):
            if other == 2:
                raise ContractError(
                    "this is a 2D model and the image is 3D: set per_slice to x, y or z"
                ) from None
            raise ContractError(
                "this is a 3D model: it cannot run "
                + ("per slice" if per_slice is not None else "on a 2D image")
            ) from None
        if contract.pad_multiple is not None:  # the user's multiple may work where ours did not
            return replace(contract, spatial_dims=needed)
        raise exc from None
    if contract.pad_multiple is None:
        per_axis = detect_pad_multiples(module, needed, contract.in_channels)
        multiple = per_axis[0] if len(set(per_axis)) == 1 else per_axis
    else:
        multiple = contract.pad_multiple
    return replace(contract, spatial_dims=needed, pad_multiple=multiple)
