"""The table of image formats topofix reads and writes: one :class:`Format` entry per format.

Everything format-specific that reading and writing need is a field of the entry:
the extensions, the ITK ImageIO forced for them, the cheap structural check run
before SimpleITK, and what the format can hold.  Adding a format is one entry in
:data:`FORMATS` plus its check module and tests; :mod:`topofix.io.read` and
:mod:`topofix.io.write` only consult the table.

The format is chosen from the extension (the matching ITK reader is forced), not
sniffed from the content.  Extensions are matched case-insensitively, which plain
SimpleITK does not do ("x.MHA" is written as x.mhd + x.raw and cannot be read
back); the NIfTI reader refuses mixed-case names such as ``.Nii.Gz``, so its
entry says ``exact_case`` and such names are refused with a message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topofix.io import metaimage, nifti, nrrd, png
from topofix.io.checked import Checked, PathLike

__all__ = [
    "FORMATS",
    "IMAGE_IO",
    "SUPPORTED_EXTENSIONS",
    "Format",
    "format_of",
    "image_extension",
    "is_supported_image",
    "mixed_case",
    "other_formats_hint",
    "split_name",
    "unsupported_message",
]


@dataclass(frozen=True)
class Format:
    """One image format: how to recognise it, check it, read it with SimpleITK, and what it holds."""

    name: str
    """As messages call it ("PNG holds 2D images only")."""
    extensions: tuple[str, ...]
    """Lower case.  A longer extension must come before any shorter one it ends with."""
    image_io: str
    """The ITK ImageIO forced for these files (MetaImageIO's own probe is case-sensitive)."""
    check: Callable[[Checked], Checked]
    """Cheap structural check run before SimpleITK (truncation, magic...); returns what it learned."""
    ndims: tuple[int, ...] = (2, 3)
    """Spatial dimensions the format holds (SimpleITK silently keeps slice 0 of a 3D array written to PNG)."""
    pixel_dtypes: tuple[np.dtype, ...] | None = None
    """The only pixel types the format stores (``None``: every numeric type)."""
    exact_case: bool = False
    """The reader refuses mixed-case extensions (``.Nii.Gz``): refuse them too, with a message."""
    colour_masks: bool = False
    """Greyscale masks saved as colour are common (drawing tools): read_mask accepts equal channels."""


#: Every supported format; the order of the extensions below follows this table.
FORMATS: tuple[Format, ...] = (
    Format("NIfTI", (".nii.gz", ".nii"), "NiftiImageIO", nifti.check, exact_case=True),
    Format("MetaImage", (".mha", ".mhd"), "MetaImageIO", metaimage.check),
    Format("NRRD", (".nrrd", ".nhdr"), "NrrdImageIO", nrrd.check),
    Format(
        "PNG", (".png",), "PNGImageIO", png.check,
        ndims=(2,), pixel_dtypes=(np.dtype(np.uint8), np.dtype(np.uint16)), colour_masks=True,
    ),
)

_BY_EXTENSION: dict[str, Format] = {ext: fmt for fmt in FORMATS for ext in fmt.extensions}

#: Supported file extensions (lower case).  ``.nii.gz`` comes first so that
#: suffix matching finds it before ``.nii``-like shorter suffixes.
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_BY_EXTENSION)

#: The ITK ImageIO used for each extension (forcing it, instead of letting ITK
#: probe every registered reader, keeps the reader consistent with our checks).
IMAGE_IO: dict[str, str] = {ext: fmt.image_io for ext, fmt in _BY_EXTENSION.items()}


def format_of(ext: str) -> Format:
    """The table entry of a supported lower-case extension (as :func:`image_extension` returns it)."""
    return _BY_EXTENSION[ext]


def image_extension(path: PathLike) -> str | None:
    """Return the supported extension of ``path`` in lower case, else ``None``.

    Handles the double suffix ``.nii.gz`` (``Path.suffix`` alone would say
    ``.gz``).  Only the name is looked at; the file need not exist.

    >>> image_extension("case_01/Mask.NII.GZ")
    '.nii.gz'
    >>> image_extension("notes.txt") is None
    True
    """
    name = Path(os.fspath(path)).name.lower()
    for ext in SUPPORTED_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return None


def is_supported_image(path: PathLike) -> bool:
    """Whether ``path`` has an extension topofix can read and write (e.g. to filter a folder)."""
    return image_extension(path) is not None


def _shown_extension(path: Path) -> str:
    """The extension as the user wrote it, for "unsupported file type" messages."""
    suffixes = path.suffixes
    if not suffixes:
        return ""
    if len(suffixes) >= 2 and suffixes[-1].lower() in (".gz", ".bz2", ".xz", ".zip"):
        return "".join(suffixes[-2:])
    return suffixes[-1]


def unsupported_message(path: Path) -> str:
    """The problem to report for a file whose extension is not in the table."""
    shown = _shown_extension(path)
    what = f"'{shown}'" if shown else "'' (no extension)"
    return f"unsupported file type {what} (supported: {', '.join(SUPPORTED_EXTENSIONS)})"


def split_name(path: Path, ext: str) -> tuple[str, str]:
    """``(stem, extension as written)`` of ``path`` for a known lower-case ``ext``."""
    name = path.name
    return name[: -len(ext)], name[-len(ext) :]


def mixed_case(path: Path, ext: str) -> str | None:
    """The extension as written when ``ext``'s format refuses it in mixed case (``.Nii.Gz``), else ``None``."""
    written = split_name(path, ext)[1]
    if format_of(ext).exact_case and not (written.islower() or written.isupper()):
        return written
    return None


def other_formats_hint() -> str:
    """``use .nii.gz, .mha or .nrrd``: the formats that store every pixel type, for refusals."""
    exts = [fmt.extensions[0] for fmt in FORMATS if fmt.pixel_dtypes is None]
    listed = exts[0] if len(exts) == 1 else f"{', '.join(exts[:-1])} or {exts[-1]}"
    return f"use {listed}"
