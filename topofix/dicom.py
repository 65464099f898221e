"""DICOM series as scans: found in folders, read with their geometry, refused when inconsistent.

Why its own module: a DICOM scan is not a file but a *series* (one file per slice, possibly
several series in one folder, told apart by their Series Instance UID), and the checks that
make it trustworthy (every slice present, one orientation, even spacing) are DICOM's own.

Addresses: a folder holding exactly one series is that scan (``scans/case_01``); a folder
holding several is one scan per series, written ``<folder>#<SeriesInstanceUID>``. The mask of
a DICOM scan is written as NIfTI (``<folder name>.nii.gz``, with ``_<last 8 characters of the
UID>`` when the folder holds several series) until DICOM-SEG output exists.

Reading: SimpleITK's GDCM series reader, slices sorted by their position along the slice
normal (GDCM's order), geometry (spacing, origin, direction) from the image position and
orientation tags. Refused with one line: slices with different orientations, uneven slice
spacing (more than 1% apart, or a missing slice), a single file where a series is expected.
"""

from __future__ import annotations

import contextlib
import locale
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from topofix.errors import InputError, exception_line

__all__ = ["SEG_SOP_CLASS_UID", "SERIES_SEPARATOR", "dicom_scans", "is_dicom_address", "is_dicom_file",
           "is_seg_file", "keep_locale", "read_dicom_series", "series_files", "series_output_name"]

SERIES_SEPARATOR = "#"
SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
"""Segmentation Storage: a DICOM-SEG file is a mask (:mod:`topofix.dicom_seg`), never a scan's slice."""
SPACING_TOLERANCE = 0.01
"""Relative difference allowed between consecutive slice distances."""


@contextlib.contextmanager
def keep_locale() -> Iterator[None]:
    """Restore the process's C locale after GDCM, which sets it to "C" (found when a test's DICOM
    writing turned Python's default text encoding into ASCII for every later ``open``)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """The DICOM Part 10 signature: ``DICM`` after a 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _sop_class_uid(head: bytes) -> str | None:
    """Media Storage SOP Class UID (0002,0002) of a Part 10 file's meta group (always explicit VR
    little endian), found without pydicom so that telling a SEG from a slice needs no optional package."""
    at = head.find(b"\x02\x00\x02\x00UI", 132)
    if at < 0 or at + 8 > len(head):
        return None
    length = int.from_bytes(head[at + 6:at + 8], "little")
    return head[at + 8:at + 8 + length].rstrip(b"\x00 ").decode("ascii", "replace")


def is_seg_file(path: str | os.PathLike[str]) -> bool:
    """A DICOM-SEG file (SOP Class UID 1.2.840.10008.5.1.4.1.1.66.4): a mask, not a slice of a scan."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError:
        return False
    return len(head) >= 132 and head[128:132] == b"DICM" and _sop_class_uid(head) == SEG_SOP_CLASS_UID


def _holds_dicom(folder: Path) -> bool:
    """Holds DICOM image files (DICOM-SEG files beside them are masks: they do not make it a scan)."""
    try:
        return any(entry.is_file() and is_dicom_file(entry) and not is_seg_file(entry) for entry in folder.iterdir())
    except OSError:
        return False


def _holds_seg(folder: Path) -> bool:
    try:
        return any(entry.is_file() and is_seg_file(entry) for entry in folder.iterdir())
    except OSError:
        return False


def _series_ids(folder: Path) -> list[str]:
    """The image series of a folder; a series made of DICOM-SEG files (topofix's own output) is not one."""
    with keep_locale():
        ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or [])
        if not _holds_seg(folder):  # the common case: no second scan of the folder
            return ids
        kept = []
        for uid in ids:
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
            if not files or not all(is_seg_file(f) for f in files):
                kept.append(uid)
        return kept


def series_files(path: str | os.PathLike[str]) -> list[str]:
    """The slice files of the scan at a DICOM address (a folder, or ``folder#UID``), in GDCM's order."""
    with keep_locale():
        folder, uid = _chosen_series(os.fspath(path))
        return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))


def dicom_scans(folder: str | os.PathLike[str]) -> list[str]:
    """The scans a folder stands for: itself (one series), ``folder#UID`` per series (several), or
    those of its sub-folders (a folder of series folders); ``[]`` when it holds no DICOM."""
    root = Path(folder)
    if _holds_dicom(root):
        ids = _series_ids(root)
        if len(ids) <= 1:
            return [str(root)]
        return [f"{root}{SERIES_SEPARATOR}{uid}" for uid in sorted(ids)]
    scans: list[str] = []
    try:
        subfolders = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    for sub in subfolders:
        if _holds_dicom(sub):
            scans.extend(dicom_scans(sub))
    return scans


def is_dicom_address(path: str | os.PathLike[str]) -> bool:
    """A folder holding DICOM files, or ``folder#UID``."""
    text = os.fspath(path)
    folder, _, _ = text.partition(SERIES_SEPARATOR) if SERIES_SEPARATOR in text and not os.path.exists(text) \
        else (text, "", "")
    return Path(folder).is_dir() and _holds_dicom(Path(folder))


def series_output_name(path: str | os.PathLike[str]) -> str:
    """``case_01.nii.gz`` for ``scans/case_01``; ``case_01_1a2b3c4d.nii.gz`` for ``scans/case_01#...1a2b3c4d``."""
    text = os.fspath(path).rstrip("/\\")
    folder, sep, uid = text.partition(SERIES_SEPARATOR)
    name = os.path.basename(folder) or "dicom"
    return f"{name}_{uid[-8:]}.nii.gz" if sep else f"{name}.nii.gz"


def _tag(reader: sitk.ImageFileReader, key: str) -> str | None:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else None


def read_dicom_series(path: str | os.PathLike[str]):
    """The scan at a DICOM address as a :class:`topofix.io.Image` (array ``(z, y, x)``, geometry)."""
    with keep_locale():
        return _read_dicom_series(path)


def _read_dicom_series(path: str | os.PathLike[str]):
    from topofix.io import Geometry, Image

    shown = os.fspath(path)
    folder, uid = _chosen_series(shown)
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
    _check_slices(shown, files)
    series = sitk.ImageSeriesReader()
    series.SetFileNames(files)
    try:
        image = series.Execute()
    except RuntimeError as exc:
        raise InputError(shown, f"cannot read the series ({exception_line(exc, limit=160, mark=False)})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(shown, "colour DICOM series are not supported")
    array = sitk.GetArrayFromImage(image)
    geometry = Geometry(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))
    return Image(array, geometry, shown)


def _chosen_series(shown: str) -> tuple[str, str]:
    """``(folder, series UID)`` of a scan address (a folder, or ``folder`` + separator + UID)."""
    folder, sep, uid = shown.partition(SERIES_SEPARATOR) if SERIES_SEPARATOR in shown and not os.path.exists(shown) \
        else (shown, "", "")
    root = Path(folder)
    if not root.is_dir():
        raise InputError(shown, "is not a folder holding a DICOM series")
    ids = _series_ids(root)
    if not ids:
        raise InputError(shown, "holds no readable DICOM series")
    if not sep:
        if len(ids) > 1:
            raise InputError(shown, f"holds {len(ids)} DICOM series; give one as {folder}{SERIES_SEPARATOR}<UID>")
        uid = ids[0]
    elif uid not in ids:
        raise InputError(shown, f"no DICOM series {uid} in {folder}")
    return str(root), uid


def _check_slices(shown: str, files: list[str]) -> None:
    """Refuse, in one line, a series SimpleITK would read silently wrong: a slice without position
    or orientation, mixed orientations, duplicated or missing slices, uneven spacing."""
    positions, orientations = [], set()
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            reason = exception_line(exc, limit=120, mark=False)
            raise InputError(shown, f"slice {os.path.basename(name)} cannot be read ({reason})") from None
        ipp, iop = _tag(reader, "0020|0032"), _tag(reader, "0020|0037")
        if ipp is None or iop is None:
            raise InputError(shown, f"slice {os.path.basename(name)} has no image position or orientation")
        positions.append([float(v) for v in ipp.split("\\")])
        orientations.add(tuple(round(float(v), 4) for v in iop.split("\\")))
    if len(orientations) > 1:
        raise InputError(shown, f"mixed slice orientations ({len(orientations)} different ones in one series)")
    if len(files) > 1:
        _check_spacing(shown, positions, next(iter(orientations)))


def _check_spacing(shown: str, positions: list[list[float]], orientation: tuple[float, ...]) -> None:
    """Slices along the normal of ``orientation`` must be evenly spaced (no duplicate, none missing)."""
    row_col = np.asarray(orientation, float).reshape(2, 3)
    normal = np.cross(row_col[0], row_col[1])
    along = np.sort(np.asarray(positions) @ normal)
    gaps = np.diff(along)
    if gaps.min() <= 1e-6:
        raise InputError(shown, "two slices at the same position (a duplicated slice?)")
    step = float(np.median(gaps))
    if np.abs(gaps - step).max() > SPACING_TOLERANCE * step:
        worst = int(np.argmax(np.abs(gaps - step)))
        kind = "a missing slice" if gaps[worst] > 1.5 * step else "uneven slice spacing"
        raise InputError(shown, f"{kind}: slices {worst} and {worst + 1} are {gaps[worst]:.3g} mm apart, "
                                f"the others {step:.3g} mm")
