"""In which format a case's mask is written (``--output-format``), and under which name.

Why its own module: ``predict``, ``correct`` and ``repair`` choose the format the same way, the
batch plans every name before the first case runs, and a DICOM-SEG needs its source series, which
is checked once for the whole batch, before it starts (not once per case, after an hour of work).

Formats:

* ``auto`` (default): the input's own format; a DICOM series' mask as NIfTI (``case_01.nii.gz``).
* ``nifti``: every mask as ``.nii.gz`` (``scan.mha`` -> ``scan.nii.gz``).
* ``dicom-seg``: a DICOM-SEG per DICOM series (``case_01.dcm``, :mod:`topofix.dicom_seg`), its
  segments named from the label table; every input must be a DICOM series. Probability maps stay
  NIfTI (``case_01_prob1.nii.gz``); ``--save-original`` writes a second SEG (``case_01_original.dcm``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topofix.choices import OutputFormat
from topofix.errors import InputError, TopofixError

__all__ = ["OUTPUT_FORMATS", "MaskFormat", "mask_format"]

OUTPUT_FORMATS = OutputFormat.values()


@dataclass(frozen=True)
class MaskFormat:
    """The format of the masks of a run and the names of its labels (a plain, picklable value)."""

    format: str = "auto"
    label_names: tuple[tuple[int, str], ...] = ()

    @property
    def label_table(self) -> dict[int, str]:
        return dict(self.label_names)

    def describe(self) -> dict[str, Any]:
        """What the journal's fingerprint records (a change of format or names is another run)."""
        return {"output_format": self.format, "labels": {str(k): v for k, v in self.label_names}}

    def output_name(self, base: Callable[[str], str] | None = None) -> Callable[[str], str] | None:
        """The batch's ``output_name`` for this format (``None``: the batch's default naming)."""
        if self.format == "auto":
            return base
        if self.format == "dicom-seg":
            from topofix.dicom_seg import seg_output_name

            return seg_output_name
        return lambda path: _as_nifti((base or _default_name)(path))

    def expand(self, expand: Callable[[list[str]], list[Any]] | None = None) -> Callable[[list[str]], list[Any]] | None:
        """The batch's ``expand``: for ``dicom-seg``, the inputs' expansion, refused in one line when an
        input is not a DICOM series (before the batch starts)."""
        if self.format != "dicom-seg":
            return expand

        def checked(specs: list[str]) -> list[Any]:
            from topofix.dicom import is_dicom_address
            from topofix.inputs import expand_inputs

            items = (expand or expand_inputs)(specs)
            for item in items:
                if item.error is None and not is_dicom_address(item.path):
                    raise InputError(item.path, "is not a DICOM series; --output-format dicom-seg writes a "
                                                "DICOM-SEG of a series (give series folders, or another format)")
            return items

        return checked

    def write(self, path: Path, labels: Any, reference: Any, overwrite: bool) -> Path:
        """Write one mask (``reference``: the image it was computed from, for its geometry/series)."""
        if self.format == "dicom-seg" and path.name.lower().endswith(".dcm"):
            from topofix.dicom_seg import write_seg

            return write_seg(path, labels, reference, label_table=self.label_table or None, overwrite=overwrite)
        from topofix.io import write_mask

        return write_mask(path, labels, reference=reference, overwrite=overwrite)


def _default_name(path: str) -> str:
    from topofix.outputs import default_output_name

    return default_output_name(path)


def _as_nifti(name: str) -> str:
    from topofix.outputs import split_name

    stem, ext = split_name(name)
    return name if ext == ".nii.gz" else f"{stem}.nii.gz"


def mask_format(output_format: str = "auto",
                labels: str | os.PathLike[str] | Mapping[Any, Any] | None = None) -> MaskFormat:
    """A :class:`MaskFormat` from the user's choices: ``output_format`` one of :data:`OUTPUT_FORMATS`,
    ``labels`` a label table (``labels.json``, nnU-Net ``dataset.json``, or a mapping; see
    :func:`topofix.dicom_seg.read_label_table`). Refused in one line before any work."""
    if output_format not in OUTPUT_FORMATS:
        raise TopofixError(f"--output-format {output_format}: must be one of {', '.join(OUTPUT_FORMATS)}")
    output_format = str(output_format)  # a member of choices.OutputFormat is stored as its plain word
    table: dict[int, str] = {}
    if labels is not None:
        from topofix.dicom_seg import read_label_table

        table = read_label_table(labels)
    if output_format == "dicom-seg":
        try:
            import highdicom  # noqa: F401
        except ImportError:
            raise TopofixError("--output-format dicom-seg needs highdicom: pip install 'topofix[dicom]'") from None
    return MaskFormat(output_format, tuple(sorted(table.items())))
