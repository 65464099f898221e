"""Topological priors: which structure must have which Betti numbers.

One parser for every command (``check``, ``correct``, ``evaluate``) so that a
prior means the same thing everywhere. The syntax follows the multi-class priors
of Byrne et al. (IEEE TMI 2022) on cardiac short-axis slices:

``--betti 1,1,0``
    Betti numbers (beta0, beta1[, beta2]) of the foreground (any non-zero label),
    or of ``--label L`` when given. For 2D masks a third number must be 0.
``--label 2`` / ``--label 1+2``
    The label (or union of labels) that ``--betti`` applies to. Alone, without
    ``--betti``, it only reports that structure's Betti numbers.
``--prior 2=1,1 --prior 1+2=1,0`` (repeatable)
    A prior per label or union of labels: ``LABELS=BETTI``. Unions are written
    with ``+``; for probability maps the union's probability is the sum of the
    channels (used by the losses), for label maps it is the set of voxels with
    any of the labels.

Example, ACDC labels (1 RV, 2 MYO, 3 LV)::

    --prior 1=1,0 --prior 2=1,1 --prior 3=1,0 \\
    --prior 1+2=1,1 --prior 1+3=2,0 --prior 2+3=1,0
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from topofix.errors import PriorError

_INT = re.compile(r"^\s*-?\d+\s*$")


@dataclass(frozen=True)
class Prior:
    """A structure (labels) and the Betti numbers it must have.

    ``labels=None`` means any non-zero voxel; ``betti=None`` means "report only".
    ``betti`` holds 1 to 3 numbers; missing higher numbers are read as 0.
    """

    betti: tuple[int, ...] | None = None
    labels: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        """Short name used in tables and reports: ``2``, ``1+2`` or ``foreground``."""
        if self.labels is None:
            return "foreground"
        return "+".join(str(label) for label in self.labels)

    @property
    def spec(self) -> str:
        """The prior written back in ``--prior`` syntax (``2=1,1``)."""
        betti = "" if self.betti is None else ",".join(map(str, self.betti))
        return f"{self.name}={betti}" if betti else self.name

    def select(self, labels: np.ndarray) -> np.ndarray:
        """Boolean mask of the voxels that belong to this structure."""
        if self.labels is None:
            return labels != 0
        if len(self.labels) == 1:
            return labels == self.labels[0]
        return np.isin(labels, self.labels)

    def expected(self, ndim: int) -> tuple[int, ...] | None:
        """The prior as exactly ``ndim`` Betti numbers (raise if impossible)."""
        if self.betti is None:
            return None
        if ndim not in (2, 3):
            raise PriorError(f"Betti priors apply to 2D or 3D masks, not {ndim}D")
        values = tuple(self.betti) + (0,) * (ndim - len(self.betti))
        if any(values[ndim:]):
            raise PriorError(
                f"prior {self.spec} asks for beta2={values[2]} but a 2D mask has no cavities "
                "(give two numbers, or 0 as the third)"
            )
        return values[:ndim]

    def is_met(self, betti: Sequence[int]) -> bool:
        """True when ``betti`` equals the prior (checked in ``len(betti)`` dimensions)."""
        expected = self.expected(len(betti))
        return expected is None or tuple(betti) == expected

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "labels": None if self.labels is None else list(self.labels),
            "betti": None if self.betti is None else list(self.betti),
        }


def parse_betti(spec: str) -> tuple[int, ...]:
    """Parse ``"1,1,0"`` into ``(1, 1, 0)``: one to three non-negative integers."""
    parts = str(spec).split(",")
    if not 1 <= len(parts) <= 3 or not all(_INT.match(p) for p in parts):
        raise PriorError(
            f"malformed Betti numbers {spec!r}: expected 1 to 3 comma-separated integers "
            "such as 1,1 (one component, one loop) or 1,0,0"
        )
    values = tuple(int(p) for p in parts)
    if any(v < 0 for v in values):
        raise PriorError(f"malformed Betti numbers {spec!r}: Betti numbers cannot be negative")
    return values


def parse_labels(spec: str | int) -> tuple[int, ...]:
    """Parse a label or a union of labels: ``"2"`` or ``"1+2"``."""
    parts = str(spec).split("+")
    if not all(_INT.match(p) for p in parts):
        raise PriorError(
            f"malformed label set {spec!r}: expected an integer label or a union such as 1+2"
        )
    labels = tuple(int(p) for p in parts)
    if 0 in labels:
        raise PriorError(f"malformed label set {spec!r}: label 0 is the background")
    if len(set(labels)) != len(labels):
        raise PriorError(f"malformed label set {spec!r}: a label is repeated")
    return labels


def parse_prior(spec: str) -> Prior:
    """Parse ``LABELS=BETTI`` (``"2=1,1"``, ``"1+2=1,0"``) into a :class:`Prior`."""
    if not isinstance(spec, str) or spec.count("=") != 1:
        raise PriorError(
            f"malformed prior {spec!r}: expected LABELS=BETTI such as 2=1,1 or 1+2=1,0"
        )
    labels, betti = spec.split("=")
    return Prior(betti=parse_betti(betti), labels=parse_labels(labels))


def build_priors(
    betti: str | Sequence[int] | None = None,
    label: str | int | None = None,
    priors: Iterable[str | Prior] = (),
) -> list[Prior]:
    """The list of priors described by the shared CLI options.

    ``betti``/``label`` give one prior (on ``label``, or on the foreground);
    each item of ``priors`` gives one more. With nothing at all, one report-only
    prior on the foreground is returned, so that callers always have a structure
    to measure.
    """
    result: list[Prior] = []
    if betti is not None or label is not None:
        if betti is None:
            parsed_betti = None
        elif isinstance(betti, str):
            parsed_betti = parse_betti(betti)
        else:
            parsed_betti = parse_betti(",".join(str(int(b)) for b in betti))
        parsed_labels = None if label is None else parse_labels(label)
        result.append(Prior(betti=parsed_betti, labels=parsed_labels))
    for item in priors:
        result.append(item if isinstance(item, Prior) else parse_prior(item))
    names = [p.name for p in result]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise PriorError(f"more than one prior for {', '.join(duplicated)}")
    return result or [Prior()]
