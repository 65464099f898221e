"""Topological priors: which structure must have which Betti numbers.

One parser for every command (``check``, ``correct``, ``evaluate``) so that a
prior means the same thing everywhere. The syntax follows the multi-class priors
of Byrne et al. (IEEE TMI 2022) on cardiac short-axis slices:

``--betti 1,1,0``
    Betti numbers (beta0, beta1[, beta2]) of the foreground (any non-zero label),
    or of ``--label L`` when given. For 2D masks a third number must be 0.
    Two or three numbers: ``--betti 1`` is refused because it reads both as
    "one solid component" (1,0) and as "one component, any loops"; write
    ``1,0``.  A lone ``0`` is allowed (absent: no component has no loop
    either), mostly as an alternative (``1,1|0``).
``--label 2`` / ``--label 1+2``
    The label (or union of labels) that ``--betti`` applies to. Alone, without
    ``--betti``, it only reports that structure's Betti numbers.
``--prior 2=1,1 --prior 1+2=1,0`` (repeatable)
    A prior per label or union of labels: ``LABELS=BETTI``. Unions are written
    with ``+``; for probability maps the union's probability is the sum of the
    channels (used by the losses), for label maps it is the set of voxels with
    any of the labels.
``--prior 2=1,1|0,0`` / ``--betti 1,1|0,0``
    Alternatives, separated by ``|``: the structure meets the prior when any
    of them holds. ``2=1,1|0,0`` reads "label 2 is a ring, or absent" (e.g.
    short-axis slices above the base or below the apex). Missing numbers are
    0 (a lone ``0`` is absent), so ``1,1|0`` is the same as ``1,1|0,0``; an
    alternative may not be repeated.

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

    ``alternatives`` lists every acceptable set of Betti numbers (``--prior
    2=1,1|0,0``: a ring, or absent); the prior is met when any of them holds.
    ``betti`` is always the first alternative, so ``Prior(betti=(1, 1))`` is a
    prior with one alternative and ``Prior(alternatives=((1, 1), (0, 0)))`` has
    ``betti == (1, 1)``. Giving both with ``betti`` other than the first
    alternative is an error.
    """

    betti: tuple[int, ...] | None = None
    labels: tuple[int, ...] | None = None
    alternatives: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        betti = None if self.betti is None else tuple(int(b) for b in self.betti)
        alternatives = tuple(tuple(int(b) for b in alt) for alt in self.alternatives)
        if not alternatives:
            alternatives = () if betti is None else (betti,)
        elif betti is None:
            betti = alternatives[0]
        elif betti != alternatives[0]:
            raise PriorError(
                f"Prior(betti={betti}, alternatives={alternatives}): betti must be the first "
                "alternative (give alternatives alone)"
            )
        object.__setattr__(self, "betti", betti)
        object.__setattr__(self, "alternatives", alternatives)

    @property
    def name(self) -> str:
        """Short name used in tables and reports: ``2``, ``1+2`` or ``foreground``."""
        if self.labels is None:
            return "foreground"
        return "+".join(str(label) for label in self.labels)

    @property
    def betti_spec(self) -> str:
        """The Betti numbers in ``--betti`` syntax: ``1,1`` or ``1,1|0,0`` ('' when report-only)."""
        return "|".join(",".join(map(str, alt)) for alt in self.alternatives)

    @property
    def spec(self) -> str:
        """The prior written back in ``--prior`` syntax (``2=1,1``, ``2=1,1|0,0``)."""
        betti = self.betti_spec
        return f"{self.name}={betti}" if betti else self.name

    @property
    def allows_absent(self) -> bool:
        """True when some alternative is all zeros (the structure may be absent)."""
        return any(not any(alt) for alt in self.alternatives)

    def select(self, labels: np.ndarray) -> np.ndarray:
        """Boolean mask of the voxels that belong to this structure."""
        if self.labels is None:
            return labels != 0
        if len(self.labels) == 1:
            return labels == self.labels[0]
        return np.isin(labels, self.labels)

    def _pad(self, alternative: tuple[int, ...], ndim: int) -> tuple[int, ...]:
        if ndim not in (2, 3):
            raise PriorError(f"Betti priors apply to 2D or 3D masks, not {ndim}D")
        values = tuple(alternative) + (0,) * (ndim - len(alternative))
        if any(values[ndim:]):
            shown = ",".join(map(str, alternative))
            which = f"prior {self.spec}" if len(self.alternatives) == 1 else f"alternative {shown} of prior {self.spec}"
            raise PriorError(
                f"{which} asks for beta2={values[2]} but a 2D mask has no cavities "
                "(give two numbers, or 0 as the third)"
            )
        return values[:ndim]

    def expected(self, ndim: int) -> tuple[int, ...] | None:
        """The first alternative as exactly ``ndim`` Betti numbers (raise if impossible)."""
        if self.betti is None:
            return None
        return self._pad(self.betti, ndim)

    def options(self, ndim: int) -> list[tuple[int, ...]]:
        """Every alternative as exactly ``ndim`` Betti numbers ([] when report-only).

        Raises :class:`PriorError` if any alternative is impossible in ``ndim``
        dimensions (beta2 != 0 on a 2D mask).
        """
        return [self._pad(alt, ndim) for alt in self.alternatives]

    def error(self, betti: Sequence[int]) -> int:
        """Distance to the prior: min over alternatives of sum |b_k - e_k| (0 when met or report-only)."""
        options = self.options(len(betti))
        if not options:
            return 0
        return min(_l1(betti, option) for option in options)

    def nearest(self, betti: Sequence[int]) -> tuple[int, ...] | None:
        """The alternative closest to ``betti`` (smallest :meth:`error`; ties: the first listed),
        as ``len(betti)`` numbers; None when report-only."""
        options = self.options(len(betti))
        if not options:
            return None
        return min(options, key=lambda option: _l1(betti, option))  # min keeps the first of ties

    def is_met(self, betti: Sequence[int]) -> bool:
        """True when ``betti`` equals some alternative (checked in ``len(betti)`` dimensions)."""
        options = self.options(len(betti))
        return not options or tuple(betti) in options

    def narrowed(self, alternative: Sequence[int]) -> Prior:
        """The same structure with ``alternative`` as its only alternative.

        ``alternative`` must be one of the alternatives, possibly padded with
        zeros (as :meth:`nearest` returns it); the result keeps it as listed.
        This is what the correction gives the loss and the repair once it has
        picked the alternative to aim for.
        """
        wanted = _strip(tuple(int(b) for b in alternative))
        for alt in self.alternatives:
            if _strip(alt) == wanted:
                return Prior(betti=alt, labels=self.labels)
        raise PriorError(
            f"{','.join(map(str, alternative))} is not an alternative of prior {self.spec}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "labels": None if self.labels is None else list(self.labels),
            "betti": None if self.betti is None else list(self.betti),
            "alternatives": None if self.betti is None else [list(alt) for alt in self.alternatives],
        }


def _l1(betti: Sequence[int], expected: Sequence[int]) -> int:
    return sum(abs(int(b) - int(e)) for b, e in zip(betti, expected))


def _strip(values: tuple[int, ...]) -> tuple[int, ...]:
    """Trailing zeros removed: ``(1, 1, 0)`` and ``(1, 1)`` are the same Betti numbers."""
    end = len(values)
    while end and values[end - 1] == 0:
        end -= 1
    return values[:end]


def parse_betti(spec: str) -> tuple[int, ...]:
    """Parse ``"1,1,0"`` into ``(1, 1, 0)``: two or three non-negative integers (B0,B1[,B2]),
    or a lone ``"0"`` (absent).  One non-zero number is refused: ``1`` would silently
    mean ``1,0`` (no loop) to a user who may have meant "one component"."""
    parts = str(spec).split(",")
    if not 1 <= len(parts) <= 3 or not all(_INT.match(p) for p in parts):
        raise PriorError(
            f"malformed Betti numbers {spec!r}: expected B0,B1 or B0,B1,B2, comma-separated integers "
            "such as 1,1 (one component, one loop) or 1,0,0"
        )
    values = tuple(int(p) for p in parts)
    if any(v < 0 for v in values):
        raise PriorError(f"malformed Betti numbers {spec!r}: Betti numbers cannot be negative")
    if len(values) == 1 and values[0] != 0:
        raise PriorError(
            f"malformed Betti numbers {spec!r}: give at least B0,B1 (e.g. {values[0]},0 for "
            f"{values[0]} solid component(s), {values[0]},1 with one loop); only 0 (absent) stands alone"
        )
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


def parse_alternatives(spec: str) -> tuple[tuple[int, ...], ...]:
    """Parse ``"1,1|0,0"`` into ``((1, 1), (0, 0))``: one or more Betti numbers separated by ``|``.

    Raises :class:`PriorError` (one line, naming the bad part) for an empty or
    malformed alternative, or one given twice (``1,1|1,1,0``: missing numbers are 0).
    """
    parts = str(spec).split("|")
    alternatives: list[tuple[int, ...]] = []
    for number, part in enumerate(parts, 1):
        if len(parts) > 1 and not part.strip():
            raise PriorError(
                f"malformed Betti numbers {spec!r}: alternative {number} of {len(parts)} is empty "
                "(write alternatives as 1,1|0,0)"
            )
        values = parse_betti(part)
        for earlier in alternatives:
            if _strip(earlier) == _strip(values):
                raise PriorError(
                    f"malformed Betti numbers {spec!r}: alternative {part.strip()!r} repeats "
                    f"{','.join(map(str, earlier))!r} (missing numbers are 0)"
                )
        alternatives.append(values)
    return tuple(alternatives)


def parse_prior(spec: str) -> Prior:
    """Parse ``LABELS=BETTI`` (``"2=1,1"``, ``"1+2=1,0"``, ``"2=1,1|0,0"``) into a :class:`Prior`."""
    if not isinstance(spec, str) or spec.count("=") != 1:
        raise PriorError(
            f"malformed prior {spec!r}: expected LABELS=BETTI such as 2=1,1, 1+2=1,0 "
            "or 2=1,1|0,0 (a ring, or absent)"
        )
    labels, betti = spec.split("=")
    parsed_labels = parse_labels(labels)
    try:
        alternatives = parse_alternatives(betti)
    except PriorError as err:
        reason = str(err).removeprefix("malformed ")
        raise PriorError(f"malformed prior {spec!r}: {reason}") from None
    return Prior(labels=parsed_labels, alternatives=alternatives)


def build_priors(
    betti: str | Sequence[int] | Sequence[Sequence[int]] | None = None,
    label: str | int | None = None,
    priors: Iterable[str | Prior] = (),
) -> list[Prior]:
    """The list of priors described by the shared CLI options.

    ``betti``/``label`` give one prior (on ``label``, or on the foreground);
    ``betti`` may hold alternatives (``"1,1|0,0"``, or from Python a sequence
    of sequences such as ``((1, 1), (0, 0))``);
    each item of ``priors`` gives one more. With nothing at all, one report-only
    prior on the foreground is returned, so that callers always have a structure
    to measure.
    """
    result: list[Prior] = []
    if betti is not None or label is not None:
        if betti is None:
            alternatives: tuple[tuple[int, ...], ...] = ()
        elif isinstance(betti, str):
            alternatives = parse_alternatives(betti)
        elif len(betti) and not isinstance(betti[0], (int, np.integer)):  # ((1, 1), (0, 0))
            alternatives = parse_alternatives("|".join(",".join(str(int(b)) for b in alt) for alt in betti))
        else:
            alternatives = parse_alternatives(",".join(str(int(b)) for b in betti))
        parsed_labels = None if label is None else parse_labels(label)
        result.append(Prior(labels=parsed_labels, alternatives=alternatives))
    for item in priors:
        result.append(item if isinstance(item, Prior) else parse_prior(item))
    names = [p.name for p in result]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise PriorError(f"more than one prior for {', '.join(duplicated)}")
    return result or [Prior()]


def target_priors(priors: Prior | str | Iterable[Prior | str], who: str) -> list[Prior]:
    """The priors with Betti numbers among ``priors`` (one spec, one :class:`Prior`, or several);
    ``ValueError`` naming ``who`` (``"correct"``, ``"repair"``) when none has: nothing to aim at."""
    if isinstance(priors, (str, Prior)):
        priors = [priors]
    found = [p for p in build_priors(priors=list(priors)) if p.betti is not None]
    if not found:
        raise ValueError(f"{who} needs at least one prior with Betti numbers (e.g. '2=1,1')")
    return found
