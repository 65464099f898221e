"""One vocabulary per option (topofix.choices), shared by the library and the Typer CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from topofix import check
from topofix.choices import Activation, Connectivity, Device, EmptyPolicy, Normalize, SliceAxis
from topofix.cli import options
from topofix.cli.app import app
from topofix.models.contract import ModelContract
from topofix.slicing import SLICE_AXES, iter_slices


def test_the_cli_uses_the_library_enums():
    assert options.ConnectivityChoice is Connectivity
    assert options.SliceAxis is SliceAxis
    assert options.EmptyChoice is EmptyPolicy
    assert options.NormalizeChoice is Normalize
    assert options.ActivationChoice is Activation
    assert options.DeviceChoice is Device


def test_members_are_their_plain_words():
    assert Connectivity.values() == ("full", "face")
    assert Normalize.values() == ("zscore", "percentile", "minmax", "none")
    for member in (Connectivity.face, SliceAxis.z, EmptyPolicy.fail, Normalize.minmax, Activation.softmax, Device.cpu):
        word = member.value
        assert member == word and isinstance(member, str)
        assert str(member) == word and f"{member}" == word and f"{member:>6}" == f"{word:>6}"
        assert json.dumps({"k": member}) == json.dumps({"k": word})


def test_slice_axes_name_the_simpleitk_axes():
    """x, y, z are SimpleITK's image axes: an image of size (x=4, y=3, z=2) is a (2, 3, 4) array."""
    array = sitk.GetArrayFromImage(sitk.Image([4, 3, 2], sitk.sitkUInt8))
    sizes = {"x": 4, "y": 3, "z": 2}
    for name, axis in SLICE_AXES.items():
        assert array.shape[axis] == sizes[name]
        assert SliceAxis(name).axis == axis
    assert len([i for i, _ in iter_slices(array, "x")]) == 4


def test_library_takes_members_and_reports_plain_words():
    ring = np.zeros((3, 7, 7), np.uint8)
    ring[:, 1:6, 1:6] = 2
    ring[:, 3, 3] = 0
    ring[0] = 0
    by_word = check(ring, "2=1,1", connectivity="face", per_slice="z", empty="fail")
    by_member = check(ring, "2=1,1", connectivity=Connectivity.face, per_slice=SliceAxis.z, empty=EmptyPolicy.fail)
    assert by_member.to_dict() == by_word.to_dict()
    assert json.dumps(by_member.to_dict()) == json.dumps(by_word.to_dict())
    assert type(by_member.connectivity) is str and type(by_member.per_slice) is str and type(by_member.empty) is str
    assert by_member.exit_code == 1  # slice 0 lacks the ring and empty="fail"
    contract = ModelContract(normalize=Normalize.percentile, activation=Activation.sigmoid)
    assert type(contract.normalize) is str and contract == ModelContract(normalize="percentile", activation="sigmoid")
    with pytest.raises(ValueError, match="normalize must be one of"):
        ModelContract(normalize="zcore")


def test_cli_refuses_a_word_outside_the_vocabulary(tmp_path):
    result = CliRunner().invoke(app, ["check", str(tmp_path), "--connectivity", "diagonal"])
    assert result.exit_code == 2
    assert "full" in result.output + (result.stderr if result.stderr_bytes is not None else "")
