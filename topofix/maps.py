"""Read what other segmentation tools already wrote: probability maps and label maps.

Why its own module: ``topofix repair`` corrects topology without the network,
starting from the outputs of nnU-Net, MONAI or TotalSegmentator.  Those come in
three shapes, and each must become the same thing for the method: softmax
probabilities ``(C, *spatial)``, the label map they stand for, and the geometry
the corrected mask must be written with.  Getting the geometry or the channel
order wrong would silently misplace a mask, so the kind is **detected from the
content** and anything ambiguous is refused with a one-line
:class:`~topofix.errors.InputError` naming the file.

Detection rules (:func:`read_map_input`)
----------------------------------------
``.npz`` -> **nnU-Net v2** (``kind="nnunet"``)
    What ``nnUNetv2_predict --save_probabilities`` writes: an array named
    ``probabilities``, channel first, ``(C, z, y, x)`` in numpy order (3D) or
    ``(C, y, x)`` (2D; nnU-Net's own ``(C, 1, y, x)`` for 2D images is accepted
    too), float.  Read with ``np.load(allow_pickle=False)``: nothing is ever
    unpickled.  Its segmentation lies beside it with the same stem and an image
    extension (``case.npz`` -> ``case.nii.gz``, ``case.png``...); exactly one
    must exist.  It is read with :func:`topofix.io.read_mask`, gives the
    geometry (nnU-Net's ``.npz`` has none) and the output file name, and is the
    label map the input stands for.  nnU-Net's ``case.pkl`` beside them holds
    the same geometry as a pickle: it is **never opened** (unpickling runs
    arbitrary code).  Refused: no ``probabilities`` array, not float, NaN/Inf,
    fewer than 2 channels, values outside [0, 1] or channels not summing to 1
    (within :data:`SUM_TOLERANCE`; a region-based nnU-Net model's sigmoid
    outputs do not), a spatial shape other than the segmentation's, a
    segmentation label ``>= C``.
``.pkl`` -> refused without being opened.
An image with a **channel axis** -> softmax probabilities (``kind="probabilities"``)
    A 4D NIfTI/MHA/NRRD (MONAI's ``(H, W, D, C)``; SimpleITK reads the 4th axis
    as numpy axis 0, so the array is ``(C, z, y, x)`` as is), or a 2D/3D
    *vector* image with float components (a 5D NIfTI ``(H, W, D, 1, C)`` as
    nibabel and SimpleITK write it, an MHA with ``ElementNumberOfChannels``):
    the components become the channels.  The channels must lie in [0, 1] and
    sum to 1 voxel by voxel (within :data:`SUM_TOLERANCE`); per-label sigmoids
    without a background channel are refused.  The geometry is the file's own,
    its spatial part for 4D (the 4th axis must not mix with space).  A 2D map
    with several channels must be a vector image: a 3D scalar file is always
    a volume.  Labels: argmax over channels.
A **float** 2D/3D scalar image with values in [0, 1], not all integers -> one foreground probability
    ``p`` of label 1, returned as the 2 channels ``[1 - p, p]``
    (``kind="probabilities"``).  Labels: ``p >= 0.5``, as ``topofix predict``
    thresholds a sigmoid.  A 4D/vector file with a single channel is read the
    same way.
An **integer** image, or a float one whose values are all integers -> label map (``kind="labels"``)
    Read with :func:`topofix.io.read_mask` semantics (a greyscale PNG saved as
    RGB is accepted, differing colour channels are refused).  Labels must be
    ``>= 0`` (label ``k`` is probability channel ``k``).  The probabilities
    are :func:`pseudo_probabilities` of it, in voxel units.
Anything else -> one-line InputError
    A float map outside [0, 1] that is not a label map (a scan, logits), an
    RGB picture, channels not summing to 1, NaN/Inf, 5D+ images, and every
    file :mod:`topofix.io` refuses (truncated, corrupt, unsupported...).

Pseudo-probabilities (label maps)
---------------------------------
A label map carries no confidence, but the method needs some slack: a short
gap in a ring must look *possible* (a probability well above the evidence
floor, 0.2), while a voxel deep inside another structure must not.  For each
label ``k`` (background included) the signed Euclidean distance to its
boundary is taken, with the boundary half a voxel from the voxel centres::

    sd_k = edt(inside k) - h     inside k     (>= +h)
    sd_k = -(edt(outside k) - h) outside k    (<= -h)      h = min(spacing) / 2

clipped to ``[-R, R]`` with ``R = PSEUDO_REACH * width``, divided by the
temperature ``width`` and put through a softmax over labels.  Because every
voxel's own label has ``sd >= +h`` and every other label ``sd <= -h``, the
argmax is exactly the label map, with a margin of ``2h / width`` in logits:
boundaries cannot produce ties.  In a 2-label neighbourhood, at a voxel ``e``
(voxels) deep in its own label and ``d`` from the nearest voxel of the other
label, the other label gets ``sigmoid(-(d + e - 1) / width)``.  With
:data:`PSEUDO_WIDTH` = 1.5 voxels:

=============================================  ======  ===============
voxel                                          d, e    p(other label)
=============================================  ======  ===============
in a 1- or 2-voxel gap of a ring               1, 1    0.339
touching the ring only at a corner (2D)        1.41    0.228
middle of a 3-voxel gap                        2, 2    0.119
3 voxels deep in another label                 3, 3    0.034
5 voxels deep                                  5, 5    0.0025
centre of a hole 8 voxels from the ring        8, 8    4.5e-05
=============================================  ======  ===============

So a gap of one or two voxels stays well above the evidence floor (0.2) and
can be bridged cheaply, a longer one cannot, and nothing can grow deep inside
another structure.  A voxel on the boundary of its own label keeps
``sigmoid(1 / width)`` = 0.661.  Labels absent from the map (or farther than
``R``) sit at the logit floor -8: at most 1.6e-4 next to a boundary.

Distances are in **voxels** for label-map inputs (``spacing=None``): the
repair works on the voxel grid, where "a gap of one or two voxels" is what it
can bridge; in mm, a one-slice gap across 5 mm slices would look impossible
while the same gap in-plane would not.  :func:`pseudo_probabilities` takes a
``spacing`` (then ``width`` is in the same unit) for callers who want it.
Each label's distances are computed in its bounding box grown by ``R``, which
gives exactly the clipped values of the whole-image transform at a fraction
of its cost.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import SimpleITK as sitk

# io's public readers refuse 4D images by design, so the probability images are
# read here, through io's own structural checks (truncation, NaN scan of NIfTI
# voxel data, forced ImageIO): the helpers of topofix.io and the private ones of
# inputs are reused rather than copied, so both readers refuse broken files alike.
from topofix.errors import InputError, exception_line
from topofix.inputs import (
    _GLOB_CHARS,
    InputItem,
    _broken_link,
    _is_broken_link,
    expand_inputs,
)
from topofix.io import Geometry, Image, image_extension, read_mask
from topofix.io.checked import Checked
from topofix.io.formats import IMAGE_IO
from topofix.io.geometry import geometry_of, numpy_order
from topofix.io.labels import as_labels
from topofix.io.read import has_nonfinite, open_checked
from topofix.io.sitk_errors import read_failure
from topofix.outputs import own_output_stem

__all__ = [
    "PSEUDO_REACH",
    "PSEUDO_WIDTH",
    "SUM_TOLERANCE",
    "MapInput",
    "expand_map_inputs",
    "map_output_name",
    "pseudo_probabilities",
    "read_map_input",
    "segmentation_beside",
]

MapKind = Literal["nnunet", "probabilities", "labels"]

SUM_TOLERANCE = 1e-3
"""Largest accepted ``|sum over channels - 1|`` (and excursion outside [0, 1]).

nnU-Net may store float16 probabilities: each value then carries a relative
rounding error of ~5e-4, so a tighter bound would refuse genuine files.
"""

PSEUDO_WIDTH = 1.5
"""Default temperature of :func:`pseudo_probabilities`, in voxels (see the module docstring)."""

PSEUDO_REACH = 8.0
"""Signed distances are clipped to ``+-PSEUDO_REACH * width``: logits lie in [-8, 8]."""

NPZ_ARRAY = "probabilities"
_NPZ = ".npz"
_PKL = ".pkl"

_FLOAT_PIXELS = frozenset(
    {sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkVectorFloat32, sitk.sitkVectorFloat64}
)
_COMPLEX_PIXELS = frozenset({sitk.sitkComplexFloat32, sitk.sitkComplexFloat64})


@dataclass(frozen=True, eq=False)
class MapInput:
    """One input of ``topofix repair``: probabilities, the label map they stand for, and where to write.

    Attributes
    ----------
    path:
        The file given (the ``.npz`` for nnU-Net), for messages and reports.
    kind:
        ``"nnunet"``, ``"probabilities"`` or ``"labels"`` (see the module docstring).
    probabilities:
        float32 ``(C, *spatial)``, numpy order, channel ``k`` = label ``k``;
        softmax-like (channels sum to 1 within :data:`SUM_TOLERANCE`).  For a
        label map, its :func:`pseudo_probabilities`, computed when first asked for
        (``stored_probabilities`` is ``None`` until then).
    labels:
        The label map the input stands for, shape ``spatial``, integer: the
        nnU-Net segmentation, the argmax of the probabilities, the label map.
    reference:
        Whose geometry the corrected mask must take: the nnU-Net segmentation
        file, or the input itself (its spatial part for 4D maps).
    output_name:
        File name for the corrected mask: the nnU-Net segmentation's name, or
        the input's own name (same extension).
    """

    path: str
    kind: MapKind
    stored_probabilities: np.ndarray | None
    labels: np.ndarray
    reference: Image
    output_name: str

    @property
    def probabilities(self) -> np.ndarray:
        """The probabilities; a label map's pseudo-probabilities are computed on first use only
        (``topofix repair`` gives a label map to :func:`topofix.repair`, which builds channels for
        the priors' labels alone: a 117-label map would need one float per label and voxel)."""
        if self.stored_probabilities is None:
            object.__setattr__(self, "stored_probabilities", pseudo_probabilities(self.labels))
        assert self.stored_probabilities is not None
        return self.stored_probabilities

    @property
    def geometry(self) -> Geometry:
        """The geometry the output must be written with (``reference.geometry``)."""
        return self.reference.geometry

    @property
    def n_channels(self) -> int:
        """Number of probability channels ``C`` (labels ``0 .. C-1``)."""
        return int(self.probabilities.shape[0])


# --------------------------------------------------------------------------- #
# Reading
# --------------------------------------------------------------------------- #


def read_map_input(path: str | os.PathLike[str]) -> MapInput:
    """Read a probability map, an nnU-Net ``.npz`` or a label map, detected by content.

    The rules are in the module docstring.  Everything a user can get wrong
    raises :class:`~topofix.errors.InputError` with one line naming ``path``.
    """
    shown = os.fspath(path)
    name = Path(shown).name.lower()
    if name.endswith(_PKL):
        raise InputError(
            shown,
            "a pickle file (nnU-Net's properties), never opened: unpickling runs arbitrary code; "
            "give the .npz or the segmentation beside it",
        )
    if name.endswith(_NPZ):
        return _read_nnunet(shown)
    return _read_image_map(shown)


def map_output_name(path: str | os.PathLike[str]) -> str:
    """The file name of an input's corrected mask, without reading it (the batch plans every output
    before the first case): an ``.npz`` takes its segmentation's name, anything else its own.
    When the segmentation cannot be found the ``.npz``'s stem with ``.nii.gz`` stands in: reading
    the input then reports the problem."""
    text = os.fspath(path)
    if text.lower().endswith(".npz"):
        try:
            return segmentation_beside(text).name
        except InputError:
            return os.path.basename(text)[:-4] + ".nii.gz"
    return os.path.basename(text)


def segmentation_beside(npz: str | os.PathLike[str]) -> Path:
    """The segmentation file nnU-Net wrote beside ``npz`` (same stem, an image extension).

    Raises InputError (naming ``npz``) when there is none or several: the
    output's geometry comes from it and guessing would misplace the mask.
    """
    shown = os.fspath(npz)
    p = Path(shown)
    stem = p.name[: -len(_NPZ)]
    folder = p.parent
    try:
        found = sorted(
            entry for entry in folder.iterdir()
            if (ext := image_extension(entry.name)) is not None
            and entry.name[: -len(ext)] == stem
            and not entry.is_dir()
        )
    except OSError as exc:
        raise InputError(shown, f"cannot list its folder: {exc.strerror or exc}") from None
    if not found:
        raise InputError(
            shown,
            f"no segmentation beside it (expected {stem}.nii.gz, .mha, .nrrd, .png... as nnU-Net writes it); "
            "the output's geometry comes from that file",
        )
    if len(found) > 1:
        names = ", ".join(entry.name for entry in found)
        raise InputError(shown, f"several segmentations beside it ({names}); keep only the one nnU-Net wrote")
    return found[0]


def _read_nnunet(shown: str) -> MapInput:
    if not os.path.exists(shown):
        raise InputError(shown, "file does not exist")
    if os.path.isdir(shown):
        raise InputError(shown, "is a directory")
    seg_path = segmentation_beside(shown)
    probs = _load_npz_probabilities(shown)
    try:
        seg = read_mask(seg_path)
    except InputError as exc:
        raise InputError(shown, f"its segmentation {exc.path}: {exc.problem}") from None
    probs = _match_segmentation(shown, probs, seg)
    labels = seg.array
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0:
            raise InputError(shown, f"its segmentation {seg_path.name} has a negative label ({lo})")
        if hi >= probs.shape[0]:
            raise InputError(
                shown,
                f"its segmentation {seg_path.name} has label {hi} but the probabilities have "
                f"{probs.shape[0]} channels (labels 0..{probs.shape[0] - 1})",
            )
    return MapInput(shown, "nnunet", probs, labels, seg, seg_path.name)


def _load_npz_probabilities(shown: str) -> np.ndarray:
    """The ``probabilities`` array of an nnU-Net ``.npz``, checked, as float32; never unpickles."""
    try:
        loaded = np.load(shown, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(shown, "file does not exist") from None
    except IsADirectoryError:
        raise InputError(shown, "is a directory") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(shown, f"cannot read .npz: {exception_line(exc, line='all')}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise InputError(
            shown, "a single .npy array, not an .npz archive; expected nnU-Net's --save_probabilities output"
        )
    with loaded:
        if NPZ_ARRAY not in loaded.files:
            found = ", ".join(loaded.files) or "none"
            raise InputError(
                shown,
                f"no '{NPZ_ARRAY}' array (arrays: {found}); expected nnU-Net v2 --save_probabilities output",
            )
        try:
            probs = loaded[NPZ_ARRAY]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise InputError(shown, f"cannot read its '{NPZ_ARRAY}' array: {exception_line(exc, line='all')}") from None
    if not np.issubdtype(probs.dtype, np.floating):
        raise InputError(shown, f"'{NPZ_ARRAY}' is {probs.dtype}, expected floats")
    if probs.ndim not in (3, 4):
        raise InputError(
            shown, f"'{NPZ_ARRAY}' has shape {probs.shape}; expected (C, y, x) or (C, z, y, x), channel first"
        )
    return _checked_channels(shown, probs, "probabilities")


def _match_segmentation(shown: str, probs: np.ndarray, seg: Image) -> np.ndarray:
    """``probs`` with the segmentation's spatial shape (nnU-Net's ``(C, 1, y, x)`` for 2D squeezed)."""
    spatial = probs.shape[1:]
    if seg.array.ndim == 2 and len(spatial) == 3 and spatial[0] == 1:
        probs, spatial = probs[:, 0], spatial[1:]
    if spatial != seg.array.shape:
        raise InputError(
            shown,
            f"probabilities have spatial shape {spatial} but its segmentation "
            f"{Path(seg.path or '').name} has shape {seg.array.shape}",
        )
    return probs


def _checked_channels(shown: str, channels: np.ndarray, what: str) -> np.ndarray:
    """float32 ``channels`` after refusing NaN/Inf, < 2 channels, values outside [0, 1], sums other than 1."""
    if channels.size == 0:
        raise InputError(shown, f"{what} are empty (shape {channels.shape})")
    if np.issubdtype(channels.dtype, np.floating) and not np.isfinite(channels).all():
        raise InputError(shown, f"{what} contain NaN or Inf values")
    c = channels.shape[0]
    if c < 2:
        raise InputError(shown, f"{what} have {c} channel; need at least 2 (background and a label)")
    lo, hi = float(channels.min()), float(channels.max())
    if lo < -SUM_TOLERANCE or hi > 1 + SUM_TOLERANCE:
        raise InputError(
            shown, f"{what} lie outside [0, 1] (min {lo:.3g}, max {hi:.3g}); expected softmax probabilities, not logits"
        )
    total = np.zeros(channels.shape[1:], np.float64)
    for k in range(c):
        total += channels[k]
    deviation = float(np.abs(total - 1.0).max())
    if deviation > SUM_TOLERANCE:
        raise InputError(
            shown,
            f"{what} do not sum to 1 over the {c} channels (max deviation {deviation:.2g}); "
            "expected softmax probabilities, one channel per label, background first",
        )
    return np.ascontiguousarray(channels, dtype=np.float32)


def _read_image_map(shown: str) -> MapInput:
    checked = open_checked(shown)  # io's structural checks: truncation, empty file, wrong extension...
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(checked.path))
    reader.SetImageIO(IMAGE_IO[checked.ext])
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _read_error(checked, exc) from None
    dim, comps, pixel = reader.GetDimension(), reader.GetNumberOfComponents(), reader.GetPixelID()
    if pixel in _COMPLEX_PIXELS:
        raise InputError(shown, "complex-valued image; expected probabilities or a label map")
    if dim in (2, 3) and pixel not in _FLOAT_PIXELS:
        # Integer voxels (any number of components): a label map, with read_mask's rules for RGB PNGs.
        mask = read_mask(shown)
        return _labels_input(shown, mask.array, mask.geometry)
    if dim not in (2, 3, 4):
        size = numpy_order(reader.GetSize())
        raise InputError(shown, f"{dim}D image (shape {size}); expected 2D/3D, or 4D with the channel axis last")
    if dim == 4 and comps > 1:
        raise InputError(shown, f"4D image with {comps} components per voxel; expected one channel axis")
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise _read_error(checked, exc) from None
    array = sitk.GetArrayFromImage(img)
    if has_nonfinite(checked, array):
        raise InputError(shown, "image contains NaN or Inf values")
    if dim == 4:
        return _channels_input(shown, array, _spatial_geometry(shown, img))
    geometry = geometry_of(img)
    if comps > 1:
        return _channels_input(shown, np.moveaxis(array, -1, 0), geometry)
    return _scalar_input(shown, array, geometry)


def _channels_input(shown: str, channels: np.ndarray, geometry: Geometry) -> MapInput:
    if channels.shape[0] == 1:
        return _scalar_input(shown, channels[0], geometry)
    probs = _checked_channels(shown, channels, "channels")
    labels = _argmax_labels(probs)
    return MapInput(shown, "probabilities", probs, labels, Image(labels, geometry, shown), Path(shown).name)


def _scalar_input(shown: str, array: np.ndarray, geometry: Geometry) -> MapInput:
    """A scalar map: integer-valued -> label map; float in [0, 1] -> one foreground probability; else refused."""

    def fail(problem: str) -> NoReturn:
        raise InputError(shown, problem)

    if not np.issubdtype(array.dtype, np.floating) or np.array_equal(array, np.trunc(array)):
        return _labels_input(shown, as_labels(array, fail), geometry)
    lo, hi = float(array.min()), float(array.max())
    if lo < 0 or hi > 1:
        fail(
            f"float image with values outside [0, 1] (min {lo:.3g}, max {hi:.3g}) that are not integer labels: "
            "neither a probability map nor a label map (a scan? logits? apply the softmax or sigmoid first)"
        )
    p = np.ascontiguousarray(array, dtype=np.float32)
    probs = np.stack([1.0 - p, p])
    labels = (p >= 0.5).astype(np.uint8)  # topofix predict's sigmoid rule
    return MapInput(shown, "probabilities", probs, labels, Image(labels, geometry, shown), Path(shown).name)


def _labels_input(shown: str, labels: np.ndarray, geometry: Geometry) -> MapInput:
    if labels.size and int(labels.min()) < 0:
        raise InputError(
            shown, f"negative label ({int(labels.min())}); label maps use 0 for background and 1, 2... for structures"
        )
    return MapInput(shown, "labels", None, labels, Image(labels, geometry, shown), Path(shown).name)


def _argmax_labels(probs: np.ndarray) -> np.ndarray:
    """argmax over channels in the smallest unsigned dtype (first channel wins a tie, as numpy)."""
    dtype = np.uint8 if probs.shape[0] <= 256 else np.uint16
    return np.argmax(probs, axis=0).astype(dtype)


def _spatial_geometry(shown: str, img: sitk.Image) -> Geometry:
    """The 3D geometry of a 4D image whose 4th axis holds channels."""
    direction = np.asarray(img.GetDirection(), float).reshape(4, 4)
    mixed = np.abs(direction[3, :3]).max() > 1e-6 or np.abs(direction[:3, 3]).max() > 1e-6
    if mixed:
        raise InputError(shown, "the 4th (channel) axis is not separate from space in the file's direction matrix")
    return Geometry(
        tuple(img.GetSpacing())[:3], tuple(img.GetOrigin())[:3], tuple(direction[:3, :3].ravel())
    )


def _read_error(checked: Checked, exc: RuntimeError) -> InputError:
    if checked.nifti is not None and checked.nifti.version == 2:
        return InputError(checked.shown, "cannot read image: NIfTI-2 file, which this SimpleITK build cannot read")
    return InputError(checked.shown, read_failure(exc))


# --------------------------------------------------------------------------- #
# Pseudo-probabilities
# --------------------------------------------------------------------------- #


def pseudo_probabilities(
    labels: Any,
    n_labels: int | None = None,
    spacing: Any = None,
    width: float = PSEUDO_WIDTH,
) -> np.ndarray:
    """Softmax of clipped signed distances: a probability map whose argmax is ``labels`` exactly.

    Parameters
    ----------
    labels:
        Integer (or bool) label map, labels ``>= 0``; label ``k`` becomes channel ``k``.
    n_labels:
        Number of channels ``C``; default ``max(labels) + 1`` and at least 2.
        Channels of labels absent from the map get the lowest logit everywhere.
    spacing:
        Per array axis (numpy order) or a :class:`~topofix.io.Geometry` (ITK
        order, reversed for you); distances are then in its unit, and so is
        ``width``.  Default: voxels.
    width:
        Temperature: logits are ``clip(sd, -R, R) / width`` with
        ``R = PSEUDO_REACH * width``.  See the module docstring for what the
        default gives across a gap.

    Returns
    -------
    numpy.ndarray
        float32 ``(C, *labels.shape)``, summing to 1 over channels.
    """
    from scipy import ndimage

    from topofix.metrics.surface import array_spacing

    lab = np.asarray(labels)
    if lab.dtype == np.bool_:
        lab = lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an integer or bool array, got {lab.dtype}")
    if lab.ndim < 1 or lab.size == 0:
        raise ValueError(f"labels must be a non-empty array, got shape {lab.shape}")
    try:
        width = float(width)
    except (TypeError, ValueError):
        raise ValueError(f"width must be a number, got {width!r}") from None
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"width must be positive and finite, got {width!r}")
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0:
        raise ValueError(f"labels must be >= 0, got {lo}")
    n = max(hi + 1, 2) if n_labels is None else int(n_labels)
    if n < hi + 1 or n < 1:
        raise ValueError(f"n_labels={n_labels} is too small for label {hi}")
    sampling = array_spacing(spacing, lab.ndim)
    half = min(sampling) / 2
    reach = PSEUDO_REACH * width
    margins = [math.ceil(reach / s) for s in sampling]

    logits = np.full((n, *lab.shape), -PSEUDO_REACH, np.float32)
    for k, box in _label_boxes(lab, margins):
        sub = lab[box] == k
        if sub.all():  # the label fills the whole image: no boundary (scipy's EDT needs a zero)
            logits[k][box] = PSEUDO_REACH
            continue
        d_in = ndimage.distance_transform_edt(sub, sampling=sampling)
        d_out = ndimage.distance_transform_edt(~sub, sampling=sampling)
        signed = np.where(sub, d_in - half, half - d_out)
        logits[k][box] = np.clip(signed, -reach, reach) / width
    np.exp(logits, out=logits)  # logits in [-8, 8]: no overflow, no max subtraction needed
    logits /= logits.sum(axis=0, keepdims=True)
    return logits


def _label_boxes(lab: np.ndarray, margins: Sequence[int]) -> list[tuple[int, tuple[slice, ...]]]:
    """``(label, box)`` for each label present: its bounding box grown by ``margins[a]`` on axis ``a``.

    Exact for the clipped distances: a voxel outside the box is farther than
    the reach from the label, and the nearest outside voxel of any inside
    voxel is always within one voxel of the box.  One pass over the image
    (``find_objects``) instead of one per label: a TotalSegmentator map has
    over a hundred labels.
    """
    from scipy import ndimage

    def grown(box: tuple[slice, ...]) -> tuple[slice, ...]:
        return tuple(
            slice(max(s.start - m, 0), min(s.stop + m, size)) for s, m, size in zip(box, margins, lab.shape)
        )

    found = []
    zero = lab == 0
    if zero.any():  # find_objects skips label 0
        found.append((0, grown(ndimage.find_objects(zero.view(np.uint8))[0])))
    for k, box in enumerate(ndimage.find_objects(lab), start=1):
        if box is not None:
            found.append((k, grown(box)))
    return found


# --------------------------------------------------------------------------- #
# Expanding INPUT...
# --------------------------------------------------------------------------- #


def _map_split(name: str) -> tuple[str, str] | None:
    """``(stem, kind)`` with kind ``"npz"`` or ``"image"``; None for anything else (``.pkl``, ``.json``...)."""
    if name.lower().endswith(_NPZ) and len(name) > len(_NPZ):
        return name[: -len(_NPZ)], "npz"
    ext = image_extension(name)
    if ext is None:
        return None
    return name[: len(name) - len(ext)], "image"


def _map_folder_items(folder: Path, include_own_outputs: bool) -> list[InputItem]:
    """The folder's images and ``.npz`` files, sorted; topofix's own outputs skipped as in expand_inputs."""
    entries: list[tuple[Path, str, str]] = []
    for p in folder.iterdir():
        split = _map_split(p.name)
        if split is not None and (p.is_file() or _is_broken_link(p)):
            entries.append((p, *split))
    image_stems = {stem for p, stem, kind in entries if kind == "image" and p.is_file()}
    items = []
    for p, stem, kind in sorted(entries):
        own = own_output_stem(stem) if kind == "image" else None
        if own is not None and not include_own_outputs and own in image_stems:
            continue
        items.append(InputItem(str(p), _broken_link(str(p)) if _is_broken_link(p) else None))
    return items


def _is_glob(text: str) -> bool:
    return bool(_GLOB_CHARS & set(text)) and not os.path.lexists(text)


def expand_map_inputs(
    specs: Iterable[str | os.PathLike[str]], *, include_own_outputs: bool = False
) -> list[InputItem]:
    """Expand files, folders and globs into the inputs of ``topofix repair``.

    As :func:`topofix.inputs.expand_inputs` (sorted folders, not recursive;
    a spec that matches nothing or a broken link becomes an error item;
    duplicates dropped; an explicit file kept whatever its extension), except:

    * folders and globs list ``.npz`` files as well as images, and nothing
      else: nnU-Net's ``.pkl``, ``plans.json``, ``dataset.json``... are never
      listed (a ``.pkl`` given explicitly is refused by :func:`read_map_input`
      without being opened);
    * an image with the stem of an ``.npz`` listed from the same folder is
      its nnU-Net segmentation, the geometry source of that ``.npz``, and is
      not listed as an input of its own (whether it came from a folder, a
      glob or an explicit path).
    """
    items: list[InputItem] = []
    seen: set[str] = set()

    def add(item: InputItem) -> None:
        key = os.path.abspath(item.path)
        if item.error is None and key in seen:
            return
        seen.add(key)
        items.append(item)

    for spec in specs:
        text = os.fspath(spec)
        if Path(text).is_dir():
            found = _map_folder_items(Path(text), include_own_outputs)
            if not found:
                add(InputItem(text, InputError(text, "folder holds no image and no nnU-Net .npz")))
            for item in found:
                add(item)
        elif _is_glob(text):
            matched = expand_inputs([text])
            kept = [it for it in matched if it.path == text or _map_split(Path(it.path).name) is not None]
            if not kept:
                kept = [InputItem(text, InputError(text, "no image or .npz file matches this pattern"))]
            for item in kept:
                add(item)
        else:
            for item in expand_inputs([text]):
                add(item)
    return _drop_paired_segmentations(items)


def _drop_paired_segmentations(items: list[InputItem]) -> list[InputItem]:
    """Leave out the images that are the segmentation of an ``.npz`` also listed."""
    paired = set()
    for item in items:
        split = _map_split(Path(item.path).name)
        if item.error is None and split is not None and split[1] == "npz":
            paired.add((os.path.dirname(os.path.abspath(item.path)), split[0]))
    kept = []
    for item in items:
        split = _map_split(Path(item.path).name)
        key = (os.path.dirname(os.path.abspath(item.path)), split[0] if split else None)
        if item.error is None and split is not None and split[1] == "image" and key in paired:
            continue
        kept.append(item)
    return kept
