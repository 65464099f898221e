"""Builders of broken or unsuitable image files, one per refusal of the I/O layer.

Each builder writes a file under a folder and returns its path; the key is the
word the one-line error must contain. Shared by the I/O and CLI tests.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(rows: np.ndarray, colour_type: int, extra: bytes = b"", bit_depth: int = 8) -> bytes:
    """A minimal PNG built by hand (no filter), ``rows`` of shape (h, w[, channels]) uint8.

    Built by hand because writers (SimpleITK, PIL) will not produce every colour
    type we must refuse (palette, grey+alpha, RGB with differing channels).
    """
    h, w = rows.shape[:2]
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + np.ascontiguousarray(r).tobytes() for r in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + extra
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def missing(folder: Path) -> Path:
    return folder / "missing.nii.gz"


def garbage_nifti(folder: Path) -> Path:
    path = folder / "garbage.nii.gz"
    path.write_bytes(b"this is not an image" * 10)
    return path


def truncated_nifti_gz(folder: Path) -> Path:
    path = folder / "truncated.nii.gz"
    rng = np.random.default_rng(0)
    sitk.WriteImage(sitk.GetImageFromArray(rng.integers(0, 3, (16, 32, 32)).astype(np.uint8)), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


def four_d(folder: Path) -> Path:
    path = folder / "four_d.nii"
    image = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((3, 4, 5), np.uint8))] * 2)
    sitk.WriteImage(image, str(path))
    return path


def vector(folder: Path) -> Path:
    path = folder / "vector.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 3), np.float32), isVector=True), str(path))
    return path


def rgb_png(folder: Path) -> Path:
    path = folder / "rgb.png"
    rows = np.tile(np.array([1, 2, 3], np.uint8), (4, 4, 1))  # channels differ
    path.write_bytes(png_bytes(rows, 2))
    return path


def nan_mask(folder: Path) -> Path:
    path = folder / "nan.nii"
    arr = np.zeros((4, 4), np.float32)
    arr[1, 1] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    return path


BAD_FILES = {
    "does not exist": missing,
    "cannot read": garbage_nifti,
    "truncated": truncated_nifti_gz,
    "4D": four_d,
    "vector": vector,
    "RGB": rgb_png,
    "NaN": nan_mask,
}
