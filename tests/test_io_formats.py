"""The format table of topofix.io and the ITK <-> numpy axis order, against SimpleITK itself.

Oracles: SimpleITK's own choice of ImageIO for a file name, SimpleITK's array shape and
physical points, and the literal refusal texts users have seen since before the io split
(the table now generates them; they must not change).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

import topofix.io
from topofix.errors import InputError, OutputError
from topofix.io import Geometry, read_mask, write_image, write_mask
from topofix.io.formats import FORMATS, IMAGE_IO, SUPPORTED_EXTENSIONS, format_of
from topofix.io.geometry import numpy_order


def test_public_names_unchanged():
    assert set(topofix.io.__all__) >= {
        "SUPPORTED_EXTENSIONS", "Geometry", "Image", "image_extension", "is_supported_image",
        "read_image", "read_mask", "write_image", "write_mask", "verify_image_file",
    }
    assert SUPPORTED_EXTENSIONS == (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".png")


@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
def test_table_names_the_reader_simpleitk_picks(tmp_path, ext):
    """The forced ImageIO is the one SimpleITK's own probe picks for a lower-case name."""
    img = sitk.GetImageFromArray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    path = str(tmp_path / f"x{ext}")
    sitk.WriteImage(img, path)
    assert sitk.ImageFileReader().GetImageIOFromFileName(path) == IMAGE_IO[ext]
    assert format_of(ext).image_io == IMAGE_IO[ext]


def test_every_extension_belongs_to_one_format_longest_first():
    exts = [ext for fmt in FORMATS for ext in fmt.extensions]
    assert len(exts) == len(set(exts)) and tuple(exts) == SUPPORTED_EXTENSIONS
    for i, ext in enumerate(exts):  # a suffix of an earlier one would never be matched
        assert not any(other.endswith(ext) for other in exts[i + 1 :]), ext


def test_numpy_order_is_the_order_of_simpleitk_arrays():
    img = sitk.Image([5, 6, 7], sitk.sitkUInt8)  # ITK size x, y, z
    img.SetSpacing((0.5, 0.7, 2.0))
    assert sitk.GetArrayFromImage(img).shape == numpy_order(img.GetSize()) == (7, 6, 5)
    geometry = Geometry(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    # one step along array axis k moves by array_spacing[k] in physical space
    for k in range(3):
        index = [0, 0, 0]
        index[2 - k] = 1  # array axis k is ITK axis 2 - k
        step = np.linalg.norm(np.subtract(img.TransformIndexToPhysicalPoint(index), img.GetOrigin()))
        assert step == pytest.approx(geometry.array_spacing[k])


def _problem(call, *args):
    with pytest.raises((InputError, OutputError)) as ei:
        call(*args)
    return ei.value.problem


def test_refusals_made_from_the_table_keep_their_words(tmp_path):
    assert _problem(write_image, tmp_path / "v.png", np.zeros((3, 4, 5), np.uint8)) == (
        "PNG holds 2D images only; got a 3D array of shape (3, 4, 5)"
    )
    assert _problem(write_image, tmp_path / "f.png", np.zeros((3, 4), np.float32)) == (
        "PNG stores only uint8 or uint16 pixels; got float32 (use .nii.gz, .mha or .nrrd)"
    )
    assert _problem(write_mask, tmp_path / "n.png", np.full((3, 4), 70000)) == (
        "PNG stores only uint8/uint16 labels; labels span [70000, 70000] (use .nii.gz, .mha or .nrrd)"
    )
    assert _problem(write_mask, tmp_path / "m.Nii.Gz", np.zeros((3, 4), np.uint8)) == (
        "mixed-case extension '.Nii.Gz' cannot be read back by the NIfTI reader; use '.nii.gz'"
    )
    write_mask(tmp_path / "m.nii.gz", np.zeros((3, 4), np.uint8))
    os.replace(tmp_path / "m.nii.gz", tmp_path / "m.Nii.Gz")
    assert _problem(read_mask, tmp_path / "m.Nii.Gz") == (
        "mixed-case extension '.Nii.Gz' is refused by the NIfTI reader; rename the file to end in '.nii.gz'"
    )
    assert _problem(write_mask, tmp_path / "x.tar.gz", np.zeros((3, 4), np.uint8)) == (
        "unsupported file type '.tar.gz' (supported: .nii.gz, .nii, .mha, .mhd, .nrrd, .nhdr, .png)"
    )
