"""Option values, inputs and wording checked up front (issue 11, points 6 and 7, the smaller ones).

Each test reproduces one reported failure through the CLI: ``--threshold`` out of its
domain or useless, ``--betti 1``, NaN in a NIfTI image read as 0, broken links skipped
without a word, ``check`` failing on topofix's own outputs, hints naming Python arguments.
Models are 1x1 convolutions whose outputs are known in closed form.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from topofix.cli.app import app
from topofix.cli.console import cli_wording
from topofix.errors import TopofixError
from topofix.io import read_image, read_mask, write_image, write_mask
from topofix.models.contract import ContractError, ModelContract, resolve_contract
from topofix.models.inference import labels_from_probabilities

runner = CliRunner()
SOFTMAX_WEIGHTS = (-4.0, 0.0, 4.0)  # 3 channels: label 2 where the z-scored image > 0, 0 where < 0


def invoke(*args) -> tuple[int, list[str], list[str]]:
    """(exit code, error lines, warning lines) of ``topofix ARGS``."""
    result = runner.invoke(app, [str(a) for a in args])
    lines = result.stderr.splitlines()
    return (result.exit_code, [ln for ln in lines if ln.startswith("error:")],
            [ln for ln in lines if ln.startswith("warning:")])


def _conv(channels: int, weights, in_channels: int = 1) -> nn.Module:
    conv = nn.Conv2d(in_channels, channels, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weights, dtype=torch.float32).reshape(channels, in_channels, 1, 1))
        conv.bias.zero_()
    return conv.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("models")
    paths = {"softmax": folder / "softmax.pt", "sigmoid": folder / "sigmoid.pt", "rgb": folder / "rgb.pt"}
    torch.jit.save(torch.jit.script(_conv(3, SOFTMAX_WEIGHTS)), str(paths["softmax"]))
    torch.jit.save(torch.jit.script(_conv(1, (3.0,))), str(paths["sigmoid"]))
    torch.jit.save(torch.jit.script(_conv(2, ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), in_channels=3)), str(paths["rgb"]))
    return {k: str(v) for k, v in paths.items()}


def _zscore(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float64)
    return ((x - x.mean()) / x.std()).astype(np.float32)


@pytest.fixture()
def images(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    write_image(folder / "a.png", rng.integers(0, 255, (20, 24)).astype(np.uint8))
    write_image(folder / "b.nii.gz", rng.normal(size=(18, 22)).astype(np.float32))
    return folder


# --------------------------------------------------------------------------- #
# --threshold
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("command", ["predict", "correct"])
@pytest.mark.parametrize("value", ["nan", "2", "0", "1", "-0.1", "inf"])
def test_threshold_outside_0_1_is_a_usage_error(tmp_path, command, value):
    """Refused before anything is read (the model does not exist: it would be named otherwise)."""
    prior = ["-p", "2=1,1"] if command == "correct" else []
    code, errors, _ = invoke(command, tmp_path, "-m", tmp_path / "none.pt", "-o", tmp_path / "o", *prior,
                             "--threshold", value)
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].startswith("error: --threshold") and "between 0 and 1" in errors[0]
    assert not (tmp_path / "o").exists()


def test_threshold_in_the_library_is_checked_too():
    for bad in (float("nan"), 0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            labels_from_probabilities(np.full((1, 2, 2), 0.7), "sigmoid", bad)


def test_threshold_with_a_softmax_model_warns_once_and_changes_nothing(models, images, tmp_path):
    code, errors, warnings = invoke("predict", images, "-m", models["softmax"], "-o", tmp_path / "t",
                                    "--threshold", "0.9", "--device", "cpu", "-q")
    assert code == 0 and errors == []
    assert len(warnings) == 1 and "--threshold has no effect" in warnings[0], warnings  # two images, one line
    code, _, warnings = invoke("predict", images, "-m", models["softmax"], "-o", tmp_path / "plain",
                               "--device", "cpu", "-q")
    assert code == 0 and warnings == []
    for name in ("a.png", "b.nii.gz"):
        assert (tmp_path / "t" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
        expected = np.argmax(np.multiply.outer(SOFTMAX_WEIGHTS, _zscore(read_image(images / name).array)), axis=0)
        np.testing.assert_array_equal(read_mask(tmp_path / "t" / name).array, expected)


def test_threshold_with_a_sigmoid_model_is_used_without_warning(models, images, tmp_path):
    code, errors, warnings = invoke("predict", images / "b.nii.gz", "-m", models["sigmoid"], "-o", tmp_path / "t",
                                    "--threshold", "0.9", "--device", "cpu", "-q")
    assert code == 0 and errors == [] and warnings == []
    p = 1 / (1 + np.exp(-3.0 * _zscore(read_image(images / "b.nii.gz").array).astype(np.float64)))
    np.testing.assert_array_equal(read_mask(tmp_path / "t" / "b.nii.gz").array, (p >= 0.9).astype(np.uint8))


def test_correct_warns_once_for_a_softmax_model(models, images, tmp_path):
    """Label 5 never appears: its prior '5=0,0' is met, nothing is fine-tuned; only the warning matters."""
    code, errors, warnings = invoke("correct", images, "-m", models["softmax"], "-o", tmp_path / "c",
                                    "-p", "5=0,0", "--threshold", "0.3", "--device", "cpu", "-q")
    assert code == 0 and errors == [], errors
    assert len(warnings) == 1 and "--threshold has no effect" in warnings[0], warnings


# --------------------------------------------------------------------------- #
# --betti with one number
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("spec", [["--betti", "1"], ["--label", "2", "--betti", "1"], ["-p", "2=1"],
                                  ["-p", "2=1,1|2"]])
def test_one_betti_number_is_a_usage_error_in_check(spec):
    mask = str(Path(__file__).resolve().parents[1] / "sample_data" / "masks" / "sa_001.png")
    code, errors, _ = invoke("check", mask, *spec)
    assert code == 2 and len(errors) == 1 and "give at least B0,B1" in errors[0], errors


def test_one_betti_number_is_a_usage_error_in_correct_and_evaluate(tmp_path):
    code, errors, _ = invoke("correct", tmp_path, "-m", tmp_path / "none.pt", "-o", tmp_path / "o", "--betti", "1")
    assert code == 2 and len(errors) == 1 and "give at least B0,B1" in errors[0], errors
    code, errors, _ = invoke("evaluate", tmp_path, "--gt", tmp_path, "--prior", "2=1")
    assert code == 2 and len(errors) == 1 and "give at least B0,B1" in errors[0], errors


def test_absent_alone_and_the_documented_forms_still_work():
    mask = str(Path(__file__).resolve().parents[1] / "sample_data" / "masks" / "sa_001.png")
    for spec in (["--label", "2", "--betti", "1,1"], ["-p", "2=1,1|0"], ["-p", "7=0"], ["--betti", "1,1,0", "-l", "2"]):
        code, errors, _ = invoke("check", mask, *spec)
        assert code == 0 and errors == [], (spec, errors)
    help_text = " ".join(runner.invoke(app, ["check", "--help"]).stdout.split())
    assert "two or three numbers" in help_text and "B0,B1[,B2]" in help_text


# --------------------------------------------------------------------------- #
# NaN / Inf in an image: the same in every format
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_image_is_refused_in_every_format(models, images, tmp_path, bad):
    image = np.random.default_rng(1).normal(size=(16, 16)).astype(np.float32)
    image[3, 4] = bad
    for ext in (".nii.gz", ".nii", ".mha", ".nrrd"):
        write_image(images / f"bad{ext}", image)
    code, errors, _ = invoke("predict", images, "-m", models["softmax"], "-o", tmp_path / "o", "--device", "cpu",
                             "-q")
    assert code == 2 and len(errors) == 4, errors
    for ext in (".nii.gz", ".nii", ".mha", ".nrrd"):
        (line,) = [e for e in errors if f"bad{ext}:" in e]
        assert line == f"error: {images / f'bad{ext}'}: image contains NaN or Inf values"
    outputs = sorted(n for n in os.listdir(tmp_path / "o") if not n.startswith(".") and not n.endswith(".jsonl"))
    assert outputs == ["a.png", "b.nii.gz"]  # the good ones are still segmented


# --------------------------------------------------------------------------- #
# Broken links
# --------------------------------------------------------------------------- #


def test_broken_links_are_reported_not_skipped(tmp_path):
    folder = tmp_path / "masks"
    write_mask(folder / "good.png", np.pad(np.ones((3, 3), np.uint8), 2))
    (folder / "gone.nii.gz").symlink_to(tmp_path / "deleted.nii.gz")
    (folder / "notes.txt").symlink_to(tmp_path / "deleted.txt")  # not an image name: ignored like any non-image
    code, errors, _ = invoke("check", folder, "--betti", "1,0")
    assert code == 2
    assert errors == [f"error: {folder / 'gone.nii.gz'}: broken symbolic link (its target "
                      f"{tmp_path / 'deleted.nii.gz'} does not exist)"]
    for spec in (folder / "gone.nii.gz", str(folder / "*.gz")):  # given by name, or matched by a glob
        code, errors, _ = invoke("check", spec, "--betti", "1,0")
        assert code == 2 and len(errors) == 1 and "broken symbolic link" in errors[0], errors


# --------------------------------------------------------------------------- #
# check on topofix's own output folders
# --------------------------------------------------------------------------- #


def test_check_on_a_predict_or_correct_folder_checks_the_masks_only(models, images, tmp_path):
    out = tmp_path / "seg"
    assert invoke("predict", images, "-m", models["softmax"], "-o", out, "--save-probabilities", "--device", "cpu",
                  "-q")[0] == 0
    fixed = tmp_path / "fixed"
    assert invoke("correct", images, "-m", models["softmax"], "-o", fixed, "-p", "5=0,0", "--save-original",
                  "--always", "--steps", "1", "--device", "cpu", "-q")[0] == 0
    assert "a_prob2.nii.gz" in os.listdir(out) and "a_original.png" in os.listdir(fixed)
    for folder in (out, fixed):
        result = runner.invoke(app, ["check", str(folder), "-p", "5=0,0", "--json", str(tmp_path / "r.json"),
                                     "--overwrite"])
        assert result.exit_code == 0, result.output
        checked = {os.path.basename(r["path"]) for r in json.loads((tmp_path / "r.json").read_text())["results"]}
        assert checked == {"a.png", "b.nii.gz"}
    # given by a glob, they are checked (and a probability map is no mask: exit 2)
    code, errors, _ = invoke("check", str(out / "a*"), "-p", "5=0,0")
    assert code == 2 and len(errors) == 3 and all("_prob" in e for e in errors), errors


def test_a_name_like_an_output_without_its_scan_is_kept(tmp_path):
    folder = tmp_path / "masks"
    ring = np.pad(np.ones((3, 3), np.uint8), 2)
    write_mask(folder / "case_prob1.png", ring)  # no case.* next to it: the user's own file
    write_mask(folder / "other_original.nii.gz", ring)
    result = runner.invoke(app, ["check", str(folder), "--betti", "1,0"])
    assert result.exit_code == 0 and "2 mask(s) checked" in result.stdout, result.output


# --------------------------------------------------------------------------- #
# Hints: Python names in the library, options on the command line
# --------------------------------------------------------------------------- #


def test_library_hints_name_the_api_and_the_cli_names_the_options(models, tmp_path):
    stack = tmp_path / "stack.nii.gz"
    write_image(stack, np.random.default_rng(2).normal(size=(3, 16, 16)).astype(np.float32))
    module = torch.jit.load(models["softmax"])
    with pytest.raises(ContractError) as info:
        resolve_contract(module, ModelContract(), image_ndim=3)
    assert "set per_slice to x, y or z" in str(info.value) and "--" not in str(info.value)
    code, errors, _ = invoke("predict", stack, "-m", models["softmax"], "-o", tmp_path / "o", "--device", "cpu")
    assert code == 2 and len(errors) == 1 and "set --per-slice to x, y or z" in errors[0], errors
    assert "per_slice" not in errors[0]
    # a model taking 3 channels: the CLI has no in_channels option, so the hint does not name it
    code, errors, _ = invoke("predict", tmp_path / "stack.nii.gz", "-m", models["rgb"], "-o", tmp_path / "o2",
                             "--per-slice", "z", "--device", "cpu")
    assert code == 2 and len(errors) == 1 and "takes 3 channels, the images have 1" in errors[0], errors
    assert "in_channels" not in errors[0]


@pytest.mark.parametrize("library, cli", [
    ("x: already exists (use overwrite=True / --overwrite to replace it)", "x: already exists (use --overwrite to replace it)"),
    ("the model's outputs are probabilities; use activation='none'", "the model's outputs are probabilities; use --activation none"),
    ("device 'cuda': CUDA is not available (no GPU); use device='cpu' or 'auto'",
     "device 'cuda': CUDA is not available (no GPU); use --device cpu or auto"),
    ("out of memory (x); use patch_size or a smaller batch_size", "out of memory (x); use --patch-size"),
])
def test_cli_wording(library, cli):
    assert cli_wording(library) == cli


def test_overwrite_hint_from_the_writer_reads_as_the_cli_option(tmp_path):
    write_mask(tmp_path / "m.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(TopofixError) as info:
        write_mask(tmp_path / "m.png", np.zeros((4, 4), np.uint8))
    assert cli_wording(str(info.value)).endswith("(use --overwrite to replace it)")
