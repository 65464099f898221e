"""Model contract and inference: normalisation, padding, detection, per-slice and sliding windows."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from topofix.errors import TopofixError
from topofix.io import Geometry, Image
from topofix.models.contract import (
    ContractError,
    ModelContract,
    crop_spatial,
    detect_pad_multiple,
    detect_spatial_dims,
    normalize_array,
    pad_amounts,
    pad_spatial,
    resolve_activation,
    resolve_contract,
    to_channel_first,
)
from topofix.models.inference import (
    apply_activation,
    gaussian_weights,
    labels_from_probabilities,
    predict_probabilities,
    prepare_input,
    resolve_device,
    window_starts,
)
from topofix.nets import SmallUNet
from topofix.prediction import Prediction, predict


def unet(out=3, *, depth=2, dims=2, seed=0, in_channels=1):
    torch.manual_seed(seed)
    return SmallUNet(in_channels, out, base=4, depth=depth, dims=dims).eval()


class Counting(nn.Module):
    """Wraps a module and counts forward calls (probes are cached)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


class FixedShape(nn.Module):
    """Accepts exactly one spatial shape, like a network traced with shape logic."""

    def __init__(self, shape, out=2):
        super().__init__()
        self.shape = tuple(shape)
        self.conv = nn.Conv3d(1, out, 1)

    def forward(self, x):
        if tuple(x.shape[2:]) != self.shape:
            raise RuntimeError(f"shape {tuple(x.shape[2:])} != {self.shape}")
        return self.conv(x)


# --------------------------------------------------------------------------- #
# Normalisation
# --------------------------------------------------------------------------- #


def test_zscore_by_hand():
    x = np.array([[1, 2], [3, 4]], np.int16)
    mean, std = 2.5, math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 4)
    expected = (np.array([[1, 2], [3, 4]]) - mean) / std
    got = normalize_array(x, "zscore")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_minmax_and_none_by_hand():
    x = np.array([2.0, 4.0, 10.0])
    np.testing.assert_allclose(normalize_array(x, "minmax"), [0.0, 0.25, 1.0])
    np.testing.assert_array_equal(normalize_array(x, "none"), x.astype(np.float32))


def test_percentile_by_hand():
    # 0..200: the 0.5th percentile is 1, the 99.5th is 199 (linear interpolation);
    # an outlier at 10000 replaces 200, and -500 replaces 0.
    x = np.arange(201, dtype=np.float64)
    x[0], x[200] = -500, 10000
    clipped = [1.0] + list(range(1, 200)) + [199.0]
    mean = sum(clipped) / len(clipped)
    std = math.sqrt(sum((v - mean) ** 2 for v in clipped) / len(clipped))
    expected = [(v - mean) / std for v in clipped]
    np.testing.assert_allclose(normalize_array(x, "percentile"), expected, rtol=1e-5)


def test_constant_image_and_nan():
    c = np.full((3, 4), 7.0)
    assert not normalize_array(c, "zscore").any()
    assert not normalize_array(c, "minmax").any()
    assert not normalize_array(c, "percentile").any()
    bad = c.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ContractError, match="NaN"):
        normalize_array(bad, "zscore")


def test_channels_normalised_separately():
    a = np.stack([np.arange(12.0).reshape(3, 4), 100 + 5 * np.arange(12.0).reshape(3, 4)], axis=-1)
    first = to_channel_first(a, 2)
    assert first.shape == (2, 3, 4)
    out = normalize_array(first, "zscore", channel_axis=0)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-6)  # same after each channel's own z-score
    with pytest.raises(ContractError):
        to_channel_first(np.zeros((3, 4)), 2)


# --------------------------------------------------------------------------- #
# Padding and layout
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("shape", [(5, 7), (3, 5, 9), (1, 1), (9, 1, 3)])
@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_pad_crop_round_trip_odd_sizes(shape, mode):
    x = torch.randn((1, 2) + shape)
    target = tuple(int(math.ceil(n / 4) * 4) + 4 for n in shape)
    pads = pad_amounts(shape, target)
    padded = pad_spatial(x, pads, mode)
    assert tuple(padded.shape[2:]) == target
    assert torch.equal(crop_spatial(padded, pads), x)
    # symmetric: the extra voxel goes after
    assert all(0 <= a - b <= 1 for b, a in pads)


def test_constant_pad_uses_channel_minimum():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-5.0, 0.0], [1.0, 1.0]]]])  # (1, 2, 2, 2)
    padded = pad_spatial(x, ((1, 1), (0, 1)), "constant")
    assert padded.shape == (1, 2, 4, 3)
    assert torch.all(padded[0, 0, 0] == 1.0) and torch.all(padded[0, 1, 0] == -5.0)
    assert torch.all(padded[0, 0, :, 2] == 1.0)


def test_reflect_pad_matches_numpy_and_extends_periodically():
    x = torch.arange(4.0).view(1, 1, 4)
    small = pad_spatial(x, ((2, 3),), "reflect")[0, 0].numpy()
    np.testing.assert_array_equal(small, np.pad(np.arange(4.0), (2, 3), mode="reflect"))
    big = pad_spatial(x, ((7, 5),), "reflect")[0, 0].numpy()
    np.testing.assert_array_equal(big, np.pad(np.arange(4.0), (7, 5), mode="reflect"))
    one = pad_spatial(torch.ones(1, 1, 1), ((2, 3),), "reflect")
    assert one.shape == (1, 1, 6) and torch.all(one == 1)


def test_batch_channel_axes_2d_3d():
    from topofix.models.contract import add_batch_channel, remove_batch

    for shape in ((6, 7), (3, 6, 7)):
        t = torch.zeros(shape)
        assert add_batch_channel(t).shape == (1, 1) + shape
        assert add_batch_channel(t.unsqueeze(0), has_channel=True).shape == (1, 1) + shape
        assert remove_batch(torch.zeros((1, 3) + shape)).shape == (3,) + shape
    with pytest.raises(ValueError):
        remove_batch(torch.zeros(2, 3, 4, 4))


# --------------------------------------------------------------------------- #
# Detection on the model
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("depth, multiple", [(2, 4), (3, 8)])
def test_pad_multiple_detected_2d(depth, multiple):
    assert detect_pad_multiple(unet(depth=depth), 2) == multiple


def test_pad_multiple_detected_3d_and_cached():
    model = Counting(unet(2, depth=2, dims=3))
    assert detect_pad_multiple(model, 3) == 4
    calls = model.calls
    assert detect_pad_multiple(model, 3) == 4
    assert model.calls == calls  # cached per module
    assert detect_spatial_dims(model) == (3,)
    assert detect_spatial_dims(unet()) == (2,)
    assert detect_spatial_dims(nn.Identity()) == (2, 3)  # voxel-wise: both


def test_probe_leaves_mode_and_buffers_alone():
    model = unet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    detect_pad_multiple(model, 2)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_resolve_contract_dims_from_image():
    c = resolve_contract(unet(), ModelContract(), image_ndim=3, per_slice="z")
    assert (c.spatial_dims, c.pad_multiple) == (2, 4)
    with pytest.raises(ContractError, match="per_slice"):
        resolve_contract(unet(), ModelContract(), image_ndim=3)
    with pytest.raises(ContractError, match="3D model"):
        resolve_contract(unet(dims=3), ModelContract(), image_ndim=2)
    with pytest.raises(ContractError, match="3D model"):
        resolve_contract(unet(dims=3), ModelContract(spatial_dims=3), image_ndim=3, per_slice="z")
    given = ModelContract(pad_multiple=16, spatial_dims=2)
    assert resolve_contract(unet(), given, image_ndim=2) is given
    assert resolve_contract(unet(), ModelContract(), image_ndim=3, patch_size=(8, 8, 8)).pad_multiple is None


def test_wrong_in_channels_is_explained():
    with pytest.raises(ContractError, match="takes 2 channels"):
        detect_pad_multiple(unet(in_channels=2), 2, 1)


def test_activation_auto():
    assert resolve_activation("auto", 1) == "sigmoid"
    assert resolve_activation("auto", 4) == "softmax"
    assert resolve_activation("none", 1) == "none"
    with pytest.raises(ContractError):
        resolve_activation("softmax", 1)
    raw = torch.randn(3, 5, 6)
    assert torch.allclose(apply_activation(raw, "auto").sum(0), torch.ones(5, 6))
    assert torch.equal(apply_activation(raw[:1], "auto"), torch.sigmoid(raw[:1]))


def test_labels_from_probabilities():
    prob = torch.tensor([[0.2, 0.5, 0.1], [0.7, 0.1, 0.1], [0.1, 0.4, 0.8]])
    assert labels_from_probabilities(prob, "softmax").tolist() == [1, 0, 2]
    p1 = np.array([[0.2, 0.5, 0.9]])
    assert labels_from_probabilities(p1, "sigmoid").tolist() == [0, 1, 1]
    assert labels_from_probabilities(p1, "sigmoid", threshold=0.6).tolist() == [0, 0, 1]
    assert labels_from_probabilities(p1, "auto").dtype == np.uint8
    # several sigmoid regions: painted in order, later on top
    regions = np.array([[0.9, 0.9, 0.1], [0.1, 0.8, 0.9]])
    assert labels_from_probabilities(regions, "sigmoid").tolist() == [1, 2, 2]
    # a contract stands for its activation; "none" follows the channel count
    assert labels_from_probabilities(regions, ModelContract(activation="sigmoid")).tolist() == [1, 2, 2]
    assert labels_from_probabilities(regions, ModelContract(activation="none")).tolist() == [0, 0, 1]
    assert labels_from_probabilities(np.zeros((300, 2)), "softmax").dtype == np.uint16


# --------------------------------------------------------------------------- #
# Whole image, per slice
# --------------------------------------------------------------------------- #


def test_whole_image_padded_and_cropped():
    model = unet()
    image = np.random.default_rng(0).normal(size=(13, 18)).astype(np.float32)
    prob = predict_probabilities(model, image)
    assert prob.shape == (3, 13, 18) and not prob.requires_grad
    # by hand: z-score, pad to 16 x 20 with the minimum, symmetric, crop
    x = torch.from_numpy((image - image.mean()) / image.std())[None, None]
    padded = F.pad(x, (1, 1, 1, 2), value=float(x.min()))
    with torch.no_grad():
        expected = torch.softmax(model(padded), 1)[0, :, 1:14, 1:19]
    torch.testing.assert_close(prob, expected, rtol=1e-5, atol=1e-6)


def test_whole_image_reflect_padding():
    model = unet()
    image = np.random.default_rng(14).normal(size=(13, 18)).astype(np.float32)
    prob = predict_probabilities(model, image, ModelContract(pad_mode="reflect"))
    x = torch.from_numpy((image - image.mean()) / image.std())[None, None]
    with torch.no_grad():
        expected = torch.softmax(model(F.pad(x, (1, 1, 1, 2), mode="reflect")), 1)[0, :, 1:14, 1:19]
    torch.testing.assert_close(prob, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_per_slice_equals_slices_by_hand(axis):
    model = unet()
    volume = np.random.default_rng(1).normal(size=(5, 8, 12)).astype(np.float32)
    prob = predict_probabilities(model, volume, per_slice=axis, batch_size=2)
    assert prob.shape == (3, 5, 8, 12)
    normed = torch.from_numpy((volume - volume.mean()) / volume.std())
    numpy_axis = {"x": 2, "y": 1, "z": 0}[axis]
    lo = float(normed.min())
    for index in range(volume.shape[numpy_axis]):
        plane = normed.select(numpy_axis, index)[None, None]
        h, w = plane.shape[2:]
        ph, pw = (-h) % 4, (-w) % 4
        padded = F.pad(plane, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=lo)
        with torch.no_grad():
            out = torch.softmax(model(padded), 1)[0, :, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
        torch.testing.assert_close(prob.select(1 + numpy_axis, index), out, rtol=1e-5, atol=1e-6)


def test_per_slice_on_2d_image_is_the_image():
    model = unet()
    image = np.random.default_rng(2).normal(size=(8, 12))
    torch.testing.assert_close(predict_probabilities(model, image, per_slice="z"), predict_probabilities(model, image))


def test_prepared_tensor_input_and_channels():
    model = unet(in_channels=2)
    image = np.random.default_rng(3).normal(size=(8, 12, 2))
    contract = ModelContract(in_channels=2)
    prepared = prepare_input(image, contract)
    assert prepared.shape == (2, 8, 12)
    torch.testing.assert_close(
        predict_probabilities(model, prepared, contract), predict_probabilities(model, image, contract)
    )


def test_deep_supervision_tuple_output_uses_the_first():
    class Deep(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return (y, y[..., ::2, ::2])

    model = Deep()
    image = np.random.default_rng(4).normal(size=(6, 7))
    expected = predict_probabilities(model.conv, image, ModelContract(pad_multiple=1, spatial_dims=2))
    torch.testing.assert_close(predict_probabilities(model, image), expected)


def test_wrong_output_shape_is_one_line():
    from topofix.models.inference import InferenceError

    class Half(nn.Module):
        def forward(self, x):
            return x[..., ::2, ::2]

    with pytest.raises(InferenceError) as info:
        predict_probabilities(Half(), np.zeros((8, 8)), ModelContract(pad_multiple=1, spatial_dims=2))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- #
# Sliding windows
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("size, patch, overlap", [
    (n, p, o) for n, p, o in itertools.product((1, 5, 8, 9, 17, 31, 64, 100), (4, 8, 16), (0.0, 0.25, 0.5, 0.75))
])
def test_windows_cover_every_voxel(size, patch, overlap):
    starts = window_starts(size, patch, overlap)
    covered = np.zeros(max(size, patch), bool)
    for s in starts:
        covered[s : s + patch] = True
    assert covered[:size].all()
    assert starts[0] == 0 and starts[-1] == max(size - patch, 0)  # last window flush with the border
    assert starts == sorted(set(starts))
    if len(starts) > 1:  # neighbours overlap by at least `overlap` of a patch (up to rounding)
        assert max(np.diff(starts)) <= patch * (1 - overlap) + 1


def test_gaussian_weights_shape_peak_sigma():
    w = gaussian_weights((9, 17, 33))
    assert w.shape == (9, 17, 33) and w.dtype == np.float32
    assert w.max() == pytest.approx(1.0) and w[4, 8, 16] == pytest.approx(1.0)
    assert np.array_equal(w, w[::-1, ::-1, ::-1])  # symmetric
    sigma = 33 / 8
    assert w[4, 8, 16 + 4] / w[4, 8, 16] == pytest.approx(math.exp(-16 / (2 * sigma**2)), rel=1e-5)
    assert w.min() > 0
    even = gaussian_weights((8,))
    assert even[3] == even[4] == pytest.approx(1.0) and np.array_equal(even, even[::-1])


def test_stitched_equals_whole_for_pointwise_model():
    torch.manual_seed(0)
    model = nn.Conv3d(1, 3, 1)
    volume = np.random.default_rng(5).normal(size=(11, 19, 23))
    whole = predict_probabilities(model, volume)
    for patch, overlap in (((8, 8, 8), 0.5), ((4, 16, 7), 0.25), ((11, 6, 23), 0.0)):
        stitched = predict_probabilities(model, volume, patch_size=patch, overlap=overlap, batch_size=3)
        torch.testing.assert_close(stitched, whole, rtol=1e-5, atol=1e-6)


def test_stitched_per_slice_2d_windows():
    torch.manual_seed(0)
    model = nn.Conv2d(1, 2, 1)
    volume = np.random.default_rng(6).normal(size=(4, 21, 30))
    whole = predict_probabilities(model, volume, per_slice="z")
    stitched = predict_probabilities(model, volume, per_slice="z", patch_size=(8,), batch_size=5)
    torch.testing.assert_close(stitched, whole, rtol=1e-5, atol=1e-6)


def test_unet_windows_close_to_whole_inside():
    # A U-Net is translation-equivariant only up to its pooling grid and borders:
    # the stitched map stays close, not equal; shapes and normalisation must hold.
    model = unet(2, dims=3)
    volume = np.random.default_rng(7).normal(size=(12, 20, 20))
    stitched = predict_probabilities(model, volume, patch_size=(8, 12, 12))
    assert stitched.shape == (2, 12, 20, 20)
    torch.testing.assert_close(stitched.sum(0), torch.ones(12, 20, 20))


def test_volume_smaller_than_patch():
    model = FixedShape((8, 8, 8))
    volume = np.random.default_rng(8).normal(size=(5, 6, 7))
    prob = predict_probabilities(model, volume, patch_size=(8, 8, 8))
    assert prob.shape == (2, 5, 6, 7)
    expected = predict_probabilities(model.conv, volume, ModelContract(pad_multiple=1, spatial_dims=3))
    torch.testing.assert_close(prob, expected, rtol=1e-5, atol=1e-6)
    # a fixed-shape model also runs in windows larger volumes
    big = np.random.default_rng(9).normal(size=(10, 13, 8))
    assert predict_probabilities(model, big, patch_size=(8,)).shape == (2, 10, 13, 8)
    assert predict(big, model, patch_size=8, device="cpu").contract.pad_multiple is None


def test_bad_patch_size():
    with pytest.raises(ContractError, match="does not fit a 3D model"):
        predict_probabilities(nn.Conv3d(1, 2, 1), np.zeros((4, 4, 4)), patch_size=(4, 4))


# --------------------------------------------------------------------------- #
# Gradients
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kwargs, dims, shape", [
    ({}, 2, (12, 16)),
    ({"per_slice": "z"}, 2, (3, 8, 8)),
    ({"patch_size": (8, 8, 8)}, 3, (8, 12, 10)),
])
def test_grad_reaches_parameters(kwargs, dims, shape):
    model = unet(2, dims=dims)
    image = np.random.default_rng(10).normal(size=shape)
    prob = predict_probabilities(model, image, grad=True, **kwargs)
    assert prob.requires_grad
    prob[1].mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


# --------------------------------------------------------------------------- #
# Device
# --------------------------------------------------------------------------- #


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line():
    with pytest.raises(TopofixError) as info:
        resolve_device("cuda")
    assert "CUDA is not available" in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- #
# predict(): the public API
# --------------------------------------------------------------------------- #


def test_predict_image_and_module():
    model = unet().train()
    geometry = Geometry((0.5, 0.7), (1.0, 2.0), (1.0, 0.0, 0.0, 1.0))
    image = Image(np.random.default_rng(11).normal(size=(13, 18)).astype(np.float32), geometry)
    pred = predict(image, model, device="cpu")
    assert isinstance(pred, Prediction)
    assert pred.labels.shape == (13, 18) and pred.labels.dtype == np.uint8
    assert pred.probabilities.shape == (3, 13, 18) and pred.probabilities.dtype == np.float32
    assert (pred.contract.spatial_dims, pred.contract.pad_multiple, pred.contract.activation) == (2, 4, "softmax")
    np.testing.assert_array_equal(pred.labels, pred.probabilities.argmax(0))
    assert model.training  # mode restored
    model.eval()
    expected = predict_probabilities(model, image.array)
    np.testing.assert_allclose(pred.probabilities, expected.numpy(), atol=1e-6)


def test_predict_sigmoid_threshold_and_warning():
    model = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.bias.fill_(0.5)
    image = np.random.default_rng(12).normal(size=(6, 6))
    pred = predict(image, model, device="cpu", threshold=0.7)
    assert pred.contract.activation == "sigmoid"
    np.testing.assert_array_equal(pred.labels, (pred.probabilities[0] >= 0.7).astype(np.uint8))
    assert not pred.warnings
    already = nn.Sequential(model, nn.Sigmoid())
    assert "activation='none'" in predict(image, already, device="cpu").warnings[0]
    softmaxed = nn.Sequential(nn.Conv2d(1, 3, 1), nn.Softmax(dim=1))
    assert "softmax" in predict(image, softmaxed, device="cpu").warnings[0]
    none = predict(image, already, device="cpu", contract=ModelContract(activation="none"))
    assert not none.warnings
    np.testing.assert_allclose(none.probabilities[0], pred.probabilities[0], atol=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the loader's "traced model" warning
def test_predict_from_torchscript_file(tmp_path):
    model = unet()
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 1, 16, 16)), str(path))
    image = np.random.default_rng(13).normal(size=(3, 12, 20))
    pred = predict(image, path, per_slice="z", device="cpu")
    assert pred.labels.shape == (3, 12, 20)
    assert any("traced" in w for w in pred.warnings)
    expected = predict_probabilities(model, image, per_slice="z")
    np.testing.assert_allclose(pred.probabilities, expected.numpy(), atol=1e-5)


def test_import_topofix_does_not_import_torch():
    code = (
        "import sys, topofix\n"
        "assert 'predict' in dir(topofix) and 'Prediction' in topofix.__all__\n"
        "import topofix.prediction\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
