"""NIfTI-1/2 header checks: the only defence against truncated and NaN-laundered NIfTI files.

Two traps of SimpleITK's NIfTI reader (nifticlib), measured with SimpleITK 2.5.7:

* a truncated ``.nii.gz`` or ``.nii`` is read **without any error**, the missing
  voxels set to 0.  :func:`check` compares the size announced by the header
  with the gzip ``ISIZE`` trailer (or the file size), and falls back to a full
  streaming decompression when they disagree;
* NaN and Inf in a float file are replaced by 0, so the array never shows them.
  :func:`has_nonfinite` scans the raw voxel data instead.

This SimpleITK build reads NIfTI-1 only; a NIfTI-2 header is still parsed here
(truncation is detected from its 540-byte header) so the reader can say why it fails.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topofix.errors import InputError
from topofix.io.checked import Checked

__all__ = ["CHUNK", "NiftiHeader", "check", "has_nonfinite", "parse_header"]

CHUNK = 1 << 20  # streaming decompression chunk (bytes)


@dataclass(frozen=True)
class NiftiHeader:
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


def parse_header(header: bytes) -> NiftiHeader | None:
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
        return NiftiHeader(version, endian, datatype, offset, nbytes)
    return None


def _read_nifti_header(path: Path, shown: str, gzipped: bool) -> NiftiHeader:
    try:
        if gzipped:
            with gzip.open(path, "rb") as fh:
                header = fh.read(540)
        else:
            with open(path, "rb") as fh:
                header = fh.read(540)
    except (EOFError, gzip.BadGzipFile, zlib.error):
        raise InputError(shown, "truncated or corrupt gzip stream (file is incomplete)") from None
    info = parse_header(header)
    if info is None:
        raise InputError(shown, "cannot read image: not a NIfTI file (no NIfTI-1/NIfTI-2 header found)")
    return info


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _check(path: Path, shown: str, ext: str) -> tuple[NiftiHeader, bool]:
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
            while chunk := fh.read(CHUNK):
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        raise InputError(shown, truncated) from None
    if total < expected:
        raise InputError(shown, f"truncated file: expected {expected} bytes of uncompressed data, found {total}")
    return info, gzipped


_NIFTI_FLOAT = {16: "f4", 64: "f8"}  # NIfTI datatype codes FLOAT32, FLOAT64


def _raw_has_nonfinite(path: Path, info: NiftiHeader, gzipped: bool) -> bool:
    """Scan the raw voxel data of a float NIfTI file for NaN/Inf.

    Needed because nifticlib silently replaces NaN and Inf by 0 when reading,
    so the array SimpleITK returns can never show them.  Streams the data in
    chunks (one extra pass over the file, only for float masks).
    """
    code = _NIFTI_FLOAT.get(info.datatype)
    if code is None or info.nbytes < 0:
        return False
    dtype = np.dtype(info.endian + code)
    step = (CHUNK // dtype.itemsize) * dtype.itemsize
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


def check(f: Checked) -> Checked:
    """The format check of the table (:mod:`topofix.io.formats`): ``f`` with its header and compression."""
    info, gzipped = _check(f.path, f.shown, f.ext)
    return dataclasses.replace(f, nifti=info, gzipped=gzipped)


def has_nonfinite(f: Checked) -> bool:
    """NaN/Inf in the voxel data of a float NIfTI file (``False`` for other files and types).

    The reader already succeeded when this runs, so a read error here is not
    turned into a refusal ("nothing invented"): it gives ``False``.
    """
    if f.nifti is None:
        return False
    try:
        return _raw_has_nonfinite(f.path, f.nifti, f.gzipped)
    except (OSError, EOFError, zlib.error):
        return False
