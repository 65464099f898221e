"""DICOM-SEG: a scan's mask written as a DICOM Segmentation of its source series, and read back.

Why its own module: a pipeline that is DICOM end to end (PACS in, PACS out) wants the mask as a
DICOM object that references the series it was computed from (same study, same frame of
reference, one frame per source slice), not as a NIfTI file it must convert and re-register.
The format rules live here; ``predict``/``correct`` only choose it (``output_format``), and
``check``/``evaluate`` read a SEG like any other mask (:func:`topofix.io.read_mask` dispatches
here for a file whose SOP Class UID is Segmentation Storage).

Writing (:func:`write_seg`): highdicom's ``Segmentation``, BINARY, one segment per label of the
label table and per label present (nothing dropped: a label missing from the table is
``label N``), a frame for every source slice and segment (``omit_empty_frames=False``: the SEG
then spans the whole series, so its geometry can be rebuilt from the SEG alone). Segment numbers
of a SEG must run 1, 2, 3...; the topofix label of each segment is kept in its Segment
Description (``topofix label 3``) and read back from there. Written atomically
(:func:`topofix.atomic.atomic_write_bytes`) and read back before it takes its final name.

Reading (:func:`read_seg`): highdicom's ``get_volume`` (frames placed by their Image Position
(Patient), orientation and pixel spacing), turned right-handed so that slices run along
row x column as in GDCM's reading of the source series; segments combined into one label map
(a SEG from another tool: segment number = label, overlapping segments refused).

highdicom (and pydicom) are the optional extra ``dicom``: ``pip install topofix[dicom]``.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from topofix.errors import InputError, OutputError

__all__ = ["SEG_EXTENSION", "LabelTable", "is_seg_path", "read_label_table", "read_seg", "seg_output_name",
           "verify_seg_file", "write_seg"]

SEG_EXTENSION = ".dcm"
LabelTable = Mapping[int, str]
"""Label value -> segment name (``{2: "myocardium"}``)."""

_DESCRIPTION = "topofix label {}"
_DESCRIPTION_RE = re.compile(r"^topofix label (-?\d+)$")
_NEEDS = "DICOM-SEG needs highdicom: pip install 'topofix[dicom]'"


def _highdicom(path: str) -> Any:
    try:
        import highdicom
    except ImportError:
        raise InputError(path, _NEEDS) from None
    return highdicom


def is_seg_path(path: str | os.PathLike[str]) -> bool:
    """A file that is a DICOM-SEG (by its SOP Class UID, whatever its name)."""
    from topofix.dicom import is_seg_file

    return os.path.isfile(path) and is_seg_file(path)


def seg_output_name(path: str | os.PathLike[str]) -> str:
    """``case_01.dcm`` for the scan ``scans/case_01`` (the NIfTI name's rule, with ``.dcm``)."""
    from topofix.dicom import series_output_name

    name = series_output_name(path)
    return name[: -len(".nii.gz")] + SEG_EXTENSION


# ----------------------------------------------------------------------------------------------
# Label tables
# ----------------------------------------------------------------------------------------------
def _int_label(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def read_label_table(source: str | os.PathLike[str] | Mapping[Any, Any]) -> dict[int, str]:
    """Label value -> name, from a ``labels.json`` (``{"1": "liver", "2": "tumour"}``) or an nnU-Net
    ``dataset.json`` (v2: ``{"labels": {"background": 0, "liver": 1}}``; v1: ``{"labels": {"0":
    "background", "1": "liver"}}``), or a mapping already read. Label 0 (background) is dropped:
    it is no segment. Anything else is refused in one line naming the file."""
    shown = "<labels>" if isinstance(source, Mapping) else os.fspath(source)
    data: Any = source if isinstance(source, Mapping) else _read_json(shown)
    if not isinstance(data, Mapping):
        raise InputError(shown, "label table must be a JSON object (label -> name, or nnU-Net's {\"labels\": ...})")
    entries = data["labels"] if "labels" in data else data
    if not isinstance(entries, Mapping) or not entries:
        raise InputError(shown, "label table holds no labels")
    table: dict[int, str] = {}
    for key, value in entries.items():
        label, name = _label_entry(shown, key, value)
        if label in table and table[label] != name:
            raise InputError(shown, f"label {label} is named twice ({table[label]!r} and {name!r})")
        if label != 0:
            table[label] = name.strip() or f"label {label}"
    return table


def _read_json(shown: str) -> Any:
    """The label table file's JSON; a missing, unreadable or malformed file is one line naming it."""
    try:
        return json.loads(Path(shown).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(shown, "label table does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(shown, f"cannot read the label table ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(shown, f"label table is not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _label_entry(shown: str, key: Any, value: Any) -> tuple[int, str]:
    """``(label, name)`` of one entry, either way round (``"2": "myocardium"`` or nnU-Net v2's
    ``"myocardium": 2``); regions and anything else refused in one line."""
    as_key, as_value = _int_label(key), _int_label(value)
    if isinstance(value, str) and as_key is not None:  # "2": "myocardium"
        label, name = as_key, value
    elif as_value is not None and isinstance(key, str):  # "myocardium": 2 (nnU-Net v2)
        label, name = as_value, key
    elif isinstance(value, list):
        raise InputError(shown, f"label {key!r} is an nnU-Net region ({value}); DICOM-SEG output needs "
                                "one value per label")
    else:
        raise InputError(shown, f"entry {key!r}: {value!r} is not a label and a name")
    if label < 0:
        raise InputError(shown, f"label {label} ({name!r}) is negative")
    return label, name


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def _source_datasets(address: str) -> list[Any]:
    """The source series' datasets (headers), in the order of the scan's z axis (GDCM's, by position
    along row x column)."""
    import pydicom

    from topofix.dicom import series_files

    datasets = []
    for name in series_files(address):
        try:
            datasets.append(pydicom.dcmread(name, stop_before_pixels=True))
        except Exception as exc:  # pydicom raises many kinds for a damaged file
            raise InputError(address, f"slice {os.path.basename(name)} cannot be read ({exc})") from None
    for ds in datasets:
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise InputError(address, "a slice has no image position or orientation")
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(datasets, key=lambda ds: float(np.asarray(ds.ImagePositionPatient, float) @ normal))


def _segments(labels: np.ndarray, table: LabelTable | None) -> list[tuple[int, str]]:
    present = {int(v) for v in np.unique(labels) if v != 0}
    named = dict(table or {})
    values = sorted(present | set(named)) or [1]  # an empty mask still has its (empty) segment
    return [(v, named.get(v, f"label {v}")) for v in values]


def build_seg(labels: np.ndarray, reference: Any, label_table: LabelTable | None = None) -> Any:
    """The highdicom ``Segmentation`` of ``labels`` (``(z, y, x)``, on the geometry of the DICOM scan
    ``reference``: a :class:`topofix.io.Image` read from a series)."""
    from topofix._version import __version__
    from topofix.dicom import is_dicom_address

    address = reference.path or ""
    shown = address or "<image>"
    if not address or not is_dicom_address(address):
        raise OutputError(shown, "DICOM-SEG output needs a DICOM series input (this scan is not one)")
    hd = _highdicom(shown)
    from pydicom.sr.codedict import codes

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise OutputError(shown, f"DICOM-SEG output needs a 3D label map, got shape {labels.shape}")
    if labels.size and int(labels.min()) < 0:
        raise OutputError(shown, "DICOM-SEG cannot hold negative labels")
    datasets = _source_datasets(address)
    rows, cols = int(datasets[0].Rows), int(datasets[0].Columns)
    if (len(datasets), rows, cols) != labels.shape:
        raise OutputError(shown, f"the mask's shape {labels.shape} is not the series' "
                                 f"({len(datasets)}, {rows}, {cols})")
    first = np.asarray(datasets[0].ImagePositionPatient, float)
    if not np.allclose(first, reference.geometry.origin, atol=1e-3):
        raise OutputError(shown, "the series' first slice is not the scan's origin (slices sorted differently)")
    segments = _segments(labels, label_table)
    numbered = np.zeros(labels.shape, np.uint16 if len(segments) > 255 else np.uint8)
    for number, (value, _) in enumerate(segments, start=1):
        numbered[labels == value] = number
    algorithm = hd.AlgorithmIdentificationSequence(name="topofix", family=codes.cid7162.ArtificialIntelligence,
                                                   version=__version__)
    descriptions = []
    for number, (value, name) in enumerate(segments, start=1):
        desc = hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64],
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        desc.SegmentDescription = _DESCRIPTION.format(value)
        descriptions.append(desc)
    try:
        return hd.seg.Segmentation(
            source_images=datasets, pixel_array=numbered,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=hd.UID(), series_number=int(getattr(datasets[0], "SeriesNumber", 0) or 0) + 1000,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="topofix",
            manufacturer_model_name="topofix", software_versions=__version__, device_serial_number="0",
            content_label="TOPOFIX", content_description="topofix segmentation", omit_empty_frames=False)
    except (ValueError, TypeError, AttributeError) as exc:
        raise OutputError(shown, f"cannot build the DICOM-SEG ({' '.join(str(exc).split())[:200]})") from None


def write_seg(path: str | os.PathLike[str], labels: np.ndarray, reference: Any, *,
              label_table: LabelTable | None = None, overwrite: bool = False) -> Path:
    """Write ``labels`` as a DICOM-SEG of the series ``reference`` came from, atomically; the file is
    read back (:func:`read_seg`) and must give ``labels`` voxel for voxel before it takes its name."""
    import pydicom

    shown = os.fspath(path)
    seg = build_seg(labels, reference, label_table)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, seg, enforce_file_format=True)
    expected = np.asarray(labels)

    def verify(tmp: Path) -> None:
        try:
            back = read_seg(tmp).array
        except InputError as exc:
            raise OutputError(shown, f"the written DICOM-SEG does not read back ({exc.problem}); is the disk full?") \
                from None
        if back.shape != expected.shape or not np.array_equal(back, expected):
            raise OutputError(shown, "the written DICOM-SEG reads back different voxels")

    from topofix.atomic import atomic_write_bytes

    try:
        return atomic_write_bytes(shown, buffer.getvalue(), overwrite=overwrite, verify=verify)
    except OSError as exc:
        raise OutputError(shown, f"cannot write the DICOM-SEG: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------
def _segment_values(seg: Any) -> dict[int, int]:
    """Segment number -> label value: topofix's own from the Segment Description, else the number."""
    values = {}
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        match = _DESCRIPTION_RE.match(str(getattr(item, "SegmentDescription", "")).strip())
        values[number] = int(match.group(1)) if match else number
    return values


def read_seg(path: str | os.PathLike[str]) -> Any:
    """A DICOM-SEG as a :class:`topofix.io.Image`: label map ``(z, y, x)`` on the geometry rebuilt from
    the SEG's plane positions, orientation and spacing (z along row x column, as the source series
    reads). Anything unusable is an :class:`InputError` naming the file."""
    from topofix.io import Geometry, Image

    shown = os.fspath(path)
    hd = _highdicom(shown)
    try:
        seg = hd.seg.segread(shown)
    except FileNotFoundError:
        raise InputError(shown, "file does not exist") from None
    except Exception as exc:  # pydicom/highdicom raise many kinds for a damaged file
        raise InputError(shown, f"not a readable DICOM-SEG ({' '.join(str(exc).split())[:160]})") from None
    if str(seg.SegmentationType) not in ("BINARY", "LABELMAP"):
        raise InputError(shown, f"{seg.SegmentationType} DICOM-SEG: a mask must be BINARY (fractional "
                                "segments are probabilities, not labels)")
    values = _segment_values(seg)
    try:
        volume = seg.get_volume(combine_segments=True, relabel=False, dtype=np.int32)
    except Exception as exc:
        text = " ".join(str(exc).split())[:160]
        why = "its segments overlap" if "overlap" in text.lower() else f"its frames do not form a volume ({text})"
        raise InputError(shown, f"cannot read the DICOM-SEG as a label map: {why}") from None
    # highdicom orders axes (slice, row, column): "left-handed" there is right-handed in ITK's (x, y, z)
    volume = volume.ensure_handedness("LEFT_HANDED", flip_axis=0)
    numbers = np.asarray(volume.array)
    labels = np.zeros(numbers.shape, np.int64)
    for number, value in values.items():
        labels[numbers == number] = value
    # highdicom's volume axes are (slice, row, column) with affine columns spacing * unit vectors
    affine = np.asarray(volume.affine, float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    units = affine[:3, :3] / spacing
    geometry = Geometry((spacing[2], spacing[1], spacing[0]), tuple(affine[:3, 3]),
                        tuple(np.stack([units[:, 2], units[:, 1], units[:, 0]], axis=1).ravel()))
    lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    for dtype in (np.uint8, np.uint16, np.int32, np.int64):
        if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
            labels = labels.astype(dtype)
            break
    return Image(labels, geometry, shown)


def verify_seg_file(path: str | os.PathLike[str]) -> str | None:
    """Why the DICOM-SEG at ``path`` cannot be trusted as a finished output (``None``: it reads back)."""
    try:
        read_seg(path)
    except InputError as exc:
        return exc.problem
    return None
