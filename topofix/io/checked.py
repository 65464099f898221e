""":class:`Checked`: a file that passed the cheap structural checks, and what they learned.

The format checks (:mod:`topofix.io.nifti`, :mod:`~topofix.io.metaimage`,
:mod:`~topofix.io.png`, :mod:`~topofix.io.nrrd`) each take a :class:`Checked`
and return it with their findings filled in, so that the reader can use them
(the PNG colour type for messages, the NIfTI header to scan float voxels for
NaN) without parsing the header twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from topofix.io.nifti import NiftiHeader

__all__ = ["Checked", "PathLike"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Checked:
    """A file that passed the cheap checks, with what they learned about it."""

    path: Path
    shown: str  #: the path as the user gave it, for messages
    ext: str  #: supported extension, lower case
    png_colour_type: int | None = None
    nifti: NiftiHeader | None = None
    gzipped: bool = False
