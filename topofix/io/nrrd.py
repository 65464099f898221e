"""NRRD (``.nrrd`` / ``.nhdr``) header check: the magic only (SimpleITK's messages are clear enough).

NRRD keeps the origin exactly; spacing and direction are stored as their
product (``space directions``), so a rotated direction may come back off by ~1 ulp.
"""

from __future__ import annotations

from topofix.errors import InputError
from topofix.io.checked import Checked

__all__ = ["check"]


def check(f: Checked) -> Checked:
    """The format check of the table (:mod:`topofix.io.formats`): refuse a file without the NRRD magic."""
    with open(f.path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"NRRD":
        raise InputError(f.shown, "cannot read image: not a NRRD file (missing 'NRRD000x' magic)")
    return f
