"""Every name topofix writes into an output folder, in one place.

Why one module: ``predict``, ``correct``, ``check`` (which must skip topofix's own
files), the journal and the HTML report all need to agree on where a case's
mask, original mask and probability maps are, and a rule written twice drifts
(``predict`` and ``correct`` once named the channels of a 2-channel sigmoid model
differently).

The rule for masks (documented in ``--help``):

* Each input's mask has the input's file name, in the output folder.
* When two inputs share a file name (``case_1/imaging.nii.gz``,
  ``case_2/imaging.nii.gz``: the usual layout of public datasets), no name is
  dropped: every input then keeps its path relative to the inputs' common
  folder (``case_1/imaging.nii.gz`` under the output folder). The layout
  depends only on the set of inputs, never on the order they run in.
* Beside the mask: ``<stem>_original<ext>`` (the uncorrected prediction; PNG
  and every other format keep their extension) and ``<stem>_prob<L><ext>``
  (the probability of label ``L``; PNG inputs get ``.nii.gz``, PNG cannot hold
  floats; nor can a DICOM-SEG ``.dcm`` mask's).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "JOURNAL",
    "LOCK",
    "REPORT_CSV",
    "REPORT_HTML",
    "REPORT_JSON",
    "CaseOutputs",
    "is_own_output",
    "own_output_stem",
    "plan_outputs",
    "report_paths",
    "shard_suffix",
    "probability_labels",
    "split_name",
]

REPORT_JSON = "topofix_report.json"
REPORT_CSV = "topofix_report.csv"
REPORT_HTML = "topofix_report.html"
JOURNAL = "topofix_journal.jsonl"
"""One JSON line per finished case, appended as each finishes (see :mod:`topofix.journal`)."""
LOCK = ".topofix.lock"
"""Held (``flock``) by the run writing to the folder; a second run is refused."""
TEMP_PREFIX = ".topofix-tmp-"
"""Hidden temporary folders of the image writers; stale ones are removed by the next run."""

ORIGINAL_SUFFIX = "_original"
PROBABILITY_SUFFIX = "_prob"
_OWN = re.compile(rf"^(?P<stem>.+)({re.escape(ORIGINAL_SUFFIX)}|{re.escape(PROBABILITY_SUFFIX)}\d+)$")


def split_name(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(stem, extension)`` of an image file name (``.nii.gz`` is one extension)."""
    from topofix.io import image_extension

    name = os.path.basename(os.fspath(path))
    ext = image_extension(name) or ""
    if not ext and name.lower().endswith(".dcm") and len(name) > 4:  # a DICOM-SEG mask (topofix.dicom_seg)
        ext = name[-4:]
    return (name[: len(name) - len(ext)] if ext else name), (name[len(name) - len(ext):] if ext else "")


def own_output_stem(stem: str) -> str | None:
    """``"scan"`` for the stems ``scan_original`` and ``scan_prob1`` (topofix's extra outputs), else None."""
    match = _OWN.match(stem)
    return match.group("stem") if match else None


def is_own_output(path: str | os.PathLike[str]) -> bool:
    """True for ``<stem>_original<ext>`` and ``<stem>_prob<L><ext>``: files topofix wrote beside a mask."""
    return own_output_stem(split_name(path)[0]) is not None


def probability_labels(n_channels: int, activation: str) -> list[int]:
    """Label of each probability channel: channel k is label k (softmax) or k+1 (sigmoid).

    One home for the rule, so ``predict`` and ``correct`` name the channels alike.
    """
    offset = 1 if activation == "sigmoid" or (activation == "none" and n_channels == 1) else 0
    return [k + offset for k in range(n_channels)]


@dataclass(frozen=True)
class CaseOutputs:
    """Where one input's outputs go."""

    key: str
    """The mask's path relative to the output folder (POSIX separators): the case's name in reports."""
    mask: Path

    @property
    def _stem_ext(self) -> tuple[str, str]:
        return split_name(self.mask)

    @property
    def original(self) -> Path:
        stem, ext = self._stem_ext
        return self.mask.with_name(f"{stem}{ORIGINAL_SUFFIX}{ext or '.nii.gz'}")

    def probability(self, label: int) -> Path:
        stem, ext = self._stem_ext
        ext = ".nii.gz" if ext.lower() in ("", ".png", ".dcm") else ext  # PNG and DICOM-SEG hold no floats
        return self.mask.with_name(f"{stem}{PROBABILITY_SUFFIX}{label}{ext}")


def default_output_name(path: str) -> str:
    """The mask's file name for an input: its own name; a DICOM series' is ``<folder>.nii.gz``."""
    from topofix.dicom import SERIES_SEPARATOR, is_dicom_address, series_output_name

    if SERIES_SEPARATOR in path or os.path.isdir(path):
        if is_dicom_address(path):
            return series_output_name(path)
    return os.path.basename(path)


def _common_folder(paths: Sequence[str]) -> str:
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    return os.path.commonpath(folders) if folders else ""


def plan_outputs(paths: Sequence[str], folder: str | os.PathLike[str],
                 names: Callable[[str], str] | None = None) -> dict[str, CaseOutputs]:
    """The outputs of every input path (keys: the paths as given), by the rule of the module docstring.

    ``names`` gives the output file name of an input (default: the input's own name; ``topofix
    repair`` names an nnU-Net ``.npz``'s mask after its segmentation file).
    """
    folder = Path(folder)
    name_of = names or default_output_name
    counts = Counter(name_of(p) for p in paths)
    clash = any(n > 1 for n in counts.values())
    root = _common_folder(paths) if clash else ""
    plans = {}
    for p in paths:
        name = name_of(p)
        rel = os.path.join(os.path.dirname(os.path.relpath(os.path.abspath(p), root)), name) if clash else name
        key = Path(rel).as_posix()
        plans[p] = CaseOutputs(key, folder / rel)
    return plans


def report_paths(folder: Path, json_path: Path | None = None, csv_path: Path | None = None,
                 shard: tuple[int, int] | None = None) -> tuple[Path, Path, Path]:
    """``(JSON, CSV, HTML)`` report paths of a run: the given ones, else the folder's defaults; a
    shard's defaults carry its part (``topofix_report.shard-0-of-4.json``) so shards never collide."""
    suffix = "" if shard is None else shard_suffix(shard)

    def named(default: str) -> Path:
        stem, ext = default.rsplit(".", 1)
        return folder / f"{stem}{suffix}.{ext}"

    return (json_path or named(REPORT_JSON), csv_path or named(REPORT_CSV), named(REPORT_HTML))


def shard_suffix(shard: tuple[int, int]) -> str:
    """``.shard-2-of-8``: what a shard's journal, lock and reports carry in their names."""
    return f".shard-{shard[0]}-of-{shard[1]}"
