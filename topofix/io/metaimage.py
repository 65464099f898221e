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


def check(f: Checked) -> Checked:
    """The format check of the table (:mod:`topofix.io.formats`); learns nothing the reader needs."""
    _check(f.path, f.shown)
    return f
