"""Tests of topofix.io: round trips, refusals with one-line messages, atomic writes.

Every test image is made here (small arrays, ``tmp_path``), so the file runs in
a few seconds.  Several tests first show a SimpleITK trap (e.g. a truncated
``.nii.gz`` read without error) and then that topofix refuses the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from badfiles import png_bytes as _png_bytes
from badfiles import png_chunk as _png_chunk
from hypothesis import given, settings
from hypothesis import strategies as st

from topofix.errors import InputError, OutputError
from topofix.io import (
    SUPPORTED_EXTENSIONS,
    Geometry,
    Image,
    image_extension,
    is_supported_image,
    read_image,
    read_mask,
    write_image,
    write_mask,
)
from topofix.io import write as tio_write

# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _rotation3(a: float, b: float) -> tuple[float, ...]:
    ca, sa, cb, sb = math.cos(a), math.sin(a), math.cos(b), math.sin(b)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])
    return tuple((rz @ rx).ravel())


def _rotation2(a: float) -> tuple[float, ...]:
    return (math.cos(a), -math.sin(a), math.sin(a), math.cos(a))


GEOM3 = Geometry((0.7, 1.25, 8.0), (10.5, -3.25, 42.0), _rotation3(0.3, 0.2))
GEOM2 = Geometry((0.7, 1.25), (3.0, -4.0), _rotation2(0.3))


def _labels(shape, high=4, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, shape).astype(np.uint8)


def _assert_error(excinfo, path, *keywords) -> str:
    """The error is one line, names the file and mentions each keyword."""
    msg = str(excinfo.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert str(path) in msg, msg
    for kw in keywords:
        assert kw.lower() in msg.lower(), (kw, msg)
    assert "Exception thrown in SimpleITK" not in msg
    return msg


def _tmp_dirs(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".topofix-tmp-")]


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    assert 0 < keep < len(data)
    path.write_bytes(data[:keep])


def _assert_geometry(ext: str, got: Geometry, want: Geometry) -> None:
    if ext in (".mha", ".mhd"):
        assert got == want  # %.17g text: exact
    elif ext in (".nrrd", ".nhdr"):
        # NRRD stores spacing*direction ("space directions"): ~1 ulp off.
        assert got.origin == want.origin
        np.testing.assert_allclose(got.spacing, want.spacing, rtol=1e-12)
        np.testing.assert_allclose(got.direction, want.direction, rtol=1e-12, atol=1e-15)
    elif ext in (".nii", ".nii.gz"):
        # NIfTI stores everything as float32.
        np.testing.assert_allclose(got.spacing, want.spacing, rtol=1e-6)
        np.testing.assert_allclose(got.origin, want.origin, rtol=1e-6)
        np.testing.assert_allclose(got.direction, want.direction, rtol=1e-6, atol=1e-6)
    elif ext == ".png":
        # PNG keeps only the spacing (sCAL chunk); origin/direction come back as defaults.
        np.testing.assert_allclose(got.spacing, want.spacing, rtol=1e-5)
        assert got.origin == (0.0,) * want.ndim
        assert got.direction == Geometry.identity(want.ndim).direction
    else:  # pragma: no cover
        raise AssertionError(ext)


ALL_EXTS = [".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr", ".png"]
EXTS_3D = [e for e in ALL_EXTS if e != ".png"]


# --------------------------------------------------------------------------- #
# Extensions and data classes
# --------------------------------------------------------------------------- #


def test_supported_extensions_constant():
    assert set(SUPPORTED_EXTENSIONS) == set(ALL_EXTS)


@pytest.mark.parametrize(
    ("name", "ext"),
    [
        ("a/b/mask.nii.gz", ".nii.gz"),
        ("MASK.NII.GZ", ".nii.gz"),
        ("x.nii", ".nii"),
        ("x.v2.mha", ".mha"),
        ("x.MHD", ".mhd"),
        ("x.nrrd", ".nrrd"),
        ("x.nhdr", ".nhdr"),
        ("slice.Png", ".png"),
        ("x.gz", None),
        ("x.tar.gz", None),
        ("x.txt", None),
        ("nii.gz", None),
        ("noext", None),
    ],
)
def test_image_extension(name, ext):
    assert image_extension(name) == ext
    assert image_extension(Path(name)) == ext
    assert is_supported_image(name) is (ext is not None)


def test_geometry_identity_dict_and_validation():
    g = Geometry.identity(3)
    assert g.ndim == 3
    assert g.spacing == (1.0, 1.0, 1.0) and g.origin == (0.0, 0.0, 0.0)
    assert g.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert Geometry.from_dict(GEOM3.to_dict()) == GEOM3
    assert isinstance(GEOM3.to_dict()["spacing"], list)
    assert Geometry([1, 2], [0, 0], [1, 0, 0, 1]).spacing == (1.0, 2.0)  # normalised to float tuples
    with pytest.raises(ValueError):
        Geometry((1.0, 1.0), (0.0,), (1.0, 0.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        Geometry((1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0))
    with pytest.raises(ValueError):
        Geometry.from_dict({"spacing": [1.0]})


def test_image_checks_shape_against_geometry():
    Image(np.zeros((2, 3, 4)), GEOM3)
    Image(np.zeros((3, 4, 3)), GEOM2)  # 2D vector image (trailing component axis)
    with pytest.raises(ValueError):
        Image(np.zeros((2, 3, 4, 5, 6)), GEOM3)


# --------------------------------------------------------------------------- #
# Round trips
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("ext", ALL_EXTS)
def test_mask_round_trip_2d(tmp_path, ext):
    labels = _labels((6, 9))
    path = write_mask(tmp_path / f"m{ext}", labels, GEOM2)
    assert path == tmp_path / f"m{ext}"
    img = read_mask(path)
    assert img.array.dtype == np.uint8
    np.testing.assert_array_equal(img.array, labels)
    assert img.path == str(path)
    _assert_geometry(ext, img.geometry, GEOM2)
    assert _tmp_dirs(tmp_path) == []


@pytest.mark.parametrize("ext", EXTS_3D)
def test_mask_round_trip_3d(tmp_path, ext):
    labels = _labels((5, 6, 7))
    path = write_mask(tmp_path / f"m{ext}", labels, GEOM3)
    img = read_mask(path)
    assert np.issubdtype(img.array.dtype, np.integer)
    np.testing.assert_array_equal(img.array, labels)
    _assert_geometry(ext, img.geometry, GEOM3)
    # Axis convention: numpy (z, y, x) <-> ITK (x, y, z).
    raw = sitk.ReadImage(str(path))
    assert raw.GetSize() == labels.shape[::-1]
    np.testing.assert_allclose(raw.GetSpacing(), GEOM3.spacing, rtol=1e-6)


@pytest.mark.parametrize("ext", [".nii.gz", ".mha", ".nrrd"])
def test_image_round_trip_float(tmp_path, ext):
    data = np.random.default_rng(1).normal(size=(4, 5, 6)).astype(np.float32)
    path = write_image(tmp_path / f"img{ext}", data, GEOM3)
    img = read_image(path)
    assert img.array.dtype == np.float32
    np.testing.assert_array_equal(img.array, data)
    _assert_geometry(ext, img.geometry, GEOM3)


def test_write_image_bool_and_default_geometry(tmp_path):
    data = np.zeros((4, 5), bool)
    data[1:3, 2:4] = True
    img = read_image(write_image(tmp_path / "b.nii.gz", data))
    assert img.array.dtype == np.uint8
    np.testing.assert_array_equal(img.array, data.astype(np.uint8))
    assert img.geometry == Geometry.identity(2)


def test_png_16bit_image_round_trip(tmp_path):
    data = np.array([[0, 1000], [40000, 65535]], np.uint16)
    img = read_image(write_image(tmp_path / "x.png", data, Geometry((0.5, 2.0), (7.0, 8.0), (0.0, 1.0, 1.0, 0.0))))
    np.testing.assert_array_equal(img.array, data)
    assert img.array.dtype == np.uint16
    assert img.geometry == Geometry((0.5, 2.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))  # origin/direction dropped


@pytest.mark.parametrize(
    ("labels", "dtype"),
    [
        (np.array([0, 1, 300, 65535]), np.uint16),
        (np.array([-5, 0, 2, 300]), np.int16),
        (np.array([0, 70000, 3, 1]), np.int32),
        (np.array([-1, 0, 1, 70000]), np.int32),
        (np.array([-1, 0, 1, 2]), np.int16),
        (np.array([0, 1, 2, 255]), np.uint8),
    ],
)
@pytest.mark.parametrize("ext", [".nii.gz", ".mha", ".nrrd"])
def test_large_and_negative_labels_round_trip(tmp_path, ext, labels, dtype):
    arr = np.resize(labels.astype(np.int64), (3, 4, 5))
    img = read_mask(write_mask(tmp_path / f"l{ext}", arr, GEOM3))
    assert img.array.dtype == dtype  # the smallest type that fits was written
    np.testing.assert_array_equal(img.array, arr)


@settings(max_examples=30, deadline=None)
@given(
    lo=st.integers(-(2**40), 2**40),
    span=st.integers(0, 2**33),
    ext=st.sampled_from([".mha", ".nrrd", ".nii"]),
)
def test_label_range_round_trip_property(lo, span, ext):
    arr = np.array([lo, lo + span, lo, lo + span // 2, lo + 1 if span else lo, lo], np.int64).reshape(2, 3)
    with tempfile.TemporaryDirectory() as tmp:
        img = read_mask(write_mask(Path(tmp) / f"p{ext}", arr))
    np.testing.assert_array_equal(img.array, arr)
    info = np.iinfo(img.array.dtype)
    assert info.min <= arr.min() and arr.max() <= info.max
    # smallest: no earlier candidate fits
    for dt in (np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.int64):
        if np.dtype(dt) == img.array.dtype:
            break
        i = np.iinfo(dt)
        assert not (i.min <= arr.min() and arr.max() <= i.max)


def test_png_labels_uint16_ok_negative_refused(tmp_path):
    arr = np.array([[0, 300], [65535, 1]])
    img = read_mask(write_mask(tmp_path / "ok.png", arr))
    assert img.array.dtype == np.uint16
    np.testing.assert_array_equal(img.array, arr)
    bad = tmp_path / "neg.png"
    with pytest.raises(OutputError) as ei:
        write_mask(bad, np.array([[-1, 0], [1, 2]]))
    _assert_error(ei, bad, "png", "uint8")
    with pytest.raises(OutputError):
        write_mask(tmp_path / "big.png", np.array([[0, 70000], [1, 2]]))
    assert not bad.exists()


def test_write_mask_reference_geometry_wins(tmp_path):
    ref = Image(np.zeros((5, 6, 7), np.uint8), GEOM3, "ref.nii.gz")
    path = write_mask(tmp_path / "out.mha", _labels((5, 6, 7)), Geometry.identity(3), reference=ref)
    assert read_mask(path).geometry == GEOM3


def test_write_mask_float_and_bool_input(tmp_path):
    img = read_mask(write_mask(tmp_path / "f.nii.gz", np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)))
    assert img.array.dtype == np.uint8
    img = read_mask(write_mask(tmp_path / "b.nii.gz", np.eye(3, dtype=bool)))
    np.testing.assert_array_equal(img.array, np.eye(3, dtype=np.uint8))
    bad = tmp_path / "p.nii.gz"
    with pytest.raises(OutputError) as ei:
        write_mask(bad, np.array([[0.2, 1.0], [0.0, 0.0]]))
    _assert_error(ei, bad, "non-integer")
    with pytest.raises(OutputError) as ei:
        write_mask(bad, np.array([[np.nan, 1.0], [0.0, 0.0]]))
    _assert_error(ei, bad, "nan")
    assert not bad.exists()


def test_upper_case_extensions_round_trip(tmp_path):
    # SimpleITK alone: "X.NII.GZ" cannot be written, "X.MHA" becomes X.mhd + X.raw
    # and cannot be read back.  topofix writes and reads both.
    for name in ("U.NII.GZ", "U.MHA", "U.MHD"):
        labels = _labels((3, 4, 5), seed=3)
        path = write_mask(tmp_path / name, labels, GEOM3)
        assert path.name == name and path.exists()
        np.testing.assert_array_equal(read_mask(path).array, labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["U.MHA", "U.MHD", "U.NII.GZ", "U.zraw"]


def test_mixed_case_nifti_refused(tmp_path):
    out = tmp_path / "m.Nii.Gz"
    with pytest.raises(OutputError) as ei:
        write_mask(out, _labels((3, 4)))
    _assert_error(ei, out, "mixed-case")
    write_mask(tmp_path / "m.nii.gz", _labels((3, 4)))
    os.replace(tmp_path / "m.nii.gz", out)
    with pytest.raises(InputError) as ei:
        read_mask(out)
    _assert_error(ei, out, "mixed-case")


def test_reading_leaves_input_bytes_unchanged(tmp_path):
    for ext in (".nii.gz", ".mhd", ".png"):
        path = write_mask(tmp_path / f"r{ext}", _labels((6, 7)), GEOM2)
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        read_mask(path)
        read_image(path)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# --------------------------------------------------------------------------- #
# Refusals when reading
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("reader", [read_image, read_mask])
def test_missing_file(tmp_path, reader):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(InputError) as ei:
        reader(path)
    _assert_error(ei, path, "does not exist")


def test_directory(tmp_path):
    path = tmp_path / "folder.nii.gz"
    path.mkdir()
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "is a directory")


@pytest.mark.parametrize(("name", "shown"), [("mask.txt", "'.txt'"), ("scan.tar.gz", "'.tar.gz'"), ("noext", "no extension")])
def test_unsupported_extension(tmp_path, name, shown):
    path = tmp_path / name
    path.write_bytes(b"hello")
    with pytest.raises(InputError) as ei:
        read_image(path)
    msg = _assert_error(ei, path, "unsupported file type", shown)
    assert ".nii.gz" in msg  # lists what is supported


def test_empty_file(tmp_path):
    path = tmp_path / "empty.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "empty")


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".mha", ".png", ".nrrd"])
def test_garbage_bytes(tmp_path, ext):
    path = tmp_path / f"garbage{ext}"
    path.write_bytes(b"this is not an image at all\n" * 5)
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "cannot read image")


def test_gzip_garbage_in_nii_gz(tmp_path):
    path = tmp_path / "zipped.nii.gz"
    path.write_bytes(zlib.compress(b"x") + b"\x1f\x8b" + os.urandom(50))
    with pytest.raises(InputError) as ei:
        read_image(path)
    _assert_error(ei, path)


def test_corrupt_nrrd_header_short_reason(tmp_path):
    # Passes our magic check; SimpleITK's 8-line message is reduced to one line.
    path = tmp_path / "bad.nrrd"
    path.write_bytes(b"NRRD0004\nbogus: field\n\n" + b"\0" * 16)
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "cannot read image", "bogus")


@pytest.fixture(scope="module")
def big_labels() -> np.ndarray:
    return _labels((30, 40, 50), high=5, seed=7)


@pytest.mark.parametrize("cut", ["60%", "drop-trailer"])
def test_truncated_nii_gz(tmp_path, big_labels, cut):
    path = write_mask(tmp_path / "t.nii.gz", big_labels)
    size = path.stat().st_size
    _truncate(path, int(size * 0.6) if cut == "60%" else size - 4)
    # The trap: plain SimpleITK reads the incomplete file without any error.
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert raw.shape == big_labels.shape
    if cut == "60%":
        assert not np.array_equal(raw, big_labels)  # silently zero-filled
    for reader in (read_image, read_mask):
        with pytest.raises(InputError) as ei:
            reader(path)
        _assert_error(ei, path, "truncated")


def test_multi_member_gzip_nii_is_accepted(tmp_path, big_labels):
    # ISIZE holds only the last member's size: the full decompression fallback decides.
    path = write_mask(tmp_path / "m.nii.gz", big_labels)
    blob = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(blob[:1000]) + gzip.compress(blob[1000:]))
    np.testing.assert_array_equal(read_mask(path).array, big_labels)
    _truncate(path, path.stat().st_size - 10)
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "truncated")


def test_truncated_nii(tmp_path):
    labels = _labels((4, 5, 6))
    path = write_mask(tmp_path / "t.nii", labels)
    size = path.stat().st_size
    _truncate(path, size - 30)
    sitk.ReadImage(str(path))  # the trap: no error from SimpleITK
    with pytest.raises(InputError) as ei:
        read_mask(path)
    msg = _assert_error(ei, path, "truncated")
    assert f"expected {size} bytes, found {size - 30}" in msg


def _nifti2_bytes(arr: np.ndarray, endian: str = "<") -> bytes:
    """A minimal single-file NIfTI-2 (uint8), hand-built: SimpleITK never writes one."""
    hdr = bytearray(540)
    struct.pack_into(endian + "i", hdr, 0, 540)
    hdr[4:12] = b"n+2\x00\r\n\x1a\n"
    struct.pack_into(endian + "hh", hdr, 12, 2, 8)  # DT_UINT8, bitpix
    dims = [arr.ndim, *arr.shape[::-1]] + [1] * (7 - arr.ndim)
    struct.pack_into(endian + "8q", hdr, 16, *dims)
    struct.pack_into(endian + "8d", hdr, 104, 1.0, *([1.0] * 7))
    struct.pack_into(endian + "q", hdr, 168, 544)  # vox_offset
    struct.pack_into(endian + "d", hdr, 176, 1.0)  # scl_slope
    return bytes(hdr) + b"\0" * 4 + arr.astype(np.uint8).tobytes()


@pytest.mark.parametrize("endian", ["<", ">"])
def test_nifti2_header(tmp_path, endian):
    # This SimpleITK build (nifticlib NIFTI1_IO 2.1.0) cannot read NIfTI-2 at all:
    # we say so instead of "not recognized as a NIFTI file" ...
    arr = _labels((3, 4, 5), seed=5)
    path = tmp_path / "n2.nii"
    path.write_bytes(_nifti2_bytes(arr, endian))
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "NIfTI-2", "NIfTI-1")
    # ... and still size its 540-byte header (int64 dims) to detect truncation.
    _truncate(path, 544 + arr.size - 7)
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "truncated", f"expected {544 + arr.size} bytes")
    gz = tmp_path / "n2.nii.gz"
    gz.write_bytes(gzip.compress(_nifti2_bytes(arr, endian))[:-4])
    with pytest.raises(InputError) as ei:
        read_mask(gz)
    _assert_error(ei, gz, "truncated")


def test_big_endian_nifti1(tmp_path):
    arr = _labels((3, 4, 5), seed=6).astype(">i2")
    hdr = bytearray(348)
    struct.pack_into(">i", hdr, 0, 348)
    struct.pack_into(">8h", hdr, 40, 3, 5, 4, 3, 1, 1, 1, 1)
    struct.pack_into(">hh", hdr, 70, 4, 16)  # DT_INT16
    struct.pack_into(">8f", hdr, 76, *([1.0] * 8))
    struct.pack_into(">ff", hdr, 108, 352.0, 1.0)  # vox_offset, scl_slope
    hdr[344:348] = b"n+1\x00"
    path = tmp_path / "be.nii"
    path.write_bytes(bytes(hdr) + b"\0" * 4 + arr.tobytes())
    img = read_mask(path)
    np.testing.assert_array_equal(img.array, arr)
    _truncate(path, 352 + arr.nbytes - 2)
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "truncated", f"expected {352 + arr.nbytes} bytes")


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_mha(tmp_path, compressed):
    labels = _labels((8, 9, 10), seed=2)
    writer = write_mask if compressed else write_image  # write_image does not compress .mha
    path = writer(tmp_path / "t.mha", labels)
    assert (b"CompressedData = True" in path.read_bytes()) is compressed
    _truncate(path, path.stat().st_size - 20)
    with pytest.raises(RuntimeError) as raw:
        sitk.ReadImage(str(path))
    assert "\n" in str(raw.value)  # SimpleITK: multi-line, misleading reason
    with pytest.raises(InputError) as ei:
        read_image(path)
    _assert_error(ei, path, "truncated", "expected")


def test_truncated_mha_header(tmp_path):
    path = write_image(tmp_path / "h.mha", _labels((3, 4)))
    _truncate(path, 40)
    with pytest.raises(InputError) as ei:
        read_image(path)
    _assert_error(ei, path, "truncated")


def test_mhd_data_file_missing_or_truncated(tmp_path):
    path = write_image(tmp_path / "d.mhd", _labels((4, 5, 6)))
    data = tmp_path / "d.raw"
    assert data.exists()
    _truncate(data, 50)
    with pytest.raises(InputError) as ei:
        read_image(path)
    _assert_error(ei, path, "truncated", "d.raw", "expected 120 bytes")
    data.unlink()
    with pytest.raises(InputError) as ei:
        read_image(path)
    _assert_error(ei, path, "d.raw", "does not exist")


@pytest.mark.parametrize("ext", [".nrrd", ".png"])
def test_truncated_nrrd_png(tmp_path, ext):
    path = write_image(tmp_path / f"t{ext}", _labels((30, 40), high=200, seed=4))
    _truncate(path, int(path.stat().st_size * 0.7))
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "truncated")


def test_4d_nifti_refused(tmp_path):
    vol = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.uint8))
    path = tmp_path / "4d.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([vol, vol]), str(path))
    for reader in (read_image, read_mask):
        with pytest.raises(InputError) as ei:
            reader(path)
        _assert_error(ei, path, "4D image", "(2, 3, 4, 5)")


@pytest.mark.parametrize("ext", [".nii.gz", ".mha"])
def test_vector_image(tmp_path, ext):
    arr = np.random.default_rng(0).integers(0, 9, (3, 4, 5, 2)).astype(np.uint8)
    path = tmp_path / f"v{ext}"
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=True), str(path))
    with pytest.raises(InputError) as ei:
        read_image(path)
    _assert_error(ei, path, "vector image with 2 components")
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "2 components", "scalar")
    img = read_image(path, allow_vector=True)
    np.testing.assert_array_equal(img.array, arr)
    assert img.geometry.ndim == 3


def _write_rgb_png(path: Path, rgb: np.ndarray) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(path))
    return path


def test_rgb_png_equal_channels_accepted(tmp_path):
    grey = _labels((5, 6), high=3)
    path = _write_rgb_png(tmp_path / "rgb.png", np.stack([grey] * 3, axis=-1))
    img = read_mask(path)
    np.testing.assert_array_equal(img.array, grey)
    assert img.array.ndim == 2 and img.geometry.ndim == 2
    with pytest.raises(InputError) as ei:
        read_image(path)  # read_image wants a scalar image
    _assert_error(ei, path, "vector image with 3 components", "RGB PNG")


def test_rgb_png_differing_channels_refused(tmp_path):
    rgb = np.stack([_labels((5, 6), seed=s) for s in range(3)], axis=-1)
    path = _write_rgb_png(tmp_path / "colour.png", rgb)
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "RGB PNG", "differing channels", "greyscale")


def test_rgba_png(tmp_path):
    grey = _labels((5, 6), high=3)
    alpha = np.full_like(grey, 255)
    ok = _write_rgb_png(tmp_path / "ok.png", np.stack([grey, grey, grey, alpha], axis=-1))
    np.testing.assert_array_equal(read_mask(ok).array, grey)
    alpha[0, 0] = 0
    bad = _write_rgb_png(tmp_path / "alpha.png", np.stack([grey, grey, grey, alpha], axis=-1))
    with pytest.raises(InputError) as ei:
        read_mask(bad)
    _assert_error(ei, bad, "RGBA PNG", "alpha")
    grey2 = grey.copy()
    grey2[1, 1] += 1
    bad2 = _write_rgb_png(tmp_path / "diff.png", np.stack([grey, grey2, grey, np.full_like(grey, 255)], axis=-1))
    with pytest.raises(InputError) as ei:
        read_mask(bad2)
    _assert_error(ei, bad2, "RGBA PNG", "differing channels")


def test_palette_png(tmp_path):
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    colour = tmp_path / "palette.png"
    colour.write_bytes(_png_bytes(idx, 3, _png_chunk(b"PLTE", bytes([0, 0, 0, 10, 20, 30, 255, 255, 255]))))
    # SimpleITK expands palette indices to RGB colours:
    assert sitk.ReadImage(str(colour)).GetNumberOfComponentsPerPixel() == 3
    with pytest.raises(InputError) as ei:
        read_mask(colour)
    _assert_error(ei, colour, "palette PNG", "differing channels")
    # A grey palette passes, with the palette's grey levels (not the indices) as labels.
    grey = tmp_path / "grey_palette.png"
    grey.write_bytes(_png_bytes(idx, 3, _png_chunk(b"PLTE", bytes([0, 0, 0, 7, 7, 7, 9, 9, 9]))))
    np.testing.assert_array_equal(read_mask(grey).array, np.array([[0, 7, 9], [9, 7, 0]]))


def test_grey_alpha_png_refused(tmp_path):
    ga = np.zeros((2, 3, 2), np.uint8)
    ga[..., 0] = [[0, 1, 2], [2, 1, 0]]
    ga[..., 1] = 255
    path = tmp_path / "ga.png"
    path.write_bytes(_png_bytes(ga, 4))
    with pytest.raises(RuntimeError, match="Unknown PixelType"):
        sitk.ReadImage(str(path))
    for reader in (read_image, read_mask):
        with pytest.raises(InputError) as ei:
            reader(path)
        _assert_error(ei, path, "grey+alpha PNG is not supported")


def test_hand_built_grey_png_reads(tmp_path):
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    path = tmp_path / "g.png"
    path.write_bytes(_png_bytes(idx, 0))
    img = read_mask(path)
    np.testing.assert_array_equal(img.array, idx)
    assert img.geometry == Geometry.identity(2)


def _write_float_nii(path: Path, arr: np.ndarray) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".mha", ".nrrd"])
@pytest.mark.parametrize("fdtype", [np.float32, np.float64])
def test_nan_inf_mask_refused(tmp_path, bad, ext, fdtype):
    arr = np.zeros((3, 4, 5), fdtype)
    arr[1, 2, 3] = bad
    path = _write_float_nii(tmp_path / f"f{ext}", arr)
    if ext.startswith(".nii"):
        # The trap: nifticlib silently reads NaN/Inf back as 0.
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[1, 2, 3] == 0
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "NaN or Inf")
    # ... and as an image, in every format alike (NIfTI used to come back with 0 there)
    with pytest.raises(InputError) as ei:
        read_image(path)
    _assert_error(ei, path, "image contains NaN or Inf values")
    arr[1, 2, 3] = 0.5
    np.testing.assert_array_equal(read_image(_write_float_nii(tmp_path / f"ok{ext}", arr)).array, arr)


def test_probability_map_refused_as_mask(tmp_path):
    arr = np.zeros((3, 4, 5), np.float32)
    arr[1] = 0.75
    path = _write_float_nii(tmp_path / "prob.nii.gz", arr)
    with pytest.raises(InputError) as ei:
        read_mask(path)
    _assert_error(ei, path, "non-integer", "threshold")


@pytest.mark.parametrize(("values", "dtype"), [([0, 1, 2, 3], np.uint8), ([-2, 0, 1, 2], np.int16), ([0, 1, 2, 300], np.uint16)])
@pytest.mark.parametrize("fdtype", [np.float32, np.float64])
def test_integer_valued_float_mask_accepted(tmp_path, values, dtype, fdtype):
    arr = np.resize(np.array(values, fdtype), (3, 4, 5))
    path = _write_float_nii(tmp_path / "f.nii.gz", arr)
    img = read_mask(path)
    assert img.array.dtype == dtype
    np.testing.assert_array_equal(img.array, arr)


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("ext", [".nii.gz", ".mha", ".png"])
def test_no_silent_overwrite(tmp_path, ext):
    path = write_mask(tmp_path / f"o{ext}", _labels((4, 5), seed=1))
    before = path.read_bytes()
    with pytest.raises(OutputError) as ei:
        write_mask(path, _labels((4, 5), seed=2))
    _assert_error(ei, path, "already exists", "overwrite")
    assert path.read_bytes() == before
    write_mask(path, _labels((4, 5), seed=2), overwrite=True)
    np.testing.assert_array_equal(read_mask(path).array, _labels((4, 5), seed=2))
    assert _tmp_dirs(tmp_path) == []


def test_mhd_existing_data_file_not_overwritten(tmp_path):
    stale = tmp_path / "m.zraw"
    stale.write_bytes(b"precious")
    path = tmp_path / "m.mhd"
    with pytest.raises(OutputError) as ei:
        write_mask(path, _labels((3, 4, 5)))
    _assert_error(ei, path, "m.zraw", "already exists")
    assert stale.read_bytes() == b"precious"
    assert not path.exists()
    assert _tmp_dirs(tmp_path) == []
    write_mask(path, _labels((3, 4, 5)), overwrite=True)
    np.testing.assert_array_equal(read_mask(path).array, _labels((3, 4, 5)))


def test_png_3d_refused(tmp_path):
    path = tmp_path / "vol.png"
    for writer in (write_image, write_mask):
        with pytest.raises(OutputError) as ei:
            writer(path, _labels((3, 4, 5)))
        _assert_error(ei, path, "2D images only", "(3, 4, 5)")
    assert not path.exists()


def test_png_dtype_refused_by_write_image(tmp_path):
    path = tmp_path / "f.png"
    with pytest.raises(OutputError) as ei:
        write_image(path, np.zeros((3, 4), np.float32))
    _assert_error(ei, path, "uint8", "float32")


def test_write_refusals(tmp_path):
    with pytest.raises(OutputError) as ei:
        write_mask(tmp_path / "x.tif", _labels((3, 4)))
    _assert_error(ei, tmp_path / "x.tif", "unsupported file type", "'.tif'")
    with pytest.raises(OutputError) as ei:
        write_mask(tmp_path / "x.nii.gz", _labels((3, 4)), GEOM3)
    _assert_error(ei, tmp_path / "x.nii.gz", "geometry is 3D", "2D")
    with pytest.raises(OutputError) as ei:
        write_image(tmp_path / "x.nii.gz", np.zeros((2, 3, 4, 5)))
    _assert_error(ei, tmp_path / "x.nii.gz", "2D or 3D")
    (tmp_path / "d.nii.gz").mkdir()
    with pytest.raises(OutputError) as ei:
        write_mask(tmp_path / "d.nii.gz", _labels((3, 4)), overwrite=True)
    _assert_error(ei, tmp_path / "d.nii.gz", "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.nii.gz"]


@pytest.mark.parametrize(
    ("geometry", "keyword"),
    [
        (Geometry((0.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)), "spacing"),
        (Geometry((-1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)), "spacing"),
        (Geometry((1.0, 1.0), (math.nan, 0.0), (1.0, 0.0, 0.0, 1.0)), "origin"),
        (Geometry((1.0, 1.0), (0.0, 0.0), (1.0, 1.0, 1.0, 1.0)), "singular"),
    ],
)
def test_invalid_geometry_refused(tmp_path, geometry, keyword):
    path = tmp_path / "g.nii.gz"
    with pytest.raises(OutputError) as ei:
        write_mask(path, _labels((3, 4)), geometry)
    _assert_error(ei, path, "invalid geometry", keyword)
    assert list(tmp_path.iterdir()) == []


def test_creates_parent_directories(tmp_path):
    path = write_mask(tmp_path / "a" / "b" / "m.nrrd", _labels((3, 4)))
    assert path.exists()
    assert _tmp_dirs(path.parent) == []


def test_write_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("Exception thrown in SimpleITK WriteImage: x.cxx:1:\nITK ERROR: NiftiImageIO(0x1): disk on fire\n")

    monkeypatch.setattr(tio_write.sitk, "WriteImage", boom)
    path = tmp_path / "out" / "m.nii.gz"
    with pytest.raises(OutputError) as ei:
        write_mask(path, _labels((3, 4)))
    _assert_error(ei, path, "cannot write image", "disk on fire")
    assert list((tmp_path / "out").iterdir()) == []


def test_failure_while_moving_leaves_no_partial_mhd(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(Path(dst).name)
        if Path(dst).suffix == ".mhd":  # data file moved, then the header fails
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(tio_write.os, "replace", flaky_replace)
    path = tmp_path / "m.mhd"
    with pytest.raises(OutputError) as ei:
        write_image(path, _labels((3, 4, 5)))
    _assert_error(ei, path, "No space left")
    assert calls == ["m.raw", "m.mhd"]  # data file first, header last
    assert list(tmp_path.iterdir()) == []


def test_interrupt_leaves_no_temp_dir(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tio_write.sitk, "WriteImage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "m.mha", _labels((3, 4)))
    assert list(tmp_path.iterdir()) == []
