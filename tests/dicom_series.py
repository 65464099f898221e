"""Synthetic DICOM series written with pydicom: the source scans of the DICOM-SEG tests.

Every tag the geometry depends on is set here by hand (Image Position/Orientation (Patient),
Pixel Spacing), so each test knows the answer in advance; a real-looking CT header (study,
frame of reference, patient) so that a SEG can reference the series.
"""

from __future__ import annotations

import os

import numpy as np

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
FLIPPED = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # rows run right to left: the slice normal points to the feet
_c, _s = np.cos(0.3), np.sin(0.3)
OBLIQUE = (_c, _s, 0.0, 0.0, 0.0, 1.0)  # rows along (c, s, 0), columns along z: an oblique plane

STUDY_UID = "1.2.826.0.1.3680043.2.1125.77.1"
FRAME_OF_REFERENCE_UID = "1.2.826.0.1.3680043.2.1125.77.2"


def write_pydicom_series(folder, volume: np.ndarray, *, orientation=AXIAL, spacing=(0.8, 0.7), step=2.5,
                         origin=(10.0, -5.0, 3.0), uid="1.2.826.0.1.3680043.2.1125.77.3", reverse_files=False,
                         ) -> list[np.ndarray]:
    """One CT file per slice of ``volume`` (z, y, x), slice k at ``origin + k * step * normal``
    (``step < 0``: slices along minus the normal); ``spacing`` is (x, y). Returns the positions."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    os.makedirs(folder, exist_ok=True)
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    positions = []
    n = len(volume)
    for k, plane in enumerate(volume):
        pos = np.asarray(origin, float) + k * step * normal
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = f"{uid}.{k + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, f"{uid}.{k + 1}"
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Test^Patient", "TF0001"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, uid
        ds.FrameOfReferenceUID = FRAME_OF_REFERENCE_UID
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
        ds.ReferringPhysicianName, ds.Manufacturer = "", "test"
        ds.SeriesNumber, ds.InstanceNumber = 3, (n - k if reverse_files else k + 1)
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # rows (y), columns (x)
        ds.SliceThickness = f"{abs(step):.6f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        ds.PixelData = np.ascontiguousarray(plane.astype("<i2")).tobytes()
        name = f"slice_{(n - 1 - k) if reverse_files else k:03d}.dcm"
        pydicom.dcmwrite(os.path.join(folder, name), ds, enforce_file_format=True)
        positions.append(pos)
    return positions
