"""The arrays one case's pictures are drawn from: the input scan and the masks before/after.

Found where the run put them (the scan at the ``path`` the case records, the masks
under the names :class:`topofix.outputs.CaseOutputs` gives them). Nothing missing is
fatal: each problem becomes a note the report shows in the scan's section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from topofix.errors import TopofixError

__all__ = ["Volumes", "find_input", "load_volumes"]


@dataclass
class Volumes:
    """A case's scan (scalar, numpy axis order), masks, and what could not be loaded."""

    image: np.ndarray | None
    spacing: tuple[float, ...] | None  # numpy axis order
    before: np.ndarray | None
    after: np.ndarray | None
    notes: list[str] = field(default_factory=list)

    @property
    def reference(self) -> np.ndarray | None:
        """The mask the pictures' geometry follows: the corrected one, else the original."""
        return self.after if self.after is not None else self.before


def find_input(path: str, report_dir: Path | None) -> Path | None:
    """The input scan: as recorded (absolute, or relative to the current folder), else
    relative to the report's folder."""
    from topofix.dicom import is_dicom_address

    candidates = [Path(path)]
    if not os.path.isabs(path) and report_dir is not None:
        candidates.append(report_dir / path)
    for candidate in candidates:
        if candidate.is_file() or is_dicom_address(candidate):  # a file, or a DICOM series
            return candidate
    return None


def _scalar(array: np.ndarray, ndim: int) -> np.ndarray:
    return array.mean(axis=-1) if array.ndim == ndim + 1 else array


def _read_scan(path: str, report_dir: Path | None, notes: list[str]) -> tuple[np.ndarray | None, tuple[float, ...] | None]:
    """The scan as a scalar array and its spacing (numpy order), or ``(None, None)`` with a note."""
    from topofix.io import read_image

    found = find_input(path, report_dir)
    if found is None:
        notes.append(f"input scan not found at {path} (moved or deleted?): the masks are drawn without it")
        return None, None
    try:
        img = read_image(found, allow_vector=True)
    except TopofixError as error:
        notes.append(f"input scan cannot be read ({error}): the masks are drawn without it")
        return None, None
    return _scalar(img.array, img.geometry.ndim), img.geometry.array_spacing


def _read_mask(path: Path, what: str, notes: list[str]) -> np.ndarray | None:
    from topofix.io import read_mask

    try:
        return np.asarray(read_mask(path).array)
    except TopofixError as error:
        notes.append(f"{what} mask cannot be read ({error})")
        return None


def _read_masks(case: Mapping[str, Any], masks_dir: Path, notes: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(before, after)`` as far as they are found; the untouched case's one mask serves as both."""
    from topofix.outputs import CaseOutputs

    key = str(case.get("key") or os.path.basename(str(case.get("path", ""))))  # where the batch wrote it
    plan = CaseOutputs(key, masks_dir / key)
    after_path, original_path = plan.mask, plan.original
    after_missing, original_missing = not after_path.is_file(), not original_path.is_file()
    after = None if after_missing else _read_mask(after_path, "corrected", notes)
    before = None if original_missing else _read_mask(original_path, "original", notes)
    if after_missing and original_missing:
        notes.append(f"no mask found in {masks_dir} (neither {after_path.name} nor {original_path.name}): "
                     "nothing to draw")
    elif after_missing:
        notes.append(f"corrected mask not found at {after_path}: only the original mask is shown")
    elif original_missing:
        if after is not None and not case.get("changed_fraction") and case.get("stop_reason") == "already met":
            before = after  # untouched: the corrected mask is the original, byte for byte
        else:
            notes.append(f"original mask {original_path.name} not found (run topofix correct with "
                         "--save-original or --html to keep it): only the corrected mask is shown")
    return before, after


def _matching_scan(image: np.ndarray | None, reference: np.ndarray | None, notes: list[str]) -> np.ndarray | None:
    """The scan reshaped to the masks' shape (squeezed axes), or ``None`` with a note when it does not fit."""
    if image is None or reference is None or image.shape == reference.shape:
        return image
    if image.size == reference.size and np.squeeze(image).shape == np.squeeze(reference).shape:
        return image.reshape(reference.shape)
    notes.append(f"input scan has shape {image.shape}, the masks {reference.shape}: drawn without it")
    return None


def load_volumes(case: Mapping[str, Any], masks_dir: Path, report_dir: Path | None) -> Volumes:
    """Everything one case's pictures need, each problem said in :attr:`Volumes.notes`."""
    notes: list[str] = []
    image, spacing = _read_scan(str(case.get("path", "")), report_dir, notes)
    before, after = _read_masks(case, masks_dir, notes)
    image = _matching_scan(image, after if after is not None else before, notes)
    if before is not None and after is not None and before.shape != after.shape:
        notes.append(f"original mask has shape {before.shape}, the corrected one {after.shape}: "
                     "only the corrected mask is shown")
        before = None
    return Volumes(image, spacing, before, after, notes)
