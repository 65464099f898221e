"""The DICOM step of scripts/docker-smoke.sh, run inside the image (it has pydicom, SimpleITK, numpy).

    python3 dicom_smoke.py make IMAGE.png SERIES_DIR LABELS.json   # a 3-slice CT series of a sample image
    python3 dicom_smoke.py verify SERIES_DIR SEG.dcm NIFTI LABELS.json

``make`` writes a synthetic series (flipped rows, so that a left-right mistake shows) with a
study, a frame of reference and a label table. ``verify`` reads the SEG with pydicom alone (not
highdicom, not topofix) and checks that it references the series, shares its frame of reference,
names its segments from the table and holds, frame by frame, the NIfTI mask of the same run.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.2.1125.88.2"
ORIENTATION = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def make(png: str, folder: str, labels: str) -> None:
    import pydicom
    import SimpleITK as sitk
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    plane = sitk.GetArrayFromImage(sitk.ReadImage(png)).astype(np.int16)
    os.makedirs(folder, exist_ok=True)
    series = "1.2.826.0.1.3680043.2.1125.88.3"
    for k in range(3):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, f"{series}.{k + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, f"{series}.{k + 1}"
        ds.Modality, ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "CT", "Smoke^Test", "S1", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.88.1", series
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = FRAME_OF_REFERENCE, ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20260101", "1200", "1", "", ""
        ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "smoke", 1, k + 1
        ds.ImagePositionPatient = [0.0, 0.0, -8.0 * k]  # normal of the flipped rows points to -z
        ds.ImageOrientationPatient = list(ORIENTATION)
        ds.PixelSpacing, ds.SliceThickness = [1.25, 1.25], 8.0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = plane.astype("<i2").tobytes()
        pydicom.dcmwrite(os.path.join(folder, f"slice_{k}.dcm"), ds, enforce_file_format=True)
    with open(labels, "w", encoding="utf-8") as handle:
        json.dump({"labels": {"background": 0, "right ventricle": 1, "myocardium": 2, "left ventricle": 3}}, handle)


def verify(folder: str, seg_path: str, nifti: str, labels: str) -> None:
    import pydicom
    import SimpleITK as sitk

    names = {name: value for name, value in json.load(open(labels, encoding="utf-8"))["labels"].items()}
    seg = pydicom.dcmread(seg_path)
    source = [pydicom.dcmread(os.path.join(folder, f), stop_before_pixels=True) for f in sorted(os.listdir(folder))]
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4", seg.SOPClassUID
    assert seg.FrameOfReferenceUID == FRAME_OF_REFERENCE, seg.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID
    value = {int(s.SegmentNumber): names[s.SegmentLabel] for s in seg.SegmentSequence}
    nii = sitk.ReadImage(nifti)
    mask = sitk.GetArrayFromImage(nii)
    origin, spacing = np.array(nii.GetOrigin()), np.array(nii.GetSpacing())
    z_axis = np.array(nii.GetDirection()).reshape(3, 3)[:, 2]
    got = np.zeros_like(mask)
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        position = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        k = int(round(float((position - origin) @ z_axis / spacing[2])))
        got[k][frame.astype(bool)] = value[int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]
    assert np.array_equal(got, mask), f"{int((got != mask).sum())} voxels differ from the NIfTI mask"
    labels_present = sorted(int(v) for v in np.unique(mask) if v)
    print(f"    SEG ok: {len(frames)} frames, segments {[s.SegmentLabel for s in seg.SegmentSequence]}, "
          f"labels {labels_present} on the NIfTI's voxels")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"make": make, "verify": verify}[command](*args)
