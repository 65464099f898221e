"""Where voxels are in space: :class:`Geometry`, :class:`Image`, and ITK <-> numpy axis order.

Arrays are in **numpy order**, ``(y, x)`` in 2D and ``(z, y, x)`` in 3D, exactly as
:func:`SimpleITK.GetArrayFromImage` returns them.  :class:`Geometry` is in **ITK order**,
``(x, y[, z])``: ``geometry.spacing[0]`` is the spacing along the *last* array axis.  The
two orders are each other's reverse; :func:`numpy_order` is the one place that says so,
so that no caller reverses a spacing or a size by hand (and none forgets to).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["Geometry", "Image", "geometry_of", "numpy_order"]

T = TypeVar("T")


def numpy_order(itk_values: Iterable[T]) -> tuple[T, ...]:
    """ITK-order values (``GetSpacing()``, ``GetSize()``, :attr:`Geometry.spacing`) per numpy array axis.

    >>> numpy_order((0.5, 0.7, 2.0))  # spacing x, y, z -> per axis of a (z, y, x) array
    (2.0, 0.7, 0.5)
    """
    return tuple(reversed(tuple(itk_values)))


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
        *last* numpy axis (:attr:`array_spacing` gives it per array axis).
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

    @property
    def array_spacing(self) -> tuple[float, ...]:
        """Spacing per numpy array axis (``(z, y, x)`` order), as scipy's ``sampling`` wants it."""
        return numpy_order(self.spacing)

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


def geometry_of(img: sitk.Image) -> Geometry:
    """The :class:`Geometry` of a SimpleITK image, exactly as SimpleITK reports it."""
    return Geometry(tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()))
