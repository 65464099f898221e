"""The vocabularies of topofix's options, one ``str`` Enum per option, for the library and the CLI.

Why one module: ``--connectivity full``, ``connectivity="full"`` and the
``"full"`` written in a JSON report are the same word; the library validates
it, Typer offers it as a choice, and both read it from here, so a new value
(or a renamed one) cannot reach one and not the other.

Every member *is* its value (``Connectivity.full == "full"``, a ``str``), so
library functions take either the member or the plain string, and ``str()``,
f-strings and JSON give the plain value. Importing this module imports only
:mod:`enum`.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A ``str`` Enum whose ``str()`` and ``format()`` are its value (as ``enum.StrEnum``, Python 3.11+)."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The accepted words, in declaration order."""
        return tuple(member.value for member in cls)


class Connectivity(Choice):
    """``--connectivity``: which voxels touch (see :mod:`topofix.topology.connectivity`)."""

    full = "full"
    """Foreground 8-connected (2D) / 26 (3D), background 4 / 6: the default, as keep-largest-component."""
    face = "face"
    """Foreground 4 / 6, background 8 / 26."""


class SliceAxis(Choice):
    """``--per-slice``: the image axis a 3D stack is cut along (names as in ITK-SNAP/SimpleITK)."""

    x = "x"
    y = "y"
    z = "z"

    @property
    def axis(self) -> int:
        """The numpy axis of a ``(z, y, x)`` array (SimpleITK's ``GetArrayFromImage`` order)."""
        return {"x": 2, "y": 1, "z": 0}[self.value]


class EmptyPolicy(Choice):
    """``check --empty``: what a slice without the structure is."""

    skip = "skip"
    """Reported as empty, not a failure (slices above the base, below the apex)."""
    fail = "fail"
    """A failure of the prior."""


class Normalize(Choice):
    """``--normalize``: the intensity normalisation the network was trained with."""

    zscore = "zscore"
    percentile = "percentile"
    minmax = "minmax"
    none = "none"


class Activation(Choice):
    """``--activation``: how the network's outputs become probabilities."""

    auto = "auto"
    sigmoid = "sigmoid"
    softmax = "softmax"
    none = "none"


class Device(Choice):
    """``--device``. The library also takes ``"cuda:N"`` and ``torch.device`` objects."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


__all__ = ["Activation", "Choice", "Connectivity", "Device", "EmptyPolicy", "Normalize", "SliceAxis"]


class OutputFormat(Choice):
    """``--output-format`` (predict, correct, repair): the format masks are written in (:mod:`topofix.mask_format`)."""

    auto = "auto"
    """Each mask in its input's format (a DICOM series' as NIfTI)."""
    nifti = "nifti"
    """Every mask as ``.nii.gz``."""
    dicom_seg = "dicom-seg"
    """A DICOM-SEG per DICOM series, referencing it."""


class LossName(Choice):
    """``correct --loss``: the topological objective (:func:`topofix.losses.make_topology_loss`)."""

    squared = "squared"
    """Clough et al.: squared bar lengths (the default of the paper)."""
    linear = "linear"
    """Byrne et al.: bar lengths."""
    mixed = "mixed"
    """Squared near the target, linear far from it."""
    dense = "dense"
    """Every pixel that must change for a bar to be born or die (critical sets)."""
