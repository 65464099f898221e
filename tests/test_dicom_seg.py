"""DICOM-SEG out (``--output-format dicom-seg``) and in (``check``/``evaluate`` on a SEG).

The oracle for where a SEG's voxels land is pydicom alone: the SEG's frames are decoded with
pydicom, each frame's Image Position (Patient) (per-frame functional groups) is matched to a
slice of the source series (read with pydicom), and that slice to the NIfTI output's z index
through the NIfTI's own geometry (read with SimpleITK); segments are mapped to labels by the
names of the label table the test wrote. Neither highdicom nor topofix.dicom_seg takes part.
The network labels each voxel with its intensity level (0, 500, 1000 -> 0, 1, 2), so the NIfTI
output itself is checked against the scan the test wrote.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

import torch  # noqa: E402
from dicom_series import AXIAL, FLIPPED, FRAME_OF_REFERENCE_UID, OBLIQUE, STUDY_UID, write_pydicom_series  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import topofix  # noqa: E402
from topofix.cli.app import app  # noqa: E402
from topofix.dicom import is_seg_file  # noqa: E402
from topofix.dicom_seg import read_label_table  # noqa: E402
from topofix.errors import InputError  # noqa: E402

runner = CliRunner()
SERIES_UID = "1.2.826.0.1.3680043.2.1125.77.3"
NAMES = {1: "liver", 2: "tumour"}


class Levels(torch.nn.Module):
    """Three-class 'network': the class whose intensity level (0, 500, 1000) is nearest."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.cat([x.abs(), (x - 500).abs(), (x - 1000).abs()], dim=1) * self.scale


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "levels.pt"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(Levels()).save(str(path))
    return str(path)


def scene(shape=(5, 12, 14)) -> np.ndarray:
    """A liver block (500) holding a tumour (1000) on some slices, and a separate small tumour."""
    vol = np.zeros(shape, np.int16)
    vol[1:4, 2:9, 3:11] = 500
    vol[2:4, 4:6, 5:8] = 1000
    vol[0, 10, 12] = 1000  # asymmetric in every axis: a flip or a slice shift moves it
    return vol


ORIENTATIONS = {
    "axial": dict(orientation=AXIAL),
    "flipped": dict(orientation=FLIPPED),
    "negative-z": dict(orientation=AXIAL, step=-2.5, reverse_files=True),  # slices run down, files named upward
    "oblique": dict(orientation=OBLIQUE),
}

PREDICT = ["--normalize", "none", "--activation", "softmax", "--device", "cpu", "-q"]


def seg_oracle(seg_path: Path, series: Path, nifti: Path, names: dict[int, str]) -> np.ndarray:
    """The SEG's label map on the NIfTI's voxel grid, from pydicom + SimpleITK only (see module doc)."""
    seg = pydicom.dcmread(seg_path)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SegmentationType == "BINARY"
    by_name = {name: label for label, name in names.items()}
    segment_label = {int(s.SegmentNumber): by_name.get(s.SegmentLabel, None) for s in seg.SegmentSequence}
    source = [pydicom.dcmread(series / f, stop_before_pixels=True) for f in sorted(os.listdir(series))]
    source_positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in source])
    nii = sitk.ReadImage(str(nifti))
    origin, spacing = np.array(nii.GetOrigin()), np.array(nii.GetSpacing())
    z_axis = np.array(nii.GetDirection()).reshape(3, 3)[:, 2]
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)  # bits unpacked by pydicom
    out = np.zeros((len(source), seg.Rows, seg.Columns), np.int64)
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        position = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        nearest = np.linalg.norm(source_positions - position, axis=1)
        assert nearest.min() < 1e-3, "a SEG frame sits on no source slice"
        slice_position = source_positions[int(np.argmin(nearest))]
        k = (slice_position - origin) @ z_axis / spacing[2]
        assert abs(k - round(k)) < 1e-3
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out[int(round(k))][frame.astype(bool)] = segment_label[number]
    return out


@pytest.mark.parametrize("layout", list(ORIENTATIONS))
def test_predict_seg_lands_on_the_nifti_voxels(tmp_path, model, layout):
    vol = scene()
    write_pydicom_series(tmp_path / "scans" / "case_01", vol, **ORIENTATIONS[layout])
    (tmp_path / "labels.json").write_text(json.dumps({str(k): v for k, v in NAMES.items()}))
    for fmt, out in (("nifti", "out_nii"), ("dicom-seg", "out_seg")):
        result = runner.invoke(app, ["predict", str(tmp_path / "scans"), "-m", model, "-o", str(tmp_path / out),
                                     "--output-format", fmt, "--labels", str(tmp_path / "labels.json"), *PREDICT])
        assert result.exit_code == 0, result.output
    nifti = tmp_path / "out_nii" / "case_01.nii.gz"
    seg_path = tmp_path / "out_seg" / "case_01.dcm"
    assert is_seg_file(seg_path) and not (tmp_path / "out_seg" / "case_01.nii.gz").exists()

    # the NIfTI output is right: the level of each voxel, in the series' slice order along its normal
    nii_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(nifti)))
    expected = vol // 500 if layout != "negative-z" else vol[::-1] // 500  # slices read upward along the normal
    np.testing.assert_array_equal(nii_labels, expected)
    # and the SEG holds the same label on the same voxels
    np.testing.assert_array_equal(seg_oracle(seg_path, tmp_path / "scans" / "case_01", nifti, NAMES), nii_labels)

    seg = pydicom.dcmread(seg_path)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    assert seg.FrameOfReferenceUID == FRAME_OF_REFERENCE_UID and seg.StudyInstanceUID == STUDY_UID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == SERIES_UID
    assert seg.SeriesInstanceUID != SERIES_UID
    iop = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    np.testing.assert_allclose([float(v) for v in iop], ORIENTATIONS[layout]["orientation"], atol=1e-5)

    # read back by topofix (check/evaluate's reader): same voxels and geometry as the NIfTI
    back, nii = topofix.read_mask(seg_path), topofix.read_mask(nifti)
    np.testing.assert_array_equal(back.array, nii.array)
    assert back.geometry.origin == pytest.approx(nii.geometry.origin, abs=1e-3)
    assert back.geometry.spacing == pytest.approx(nii.geometry.spacing, abs=1e-4)
    assert back.geometry.direction == pytest.approx(nii.geometry.direction, abs=1e-4)


def test_segment_names_from_an_nnunet_dataset_json_and_unnamed_labels(tmp_path, model):
    write_pydicom_series(tmp_path / "scans" / "case_01", scene())
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "file_ending": ".nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    result = runner.invoke(app, ["predict", str(tmp_path / "scans"), "-m", model, "-o", str(tmp_path / "out"),
                                 "--output-format", "dicom-seg", "--labels", str(tmp_path / "dataset.json"), *PREDICT])
    assert result.exit_code == 0, result.output
    seg = pydicom.dcmread(tmp_path / "out" / "case_01.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "label 2"]  # label 2 kept, named by number


def test_check_and_evaluate_read_a_seg_as_they_read_the_nifti(tmp_path, model):
    write_pydicom_series(tmp_path / "scans" / "case_01", scene(), orientation=OBLIQUE)
    for fmt, out in (("nifti", "out_nii"), ("dicom-seg", "out_seg")):
        result = runner.invoke(app, ["predict", str(tmp_path / "scans"), "-m", model, "-o", str(tmp_path / out),
                                     "--output-format", fmt, *PREDICT])
        assert result.exit_code == 0, result.output
    # check: the folder of SEGs is a folder of masks (not a DICOM series), same Betti numbers
    priors = ["1+2=1,0,0", "2=2,0,0"]
    on_seg = topofix.check(str(tmp_path / "out_seg"), priors, per_slice="z")
    on_nii = topofix.check(str(tmp_path / "out_nii" / "case_01.nii.gz"), priors, per_slice="z")
    assert not on_seg.errors and [r.path for r in on_seg.results][0].endswith("case_01.dcm")
    assert [(r.slice_index, r.betti) for r in on_seg.results] == [(r.slice_index, r.betti) for r in on_nii.results]
    assert len(on_seg.results) > 0
    result = runner.invoke(app, ["check", str(tmp_path / "out_seg" / "case_01.dcm"), "-p", "2=2,0,0"])
    assert result.exit_code == 0, result.output  # two tumours, as the scene has
    # evaluate: a ground truth that differs from the prediction (one liver slice removed)
    gt = sitk.ReadImage(str(tmp_path / "out_nii" / "case_01.nii.gz"))
    arr = sitk.GetArrayFromImage(gt)
    arr[1][arr[1] == 1] = 0
    truth = sitk.GetImageFromArray(arr)
    truth.CopyInformation(gt)
    os.makedirs(tmp_path / "gt")
    sitk.WriteImage(truth, str(tmp_path / "gt" / "case_01.nii.gz"))
    seg_eval = topofix.evaluate(str(tmp_path / "out_seg"), str(tmp_path / "gt"))
    nii_eval = topofix.evaluate(str(tmp_path / "out_nii"), str(tmp_path / "gt"))
    assert not seg_eval.errors and not nii_eval.errors
    key = [(r.structure.name, r.dice, r.betti_pred, r.betti_gt) for r in nii_eval.results]
    assert [(r.structure.name, r.dice, r.betti_pred, r.betti_gt) for r in seg_eval.results] == key
    assert any(r.dice < 1.0 for r in seg_eval.results)


def test_a_broken_seg_is_one_line_and_the_batch_goes_on(tmp_path, model):
    write_pydicom_series(tmp_path / "scans" / "case_01", scene())
    result = runner.invoke(app, ["predict", str(tmp_path / "scans"), "-m", model, "-o", str(tmp_path / "out"),
                                 "--output-format", "dicom-seg", *PREDICT])
    assert result.exit_code == 0, result.output
    good = tmp_path / "out" / "case_01.dcm"
    data = good.read_bytes()
    os.makedirs(tmp_path / "masks")
    (tmp_path / "masks" / "a_truncated.dcm").write_bytes(data[: len(data) // 2])
    (tmp_path / "masks" / "b_good.dcm").write_bytes(data)
    report = topofix.check(str(tmp_path / "masks"), "1+2=1,0,0")
    assert [e.path for e in report.errors] == [str(tmp_path / "masks" / "a_truncated.dcm")]
    message = report.errors[0].message if hasattr(report.errors[0], "message") else str(report.errors[0])
    assert "\n" not in message and "a_truncated.dcm" in message
    assert {r.path for r in report.results} == {str(tmp_path / "masks" / "b_good.dcm")}
    with pytest.raises(InputError, match="a_truncated.dcm"):
        topofix.read_mask(tmp_path / "masks" / "a_truncated.dcm")
    result = runner.invoke(app, ["check", str(tmp_path / "masks"), "-p", "1+2=1,0,0"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_dicom_seg_needs_dicom_inputs_refused_before_the_batch(tmp_path, model):
    topofix.write_image(tmp_path / "scan.nii.gz", scene().astype(np.float32))
    result = runner.invoke(app, ["predict", str(tmp_path / "scan.nii.gz"), "-m", model, "-o", str(tmp_path / "out"),
                                 "--output-format", "dicom-seg", *PREDICT])
    assert result.exit_code == 2
    assert "is not a DICOM series" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "topofix_journal.jsonl").exists()  # refused before the batch started


def test_correct_writes_seg_and_original_seg_and_resumes(tmp_path, model):
    vol = scene()
    write_pydicom_series(tmp_path / "scans" / "case_01", vol, orientation=FLIPPED)
    args = ["correct", str(tmp_path / "scans"), "-m", model, "-o", str(tmp_path / "out"), "-p", "2=2,0,0",
            "--output-format", "dicom-seg", "--save-original", "--save-probabilities", *PREDICT]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert is_seg_file(out / "case_01.dcm") and is_seg_file(out / "case_01_original.dcm")
    assert (out / "case_01_prob1.nii.gz").exists()  # probabilities stay NIfTI
    np.testing.assert_array_equal(topofix.read_mask(out / "case_01.dcm").array, vol // 500)
    np.testing.assert_array_equal(topofix.read_mask(out / "case_01_original.dcm").array, vol // 500)
    # resume: the SEG reads back, the case is carried forward
    result = runner.invoke(app, args + ["--skip-existing"])
    assert result.exit_code == 0 and "carried forward" in result.output, result.output
    # a damaged SEG is not accepted as done: redone
    data = (out / "case_01.dcm").read_bytes()
    (out / "case_01.dcm").write_bytes(data[: len(data) // 2])
    result = runner.invoke(app, args + ["--skip-existing"])
    assert result.exit_code == 0 and "carried forward" not in result.output, result.output
    np.testing.assert_array_equal(topofix.read_mask(out / "case_01.dcm").array, vol // 500)


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"),
    ('{"labels": {"liver": [1, 2]}}', "region"),
    ('{"1": "liver", "x": "y"}', "is not a label and a name"),
    ('[1, 2]', "must be a JSON object"),
])
def test_bad_label_tables_are_one_line(tmp_path, content, problem):
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(InputError, match=problem) as info:
        read_label_table(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_label_tables_both_ways():
    assert read_label_table({"1": "liver", "0": "background"}) == {1: "liver"}
    assert read_label_table({"labels": {"background": 0, "myocardium": 2}}) == {2: "myocardium"}
    assert read_label_table({"labels": {"0": "background", "3": "lv"}}) == {3: "lv"}


def test_output_format_nifti_writes_every_mask_as_nifti(tmp_path, model):
    geometry = topofix.Geometry((0.5, 0.6, 2.0), (1.0, 2.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    topofix.write_image(tmp_path / "in" / "scan.mha", scene().astype(np.float32), geometry)
    result = runner.invoke(app, ["predict", str(tmp_path / "in"), "-m", model, "-o", str(tmp_path / "out"),
                                 "--output-format", "nifti", *PREDICT])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "out" / "scan.mha").exists()
    nii = sitk.ReadImage(str(tmp_path / "out" / "scan.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(nii), scene() // 500)
    assert nii.GetSpacing() == pytest.approx((0.5, 0.6, 2.0), abs=1e-6)


def test_repair_refuses_dicom_seg_before_the_batch(tmp_path):
    topofix.write_mask(tmp_path / "in" / "mask.nii.gz", scene() // 500)
    result = runner.invoke(app, ["repair", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-p", "2=2,0,0",
                                 "--output-format", "dicom-seg", "-q"])
    assert result.exit_code == 2 and "is not a DICOM series" in result.output, result.output
    assert not (tmp_path / "out" / "topofix_journal.jsonl").exists()


def test_a_seg_beside_its_series_is_a_mask_not_a_second_series(tmp_path, model):
    vol = scene()
    write_pydicom_series(tmp_path / "case_01", vol)
    result = runner.invoke(app, ["predict", str(tmp_path / "case_01"), "-m", model, "-o", str(tmp_path / "out"),
                                 "--output-format", "dicom-seg", *PREDICT])
    assert result.exit_code == 0, result.output
    os.replace(tmp_path / "out" / "case_01.dcm", tmp_path / "case_01" / "seg.dcm")  # as a PACS export may hold it
    from topofix.dicom import dicom_scans

    assert dicom_scans(tmp_path / "case_01") == [str(tmp_path / "case_01")]  # one scan, not folder#UID twice
    np.testing.assert_array_equal(topofix.read_image(tmp_path / "case_01").array, vol)
    np.testing.assert_array_equal(topofix.read_mask(tmp_path / "case_01" / "seg.dcm").array, vol // 500)
