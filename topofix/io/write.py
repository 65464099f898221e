"""Writing: every image and mask topofix writes goes through :func:`write_image` / :func:`write_mask`.

An output is written **atomically** and never silently overwrites a file: it is
written into a hidden temporary directory next to the destination, **read back**
with topofix's own checks (SimpleITK reports no error for a short write on a
full disk), and only then moved into place.  What each format can hold comes
from the table in :mod:`topofix.io.formats`.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import SimpleITK as sitk

from topofix.errors import InputError, OutputError
from topofix.io.checked import PathLike
from topofix.io.formats import (
    format_of,
    image_extension,
    mixed_case,
    other_formats_hint,
    split_name,
    unsupported_message,
)
from topofix.io.geometry import Geometry, Image
from topofix.io.labels import as_labels, smallest_label_dtype
from topofix.io.read import open_checked, read_image, read_sitk
from topofix.io.sitk_errors import short_reason
from topofix.outputs import TEMP_PREFIX

__all__ = ["OVERWRITE_HINT", "read_back_problem", "verify_image_file", "write_image", "write_mask"]

OVERWRITE_HINT = "already exists (use overwrite=True / --overwrite to replace it)"


def _dims(ndims: Sequence[int]) -> str:
    """``2D`` / ``2D or 3D``, for "PNG holds 2D images only"."""
    return " or ".join(f"{d}D" for d in ndims)


def _resolve_geometry(
    shown: str, array: np.ndarray, geometry: Geometry | None, reference: Image | None
) -> Geometry:
    """The geometry to write (``reference``'s, else ``geometry``, else identity), refused if unusable."""
    if reference is not None:
        geometry = reference.geometry
    if geometry is None:
        geometry = Geometry.identity(array.ndim)
    if geometry.ndim != array.ndim:
        raise OutputError(
            shown, f"geometry is {geometry.ndim}D but the array is {array.ndim}D (shape {array.shape})"
        )
    # Checked here because SimpleITK's own complaints are cryptic (a singular
    # direction is reported as the last row of a matrix dump).
    if not all(math.isfinite(v) and v > 0 for v in geometry.spacing):
        raise OutputError(shown, f"invalid geometry: spacing must be positive and finite, got {geometry.spacing}")
    if not all(math.isfinite(v) for v in geometry.origin):
        raise OutputError(shown, f"invalid geometry: origin must be finite, got {geometry.origin}")
    d = geometry.ndim
    matrix = np.asarray(geometry.direction, float).reshape(d, d)
    if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-6:
        raise OutputError(shown, f"invalid geometry: direction matrix is singular or not finite, got {geometry.direction}")
    return geometry


def _write_and_commit(
    img: sitk.Image,
    tmp: Path,
    header: str,
    dest: Path,
    shown: str,
    overwrite: bool,
    compress: bool,
    moved: list[Path],
    expected: np.ndarray,
) -> None:
    """Write ``img`` as ``tmp/header``, read it back, then move every produced file next to ``dest``.

    The read-back is what makes a write trustworthy: SimpleITK reports no error
    for a short write (a full disk leaves a truncated file), so the temporary
    file is read again with this module's own checks (truncated ``.nii.gz`` /
    ``.nii`` included) and must hold exactly ``expected``'s voxels before it is
    given its final name.

    ``header`` is the final file name with a lower-case extension: SimpleITK
    picks the writer from the extension case-sensitively ("x.MHA" would become
    x.mhd + x.raw), and an .mhd/.nhdr header names its data file after it, so
    the data file keeps the right name once moved.  Data files are moved
    first and the header last, so a reader never sees a header whose data is
    missing.  Files created in the destination are appended to ``moved`` so
    that the caller can remove them if a later step fails.
    """
    parent = dest.parent
    try:
        sitk.WriteImage(img, str(tmp / header), compress)
    except RuntimeError as exc:
        raise OutputError(shown, f"cannot write image: {short_reason(exc)}") from None
    produced = sorted(entry.name for entry in tmp.iterdir())
    if header not in produced:
        raise OutputError(shown, "cannot write image: SimpleITK produced no file")
    problem = read_back_problem(tmp / header, expected)
    if problem is not None:
        raise OutputError(shown, f"cannot write image: {problem}")
    data_files = [name for name in produced if name != header]
    for name in data_files:
        if (parent / name).exists() and not overwrite:
            raise OutputError(shown, f"data file '{name}' {OVERWRITE_HINT}")
    try:
        for name in data_files:
            existed = (parent / name).exists()
            os.replace(tmp / name, parent / name)
            if not existed:
                moved.append(parent / name)
        os.replace(tmp / header, dest)
    except OSError as exc:
        raise OutputError(shown, f"cannot write image: {exc.strerror or exc}") from None


def read_back_problem(path: Path, expected: np.ndarray) -> str | None:
    """Why the file just written at ``path`` is not ``expected`` (``None``: it is, voxel for voxel)."""
    try:
        f = open_checked(path)  # the structural checks: a truncated file is refused here
        back = sitk.GetArrayFromImage(read_sitk(f, False))
    except InputError as exc:
        return f"the written file does not read back ({exc.problem}); is the disk full?"
    if back.shape != expected.shape:
        return "the written file reads back a different shape; is the disk full?"
    finite = np.isfinite(expected) if np.issubdtype(expected.dtype, np.floating) else None
    same = np.array_equal(back, expected) if finite is None or finite.all() else \
        np.array_equal(back[finite], expected[finite])  # NaN/Inf: NIfTI readers give 0 there
    if not same:
        return "the written file reads back different voxels; is the disk full?"
    return None


def verify_image_file(path: PathLike) -> str | None:
    """Why the image file at ``path`` cannot be trusted as a finished output (``None``: it reads back whole).

    Used when resuming a batch: an empty, truncated or unreadable file is never
    accepted as done.
    """
    p = Path(os.fspath(path))
    try:
        if p.stat().st_size == 0:
            return "empty file"
        read_image(p)
    except OSError as exc:
        return exc.strerror or str(exc)
    except InputError as exc:
        return exc.problem
    return None


def _writable_as(shown: str, p: Path, array: np.ndarray) -> str:
    """The extension ``p`` is written with, once the array fits its format (dimensions, pixel type)
    and the name can be read back; otherwise one line saying why not, before anything is written."""
    ext = image_extension(p)
    if ext is None:
        raise OutputError(shown, unsupported_message(p))
    if array.ndim not in (2, 3):
        raise OutputError(shown, f"expected a 2D or 3D array; got shape {array.shape}")
    if array.size == 0:
        raise OutputError(shown, f"empty array (shape {array.shape})")
    fmt = format_of(ext)
    if array.ndim not in fmt.ndims:
        raise OutputError(
            shown, f"{fmt.name} holds {_dims(fmt.ndims)} images only; got a {array.ndim}D array of shape {array.shape}"
        )
    if fmt.pixel_dtypes is not None and array.dtype not in fmt.pixel_dtypes:
        raise OutputError(
            shown,
            f"{fmt.name} stores only {' or '.join(map(str, fmt.pixel_dtypes))} pixels; got {array.dtype} "
            f"({other_formats_hint()})",
        )
    written_ext = mixed_case(p, ext)
    if written_ext is not None:
        raise OutputError(
            shown, f"mixed-case extension '{written_ext}' cannot be read back by the {fmt.name} reader; use '{ext}'"
        )
    return ext


def _write(
    path: PathLike,
    array: np.ndarray,
    geometry: Geometry | None,
    overwrite: bool,
    reference: Image | None,
    compress: bool,
) -> Path:
    shown = os.fspath(path)
    p = Path(shown)
    ext = _writable_as(shown, p, array)
    stem = split_name(p, ext)[0]
    geometry = _resolve_geometry(shown, array, geometry, reference)
    if p.is_dir():
        raise OutputError(shown, "is a directory")
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputError(shown, OVERWRITE_HINT)

    try:
        img = sitk.GetImageFromArray(array, isVector=False)
        img.SetSpacing(geometry.spacing)
        img.SetOrigin(geometry.origin)
        img.SetDirection(geometry.direction)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise OutputError(shown, f"cannot build image: {short_reason(exc)}") from None

    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=parent))
    except OSError as exc:
        raise OutputError(shown, f"cannot create output directory {str(parent)!r}: {exc.strerror or exc}") from None

    moved: list[Path] = []  # files this call created in the destination
    try:
        _write_and_commit(img, tmp, stem + ext, p, shown, overwrite, compress, moved, array)
    except BaseException:
        for created in moved:
            created.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return p


def write_image(
    path: PathLike,
    array: np.ndarray,
    geometry: Geometry | None = None,
    *,
    overwrite: bool = False,
    reference: Image | None = None,
) -> Path:
    """Write a 2D/3D scalar array atomically, never silently overwriting a file.

    The file is first written into a hidden temporary directory next to the
    destination (``.topofix-tmp-*``) and then moved into place with
    :func:`os.replace`, so an interrupted run leaves either the old file or
    the complete new one, never half an image.

    Parameters
    ----------
    path:
        Destination; the format follows the extension (see module docstring).
        Missing parent directories are created.
    array:
        Voxels in numpy order ``(z, y, x)`` / ``(y, x)``.  ``bool`` is written as
        ``uint8``, ``float16`` as ``float32``.  PNG: 2D ``uint8``/``uint16`` only.
    geometry:
        Geometry in ITK order; identity when omitted.  Ignored if ``reference``
        is given.  PNG keeps only the spacing.
    overwrite:
        Replace an existing file (refused by default so that a typo never
        destroys a manual segmentation).
    reference:
        Take the geometry from this image (typically the input the array was
        computed from).

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    OutputError
        Unsupported extension, existing file without ``overwrite``, 3D array or
        unsupported dtype for PNG, geometry/array dimension mismatch, write failure.
    """
    shown = os.fspath(path)
    arr = np.asarray(array)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif not (np.issubdtype(arr.dtype, np.number)):
        raise OutputError(shown, f"unsupported array dtype {arr.dtype}")
    ext = image_extension(shown)
    # Images are compressed only where the extension asks for it (.nii.gz); masks always (write_mask).
    return _write(path, arr, geometry, overwrite, reference, compress=ext is not None and ext.endswith(".gz"))


def write_mask(
    path: PathLike,
    labels: np.ndarray,
    geometry: Geometry | None = None,
    *,
    overwrite: bool = False,
    reference: Image | None = None,
) -> Path:
    """Write a label map in the smallest integer dtype that holds its labels.

    The dtype is the first of ``uint8, uint16, int16, int32, uint32, int64,
    uint64`` that fits the label range, which keeps masks small and readable
    by every viewer; MetaImage and NRRD outputs are compressed (``.nii.gz`` and
    PNG always are).  Float input must be finite and integer-valued.  For PNG
    the labels must fit ``uint8``/``uint16`` (no negative labels).

    Otherwise as :func:`write_image` (atomic, no silent overwrite,
    ``reference`` supplies the geometry).

    Raises
    ------
    OutputError
        As :func:`write_image`, plus non-integer / NaN labels and labels that
        PNG cannot store.
    """
    shown = os.fspath(path)
    arr = np.asarray(labels)

    def fail(problem: str) -> NoReturn:
        raise OutputError(shown, problem)

    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.number)):
        fail(f"unsupported label dtype {arr.dtype}")
    arr = as_labels(arr, fail)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        dt = smallest_label_dtype(lo, hi)
        if dt is not None and dt != arr.dtype:
            arr = arr.astype(dt)
        ext = image_extension(shown)
        fmt = format_of(ext) if ext is not None else None
        if fmt is not None and fmt.pixel_dtypes is not None and arr.dtype not in fmt.pixel_dtypes:
            fail(
                f"{fmt.name} stores only {'/'.join(map(str, fmt.pixel_dtypes))} labels; labels span [{lo}, {hi}] "
                f"({other_formats_hint()})"
            )
    return _write(path, arr, geometry, overwrite, reference, compress=True)
