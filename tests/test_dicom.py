"""DICOM series in: found in folders, read with their geometry, bad series refused in one line.

The series are written here with SimpleITK's DICOM writer (one file per slice, the image position
and orientation tags set by hand), so the geometry each test expects is known in advance; the
oracle for the voxels is the array written.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

import topofix
from topofix.dicom import dicom_scans, keep_locale, read_dicom_series
from topofix.errors import InputError
from topofix.inputs import expand_inputs

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
FLIPPED = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
c, s = np.cos(0.3), np.sin(0.3)
OBLIQUE = (c, s, 0.0, 0.0, 0.0, 1.0)  # rows along (c, s, 0), columns along z: an oblique plane


def write_series(folder, volume: np.ndarray, *, orientation=AXIAL, spacing=(0.8, 0.7), step=2.5,
                 origin=(10.0, -5.0, 3.0), uid="1.2.826.0.1.3680043.2.1125.1", positions=None,
                 orientations=None) -> list[np.ndarray]:
    """One DICOM file per slice of ``volume`` (z, y, x), int16, MR; returns the slice positions."""
    os.makedirs(folder, exist_ok=True)
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, col)
    written = []
    for k, plane in enumerate(volume):
        img = sitk.GetImageFromArray(plane.astype(np.int16)[None])
        pos = np.asarray(origin) + k * step * normal if positions is None else np.asarray(positions[k])
        iop = orientation if orientations is None else orientations[k]
        r, cl = np.asarray(iop[:3]), np.asarray(iop[3:])
        img.SetSpacing((spacing[0], spacing[1], step))  # the writer takes Pixel Spacing from here
        img.SetOrigin(tuple(pos))
        img.SetDirection(tuple(np.stack([r, cl, np.cross(r, cl)], axis=1).ravel()))
        tags = {
            "0008|0060": "MR", "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0008|0018": f"{uid}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.9", "0020|000e": uid, "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in pos), "0020|0037": "\\".join(f"{v:.6f}" for v in iop),
            "0028|0030": f"{spacing[1]:.6f}\\{spacing[0]:.6f}", "0018|0050": f"{step:.6f}",  # rows (y), columns (x)
        }
        for key, value in tags.items():
            img.SetMetaData(key, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(os.path.join(folder, f"s{uid[-1]}_{k:03d}.dcm"))
        with keep_locale():  # GDCM sets the C locale to "C": later text files would read as ASCII
            writer.Execute(img)
        written.append(pos)
    return written


def volume(shape=(6, 10, 12), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(np.int16)


@pytest.mark.parametrize("orientation", [AXIAL, FLIPPED, OBLIQUE], ids=["axial", "flipped", "oblique"])
def test_a_series_reads_with_its_geometry(tmp_path, orientation):
    vol = volume()
    positions = write_series(tmp_path / "case", vol, orientation=orientation)
    image = topofix.read_image(tmp_path / "case")
    np.testing.assert_array_equal(image.array, vol)
    assert image.geometry.spacing == pytest.approx((0.8, 0.7, 2.5), abs=1e-4)  # ITK order: x, y, z
    assert image.geometry.origin == pytest.approx(tuple(positions[0]), abs=1e-4)
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    direction = np.asarray(image.geometry.direction).reshape(3, 3)
    np.testing.assert_allclose(direction[:, 0], row, atol=1e-4)
    np.testing.assert_allclose(direction[:, 1], col, atol=1e-4)
    np.testing.assert_allclose(direction[:, 2], np.cross(row, col), atol=1e-4)


def test_slices_given_in_any_order_are_sorted_by_position(tmp_path):
    vol = volume()
    write_series(tmp_path / "case", vol)
    for k, name in enumerate(sorted(os.listdir(tmp_path / "case"))):  # file names no longer follow z
        os.rename(tmp_path / "case" / name, tmp_path / "case" / f"x{(7 * k) % 6}_{name}")
    np.testing.assert_array_equal(topofix.read_image(tmp_path / "case").array, vol)


def test_folders_of_series_and_several_series_in_one_folder(tmp_path):
    write_series(tmp_path / "cohort" / "a", volume(seed=1))
    write_series(tmp_path / "cohort" / "b", volume(seed=2), uid="1.2.826.0.1.3680043.2.1125.2")
    write_series(tmp_path / "cohort" / "b", volume(seed=3), uid="1.2.826.0.1.3680043.2.1125.3")
    scans = dicom_scans(tmp_path / "cohort")
    assert scans == [str(tmp_path / "cohort" / "a"),
                     str(tmp_path / "cohort" / "b") + "#1.2.826.0.1.3680043.2.1125.2",
                     str(tmp_path / "cohort" / "b") + "#1.2.826.0.1.3680043.2.1125.3"]
    assert [i.path for i in expand_inputs([tmp_path / "cohort"])] == scans
    np.testing.assert_array_equal(topofix.read_image(scans[2]).array, volume(seed=3))
    with pytest.raises(InputError, match="holds 2 DICOM series"):
        read_dicom_series(tmp_path / "cohort" / "b")


def test_predict_writes_a_nifti_mask_on_the_series_geometry(tmp_path):
    from typer.testing import CliRunner

    from topofix.cli.app import app

    vol = np.zeros((3, 128, 128), np.int16)
    vol[:] = (sitk.GetArrayFromImage(sitk.ReadImage("sample_data/images/img_001.png")).astype(np.int16))
    write_series(tmp_path / "series" / "case_01", vol, orientation=FLIPPED)
    model = "sample_data/models/demo_unet.pt"
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "series"), "-m", model, "-o", str(tmp_path / "out"),
                                      "--per-slice", "z", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    mask = topofix.read_mask(tmp_path / "out" / "case_01.nii.gz")
    source = topofix.read_image(tmp_path / "series" / "case_01")
    assert mask.array.shape == (3, 128, 128)
    assert mask.geometry.origin == pytest.approx(source.geometry.origin, abs=1e-3)
    assert mask.geometry.direction == pytest.approx(source.geometry.direction, abs=1e-4)
    expected = topofix.predict(source, model, per_slice="z", device="cpu").labels
    np.testing.assert_array_equal(mask.array, expected)


@pytest.mark.parametrize("problem, message", [
    ("missing", "a missing slice"),
    ("uneven", "uneven slice spacing"),
    ("mixed", "mixed slice orientations"),
])
def test_bad_series_are_refused_in_one_line_and_the_batch_goes_on(tmp_path, problem, message):
    vol = volume()
    normal = np.array([0.0, 0.0, 1.0])
    positions = [np.array([10.0, -5.0, 3.0]) + k * 2.5 * normal for k in range(6)]
    orientations = None
    if problem == "missing":
        vol, positions = np.delete(vol, 3, axis=0), positions[:3] + positions[4:]
    elif problem == "uneven":
        positions[4] = positions[4] + 0.4 * normal
    else:
        orientations = [AXIAL] * 5 + [(1.0, 0.0, 0.0, 0.0, 0.995, 0.0998)]
    write_series(tmp_path / "bad", vol, positions=positions, orientations=orientations)
    with pytest.raises(InputError, match=message) as info:
        topofix.read_image(tmp_path / "bad")
    assert "\n" not in str(info.value) and str(tmp_path / "bad") in str(info.value)


def test_reading_a_series_leaves_the_locale_as_it_was(tmp_path):
    import locale

    before = locale.setlocale(locale.LC_ALL)
    write_series(tmp_path / "case", volume())
    topofix.read_image(tmp_path / "case")
    dicom_scans(tmp_path)
    assert locale.setlocale(locale.LC_ALL) == before
