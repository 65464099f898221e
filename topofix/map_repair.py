"""``topofix repair`` as a Python API: topology correction without the network.

Most segmentations in hospitals come from pipelines whose network topofix cannot
fine-tune (nnU-Net, MONAI, TotalSegmentator), but whose *probability maps* (or
label maps) are on disk. The persistent-homology loss of Clough et al. does not
need a network: here the free variable is the map itself, through its logits,

    L = L_topo(softmax(Z)) + lambda * mean((softmax(Z) - S0)^2),   Z0 = log S0

optimised with Adam, then the repair stage (:func:`topofix.repairing.repair_labels`)
finishes what the optimisation left. Everything else is the correction loop of
:func:`topofix.correct` itself (the same code, not a copy): per-structure and
per-slice units, the evidence floor (``absent``), never-worse, the plateau rule,
the repair stage, the report. The softmax keeps the channels summing to one, so
a voxel that leaves a structure goes to the most probable other label.

Settings: a logit moves by about the learning rate per Adam step, whatever the
gradient's size, so the network's learning rate (2e-4) would take thousands of
steps here; :data:`MAP_SETTINGS` holds the values chosen on the hard benchmark
(``bench/quality``, README "Choosing the settings").
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from topofix.correction import CorrectionResult, CorrectionSettings, _Loop
from topofix.priors import Prior, target_priors

__all__ = ["MAP_SETTINGS", "repair"]

MAP_SETTINGS = CorrectionSettings(lr=0.2, lam=100.0)
"""Defaults of :func:`repair`: :class:`CorrectionSettings` with a learning rate for logits."""


def _as_probabilities(data: np.ndarray, n_labels: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(probabilities (C, *spatial), labels or None)`` from probabilities or a label map.

    Integer arrays are label maps: their pseudo-probabilities come from
    :func:`topofix.maps.pseudo_probabilities`. Float arrays are channel-first
    probabilities summing to one over the channels; a ``(1, *spatial)`` or
    spatial-only float array is the probability of label 1.
    """
    arr = np.asarray(data)
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        from topofix.maps import pseudo_probabilities

        labels = arr.astype(np.int64)
        return pseudo_probabilities(labels, n_labels=n_labels).astype(np.float32), labels
    prob = arr.astype(np.float32)
    if not np.isfinite(prob).all():
        raise ValueError("the probabilities contain NaN or Inf")
    if prob.ndim >= 3 and prob.shape[0] == 1:
        prob = np.concatenate([1.0 - prob, prob])
    if prob.min() < -1e-6 or prob.max() > 1 + 1e-6:
        raise ValueError(f"probabilities must lie in [0, 1], found [{prob.min():.3g}, {prob.max():.3g}]")
    deviation = float(np.abs(prob.sum(axis=0) - 1.0).max())
    if deviation > 1e-3:
        raise ValueError(f"the probabilities do not sum to 1 over the {prob.shape[0]} channels "
                         f"(max deviation {deviation:.3g})")
    return prob, None


def repair(
    data: Any,
    priors: Sequence[Prior | str] | Prior | str,
    *,
    labels: np.ndarray | None = None,
    settings: CorrectionSettings | None = None,
    per_slice: str | None = None,
    n_labels: int | None = None,
    path: str = "<array>",
    callback: Callable[[int, float, float], None] | None = None,
) -> CorrectionResult:
    """Correct the topology of a probability map (or label map) toward Betti priors, no network.

    Parameters
    ----------
    data:
        Channel-first probabilities ``(C, *spatial)`` summing to one over the
        channels (channel = label, 0 background; ``(1, *spatial)``: the probability
        of label 1), e.g. a MONAI inferer's softmax or nnU-Net's ``probabilities``;
        or an integer label map ``spatial`` (TotalSegmentator), turned into
        pseudo-probabilities (:func:`topofix.maps.pseudo_probabilities`).
    priors:
        ``--prior`` specs (``"2=1,1"``, ``"2=1,1|0,0"``) or :class:`Prior` objects.
    labels:
        The label map the probabilities stand for (nnU-Net's segmentation file); its
        structures are judged and, when they meet the priors, returned untouched.
        Default: the argmax of the probabilities (or the label map given as ``data``).
    settings:
        :class:`CorrectionSettings`; default :data:`MAP_SETTINGS`.
    per_slice:
        Judge the priors on every 2D slice along ``x``, ``y`` or ``z``.
    n_labels:
        Number of labels of a label map (default: its maximum + 1).

    Returns
    -------
    CorrectionResult
        As :func:`topofix.correct`: ``labels`` (the corrected label map),
        ``probabilities`` (the optimised map), the originals, and the report.
    """
    import torch

    started = time.perf_counter()
    settings = settings or MAP_SETTINGS
    prior_list = target_priors(priors, "repair")
    arr = np.asarray(data)
    if labels is None and (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer)):
        narrowed = _restrict_labels(arr, prior_list)
        if narrowed is not None:  # a label map with labels no prior names: work on the prior's labels only
            return _repair_restricted(arr, prior_list, narrowed, settings, per_slice, path, callback)
    prob0, given = _as_probabilities(arr, n_labels)
    labels0 = np.asarray(labels) if labels is not None else given
    if labels0 is None:
        labels0 = prob0.argmax(axis=0)
    if labels0.shape != prob0.shape[1:]:
        raise ValueError(f"labels of shape {labels0.shape} do not match probabilities of shape {prob0.shape}")
    labels0 = labels0.astype(np.uint8 if labels0.max(initial=0) < 256 else np.uint16)
    image_ndim = prob0.ndim - 1
    if per_slice is not None and image_ndim != 3:
        per_slice = None

    s0 = torch.from_numpy(np.ascontiguousarray(prob0))
    module = _FreeMap(s0)
    axis = None if per_slice is None else 1 + {"z": 0, "y": 1, "x": 2}[per_slice]

    def run(grad: bool, indices: Sequence[int] | None = None):
        with torch.set_grad_enabled(grad):
            z = module.logits
            if indices is not None and axis is not None:
                z = z.index_select(axis, torch.as_tensor(list(indices)))
            return torch.softmax(z, dim=0)

    def to_labels(prob) -> np.ndarray:
        return prob.detach().numpy().argmax(axis=0).astype(labels0.dtype)  # numpy: torch.argmax over 2 channels of 128^3 took 0.28 s

    def step0():
        return s0, labels0, []

    rng = torch.random.fork_rng(devices=[])
    rng.__enter__()
    try:
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        return _Loop(settings, prior_list, per_slice, image_ndim, run, to_labels, lambda n: "softmax", path,
                     started, callback, _fresh_adam, module, step0).run()
    finally:
        rng.__exit__(None, None, None)


def _restrict_labels(labels: np.ndarray, priors: Sequence[Prior]) -> list[int] | None:
    """The priors' labels, when the label map holds others too (else ``None``: nothing to restrict).

    Why: pseudo-probabilities take one float per label and voxel; a TotalSegmentator map has 117
    labels (37 GB at 512 x 512 x 300), while a prior names one or two. Priors on the foreground
    (every non-zero label) are not restricted.
    """
    if any(p.labels is None for p in priors):
        return None
    wanted = sorted({int(label) for p in priors for label in (p.labels or ())})
    present = {int(v) for v in np.unique(labels)}
    if not (present - set(wanted) - {0}):
        return None
    return wanted


def _repair_restricted(labels: np.ndarray, priors: Sequence[Prior], wanted: list[int], settings, per_slice,
                       path: str, callback) -> CorrectionResult:
    """:func:`repair` on the label map reduced to the priors' labels (label ``wanted[i]`` -> ``i + 1``,
    every other label -> 0), then mapped back: a voxel a structure gains takes its label, a voxel a
    structure loses takes the label of the nearest voxel of no prior structure (as
    ``correct`` gives it the most probable other label); every other voxel keeps its label.
    The returned probabilities are those of the reduced map (channel ``i + 1``: label ``wanted[i]``).
    """
    from scipy import ndimage

    lut = np.zeros(int(labels.max()) + 1, np.int64)
    for i, label in enumerate(wanted):
        if label < lut.size:
            lut[label] = i + 1
    reduced = lut[labels]
    index = {label: i + 1 for i, label in enumerate(wanted)}
    reduced_priors = [dataclasses.replace(p, labels=tuple(index[int(label)] for label in (p.labels or ())))
                      for p in priors]
    result = repair(reduced.astype(np.uint8 if len(wanted) < 255 else np.uint16), reduced_priors,
                    settings=settings, per_slice=per_slice, n_labels=len(wanted) + 1, path=path, callback=callback)
    back = np.asarray(wanted, np.int64)
    out = labels.copy()
    gained = result.labels > 0
    out[gained] = back[result.labels[gained].astype(np.int64) - 1]
    in_priors = np.isin(labels, wanted)
    lost = in_priors & ~gained
    if lost.any():
        nearest = ndimage.distance_transform_edt(in_priors, return_distances=False, return_indices=True)
        out[lost] = labels[tuple(axis[lost] for axis in nearest)]
    for outcome, prior in zip(result.report.priors, priors):  # the report names the user's labels
        outcome.prior = prior.spec
    return CorrectionResult(out, result.probabilities, labels.copy(), result.original_probabilities, result.report,
                            channel_labels=[None, *wanted])  # channel 0: every label of no prior


def _fresh_adam(module, lr: float):
    from topofix.models.adam import Adam

    return Adam(module.parameters(), lr=lr)


def _FreeMap(s0):  # noqa: N802 - a factory that builds the module class lazily (torch imported on use)
    """A module whose only parameter is the map's logits, ``log S0`` (clamped away from 0)."""
    import torch

    class FreeMap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.logits = torch.nn.Parameter(torch.log(s0.clamp_min(1e-6)))

    return FreeMap()


def map_settings(**overrides: Any) -> CorrectionSettings:
    """:data:`MAP_SETTINGS` with some fields replaced (CLI and benchmark)."""
    return dataclasses.replace(MAP_SETTINGS, **overrides)
