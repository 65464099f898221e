"""``topofix check``: Betti numbers of masks against priors, as a Python API.

Why a separate layer from the CLI: a pipeline or a notebook calls
:func:`check` and gets structured results (:class:`CheckReport`); the CLI only
formats them. Every input is processed even when others fail: a bad file
becomes an entry of :attr:`CheckReport.errors`, never an exception.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from topofix._version import __version__
from topofix.choices import EmptyPolicy
from topofix.errors import InputFailure, TopofixError, with_path
from topofix.priors import Prior, build_priors
from topofix.slicing import SLICE_AXES, iter_slices
from topofix.topology.betti import betti_numbers
from topofix.topology.connectivity import DEFAULT_CONNECTIVITY, check_connectivity

Status = Literal["pass", "fail", "empty", "measured"]


@dataclass(frozen=True)
class CheckResult:
    """Betti numbers of one structure (prior) in one mask or one slice of it.

    ``expected`` is the alternative of the prior nearest to the measured
    ``betti`` (:meth:`Prior.nearest`: smallest sum of |b_k - e_k|, ties to the
    first listed), padded to the mask's dimension; with a single alternative
    it is simply the prior. None for a report-only prior.
    """

    path: str
    prior: Prior
    betti: tuple[int, ...]
    expected: tuple[int, ...] | None
    status: Status
    empty: bool
    slice_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "slice": self.slice_index,
            "prior": self.prior.name,
            "betti": list(self.betti),
            "expected": None if self.expected is None else list(self.expected),
            "alternatives": None if self.expected is None else [list(a) for a in self.prior.alternatives],
            "status": self.status,
            "empty": self.empty,
        }


CheckFailure = InputFailure
"""An input that could not be checked (the same type as ``evaluate``'s failures)."""


@dataclass
class CheckReport:
    """Everything :func:`check` found: per-structure results and per-input errors."""

    results: list[CheckResult] = field(default_factory=list)
    errors: list[CheckFailure] = field(default_factory=list)
    priors: list[Prior] = field(default_factory=list)
    connectivity: str = DEFAULT_CONNECTIVITY
    per_slice: str | None = None
    empty: EmptyPolicy | str = "skip"

    @property
    def paths(self) -> list[str]:
        """Checked inputs, in order, without repetition."""
        return list(dict.fromkeys(r.path for r in self.results))

    def failed_paths(self) -> list[str]:
        return list(dict.fromkeys(r.path for r in self.results if r.status == "fail"))

    @property
    def summary(self) -> dict[str, int]:
        counts = {s: 0 for s in ("pass", "fail", "empty", "measured")}
        for r in self.results:
            counts[r.status] += 1
        checked = len(self.paths)
        failed_files = len(self.failed_paths())
        return {
            "inputs": checked + len(self.errors),
            "checked": checked,
            "unreadable": len(self.errors),
            "files_passed": checked - failed_files,
            "files_failed": failed_files,
            "passed": counts["pass"],
            "failed": counts["fail"],
            "empty": counts["empty"],
            "measured": counts["measured"],
        }

    @property
    def exit_code(self) -> int:
        """0: every prior met; 1: some prior not met; 2: some input could not be checked."""
        if self.errors:
            return 2
        return 1 if any(r.status == "fail" for r in self.results) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": "topofix check",
            "version": __version__,
            "connectivity": self.connectivity,
            "per_slice": self.per_slice,
            "empty": self.empty,
            "priors": [p.to_dict() for p in self.priors],
            "summary": self.summary,
            "exit_code": self.exit_code,
            "results": [r.to_dict() for r in self.results],
            "errors": [e.to_dict() for e in self.errors],
        }


def check_labels(
    labels: np.ndarray,
    priors: Sequence[Prior],
    *,
    path: str = "<array>",
    connectivity: str = DEFAULT_CONNECTIVITY,
    per_slice: str | None = None,
    empty: EmptyPolicy | str = "skip",
) -> list[CheckResult]:
    """Check one label map (already in memory) against ``priors``.

    A structure passes when its Betti numbers equal any alternative of its
    prior (``2=1,1|0,0``: a ring, or absent).

    With ``per_slice`` each 2D slice along that axis (``x``, ``y`` or ``z``) is
    checked on its own, and a slice where a structure is absent is ``"empty"``
    (not a failure) unless ``empty="fail"``. A structure absent from a slice or
    a whole mask *passes* when its prior allows absence (an all-zero
    alternative such as ``|0,0``), whatever ``empty`` says. A whole mask whose
    structure is absent always fails a prior that does not allow it.
    """
    results = []
    for index, plane in iter_slices(np.asarray(labels), per_slice):
        for prior in priors:
            selected = prior.select(plane)
            present = bool(selected.any())
            betti = betti_numbers(selected, connectivity) if present else (0,) * plane.ndim
            expected = prior.nearest(betti)  # validates every alternative for plane.ndim
            if expected is None:
                status: Status = "measured"
            elif prior.is_met(betti):
                status = "pass"
            elif not present and index is not None and empty == "skip":
                status = "empty"
            else:
                status = "fail"
            results.append(
                CheckResult(path, prior, betti, expected, status, not present, index)
            )
    return results


def check(
    inputs: str | os.PathLike[str] | np.ndarray | Sequence[str | os.PathLike[str] | np.ndarray],
    priors: Sequence[Prior | str] | Prior | str | None = None,
    *,
    betti: str | Sequence[int] | None = None,
    label: str | int | None = None,
    connectivity: str = DEFAULT_CONNECTIVITY,
    per_slice: str | None = None,
    empty: EmptyPolicy | str = "skip",
    progress: bool = False,
) -> CheckReport:
    """Betti numbers of masks against topological priors.

    Parameters
    ----------
    inputs:
        Mask files, folders, glob patterns or label arrays (one or a sequence).
    priors:
        ``--prior`` specs (``"2=1,1"``, ``"1+2=1,0"``) or :class:`Prior` objects.
        Alternatives are separated by ``|``: ``"2=1,1|0,0"`` passes when label
        2 is a ring or absent.
    betti, label:
        The ``--betti``/``--label`` pair: Betti numbers of ``label`` (or of any
        non-zero voxel), alternatives allowed (``"1,1|0,0"``). With no prior at
        all, Betti numbers are only measured.
    connectivity:
        ``"full"`` (default) or ``"face"``; see :mod:`topofix.topology.connectivity`.
    per_slice:
        ``"x"``, ``"y"`` or ``"z"``: check every 2D slice along that axis of 3D masks.
    empty:
        ``"skip"`` (default) reports slices without the structure as empty;
        ``"fail"`` counts them as failures. Either way, a structure whose
        prior allows absence (``2=1,1|0,0``) passes where it is absent.
    progress:
        Show a progress bar over inputs (on a terminal only).

    Returns
    -------
    CheckReport
        ``results`` (one per input x slice x prior), ``errors`` (inputs that
        could not be read, one line each), ``summary`` and ``exit_code``.

    Examples
    --------
    >>> import numpy as np, topofix
    >>> ring = np.zeros((7, 7), np.uint8); ring[1:6, 1:6] = 2; ring[3, 3] = 0
    >>> topofix.check(ring, "2=1,1").exit_code
    0
    """
    from topofix.inputs import InputItem, expand_inputs
    from topofix.io import read_mask

    connectivity = check_connectivity(connectivity)
    if per_slice is not None and per_slice not in SLICE_AXES:
        raise ValueError(f"per_slice must be one of x, y, z, got {per_slice!r}")
    if empty not in EmptyPolicy.values():
        raise ValueError(f"empty must be 'skip' or 'fail', got {empty!r}")
    per_slice, empty = None if per_slice is None else str(per_slice), str(empty)  # topofix.choices members -> values
    if isinstance(priors, (str, Prior)):
        priors = [priors]
    prior_list = build_priors(betti, label, priors or ())

    if isinstance(inputs, (str, os.PathLike, np.ndarray)):
        inputs = [inputs]
    arrays = {f"<array {i}>": np.asarray(x) for i, x in enumerate(inputs) if isinstance(x, np.ndarray)}
    items: list[InputItem] = []
    paths = [x for x in inputs if not isinstance(x, np.ndarray)]
    items = [InputItem(name) for name in arrays] + expand_inputs(paths)

    report = CheckReport(priors=prior_list, connectivity=connectivity, per_slice=per_slice, empty=empty)
    iterator: Iterable[InputItem] = items
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(items, desc="check", unit="mask", disable=None, leave=False)
    for item in iterator:
        if item.error is not None:
            report.errors.append(CheckFailure(item.path, str(item.error)))
            continue
        try:
            labels = arrays[item.path] if item.path in arrays else read_mask(item.path).array
            report.results.extend(
                check_labels(
                    labels,
                    prior_list,
                    path=item.path,
                    connectivity=connectivity,
                    per_slice=per_slice,
                    empty=empty,
                )
            )
        except TopofixError as err:
            report.errors.append(CheckFailure(item.path, with_path(str(err), item.path)))
    return report
