"""MetaImage (``.mha`` / ``.mhd``) header check: refuse a truncated file before SimpleITK misreports it.

A truncated ``.mha`` makes SimpleITK (MetaIO) say "No such file or directory",
the OS error of its last failed call.  The header is plain text, so the voxel
data size it announces is checked here against the file (or its data file).
MetaImage keeps geometry exactly (``%.17g`` text).
"""

from __future__ import annotations

import math
from pathlib import Path

from topofix.errors import InputError
from topofix.io.checked import Checked

__all__ = ["check"]

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


def _check(path: Path, shown: str) -> None:
    """Check that a MetaImage header is present and its voxel data complete."""
    limit = 1 << 16
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(limit)
    fields, data_start = _header_fields(head, limit)
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
    located = _data_location(path, shown, fields["elementdatafile"], data_start, header_size)
    if located is None:
        return
    data_file, start, label = located
    have = data_file.stat().st_size - start
    if fields.get("compresseddata", "false").lower() == "true":
        if csize is not None and have < csize:
            raise InputError(
                shown, f"truncated file: expected {csize} bytes of compressed voxel data{label}, found {max(have, 0)}"
            )
        return
    elsize = _MET_SIZES.get(fields.get("elementtype", "").upper())
    if elsize is None or not dims or any(n <= 0 for n in dims):
        return
    need = math.prod(dims) * elsize * channels
    if have < need:
        raise InputError(shown, f"truncated file: expected {need} bytes of voxel data{label}, found {max(have, 0)}")


def _header_fields(head: bytes, limit: int) -> tuple[dict[str, str], int | None]:
    """The header's ``key = value`` fields (keys lower-case) up to ``ElementDataFile``, and the offset
    where the voxel data of a ``LOCAL`` file starts (``None``: no ``ElementDataFile`` in ``head``)."""
    fields: dict[str, str] = {}
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
            return fields, min(offset, len(head))
    return fields, None


def _data_location(path: Path, shown: str, data_name: str, data_start: int,
                   header_size: int | None) -> tuple[Path, int, str] | None:
    """``(file, offset, label for messages)`` of the voxel data; ``None`` where it is not checked
    (slice lists, patterns, a ``HeaderSize`` to skip in a LOCAL file, ``HeaderSize = -1``)."""
    if data_name.upper() == "LOCAL":
        return None if header_size is not None else (path, data_start, "")
    if data_name.upper().startswith("LIST") or "%" in data_name or len(data_name.split()) > 1:
        return None  # slice lists / patterns: not checked
    data_file = path.parent / data_name
    if not data_file.is_file():
        raise InputError(shown, f"data file '{data_name}' named in the header does not exist")
    if header_size is not None and header_size < 0:
        return None
    return data_file, header_size or 0, f" in data file '{data_name}'"


def check(f: Checked) -> Checked:
    """The format check of the table (:mod:`topofix.io.formats`); learns nothing the reader needs."""
    _check(f.path, f.shown)
    return f
