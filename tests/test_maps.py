"""Tests of topofix.maps: the inputs of ``topofix repair`` (nnU-Net .npz, probability images, label maps).

Every file is made here, the way the tool in question writes it: an nnU-Net
case is ``np.savez_compressed(probabilities=...)`` plus its segmentation
written by SimpleITK (as nnU-Net's SimpleITKIO does) plus a ``.pkl``; a MONAI
map is a 4D NIfTI.  Expected geometry comes from SimpleITK reading the file
back, expected numbers from hand derivations or a brute-force distance
transform, never from the code under test.
"""

from __future__ import annotations

import builtins
import io
import math
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from badfiles import png_bytes
from scipy.special import softmax

from topofix.errors import InputError
from topofix.maps import (
    PSEUDO_WIDTH,
    SUM_TOLERANCE,
    expand_map_inputs,
    pseudo_probabilities,
    read_map_input,
)

# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _rotation3(a: float, b: float) -> tuple[float, ...]:
    ca, sa, cb, sb = math.cos(a), math.sin(a), math.cos(b), math.sin(b)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])
    return tuple((rz @ rx).ravel())


SPACING = (1.5, 0.8, 0.7)
ORIGIN = (12.5, -40.25, 101.0)
DIRECTION = _rotation3(0.4, -0.25)


def _softmax_from_labels(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """float32 probabilities (n, *shape) summing to 1 whose argmax is ``labels`` (dominant channel 0.6+)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((n, *labels.shape)) * 0.3
    onehot = np.eye(n)[labels].transpose(-1, *range(labels.ndim)) * 3.0
    p = (noise + onehot) / (noise + onehot).sum(axis=0)
    return p.astype(np.float32)


def _write_sitk(path: Path, array: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=DIRECTION, vector=False):
    img = sitk.GetImageFromArray(array, isVector=vector)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    sitk.WriteImage(img, str(path), True)
    return path


class _Trap:
    """Pickles into a call of ``open(marker, "w")``: unpickling it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _trap_pickle(path: Path, marker: Path) -> bytes:
    data = pickle.dumps({"spacing": [1, 1, 1], "trap": _Trap(marker)}, protocol=4)
    # It really is a call of Path.touch: shown without unpickling it.
    names = [arg for op, arg, _ in pickletools.genops(data) if op.name in ("SHORT_BINUNICODE", "BINUNICODE")]
    assert "open" in names and str(marker) in names
    path.write_bytes(data)
    return data


def _nnunet_case(folder: Path, stem: str = "case", labels=None, n: int = 3, probs=None, ext=".nii.gz"):
    """An nnU-Net v2 --save_probabilities output: <stem>.npz, <stem><ext>, <stem>.pkl."""
    folder.mkdir(parents=True, exist_ok=True)
    if labels is None:
        labels = np.random.default_rng(1).integers(0, n, (6, 7, 8)).astype(np.uint8)
    if probs is None:
        probs = _softmax_from_labels(labels, n)
    np.savez_compressed(folder / f"{stem}.npz", probabilities=probs)
    if ext == ".png":
        sitk.WriteImage(sitk.GetImageFromArray(labels), str(folder / f"{stem}{ext}"))
    else:
        _write_sitk(folder / f"{stem}{ext}", labels)
    (folder / f"{stem}.pkl").write_bytes(pickle.dumps({"spacing": [1.0, 1.0, 1.0]}))
    return folder / f"{stem}.npz", probs, labels


def _one_line(excinfo, path, *keywords) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert str(path) in msg, msg
    for kw in keywords:
        assert kw.lower() in msg.lower(), (kw, msg)
    return msg


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------- #
# nnU-Net .npz
# --------------------------------------------------------------------------- #


def test_nnunet_npz_takes_the_segmentation_geometry_and_the_array_written(tmp_path):
    npz, probs, labels = _nnunet_case(tmp_path / "preds")
    seg_file = tmp_path / "preds" / "case.nii.gz"
    back = sitk.ReadImage(str(seg_file))  # the oracle: what SimpleITK reads from the segmentation

    m = read_map_input(npz)

    assert m.kind == "nnunet" and m.path == str(npz)
    assert m.probabilities.dtype == np.float32 and np.array_equal(m.probabilities, probs)
    assert np.array_equal(m.labels, labels)
    assert m.reference.geometry.spacing == back.GetSpacing()
    assert m.reference.geometry.origin == back.GetOrigin()
    assert m.reference.geometry.direction == back.GetDirection()
    np.testing.assert_allclose(m.reference.geometry.spacing, SPACING, rtol=1e-6)  # non-trivial indeed
    np.testing.assert_allclose(m.reference.geometry.direction, DIRECTION, atol=1e-6)
    assert m.reference.path == str(seg_file)
    assert m.output_name == "case.nii.gz"
    assert m.n_channels == 3


def test_nnunet_float16_probabilities_are_accepted_exactly(tmp_path):
    labels = np.random.default_rng(2).integers(0, 2, (4, 5, 6)).astype(np.uint8)
    probs16 = _softmax_from_labels(labels, 2).astype(np.float16)
    npz, _, _ = _nnunet_case(tmp_path, labels=labels, n=2, probs=probs16)
    m = read_map_input(npz)
    assert np.array_equal(m.probabilities, probs16.astype(np.float32))


def test_nnunet_2d_npz_with_png_segmentation(tmp_path):
    labels = np.zeros((9, 11), np.uint8)
    labels[2:7, 3:9] = 1
    labels[4, 5] = 2
    # nnU-Net's own 2D layout (C, 1, y, x) and a plain (C, y, x) are both accepted.
    flat = _softmax_from_labels(labels, 3)
    for name, probs in (("flat", flat), ("nnunet", flat[:, None])):
        npz, _, _ = _nnunet_case(tmp_path / name, labels=labels, probs=probs, ext=".png")
        m = read_map_input(npz)
        assert m.kind == "nnunet" and m.output_name == "case.png"
        assert m.probabilities.shape == (3, 9, 11)
        assert np.array_equal(m.probabilities, probs.reshape(3, 9, 11))
        assert np.array_equal(m.labels, labels)


def _bad_sum(folder):
    labels = np.zeros((4, 5, 6), np.uint8)
    probs = _softmax_from_labels(labels, 3)
    probs[2, 1, 2, 3] += 0.21  # channel 2 is small here: the sum is 1.21, every value in [0, 1]
    return _nnunet_case(folder, labels=labels, probs=probs)[0]


def _label_beyond_channels(folder):
    labels = np.zeros((4, 5, 6), np.uint8)
    probs = _softmax_from_labels(labels, 3)
    labels[0, 0, 0] = 3  # a 4th label, the probabilities have 3 channels
    return _nnunet_case(folder, labels=labels, probs=probs)[0]


def _one_channel(folder):
    labels = np.zeros((4, 5, 6), np.uint8)
    return _nnunet_case(folder, labels=labels, probs=np.ones((1, 4, 5, 6), np.float32))[0]


def _shape_mismatch(folder):
    labels = np.zeros((4, 5, 6), np.uint8)
    return _nnunet_case(folder, labels=labels, probs=_softmax_from_labels(np.zeros((4, 5, 7), np.uint8), 3))[0]


def _with_value(value):
    def build(folder):
        labels = np.zeros((4, 5, 6), np.uint8)
        probs = _softmax_from_labels(labels, 2)
        probs[1, 2, 2, 2] = value
        return _nnunet_case(folder, labels=labels, probs=probs)[0]

    return build


def _logits(folder):
    labels = np.zeros((4, 5, 6), np.uint8)
    logits = np.log(_softmax_from_labels(labels, 2))
    return _nnunet_case(folder, labels=labels, probs=logits)[0]


def _integer_probabilities(folder):
    labels = np.zeros((4, 5, 6), np.uint8)
    return _nnunet_case(folder, labels=labels, probs=np.eye(2, dtype=np.int64)[labels].transpose(3, 0, 1, 2))[0]


def _no_segmentation(folder):
    npz = _nnunet_case(folder)[0]
    (folder / "case.nii.gz").unlink()
    return npz


def _two_segmentations(folder):
    npz, _, labels = _nnunet_case(folder)
    _write_sitk(folder / "case.mha", labels)
    return npz


def _v1_softmax_key(folder):
    npz, probs, _ = _nnunet_case(folder)
    np.savez_compressed(npz, softmax=probs)
    return npz


def _not_a_zip(folder):
    npz = _nnunet_case(folder)[0]
    npz.write_bytes(b"this is not a zip archive at all")
    return npz


def _single_npy(folder):
    npz, probs, _ = _nnunet_case(folder)
    with open(npz, "wb") as fh:
        np.save(fh, probs)
    return npz


def _truncated_segmentation(folder):
    npz = _nnunet_case(folder)[0]
    seg = folder / "case.nii.gz"
    seg.write_bytes(seg.read_bytes()[:-40])
    return npz


BAD_NNUNET = {
    "sum": (_bad_sum, ["do not sum to 1 over the 3 channels", "max deviation 0.21"]),
    "channels": (_label_beyond_channels, ["label 3", "3 channels"]),
    "one channel": (_one_channel, ["1 channel", "at least 2"]),
    "shape": (_shape_mismatch, ["spatial shape (4, 5, 7)", "(4, 5, 6)"]),
    "nan": (_with_value(np.nan), ["NaN"]),
    "inf": (_with_value(np.inf), ["Inf"]),
    "logits": (_logits, ["outside [0, 1]", "logits"]),
    "integer": (_integer_probabilities, ["int64", "floats"]),
    "no segmentation": (_no_segmentation, ["no segmentation beside it", "case.nii.gz"]),
    "two segmentations": (_two_segmentations, ["several segmentations", "case.mha", "case.nii.gz"]),
    "v1 key": (_v1_softmax_key, ["no 'probabilities' array", "softmax"]),
    "not a zip": (_not_a_zip, ["cannot read .npz"]),
    "single npy": (_single_npy, [".npy"]),
    "truncated segmentation": (_truncated_segmentation, ["its segmentation", "case.nii.gz", "truncated"]),
}


@pytest.mark.parametrize("case", sorted(BAD_NNUNET))
def test_bad_nnunet_output_is_one_line_naming_the_npz(tmp_path, case):
    build, keywords = BAD_NNUNET[case]
    npz = build(tmp_path)
    with pytest.raises(InputError) as excinfo:
        read_map_input(npz)
    _one_line(excinfo, npz, *keywords)


def test_tolerance_accepts_float16_rounding_but_not_more(tmp_path):
    labels = np.zeros((2, 3, 4), np.uint8)
    probs = _softmax_from_labels(labels, 2)
    probs[0, 0, 0, 0] += 0.5 * SUM_TOLERANCE
    read_map_input(_nnunet_case(tmp_path / "ok", labels=labels, probs=probs)[0])
    probs[0, 0, 0, 0] += 2 * SUM_TOLERANCE
    with pytest.raises(InputError, match="do not sum to 1"):
        read_map_input(_nnunet_case(tmp_path / "bad", labels=labels, probs=probs)[0])


def test_object_array_in_npz_is_refused_without_unpickling(tmp_path):
    npz, _, _ = _nnunet_case(tmp_path)
    marker = tmp_path / "unpickled.marker"
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap(marker)
    np.savez(npz, probabilities=trap)
    with pytest.raises(InputError) as excinfo:
        read_map_input(npz)
    _one_line(excinfo, npz, "cannot read")
    assert not marker.exists()


def test_the_pkl_beside_is_never_opened(tmp_path, monkeypatch):
    npz, probs, _ = _nnunet_case(tmp_path / "preds")
    pkl = tmp_path / "preds" / "case.pkl"
    marker = tmp_path / "unpickled.marker"
    _trap_pickle(pkl, marker)

    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            opened.append(os.path.abspath(os.fspath(file)))
        return real_open(file, *args, **kwargs)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)

    m = read_map_input(npz)
    assert np.array_equal(m.probabilities, probs)
    listed = [item.path for item in expand_map_inputs([tmp_path / "preds", str(tmp_path / "preds" / "*")])]
    assert str(pkl) not in listed
    with pytest.raises(InputError) as excinfo:  # given explicitly: refused, still not opened
        read_map_input(pkl)
    _one_line(excinfo, pkl, "pickle", "never opened")

    assert str(npz.resolve()) in {os.path.realpath(p) for p in opened}  # the spy does see opens
    assert str(pkl.resolve()) not in {os.path.realpath(p) for p in opened}
    assert not marker.exists()


# --------------------------------------------------------------------------- #
# Probability images
# --------------------------------------------------------------------------- #

GEOM4_SPACING = (0.7, 0.8, 1.5, 1.0)
GEOM4_ORIGIN = (3.0, -4.5, 60.25, 0.0)


def _direction4(block: tuple[float, ...]) -> tuple[float, ...]:
    d = np.eye(4)
    d[:3, :3] = np.asarray(block).reshape(3, 3)
    return tuple(d.ravel())


@pytest.mark.parametrize("ext", [".nii.gz", ".mha", ".nrrd"])
def test_4d_probability_image(tmp_path, ext):
    labels = np.random.default_rng(3).integers(0, 4, (5, 6, 7)).astype(np.uint8)
    probs = _softmax_from_labels(labels, 4)
    path = _write_sitk(tmp_path / f"monai_prob{ext}", probs, GEOM4_SPACING, GEOM4_ORIGIN, _direction4(DIRECTION))

    m = read_map_input(path)

    assert m.kind == "probabilities" and m.output_name == f"monai_prob{ext}"
    assert np.array_equal(m.probabilities, probs)
    assert np.array_equal(m.labels, labels)
    g = m.reference.geometry
    assert g.ndim == 3 and m.labels.shape == m.reference.array.shape == (5, 6, 7)
    np.testing.assert_allclose(g.spacing, GEOM4_SPACING[:3], rtol=1e-6)
    np.testing.assert_allclose(g.origin, GEOM4_ORIGIN[:3], atol=1e-5)
    np.testing.assert_allclose(g.direction, DIRECTION, atol=1e-6)


def test_vector_probability_image_channels_last(tmp_path):
    """SimpleITK (and nibabel) write channels as vector components: a 5D (x, y, z, 1, C) NIfTI."""
    labels = np.random.default_rng(4).integers(0, 3, (4, 5, 6)).astype(np.uint8)
    probs = _softmax_from_labels(labels, 3)
    path = _write_sitk(tmp_path / "vec.nii.gz", np.moveaxis(probs, 0, -1).copy(), vector=True)
    m = read_map_input(path)
    assert m.kind == "probabilities"
    assert np.array_equal(m.probabilities, probs) and np.array_equal(m.labels, labels)
    np.testing.assert_allclose(m.reference.geometry.spacing, SPACING, rtol=1e-6)


def test_single_channel_float_map_is_one_foreground_probability(tmp_path):
    p = np.linspace(0, 1, 4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    path = _write_sitk(tmp_path / "liver_prob.mha", p)
    m = read_map_input(path)
    assert m.kind == "probabilities" and m.output_name == "liver_prob.mha"
    assert np.array_equal(m.probabilities[1], p) and np.array_equal(m.probabilities[0], 1 - p)
    assert np.array_equal(m.labels, (p >= 0.5).astype(np.uint8))
    assert m.reference.geometry.spacing == SPACING and m.reference.geometry.origin == ORIGIN


def test_4d_sigmoids_that_do_not_sum_to_one_are_refused(tmp_path):
    sig = np.full((2, 3, 4, 5), 0.7, np.float32)  # two per-label sigmoids, no background channel
    path = _write_sitk(tmp_path / "sig.nii.gz", sig, GEOM4_SPACING, GEOM4_ORIGIN, _direction4(DIRECTION))
    with pytest.raises(InputError) as excinfo:
        read_map_input(path)
    _one_line(excinfo, path, "do not sum to 1 over the 2 channels", "max deviation 0.4")


def test_nan_in_4d_nifti_is_refused_although_simpleitk_reads_it_as_zero(tmp_path):
    probs = _softmax_from_labels(np.zeros((3, 4, 5), np.uint8), 2)
    probs[:, 1, 1, 1] = [np.nan, 1.0]
    path = _write_sitk(tmp_path / "nan.nii.gz", probs, GEOM4_SPACING, GEOM4_ORIGIN, _direction4(DIRECTION))
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()  # the trap
    with pytest.raises(InputError) as excinfo:
        read_map_input(path)
    _one_line(excinfo, path, "NaN")


def test_float_map_outside_unit_interval_is_refused(tmp_path):
    scan = np.random.default_rng(5).normal(40, 200, (4, 5, 6)).astype(np.float32)
    path = _write_sitk(tmp_path / "ct.nii.gz", scan)
    with pytest.raises(InputError) as excinfo:
        read_map_input(path)
    _one_line(excinfo, path, "outside [0, 1]", "neither a probability map nor a label map")


def test_rgb_png_is_refused(tmp_path):
    rows = np.zeros((4, 5, 3), np.uint8)
    rows[..., 0] = 200  # red: channels differ
    path = tmp_path / "overlay.png"
    path.write_bytes(png_bytes(rows, colour_type=2))
    with pytest.raises(InputError) as excinfo:
        read_map_input(path)
    _one_line(excinfo, path, "RGB")


def test_five_dimensional_scalar_image_is_refused(tmp_path):
    path = tmp_path / "5d.mha"
    img = sitk.Image([3, 4, 5, 2, 2], sitk.sitkFloat32)
    sitk.WriteImage(img, str(path))
    with pytest.raises(InputError) as excinfo:
        read_map_input(path)
    _one_line(excinfo, path, "5D")


# --------------------------------------------------------------------------- #
# Label maps and pseudo-probabilities
# --------------------------------------------------------------------------- #


def test_label_map_input(tmp_path):
    labels = np.zeros((6, 12, 12), np.uint8)
    labels[1:5, 2:10, 2:10] = 1
    labels[2:4, 4:8, 4:8] = 3  # label 2 absent: still a channel
    path = _write_sitk(tmp_path / "totalseg.nii.gz", labels)
    m = read_map_input(path)
    assert m.kind == "labels" and m.output_name == "totalseg.nii.gz"
    assert np.array_equal(m.labels, labels)
    assert m.probabilities.shape == (4, 6, 12, 12) and m.probabilities.dtype == np.float32
    assert np.array_equal(m.probabilities.argmax(axis=0), labels)
    np.testing.assert_allclose(m.probabilities.sum(axis=0), 1, atol=1e-6)
    # The absent label sits at the logit floor -8: at most e^-8 / (e^(1/3) + e^(-1/3)) = 1.6e-4.
    assert m.probabilities[2].max() < 1.7e-4
    back = sitk.ReadImage(str(path))
    assert m.reference.geometry.spacing == back.GetSpacing() and m.reference.geometry.direction == back.GetDirection()


def test_float_label_map_with_integer_values_is_a_label_map(tmp_path):
    labels = np.zeros((4, 5, 6), np.float32)
    labels[1:3, 1:4, 1:5] = 2.0
    m = read_map_input(_write_sitk(tmp_path / "float_labels.nrrd", labels))
    assert m.kind == "labels" and np.array_equal(m.labels, labels.astype(np.uint8))


def test_negative_labels_are_refused(tmp_path):
    labels = np.zeros((4, 5, 6), np.int16)
    labels[1, 1, 1] = -1
    path = _write_sitk(tmp_path / "neg.nii.gz", labels)
    with pytest.raises(InputError) as excinfo:
        read_map_input(path)
    _one_line(excinfo, path, "negative label")


def _square_ring(gap: int) -> np.ndarray:
    """A 2-voxel thick square ring, outer 19x19 in a 25x25 image, with a ``gap``-voxel gap in its top side."""
    img = np.zeros((25, 25), np.uint8)
    img[3:22, 3:22] = 1
    img[5:20, 5:20] = 0  # hole 15x15, centre voxel (12, 12) 8 voxels from the ring
    if gap:
        img[3:5, 12 - gap // 2 : 12 - gap // 2 + gap] = 0
    return img


@pytest.mark.parametrize("gap", [1, 2])
def test_short_gap_keeps_the_ring_probable_and_deep_voxels_not(gap):
    ring = _square_ring(gap)
    p = pseudo_probabilities(ring)
    cols = slice(12 - gap // 2, 12 - gap // 2 + gap)
    in_gap = p[1, 3:5, cols]
    # Hand derivation: a gap voxel is 1 voxel from the ring (sd_ring = -0.5) and 1 voxel
    # deep in the background (sd_bg = +0.5): p = sigmoid(-1 / width) = 0.339.
    expected = _sigmoid(-1.0 / PSEUDO_WIDTH)
    assert expected == pytest.approx(0.3392, abs=1e-4)
    np.testing.assert_allclose(in_gap, expected, rtol=1e-5)
    assert 0.3 <= in_gap.min() and in_gap.max() <= 0.45  # well above the 0.2 evidence floor
    # Hole centre: 8 voxels from the ring and 8 deep: sigmoid(-15 / width) = 4.5e-5.
    assert p[1, 12, 12] == pytest.approx(_sigmoid(-15 / PSEUDO_WIDTH), rel=1e-4)
    assert p[1, 12, 12] < 1e-4
    # On the ring itself: sigmoid(+1 / width) = 0.66, so the ring stays the ring.
    assert p[1, 10, 3] == pytest.approx(_sigmoid(1 / PSEUDO_WIDTH), rel=1e-5)
    assert np.array_equal(p.argmax(axis=0), ring)


def test_three_voxel_gap_middle_falls_below_the_floor():
    """The middle of a 3-voxel gap is 2 voxels from the ring and 2 deep: sigmoid(-3 / width) = 0.119."""
    p = pseudo_probabilities(_square_ring(3))
    assert p[1, 3, 12] == pytest.approx(_sigmoid(-3 / PSEUDO_WIDTH), rel=1e-5)
    assert 0.11 < p[1, 3, 12] < 0.2
    np.testing.assert_allclose(p[1, 3:5, 11], _sigmoid(-1 / PSEUDO_WIDTH), rtol=1e-5)  # its ends: 0.339


def test_corner_and_depth_numbers_of_the_table():
    """The module docstring's table, at hand-placed voxels around a single-voxel structure."""
    dot = np.zeros((13, 13), np.uint8)
    dot[6, 6] = 1
    p = pseudo_probabilities(dot)[1]
    assert p[6, 7] == pytest.approx(_sigmoid(-1 / PSEUDO_WIDTH), rel=1e-5)  # face neighbour: 0.339
    assert p[7, 7] == pytest.approx(_sigmoid(-(2 * math.sqrt(2) - 1) / PSEUDO_WIDTH), rel=1e-5)  # corner: 0.228
    assert p[6, 9] == pytest.approx(_sigmoid(-5 / PSEUDO_WIDTH), rel=1e-5)  # 3 away, 3 deep: 0.034
    assert p[6, 11] == pytest.approx(_sigmoid(-9 / PSEUDO_WIDTH), rel=1e-4)  # 5 away, 5 deep: 0.0025
    assert p[6, 6] == pytest.approx(_sigmoid(1 / PSEUDO_WIDTH), rel=1e-5)  # the structure itself: 0.661


def _checkerboard(shape):
    return (np.indices(shape).sum(axis=0) % 2).astype(np.uint8)


ARGMAX_CASES = {
    "random 2D, 5 labels": np.random.default_rng(6).integers(0, 5, (17, 19)).astype(np.uint8),
    "random 3D, 4 labels": np.random.default_rng(7).integers(0, 4, (7, 9, 8)).astype(np.uint16),
    "checkerboard (every voxel a boundary)": _checkerboard((9, 10)),
    "checkerboard 3D": _checkerboard((5, 6, 7)),
    "single voxels": np.pad(np.eye(5, dtype=np.int32) * 2, 2),
    "one label everywhere": np.ones((4, 6), np.uint8),
    "background only": np.zeros((3, 4, 5), np.uint8),
    "labels on the border": np.pad(np.ones((3, 3), np.uint8) * 2, ((0, 4), (4, 0)), constant_values=1),
    "bool mask": np.random.default_rng(8).random((12, 13)) > 0.5,
    "int64 labels": np.random.default_rng(9).integers(0, 3, (6, 7, 5)).astype(np.int64),
    "uint64 labels": np.random.default_rng(10).integers(0, 3, (11, 9)).astype(np.uint64),
}


@pytest.mark.parametrize("case", sorted(ARGMAX_CASES))
def test_argmax_of_pseudo_probabilities_is_the_label_map(case):
    labels = ARGMAX_CASES[case]
    p = pseudo_probabilities(labels)
    assert p.dtype == np.float32 and p.shape == (max(int(labels.max()) + 1, 2), *labels.shape)
    assert np.array_equal(p.argmax(axis=0), labels)
    np.testing.assert_allclose(p.sum(axis=0), 1, atol=1e-6)
    # Strict: the own label beats every other one at every voxel (no ties).
    own = np.take_along_axis(p, labels.astype(np.int64)[None], axis=0)[0]
    others = np.where(np.eye(p.shape[0], dtype=bool)[labels.astype(np.int64)].transpose(-1, *range(labels.ndim)), -1, p)
    assert (own > others.max(axis=0)).all()


@pytest.mark.parametrize("value", [0, 1])
def test_a_label_filling_the_image_is_certain(value):
    """No boundary at all: the own logit is the ceiling +8, the other the floor -8 (scipy's EDT needs a zero)."""
    labels = np.full((4, 6, 5), value, np.uint8)
    p = pseudo_probabilities(labels, n_labels=2)
    np.testing.assert_allclose(p[1 - value], 1 / (1 + math.exp(16)), rtol=1e-5)
    assert np.array_equal(p.argmax(axis=0), labels)


def test_extra_channels_for_absent_labels():
    labels = np.zeros((5, 5), np.uint8)
    labels[2, 2] = 1
    p = pseudo_probabilities(labels, n_labels=4)
    assert p.shape == (4, 5, 5) and np.array_equal(p.argmax(axis=0), labels)
    assert p[2:].max() < 1.7e-4  # the logit floor, see test_label_map_input


def _brute_force_pseudo(labels: np.ndarray, sampling, width: float, n: int) -> np.ndarray:
    """The definition evaluated literally: pairwise voxel distances over the whole image, no cropping."""
    coords = np.indices(labels.shape).reshape(labels.ndim, -1).T * np.asarray(sampling)
    dist = np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1))
    flat = labels.ravel()
    half, reach = min(sampling) / 2, 8.0 * width
    logits = np.full((n, flat.size), -reach)
    for k in range(n):
        inside = flat == k
        if not inside.any():
            continue
        if inside.all():
            logits[k] = reach
            continue
        to_out = dist[:, ~inside].min(axis=1)
        to_in = dist[:, inside].min(axis=1)
        logits[k] = np.clip(np.where(inside, to_out - half, half - to_in), -reach, reach)
    return softmax(logits / width, axis=0).reshape(n, *labels.shape)


@pytest.mark.parametrize("width", [PSEUDO_WIDTH, 0.6])
def test_pseudo_probabilities_equal_the_definition_with_anisotropic_spacing(width):
    labels = np.zeros((6, 9, 30), np.uint8)  # long x axis: the crop of label 2 is smaller than the image
    labels[1:4, 2:6, 2:6] = 1
    labels[2, 3:5, 3:5] = 2
    labels[3:6, 5:9, 24:28] = 3
    sampling = (2.5, 0.7, 0.9)  # numpy order (z, y, x)
    expected = _brute_force_pseudo(labels, sampling, width, 5)
    got = pseudo_probabilities(labels, n_labels=5, spacing=sampling, width=width)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    # A Geometry gives its spacing in ITK order (x, y, z): reversed for you.
    from topofix.io import Geometry

    geometry = Geometry(tuple(reversed(sampling)), (0, 0, 0), tuple(np.eye(3).ravel()))
    np.testing.assert_allclose(pseudo_probabilities(labels, 5, geometry, width), got, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"labels": np.array([[0, -1]])}, ">= 0"),
        ({"labels": np.array([[0.5, 1.0]])}, "integer"),
        ({"labels": np.array([[0, 3]]), "n_labels": 3}, "too small"),
        ({"labels": np.array([[0, 1]]), "width": 0}, "width"),
        ({"labels": np.zeros((0, 3), np.uint8)}, "non-empty"),
    ],
)
def test_pseudo_probabilities_refuse_misuse(kwargs, word):
    with pytest.raises(ValueError, match=word):
        pseudo_probabilities(**kwargs)


# --------------------------------------------------------------------------- #
# Expanding INPUT...
# --------------------------------------------------------------------------- #


def _nnunet_folder(folder: Path) -> Path:
    """What nnUNetv2_predict --save_probabilities leaves, plus a TotalSegmentator label map and topofix outputs."""
    _nnunet_case(folder, "case_001")
    _nnunet_case(folder, "case_002")
    for name in ("plans.json", "dataset.json", "predict_from_raw_data_args.json", "notes.txt"):
        (folder / name).write_text("{}")
    labels = np.zeros((4, 5, 6), np.uint8)
    _write_sitk(folder / "liver.nii.gz", labels)  # a label map on its own
    _write_sitk(folder / "liver_original.nii.gz", labels)  # topofix's own output beside it
    return folder


def test_folder_lists_npz_and_lone_images_not_their_segmentations(tmp_path):
    folder = _nnunet_folder(tmp_path / "preds")
    names = [Path(item.path).name for item in expand_map_inputs([folder])]
    assert names == ["case_001.npz", "case_002.npz", "liver.nii.gz"]


def test_glob_follows_the_folder_rules(tmp_path):
    folder = _nnunet_folder(tmp_path / "preds")
    items = expand_map_inputs([str(folder / "*")])
    assert all(item.error is None for item in items)
    names = [Path(i.path).name for i in items]
    assert names == ["case_001.npz", "case_002.npz", "liver.nii.gz", "liver_original.nii.gz"]  # globs: as given
    only_pkl = expand_map_inputs([str(folder / "*.pkl")])
    assert len(only_pkl) == 1 and only_pkl[0].error is not None
    assert "no image or .npz" in str(only_pkl[0].error)


def test_explicit_segmentation_of_a_listed_npz_is_dropped(tmp_path):
    folder = _nnunet_folder(tmp_path / "preds")
    items = expand_map_inputs([folder / "case_001.npz", folder / "case_001.nii.gz", folder / "case_002.nii.gz"])
    assert [Path(i.path).name for i in items] == ["case_001.npz", "case_002.nii.gz"]
    assert all(i.error is None for i in items)
    # The same folder given twice, or a file inside it given too: no duplicates.
    twice = expand_map_inputs([folder, folder / "case_001.npz", folder])
    assert [Path(i.path).name for i in twice] == ["case_001.npz", "case_002.npz", "liver.nii.gz"]


def test_problems_become_error_items(tmp_path):
    empty = tmp_path / "only_pickles"
    empty.mkdir()
    (empty / "case.pkl").write_bytes(b"never read")
    (empty / "plans.json").write_text("{}")
    link = tmp_path / "links"
    link.mkdir()
    (link / "gone.npz").symlink_to(tmp_path / "nowhere.npz")
    items = expand_map_inputs([empty, tmp_path / "missing.npz", link, tmp_path / "x.pkl"])
    errors = {Path(i.path).name: str(i.error) for i in items}
    assert "no image and no nnU-Net .npz" in errors["only_pickles"]
    assert "does not exist" in errors["missing.npz"]
    assert "broken symbolic link" in errors["gone.npz"]
    assert "does not exist" in errors["x.pkl"]
    assert all("\n" not in e for e in errors.values())
