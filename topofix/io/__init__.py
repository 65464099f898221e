"""Image I/O for topofix: read and write masks and images, refuse bad files early.

Everything that reaches the topology code goes through :func:`read_mask` /
:func:`read_image`, and everything written goes through :func:`write_mask` /
:func:`write_image`.  Keeping I/O in one place lets us guarantee two things the
rest of the package relies on:

* a file that is missing, corrupt, truncated, 4D, multi-channel or not a label
  map is refused with a **one-line** :class:`~topofix.errors.InputError` naming
  the file and the problem (never SimpleITK's multi-line C++ traceback, and
  never a silently wrong mask);
* an output is written **atomically** and never silently overwrites a file.

Where things are (one concept per module)
-----------------------------------------
* :mod:`~topofix.io.formats`: the table of formats (extensions, ITK reader,
  structural check, what each can hold).  A new format is one entry there plus
  its check module and tests (see CONTRIBUTING.md).
* :mod:`~topofix.io.nifti`, :mod:`~topofix.io.metaimage`, :mod:`~topofix.io.png`,
  :mod:`~topofix.io.nrrd`: each format's header check, and the traps of
  SimpleITK's reader it guards against (truncated NIfTI read as zeros, NaN read
  as 0, palette PNG expanded to RGB...).
* :mod:`~topofix.io.geometry`: :class:`Geometry`, :class:`Image`, and the
  ITK <-> numpy axis order (:func:`~topofix.io.geometry.numpy_order`).
* :mod:`~topofix.io.read`, :mod:`~topofix.io.write`: reading, writing with
  read-back verification; :mod:`~topofix.io.labels`: what a label map is;
  :mod:`~topofix.io.sitk_errors`: SimpleITK's messages cut to one line.

Axis convention
---------------
Arrays are in **numpy order**, ``(y, x)`` in 2D and ``(z, y, x)`` in 3D, exactly
as :func:`SimpleITK.GetArrayFromImage` returns them.  :class:`Geometry` is in
**ITK order**, ``(x, y[, z])``: ``geometry.spacing[0]`` is the spacing along the
*last* array axis (``geometry.array_spacing`` is the spacing per array axis).
``direction`` is ITK's direction cosine matrix flattened row-major (``d*d``
values), ``origin`` the physical position of voxel index 0.  This is the
convention of SimpleITK, which keeps files written here readable by every
ITK-based tool (3D Slicer, ITK-SNAP, nnU-Net...).

Formats
-------
``.nii.gz``, ``.nii`` (NIfTI-1), ``.mha``/``.mhd`` (MetaImage), ``.nrrd``/``.nhdr``
(NRRD) and ``.png`` (2D only).  What each keeps (measured with SimpleITK 2.5.7 /
ITK 5.4): MetaImage geometry exactly; NRRD the origin exactly, spacing and
direction ~1 ulp; NIfTI spacing, origin and direction in float32; PNG only 2D
``uint8``/``uint16`` and the spacing (origin and direction are dropped).
"""

from __future__ import annotations

from topofix.io.checked import PathLike
from topofix.io.formats import SUPPORTED_EXTENSIONS, image_extension, is_supported_image
from topofix.io.geometry import Geometry, Image
from topofix.io.read import read_image, read_mask
from topofix.io.write import verify_image_file, write_image, write_mask

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "Geometry",
    "Image",
    "PathLike",
    "image_extension",
    "is_supported_image",
    "read_image",
    "read_mask",
    "verify_image_file",
    "write_image",
    "write_mask",
]

