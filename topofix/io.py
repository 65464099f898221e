"""Image I/O for topofix: read and write masks and images, refuse bad files early.

Everything that reaches the topology code goes through :func:`read_mask` /
:func:`read_image`, and everything written goes through :func:`write_mask` /
:func:`write_image`.  Keeping I/O in one place lets us guarantee two things the
rest of the package relies on:

* a file that is missing, corrupt, truncated, 4D, multi-channel or not a label
  map is refused with a **one-line** :class:`~topofix.errors.InputError` naming
  the file and the problem (never SimpleITK's multi-line C++ traceback, and
  never a silently wrong mask: see "Traps" below);
* an output is written **atomically** and never silently overwrites a file.

Axis convention
---------------
Arrays are in **numpy order**, ``(y, x)`` in 2D and ``(z, y, x)`` in 3D, exactly
as :func:`SimpleITK.GetArrayFromImage` returns them.  :class:`Geometry` is in
**ITK order**, ``(x, y[, z])``: ``geometry.spacing[0]`` is the spacing along the
*last* array axis.  So the physical size of array axis ``k`` of a 3D array is
``geometry.spacing[2 - k]``.  ``direction`` is ITK's direction cosine matrix
flattened row-major (``d*d`` values), ``origin`` the physical position of voxel
index 0.  This is the convention of SimpleITK, which keeps files written here
readable by every ITK-based tool (3D Slicer, ITK-SNAP, nnU-Net...).

Formats
-------
``.nii.gz``, ``.nii`` (NIfTI-1), ``.mha``/``.mhd`` (MetaImage), ``.nrrd``/``.nhdr``
(NRRD) and ``.png`` (2D only).  The format is chosen from the extension (the
matching ITK reader is forced), not sniffed from the content.  Extensions are
matched case-insensitively, which plain SimpleITK does not do ("x.MHA" is
written as x.mhd + x.raw and cannot be read back); the NIfTI reader refuses
mixed-case names such as ``.Nii.Gz``, so we refuse them too, with a message.

What each format keeps (measured with SimpleITK 2.5.7 / ITK 5.4):

* MetaImage: geometry exactly (``%.17g`` text).
* NRRD: origin exactly; spacing and direction are stored as their product
  (``space directions``), so a rotated direction may come back off by ~1 ulp.
* NIfTI: spacing, origin and direction in float32 (relative error ~1e-7).
* PNG: 2D ``uint8``/``uint16`` only.  Spacing survives (``sCAL`` chunk, rounded
  to ~5 significant digits); **origin and direction are dropped** (read back as
  0 and identity).  Writing such geometry to PNG is allowed, it is just lost.

Traps this module guards against
--------------------------------
* A truncated ``.nii.gz`` is read by SimpleITK **without any error**, the
  missing voxels set to 0; a truncated ``.nii`` likewise.  We compare the size
  announced by the NIfTI header with the gzip ``ISIZE`` trailer (or the file
  size), and fall back to a full streaming decompression when they disagree.
* nifticlib replaces NaN and Inf by 0 when it reads a float NIfTI file, so
  the array never shows them; :func:`read_image` and :func:`read_mask` scan
  the raw voxel data of float NIfTI files themselves, and refuse NaN/Inf in
  every format alike (an image with NaN would otherwise be segmented as if
  those voxels were 0 in NIfTI, and refused in MHA/NRRD).
* A truncated ``.mha`` makes SimpleITK say "No such file or directory".  We
  check the voxel data size announced by the MetaImage header ourselves.
* This SimpleITK build reads NIfTI-1 only; a NIfTI-2 file gets a clear
  message (truncation is still detected from its 540-byte header).
* A palette PNG is expanded to RGB by SimpleITK: the indices are lost.
  Grey+alpha PNGs cannot be read at all.  Low bit-depth grey PNGs (1, 2, 4
  bits) are rescaled to 0..255 by libpng (a 1-bit mask reads as 0/255).
* Writing a 3D array to ``.png`` makes SimpleITK silently keep slice 0.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Union

import numpy as np
import SimpleITK as sitk

from topofix.errors import InputError, OutputError
from topofix.outputs import TEMP_PREFIX

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "Geometry",
    "Image",
    "image_extension",
    "is_supported_image",
    "read_image",
    "read_mask",
    "write_image",
    "write_mask",
]

#: Supported file extensions (lower case).  ``.nii.gz`` comes first so that
#: suffix matching finds it before ``.nii``-like shorter suffixes.
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".png")

# The ITK ImageIO used for each extension.  Forcing it (instead of letting ITK
# probe every registered reader) makes ``.MHA`` readable (MetaImageIO's own
# probe is case-sensitive) and keeps the reader consistent with our own
# format-specific checks, which are also chosen by extension.
_IMAGE_IO = {
    ".nii.gz": "NiftiImageIO",
    ".nii": "NiftiImageIO",
    ".mha": "MetaImageIO",
    ".mhd": "MetaImageIO",
    ".nrrd": "NrrdImageIO",
    ".nhdr": "NrrdImageIO",
    ".png": "PNGImageIO",
}

_OVERWRITE_HINT = "already exists (use overwrite=True / --overwrite to replace it)"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}

# Label dtypes tried in order by write_mask / read_mask (first that fits wins).
_LABEL_DTYPES = tuple(
    np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.uint64)
)

_CHUNK = 1 << 20  # streaming decompression chunk (bytes)


# --------------------------------------------------------------------------- #
# Extensions
# --------------------------------------------------------------------------- #


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


def _unsupported_message(path: Path) -> str:
    shown = _shown_extension(path)
    what = f"'{shown}'" if shown else "'' (no extension)"
    return f"unsupported file type {what} (supported: {', '.join(SUPPORTED_EXTENSIONS)})"


def _split_name(path: Path, ext: str) -> tuple[str, str]:
    """``(stem, extension as written)`` of ``path`` for a known lower-case ``ext``."""
    name = path.name
    return name[: -len(ext)], name[-len(ext) :]


# --------------------------------------------------------------------------- #
# Data classes
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Geometry:
    """Physical placement of an image grid, in ITK order ``(x, y[, z])``.

    Kept separate from the voxel array so that a corrected mask can be written
    with exactly the geometry of its input (overlaying it on the scan in any
    viewer), and so that it can be stored in JSON reports (:meth:`to_dict`).

    Attributes
    ----------
    spacing:
        Voxel size along x, y[, z] (usually mm).  ``spacing[0]`` belongs to the
        *last* numpy axis.
    origin:
        Physical coordinates of the centre of voxel index 0.
    direction:
        Direction cosine matrix, ``ndim * ndim`` values flattened row-major
        (ITK / ``SimpleITK.Image.GetDirection`` convention).
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        spacing = tuple(float(v) for v in self.spacing)
        origin = tuple(float(v) for v in self.origin)
        direction = tuple(float(v) for v in self.direction)
        d = len(spacing)
        if d < 1:
            raise ValueError("Geometry needs at least one dimension")
        if len(origin) != d:
            raise ValueError(f"Geometry: origin has {len(origin)} values, spacing has {d}")
        if len(direction) != d * d:
            raise ValueError(f"Geometry: direction needs {d * d} values for {d}D, got {len(direction)}")
        # frozen dataclass: normalise through object.__setattr__
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3 for images topofix handles)."""
        return len(self.spacing)

    @classmethod
    def identity(cls, ndim: int) -> Geometry:
        """Unit spacing, zero origin, identity direction: what a bare array implies."""
        if ndim < 1:
            raise ValueError(f"ndim must be >= 1, got {ndim}")
        eye = np.eye(ndim).ravel()
        return cls((1.0,) * ndim, (0.0,) * ndim, tuple(float(v) for v in eye))

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-friendly ``{"spacing": [...], "origin": [...], "direction": [...]}``."""
        return {
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> Geometry:
        """Inverse of :meth:`to_dict` (e.g. to re-read a geometry from a JSON report)."""
        try:
            return cls(tuple(data["spacing"]), tuple(data["origin"]), tuple(data["direction"]))
        except KeyError as exc:
            raise ValueError(f"Geometry.from_dict: missing key {exc.args[0]!r}") from None


@dataclass(frozen=True, eq=False)
class Image:
    """A voxel array with its geometry and the file it came from.

    ``array`` is in numpy order (``(y, x)`` or ``(z, y, x)``; a trailing
    component axis for vector images read with ``allow_vector=True``).
    ``path`` is the file it was read from (``None`` for in-memory images) so
    that error messages and reports can name it.  ``eq=False``: two images are
    compared by identity, since ``==`` on arrays is element-wise.
    """

    array: np.ndarray
    geometry: Geometry
    path: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.geometry, Geometry):
            raise TypeError("Image.geometry must be a Geometry")
        nd = np.ndim(self.array)
        if nd not in (self.geometry.ndim, self.geometry.ndim + 1):
            raise ValueError(
                f"Image: array of shape {np.shape(self.array)} does not match a {self.geometry.ndim}D geometry"
            )


def _geometry_of(img: sitk.Image) -> Geometry:
    return Geometry(tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()))


# --------------------------------------------------------------------------- #
# SimpleITK error messages
# --------------------------------------------------------------------------- #

_PREFIXES = (
    re.compile(r"^(?:sitk::ERROR|ITK ERROR|itk::ERROR)\s*:\s*"),
    re.compile(r"^\w+\(0x[0-9a-fA-F]+\)\s*:\s*"),  # MetaImageIO(0x55...):
    re.compile(r"^\[\w+\]\s*\w+\s*:\s*"),  # [nrrd] _nrrdEncodingRaw_read:
    re.compile(r"^\*+\s*(?:ERROR\s*)?:?\s*"),  # ** ERROR: (nifticlib)
)


def _short_reason(exc: BaseException, limit: int = 200) -> str:
    """Reduce SimpleITK's multi-line exception text to its most useful line."""
    reasons: list[str] = []
    for raw in str(exc).splitlines():
        line = raw.strip()
        if not line or line.startswith("Exception thrown in SimpleITK"):
            continue
        changed = True
        while changed:
            changed = False
            for pattern in _PREFIXES:
                new = pattern.sub("", line, count=1)
                if new != line:
                    line, changed = new.strip(), True
        if line:
            reasons.append(line)
    if not reasons:
        return "unknown error"
    reason = reasons[-1]
    if reason.startswith("Reason:") and len(reasons) >= 2:
        reason = f"{reasons[-2]} {reason}"
    if len(reason) > limit:
        reason = reason[: limit - 3] + "..."
    return reason


def _read_failure(exc: BaseException) -> str:
    reason = _short_reason(exc)
    low = reason.lower()
    # MetaIO reports a truncated/corrupt file as an OS error of the *last*
    # failed call ("No such file or directory", or even "Success"): misleading.
    if low.endswith("no such file or directory") or low.endswith("reason: success"):
        return "cannot read image (corrupt or truncated file?)"
    if re.search(r"fread got only|but received|unexpected end|premature end|truncat", low):
        return f"cannot read image (truncated file?): {reason}"
    if "unable to determine imageio reader" in low:
        return f"cannot read image: {reason} (unknown format or corrupt file)"
    return f"cannot read image: {reason}"


# --------------------------------------------------------------------------- #
# Format-specific checks (cheap; run before SimpleITK)
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _NiftiHeader:
    """What we need from a NIfTI-1/2 header to size and scan its voxel data."""

    version: int  # 1 or 2
    endian: str  # "<" or ">"
    datatype: int
    vox_offset: int
    nbytes: int  # voxel data bytes; -1 when unknown (pair file, odd header)

    @property
    def expected_size(self) -> int:
        """Uncompressed file size the header announces (-1: unknown)."""
        return -1 if self.nbytes < 0 else self.vox_offset + self.nbytes


def _parse_nifti_header(header: bytes) -> _NiftiHeader | None:
    """Parse a NIfTI-1 (348 bytes) or NIfTI-2 (540 bytes) header.

    ``None`` when the bytes are not a NIfTI header at all.  Both endiannesses
    are detected through ``sizeof_hdr``.  ``nbytes`` is -1 when the file cannot
    be sized exactly (header/image pair, invalid dims): SimpleITK decides then.
    """
    if len(header) < 4:
        return None
    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", header[:4])
        if sizeof_hdr == 348 and len(header) >= 348:
            version, single = 1, header[344:348] == b"n+1\x00"
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "hh", header[70:74])
            (vox_offset,) = struct.unpack(endian + "f", header[108:112])
        elif sizeof_hdr == 540 and len(header) >= 540:
            version, single = 2, header[4:8] == b"n+2\x00"
            datatype, bitpix = struct.unpack(endian + "hh", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            (vox_offset,) = struct.unpack(endian + "q", header[168:176])
        else:
            continue
        ndim = dims[0]
        shape = dims[1 : ndim + 1]
        ok = (
            single
            and 1 <= ndim <= 7
            and all(n > 0 for n in shape)
            and bitpix > 0
            and bitpix % 8 == 0
            and math.isfinite(vox_offset)
        )
        offset = max(int(vox_offset), sizeof_hdr) if math.isfinite(vox_offset) else sizeof_hdr
        nbytes = math.prod(shape) * (bitpix // 8) if ok else -1
        return _NiftiHeader(version, endian, datatype, offset, nbytes)
    return None


def _read_nifti_header(path: Path, shown: str, gzipped: bool) -> _NiftiHeader:
    try:
        if gzipped:
            with gzip.open(path, "rb") as fh:
                header = fh.read(540)
        else:
            with open(path, "rb") as fh:
                header = fh.read(540)
    except (EOFError, gzip.BadGzipFile, zlib.error):
        raise InputError(shown, "truncated or corrupt gzip stream (file is incomplete)") from None
    info = _parse_nifti_header(header)
    if info is None:
        raise InputError(shown, "cannot read image: not a NIfTI file (no NIfTI-1/NIfTI-2 header found)")
    return info


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _check_nifti(path: Path, shown: str, ext: str) -> tuple[_NiftiHeader, bool]:
    """Refuse a truncated NIfTI file; return its header and whether it is gzipped.

    SimpleITK (nifticlib) reads a truncated file without error, zero-filling
    the missing voxels, so this check is the only line of defence.
    """
    gzipped = _is_gzip(path)
    if gzipped and ext == ".nii":
        raise InputError(shown, "gzip-compressed file named '.nii'; rename it to '.nii.gz'")
    # (nifticlib does read a plain, uncompressed file named .nii.gz)
    info = _read_nifti_header(path, shown, gzipped)
    expected = info.expected_size
    if expected < 0:
        return info, gzipped
    if not gzipped:
        size = path.stat().st_size
        if size < expected:
            raise InputError(shown, f"truncated file: expected {expected} bytes, found {size}")
        return info, gzipped
    truncated = "truncated or corrupt gzip stream (file is incomplete)"
    size = path.stat().st_size
    if size < 18:  # gzip header (10) + trailer (8)
        raise InputError(shown, truncated)
    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        (isize,) = struct.unpack("<I", fh.read(4))
    if isize == expected % (1 << 32):
        return info, gzipped
    # ISIZE disagrees: a truncated stream (its last 4 bytes are compressed data),
    # a multi-member file (ISIZE of the last member only) or trailing bytes.
    # Decompress in chunks to know for sure.
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        raise InputError(shown, truncated) from None
    if total < expected:
        raise InputError(shown, f"truncated file: expected {expected} bytes of uncompressed data, found {total}")
    return info, gzipped


_NIFTI_FLOAT = {16: "f4", 64: "f8"}  # NIfTI datatype codes FLOAT32, FLOAT64


def _nifti_has_nonfinite(path: Path, info: _NiftiHeader, gzipped: bool) -> bool:
    """Scan the raw voxel data of a float NIfTI file for NaN/Inf.

    Needed because nifticlib silently replaces NaN and Inf by 0 when reading,
    so the array SimpleITK returns can never show them.  Streams the data in
    chunks (one extra pass over the file, only for float masks).
    """
    code = _NIFTI_FLOAT.get(info.datatype)
    if code is None or info.nbytes < 0:
        return False
    dtype = np.dtype(info.endian + code)
    step = (_CHUNK // dtype.itemsize) * dtype.itemsize
    remaining = info.nbytes
    opener = gzip.open if gzipped else open
    with opener(path, "rb") as fh:
        fh.seek(info.vox_offset)
        while remaining > 0:
            chunk = fh.read(min(step, remaining))
            if not chunk:
                break
            usable = len(chunk) - len(chunk) % dtype.itemsize
            if not np.isfinite(np.frombuffer(chunk[:usable], dtype)).all():
                return True
            remaining -= len(chunk)
    return False


_MET_SIZES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}  # MET_LONG / MET_ULONG are platform-dependent in old writers: not checked.


def _check_metaimage(path: Path, shown: str) -> None:
    """Check that a MetaImage header is present and its voxel data complete."""
    limit = 1 << 16
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(limit)
    fields: dict[str, str] = {}
    data_start = None
    offset = 0
    while offset < len(head):
        nl = head.find(b"\n", offset)
        end = len(head) if nl < 0 else nl
        if nl < 0 and len(head) == limit:
            break  # line cut by our read limit
        line = head[offset:end].decode("latin-1").strip()
        offset = end + 1
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key = key.strip().lower()
        fields[key] = value.strip()
        if key == "elementdatafile":
            data_start = min(offset, len(head))
            break
    if data_start is None:
        if size > limit:
            return  # giant header or binary junk: let SimpleITK decide
        if {"objecttype", "ndims", "dimsize"} & fields.keys():
            raise InputError(
                shown, "truncated file: MetaImage header ends before its ElementDataFile field"
            )
        raise InputError(shown, "cannot read image: not a MetaImage file (no ElementDataFile field in the header)")
    try:
        dims = [int(v) for v in fields.get("dimsize", "").split()]
        channels = int(fields.get("elementnumberofchannels", "1"))
        header_size = int(fields["headersize"]) if "headersize" in fields else None
        csize = int(fields["compresseddatasize"]) if "compresseddatasize" in fields else None
    except ValueError:
        return
    if fields.get("binarydata", "true").lower() != "true":
        return
    elsize = _MET_SIZES.get(fields.get("elementtype", "").upper())
    compressed = fields.get("compresseddata", "false").lower() == "true"
    data_name = fields["elementdatafile"]

    if data_name.upper() == "LOCAL":
        data_file, start, label = path, data_start, ""
        if header_size is not None:
            return
    else:
        if data_name.upper().startswith("LIST") or "%" in data_name or len(data_name.split()) > 1:
            return  # slice lists / patterns: not checked
        data_file = path.parent / data_name
        if not data_file.is_file():
            raise InputError(shown, f"data file '{data_name}' named in the header does not exist")
        if header_size is not None and header_size < 0:
            return
        start, label = header_size or 0, f" in data file '{data_name}'"
    have = data_file.stat().st_size - start
    if compressed:
        if csize is not None and have < csize:
            raise InputError(
                shown, f"truncated file: expected {csize} bytes of compressed voxel data{label}, found {max(have, 0)}"
            )
        return
    if elsize is None or not dims or any(n <= 0 for n in dims):
        return
    need = math.prod(dims) * elsize * channels
    if have < need:
        raise InputError(shown, f"truncated file: expected {need} bytes of voxel data{label}, found {max(have, 0)}")


def _check_png(path: Path, shown: str) -> int:
    """Return the PNG colour type from IHDR (refusing non-PNG and grey+alpha files)."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if head[:8] != _PNG_SIGNATURE:
        raise InputError(shown, "cannot read image: not a PNG file (bad signature)")
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise InputError(shown, "cannot read image: truncated or corrupt PNG header")
    colour_type = head[25]
    if colour_type == 4:
        raise InputError(shown, "grey+alpha PNG is not supported; save the mask as plain greyscale")
    # Walk the chunk list (lengths only, a few seeks) so that a cut file gets a
    # precise message instead of libpng's "Error while reading file".
    size = path.stat().st_size
    with open(path, "rb") as fh:
        pos = 8
        while True:
            fh.seek(pos)
            chunk_head = fh.read(8)
            if len(chunk_head) < 8:
                raise InputError(shown, f"truncated file: PNG ends at byte {size} before its IEND chunk")
            (length,) = struct.unpack(">I", chunk_head[:4])
            pos += 12 + length
            if chunk_head[4:] == b"IEND":
                break
            if pos > size:
                raise InputError(shown, f"truncated file: PNG ends at byte {size} before its IEND chunk")
    return colour_type


def _check_nrrd(path: Path, shown: str) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"NRRD":
        raise InputError(shown, "cannot read image: not a NRRD file (missing 'NRRD000x' magic)")


# --------------------------------------------------------------------------- #
# Reading
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Checked:
    """A file that passed the cheap checks, with what they learned about it."""

    path: Path
    shown: str
    ext: str
    png_colour_type: int | None = None
    nifti: _NiftiHeader | None = None
    gzipped: bool = False


def _open_checked(path: PathLike) -> _Checked:
    """Common refusals, then the format-specific checks chosen by the extension."""
    shown = os.fspath(path)
    p = Path(shown)
    if not p.exists():
        raise InputError(shown, "file does not exist")
    if p.is_dir():
        raise InputError(shown, "is a directory")
    ext = image_extension(p)
    if ext is None:
        raise InputError(shown, _unsupported_message(p))
    if not os.access(p, os.R_OK):
        raise InputError(shown, "permission denied")
    try:
        if p.stat().st_size == 0:
            raise InputError(shown, "empty file (0 bytes)")
        if ext in (".nii", ".nii.gz"):
            written = _split_name(p, ext)[1]
            if not (written.islower() or written.isupper()):
                raise InputError(
                    shown,
                    f"mixed-case extension '{written}' is refused by the NIfTI reader; "
                    f"rename the file to end in '{ext}'",
                )
            info, gzipped = _check_nifti(p, shown, ext)
            return _Checked(p, shown, ext, nifti=info, gzipped=gzipped)
        if ext in (".mha", ".mhd"):
            _check_metaimage(p, shown)
        elif ext in (".nrrd", ".nhdr"):
            _check_nrrd(p, shown)
        elif ext == ".png":
            return _Checked(p, shown, ext, png_colour_type=_check_png(p, shown))
    except OSError as exc:
        raise InputError(shown, f"cannot read file: {exc.strerror or exc}") from None
    return _Checked(p, shown, ext)


def _read_sitk(f: _Checked, allow_vector: bool) -> sitk.Image:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(f.path))
    reader.SetImageIO(_IMAGE_IO[f.ext])

    def failure(exc: RuntimeError) -> InputError:
        if f.nifti is not None and f.nifti.version == 2:
            return InputError(
                f.shown,
                "cannot read image: NIfTI-2 file, which this SimpleITK build cannot read "
                f"(SimpleITK {sitk.Version.VersionString()} reads NIfTI-1 only); convert it to NIfTI-1",
            )
        return InputError(f.shown, _read_failure(exc))

    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise failure(exc) from None
    dim = reader.GetDimension()
    comps = reader.GetNumberOfComponents()
    shape = tuple(reversed(reader.GetSize()))
    if dim > 3 or dim < 2:
        full = shape + ((comps,) if comps > 1 else ())
        raise InputError(f.shown, f"{dim}D image (shape {full}); expected a 2D or 3D scalar image")
    if comps > 1 and not allow_vector:
        ct = f.png_colour_type
        kind = f" ({_PNG_COLOUR_TYPES[ct]} PNG)" if ct in _PNG_COLOUR_TYPES else ""
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
    f = _open_checked(path)
    img = _read_sitk(f, allow_vector)
    array = sitk.GetArrayFromImage(img)
    if _has_nonfinite(f, array):
        raise InputError(f.shown, "image contains NaN or Inf values")
    return Image(array, _geometry_of(img), f.shown)


def _has_nonfinite(f: _Checked, array: np.ndarray) -> bool:
    """NaN/Inf in the array read, or (float NIfTI) in the file, where SimpleITK turned them into 0."""
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating)):
        return False
    if not np.isfinite(array).all():
        return True
    if f.nifti is None:
        return False
    try:
        return _nifti_has_nonfinite(f.path, f.nifti, f.gzipped)
    except (OSError, EOFError, zlib.error):
        return False  # the reader succeeded; do not invent an error


def _smallest_label_dtype(lo: int, hi: int) -> np.dtype | None:
    for dt in _LABEL_DTYPES:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return None


def _as_labels(array: np.ndarray, fail: Callable[[str], NoReturn]) -> np.ndarray:
    """Integer label array from ``array``; ``fail(problem)`` raises the caller's error.

    Integer arrays pass unchanged; floats must be finite and integer-valued
    (e.g. a label map saved as float32 by some pipeline) and are converted to
    the smallest fitting integer dtype.
    """
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if np.issubdtype(array.dtype, np.complexfloating):
        fail("complex-valued image; expected a label map")
    if not np.issubdtype(array.dtype, np.floating):
        fail(f"unsupported pixel type {array.dtype}; expected a label map")
    if not np.isfinite(array).all():
        fail("mask contains NaN or Inf values")
    if not np.array_equal(array, np.trunc(array)):
        fail("mask has non-integer values; expected a label map (threshold probability maps first)")
    if array.size == 0:
        return array.astype(np.uint8)
    dt = _smallest_label_dtype(int(array.min()), int(array.max()))
    if dt is None:
        fail("labels exceed the 64-bit integer range")
    return array.astype(dt)


def _collapse_channels(array: np.ndarray, shown: str, colour_type: int | None) -> np.ndarray:
    """Greyscale labels from an RGB(A) array whose colour channels are all equal."""
    comps = array.shape[-1]
    if colour_type in _PNG_COLOUR_TYPES:
        kind = f"{_PNG_COLOUR_TYPES[colour_type]} PNG"
    else:
        kind = f"vector image with {comps} components per voxel"
    if comps not in (3, 4):
        raise InputError(shown, f"{kind}; a mask must be a scalar (greyscale) label image")
    rgb = array[..., :3]
    if comps == 4:
        alpha = array[..., 3]
        if alpha.size and not np.all(alpha == alpha.flat[0]):
            raise InputError(shown, f"{kind} with a varying alpha channel; a mask must be a greyscale label image")
    grey = rgb[..., 0]
    if not (np.array_equal(grey, rgb[..., 1]) and np.array_equal(grey, rgb[..., 2])):
        hint = (
            " (SimpleITK expands palette indices to RGB colours, so the indices are lost)"
            if colour_type == 3
            else ""
        )
        raise InputError(
            shown, f"{kind} with differing channels{hint}; a mask must be a greyscale label image"
        )
    return np.ascontiguousarray(grey)


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
    f = _open_checked(path)
    shown = f.shown
    # Colour channels are tolerated in PNG only (greyscale masks saved as RGB by
    # drawing tools); a vector NIfTI/MHA/NRRD is never a label map.
    img = _read_sitk(f, f.ext == ".png")
    array = sitk.GetArrayFromImage(img)
    if img.GetNumberOfComponentsPerPixel() > 1:
        array = _collapse_channels(array, shown, f.png_colour_type)

    def fail(problem: str) -> NoReturn:
        raise InputError(shown, problem)

    if f.nifti is not None and _has_nonfinite(f, array):
        fail("mask contains NaN or Inf values (SimpleITK would have read them as 0)")
    return Image(_as_labels(array, fail), _geometry_of(img), shown)


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #


def _resolve_geometry(
    shown: str, array: np.ndarray, geometry: Geometry | None, reference: Image | None
) -> Geometry:
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
        raise OutputError(shown, f"cannot write image: {_short_reason(exc)}") from None
    produced = sorted(entry.name for entry in tmp.iterdir())
    if header not in produced:
        raise OutputError(shown, "cannot write image: SimpleITK produced no file")
    problem = _read_back_problem(tmp / header, expected)
    if problem is not None:
        raise OutputError(shown, f"cannot write image: {problem}")
    data_files = [name for name in produced if name != header]
    for name in data_files:
        if (parent / name).exists() and not overwrite:
            raise OutputError(shown, f"data file '{name}' {_OVERWRITE_HINT}")
    try:
        for name in data_files:
            existed = (parent / name).exists()
            os.replace(tmp / name, parent / name)
            if not existed:
                moved.append(parent / name)
        os.replace(tmp / header, dest)
    except OSError as exc:
        raise OutputError(shown, f"cannot write image: {exc.strerror or exc}") from None


def _read_back_problem(path: Path, expected: np.ndarray) -> str | None:
    """Why the file just written at ``path`` is not ``expected`` (``None``: it is, voxel for voxel)."""
    try:
        f = _open_checked(path)  # the structural checks: a truncated file is refused here
        back = sitk.GetArrayFromImage(_read_sitk(f, False))
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
    ext = image_extension(p)
    if ext is None:
        raise OutputError(shown, _unsupported_message(p))
    if array.ndim not in (2, 3):
        raise OutputError(shown, f"expected a 2D or 3D array; got shape {array.shape}")
    if array.size == 0:
        raise OutputError(shown, f"empty array (shape {array.shape})")
    if ext == ".png":
        if array.ndim == 3:
            raise OutputError(shown, f"PNG holds 2D images only; got a 3D array of shape {array.shape}")
        if array.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            raise OutputError(
                shown, f"PNG stores only uint8 or uint16 pixels; got {array.dtype} (use .nii.gz, .mha or .nrrd)"
            )
    stem, written_ext = _split_name(p, ext)
    if ext in (".nii", ".nii.gz") and not (written_ext.islower() or written_ext.isupper()):
        raise OutputError(
            shown, f"mixed-case extension '{written_ext}' cannot be read back by the NIfTI reader; use '{ext}'"
        )
    geometry = _resolve_geometry(shown, array, geometry, reference)
    if p.is_dir():
        raise OutputError(shown, "is a directory")
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputError(shown, _OVERWRITE_HINT)

    try:
        img = sitk.GetImageFromArray(array, isVector=False)
        img.SetSpacing(geometry.spacing)
        img.SetOrigin(geometry.origin)
        img.SetDirection(geometry.direction)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise OutputError(shown, f"cannot build image: {_short_reason(exc)}") from None

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
    return _write(path, arr, geometry, overwrite, reference, compress=ext == ".nii.gz")


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
    arr = _as_labels(arr, fail)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        dt = _smallest_label_dtype(lo, hi)
        if dt is not None and dt != arr.dtype:
            arr = arr.astype(dt)
        if image_extension(shown) == ".png" and arr.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            fail(
                f"PNG stores only uint8/uint16 labels; labels span [{lo}, {hi}] "
                "(use .nii.gz, .mha or .nrrd)"
            )
    return _write(path, arr, geometry, overwrite, reference, compress=True)
