"""Reading: every image and mask topofix uses goes through :func:`read_image` / :func:`read_mask`.

A file is first checked by topofix itself (:func:`open_checked`: existence,
extension, then its format's structural check from :mod:`topofix.io.formats`),
then read with the ITK reader its extension names.  A file that is missing,
corrupt, truncated, 4D, multi-channel or not a label map is refused with a
one-line :class:`~topofix.errors.InputError` naming the file and the problem:
never SimpleITK's multi-line C++ traceback, never a silently wrong array (see
the traps in :mod:`topofix.io.nifti`, :mod:`~topofix.io.metaimage` and
:mod:`~topofix.io.png`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import numpy as np
import SimpleITK as sitk

from topofix.errors import InputError
from topofix.io import nifti
from topofix.io.checked import Checked, PathLike
from topofix.io.formats import IMAGE_IO, format_of, image_extension, mixed_case, unsupported_message
from topofix.io.geometry import Image, geometry_of, numpy_order
from topofix.io.labels import as_labels, collapse_channels
from topofix.io.png import COLOUR_TYPES
from topofix.io.sitk_errors import read_failure

__all__ = ["has_nonfinite", "open_checked", "read_image", "read_mask", "read_sitk"]


def open_checked(path: PathLike) -> Checked:
    """Common refusals, then the format-specific check chosen by the extension (see :data:`FORMATS`)."""
    shown = os.fspath(path)
    p = Path(shown)
    if not p.exists():
        raise InputError(shown, "file does not exist")
    if p.is_dir():
        raise InputError(shown, "is a directory")
    ext = image_extension(p)
    if ext is None:
        raise InputError(shown, unsupported_message(p))
    if not os.access(p, os.R_OK):
        raise InputError(shown, "permission denied")
    fmt = format_of(ext)
    try:
        if p.stat().st_size == 0:
            raise InputError(shown, "empty file (0 bytes)")
        written = mixed_case(p, ext)
        if written is not None:
            raise InputError(
                shown,
                f"mixed-case extension '{written}' is refused by the {fmt.name} reader; "
                f"rename the file to end in '{ext}'",
            )
        return fmt.check(Checked(p, shown, ext))
    except OSError as exc:
        raise InputError(shown, f"cannot read file: {exc.strerror or exc}") from None


def read_sitk(f: Checked, allow_vector: bool) -> sitk.Image:
    """Read a checked file with its format's ITK reader: 2D/3D, scalar unless ``allow_vector``.

    The header is read first so that a 4D or vector file is refused without
    loading its voxels; SimpleITK's failures become one-line :class:`InputError`.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(f.path))
    reader.SetImageIO(IMAGE_IO[f.ext])

    def failure(exc: RuntimeError) -> InputError:
        if f.nifti is not None and f.nifti.version == 2:
            return InputError(
                f.shown,
                "cannot read image: NIfTI-2 file, which this SimpleITK build cannot read "
                f"(SimpleITK {sitk.Version.VersionString()} reads NIfTI-1 only); convert it to NIfTI-1",
            )
        return InputError(f.shown, read_failure(exc))

    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise failure(exc) from None
    dim = reader.GetDimension()
    comps = reader.GetNumberOfComponents()
    shape = numpy_order(reader.GetSize())
    if dim > 3 or dim < 2:
        full = shape + ((comps,) if comps > 1 else ())
        raise InputError(f.shown, f"{dim}D image (shape {full}); expected a 2D or 3D scalar image")
    if comps > 1 and not allow_vector:
        ct = f.png_colour_type
        kind = f" ({COLOUR_TYPES[ct]} PNG)" if ct in COLOUR_TYPES else ""
        raise InputError(f.shown, f"vector image with {comps} components per voxel{kind}; expected a scalar image")
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise failure(exc) from None


def read_image(path: PathLike, *, allow_vector: bool = False) -> Image:
    """Read a 2D or 3D image, refusing anything unusable with a one-line error.

    Parameters
    ----------
    path:
        A ``.nii.gz``, ``.nii``, ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr`` or ``.png`` file, or a
        DICOM series: a folder holding one, or ``folder#SeriesInstanceUID`` (:mod:`topofix.dicom`).
    allow_vector:
        Accept multi-component voxels (RGB PNG, vector NIfTI...); the array then
        gets a trailing component axis.  Off by default because topofix works
        on scalar images and an RGB file passed as a mask is almost always a
        mistake (a screenshot, an overlay).

    Returns
    -------
    Image
        ``array`` in numpy order ``(z, y, x)`` / ``(y, x)``, in the dtype stored
        in the file (NIfTI scaling ``scl_slope``/``scl_inter`` applied by
        SimpleITK); geometry exactly as SimpleITK reports it.

    Raises
    ------
    InputError
        Missing file, directory, unsupported extension, unreadable, corrupt or
        truncated file (including truncated ``.nii.gz`` / ``.nii``, which
        SimpleITK itself reads without complaint), 4D image, vector image
        (unless ``allow_vector``), grey+alpha PNG, NaN or Inf values in any
        format ("image contains NaN or Inf values"; in NIfTI found by scanning
        the file, since SimpleITK reads them as 0).
    """
    from topofix.dicom import is_dicom_address, read_dicom_series

    if is_dicom_address(path):  # a folder holding a DICOM series, or folder#SeriesInstanceUID
        return read_dicom_series(path)
    f = open_checked(path)
    img = read_sitk(f, allow_vector)
    array = sitk.GetArrayFromImage(img)
    if has_nonfinite(f, array):
        raise InputError(f.shown, "image contains NaN or Inf values")
    return Image(array, geometry_of(img), f.shown)


def has_nonfinite(f: Checked, array: np.ndarray) -> bool:
    """NaN/Inf in the array read, or (float NIfTI) in the file, where SimpleITK turned them into 0."""
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating)):
        return False
    if not np.isfinite(array).all():
        return True
    return nifti.has_nonfinite(f)


def read_mask(path: PathLike) -> Image:
    """Read a label map / binary mask; the returned array has an integer dtype.

    On top of :func:`read_image`'s refusals, a mask must be a *label map*:

    * RGB/RGBA (and palette) PNGs are accepted only when the colour channels
      are all equal (and alpha, if any, is constant), i.e. a greyscale image
      saved in colour; channel 0 is used.  A palette PNG's values are then the
      palette *grey levels*, not the indices (SimpleITK loses the indices).
    * NaN/Inf and non-integer values are refused (a probability map is not a
      mask: threshold it first).  Integer-valued floats are converted to the
      smallest integer dtype that holds them.  Negative labels are kept.

    Raises
    ------
    InputError
        Everything :func:`read_image` refuses, plus the cases above.
    """
    from topofix.dicom_seg import is_seg_path, read_seg

    if is_seg_path(path):  # a DICOM-SEG file (by its SOP Class UID): topofix.dicom_seg
        return read_seg(path)
    f = open_checked(path)
    shown = f.shown
    # Colour channels are tolerated where the table says so (PNG: greyscale masks
    # saved as RGB by drawing tools); a vector NIfTI/MHA/NRRD is never a label map.
    img = read_sitk(f, format_of(f.ext).colour_masks)
    array = sitk.GetArrayFromImage(img)
    if img.GetNumberOfComponentsPerPixel() > 1:
        array = collapse_channels(array, shown, f.png_colour_type)

    def fail(problem: str) -> NoReturn:
        raise InputError(shown, problem)

    if f.nifti is not None and has_nonfinite(f, array):
        fail("mask contains NaN or Inf values (SimpleITK would have read them as 0)")
    return Image(as_labels(array, fail), geometry_of(img), shown)
