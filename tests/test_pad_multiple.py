"""The pad multiple per axis (issue 11, point 8).

A 3D network that does not downsample z (strides (1, 2, 2), instance norm: MONAI's
UNet as used on short-axis stacks) accepts any number of slices. Padding the slices
to the in-plane multiple changed its output, since instance norm sees the padding.
The oracle everywhere is a plain forward pass of the network (on an input padded by
hand where it does not fit).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from topofix.cli.app import app
from topofix.cli.options import parse_pad_multiple
from topofix.io import Geometry, read_mask, write_image
from topofix.models.contract import ContractError, ModelContract, detect_pad_multiples, resolve_contract
from topofix.nets import SmallUNet
from topofix.prediction import predict

runner = CliRunner()


def _block(cin: int, cout: int, stride=1) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1), nn.InstanceNorm3d(cout, affine=True),
                         nn.LeakyReLU(0.1))


class InPlaneUNet(nn.Module):
    """Two stride-(1, 2, 2) downsamplings and their transposed convolutions: sides along y and x
    must be multiples of 4, any number of slices works; instance norm after every convolution."""

    def __init__(self, classes: int = 3, c: int = 4):
        super().__init__()
        self.enc = _block(1, c)
        self.down1 = _block(c, 2 * c, (1, 2, 2))
        self.down2 = _block(2 * c, 2 * c, (1, 2, 2))
        self.up2 = nn.ConvTranspose3d(2 * c, 2 * c, (1, 2, 2), stride=(1, 2, 2))
        self.up1 = nn.ConvTranspose3d(4 * c, c, (1, 2, 2), stride=(1, 2, 2))
        self.head = nn.Conv3d(2 * c, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        d1 = self.down1(e)
        d2 = self.down2(d1)
        u1 = self.up1(torch.cat([self.up2(d2), d1], dim=1))
        return self.head(torch.cat([u1, e], dim=1))


@pytest.fixture(scope="module")
def net() -> InPlaneUNet:
    torch.manual_seed(0)
    model = InPlaneUNet().eval()
    with torch.no_grad():  # a wide logit range: labels differ across the image
        model.head.weight.mul_(10)
    return model


def _plain_softmax(model: nn.Module, volume: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(volume)[None, None]), dim=1)[0].numpy()


def _volume(shape, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_detected_per_axis(net):
    assert detect_pad_multiples(net, 3) == (1, 4, 4)
    assert resolve_contract(net, ModelContract(), image_ndim=3).pad_multiple == (1, 4, 4)
    assert "pad to x1,4,4" in resolve_contract(net, ModelContract(), image_ndim=3).describe()


@pytest.mark.parametrize("dims, multiple", [(2, 4), (3, 4)])
def test_network_downsampling_every_axis_keeps_one_number(dims, multiple):
    torch.manual_seed(0)
    unet = SmallUNet(1, 2, base=4, depth=2, dims=dims).eval()
    assert detect_pad_multiples(unet, dims) == (multiple,) * dims
    assert resolve_contract(unet, ModelContract(), image_ndim=dims).pad_multiple == multiple


def test_predict_equals_a_plain_forward_where_the_input_fits(net):
    """10 slices of 32 x 36: fits the network as it is, so nothing may be padded."""
    volume = _volume((10, 32, 36))
    pred = predict(volume, net, contract=ModelContract(normalize="none"), device="cpu")
    expected = _plain_softmax(net, volume)
    np.testing.assert_allclose(pred.probabilities, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(pred.labels, expected.argmax(0))
    assert len(np.unique(pred.labels)) > 1
    # what the x4-on-every-axis padding did: z padded 10 -> 12, instance norm sees it, the output changes
    padded_z = predict(volume, net, contract=ModelContract(normalize="none", pad_multiple=4), device="cpu")
    assert np.abs(padded_z.probabilities - expected).max() > 1e-3


def test_only_the_axes_that_need_it_are_padded(net):
    """30 x 34 in-plane: padded to 32 x 36 by hand with the image minimum (symmetric, extra voxel after), z untouched."""
    volume = _volume((7, 30, 34), seed=2)
    by_hand = np.pad(volume, ((0, 0), (1, 1), (1, 1)), constant_values=volume.min())
    expected = _plain_softmax(net, by_hand)[:, :, 1:-1, 1:-1]
    pred = predict(volume, net, contract=ModelContract(normalize="none"), device="cpu")
    np.testing.assert_allclose(pred.probabilities, expected, rtol=0, atol=1e-6)


def test_contract_takes_an_int_or_one_per_axis():
    assert ModelContract(pad_multiple=(8,)).pad_multiple == 8
    assert ModelContract(pad_multiple=[1, 8, 8]).pad_multiple == (1, 8, 8)
    for bad in (0, (0, 8), (1, 2, 3, 4), 1.5, True, "8"):
        with pytest.raises(ValueError, match="pad_multiple"):
            ModelContract(pad_multiple=bad)
    with pytest.raises(ContractError, match="has 3 numbers but the model is 2D"):
        ModelContract(pad_multiple=(1, 8, 8), spatial_dims=2)


def test_given_per_axis_multiple_is_used(net):
    volume = _volume((6, 32, 32), seed=3)
    contract = resolve_contract(net, ModelContract(pad_multiple=(1, 8, 8)), image_ndim=3)
    assert contract.pad_multiple == (1, 8, 8)
    pred = predict(volume, net, contract=ModelContract(normalize="none", pad_multiple=(1, 8, 8)), device="cpu")
    np.testing.assert_allclose(pred.probabilities, _plain_softmax(net, volume), rtol=0, atol=1e-6)  # 32 fits x8


@pytest.mark.parametrize("text, value", [("8", 8), ("1,16,16", (1, 16, 16)), (" 4 , 8 ", (4, 8)), (None, None)])
def test_parse_pad_multiple(text, value):
    assert parse_pad_multiple(text) == value


@pytest.mark.parametrize("text", ["0", "a", "1,2,3,4", "-8", "1,,2", "8.0"])
def test_bad_pad_multiple_is_a_usage_error_before_the_model_is_read(tmp_path, text):
    result = runner.invoke(app, ["predict", str(tmp_path), "-m", str(tmp_path / "missing.pt"), "-o",
                                 str(tmp_path / "out"), "--pad-multiple", text])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --pad-multiple") and "missing.pt" not in lines[0]


@pytest.fixture(scope="module")
def scripted(net, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "inplane.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    return str(path)


def test_cli_predict_runs_the_stack_unpadded(net, scripted, tmp_path):
    volume = (100 * _volume((10, 32, 36), seed=4)).astype(np.int16)
    write_image(tmp_path / "in" / "stack.nii.gz", volume, Geometry((1.25, 1.25, 8.0), (0.0, 0.0, 0.0),
                                                                   (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)))
    result = runner.invoke(app, ["predict", str(tmp_path / "in"), "-m", scripted, "-o", str(tmp_path / "out"),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "pad to x1,4,4" in " ".join(result.stderr.split())
    x = volume.astype(np.float64)
    zscored = ((x - x.mean()) / x.std()).astype(np.float32)  # the default normalisation, by hand
    expected = _plain_softmax(net, zscored).argmax(0)
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "stack.nii.gz").array, expected)
    # the per-axis option reaches the contract; a wrong count is one line per scan, exit 2
    given = runner.invoke(app, ["predict", str(tmp_path / "in"), "-m", scripted, "-o", str(tmp_path / "o2"),
                                "--device", "cpu", "--pad-multiple", "1,8,4"])
    assert given.exit_code == 0 and "pad to x1,8,4" in " ".join(given.stderr.split()), given.output
    wrong = runner.invoke(app, ["predict", str(tmp_path / "in"), "-m", scripted, "-o", str(tmp_path / "o3"),
                                "--device", "cpu", "--pad-multiple", "4,4"])
    assert wrong.exit_code == 2
    errors = [line for line in wrong.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "has 2 numbers but the model is 3D" in errors[0], wrong.stderr
