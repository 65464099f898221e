"""PNG header check, and the colour types SimpleITK's PNG reader handles badly.

What SimpleITK 2.5.7 does with PNG: a palette PNG is expanded to RGB (the
indices are lost); grey+alpha cannot be read at all; low bit-depth grey (1, 2,
4 bits) is rescaled to 0..255 by libpng (a 1-bit mask reads as 0/255).  Only
2D ``uint8``/``uint16``; spacing survives (``sCAL`` chunk, ~5 significant
digits), origin and direction are dropped.  The colour type found here lets
messages say "RGB PNG" rather than "vector image".
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

from topofix.errors import InputError
from topofix.io.checked import Checked

__all__ = ["COLOUR_TYPES", "SIGNATURE", "check"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}


def _colour_type(path: Path, shown: str) -> int:
    """Return the PNG colour type from IHDR (refusing non-PNG and grey+alpha files)."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if head[:8] != SIGNATURE:
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


def check(f: Checked) -> Checked:
    """The format check of the table (:mod:`topofix.io.formats`): ``f`` with its colour type."""
    return dataclasses.replace(f, png_colour_type=_colour_type(f.path, f.shown))
