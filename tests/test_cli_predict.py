"""`topofix predict` end to end: outputs, formats, geometry, probabilities, refusals, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from topofix.cli.app import app
from topofix.io import Geometry, read_image, read_mask, write_image
from topofix.nets import SmallUNet
from topofix.prediction import predict

runner = CliRunner()


class ScriptableUNet(SmallUNet):
    """SmallUNet with a forward that torch.jit.script accepts (``reversed`` of a list is not)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        i = len(skips) - 1
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips[i]], dim=1))
            i -= 1
        return self.head(x)


def visible(folder) -> list[str]:
    """The outputs, without the run's journal and hidden lock."""
    return sorted(n for n in os.listdir(folder) if n != "topofix_journal.jsonl" and not n.startswith("."))


def _sharpen(model):
    """Large head weights, no bias: an untrained net then uses all its labels."""
    with torch.no_grad():
        model.head.weight.mul_(20)
        model.head.bias.zero_()
    return model.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net2d = _sharpen(ScriptableUNet(1, 3, base=4, depth=2, dims=2))
    net3d = _sharpen(SmallUNet(1, 1, base=4, depth=2, dims=3))
    paths = {"2d": folder / "unet2d.pt", "3d": folder / "unet3d.pt"}
    torch.jit.save(torch.jit.script(net2d), str(paths["2d"]))
    torch.jit.save(torch.jit.trace(net3d, torch.zeros(1, 1, 8, 8, 8)), str(paths["3d"]))
    return {**{k: str(v) for k, v in paths.items()}, "net2d": net2d, "net3d": net3d}


ROTATED = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)


@pytest.fixture()
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    write_image(folder / "a.png", rng.integers(0, 255, (20, 27)).astype(np.uint8))
    write_image(folder / "b.nii.gz", rng.normal(size=(21, 30)).astype(np.float32),
                Geometry((0.7, 0.9), (10.0, -4.0), (0.0, 1.0, -1.0, 0.0)))
    write_image(folder / "stack.nii.gz", rng.normal(size=(4, 21, 30)).astype(np.float32),
                Geometry((1.25, 1.25, 8.0), (1.0, 2.0, 3.0), ROTATED))
    write_image(folder / "vol.mha", (100 * rng.normal(size=(10, 18, 22))).astype(np.int16),
                Geometry((1.0, 1.2, 2.0), (5.0, 6.0, 7.0), ROTATED))
    return folder


def run(*args: str):
    return runner.invoke(app, ["predict", *map(str, args)])


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_same_geometry(output: Path, source: Path):
    out, src = read_mask(output), read_image(source)
    assert out.array.shape == src.array.shape
    for a, b in zip((out.geometry.spacing, out.geometry.origin, out.geometry.direction),
                    (src.geometry.spacing, src.geometry.origin, src.geometry.direction)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    return out


def test_2d_model_on_png_nifti_and_stack(models, inputs, tmp_path):
    out_dir = tmp_path / "seg"
    result = run(inputs / "a.png", inputs / "b.nii.gz", inputs / "stack.nii.gz", "-m", models["2d"],
                 "-o", out_dir, "--per-slice", "z")
    assert result.exit_code == 0, result.output
    assert visible(out_dir) == ["a.png", "b.nii.gz", "stack.nii.gz"]
    assert "3 mask(s) written" in result.stdout
    for name in ("a.png", "b.nii.gz", "stack.nii.gz"):
        mask = assert_same_geometry(out_dir / name, inputs / name)
        assert set(np.unique(mask.array)) <= {0, 1, 2}
        expected = predict(read_image(inputs / name), models["net2d"], per_slice="z", device="cpu")
        np.testing.assert_array_equal(mask.array, expected.labels)
    assert len(np.unique(read_mask(out_dir / "stack.nii.gz").array)) > 1  # not trivially empty


def test_3d_model_with_patches_and_probabilities(models, inputs, tmp_path):
    out_dir = tmp_path / "seg"
    result = run(inputs / "vol.mha", "-m", models["3d"], "-o", out_dir, "--patch-size", "8,8,8",
                 "--overlap", "0.25", "--save-probabilities", "--normalize", "percentile")
    assert result.exit_code == 0, result.output
    assert visible(out_dir) == ["vol.mha", "vol_prob1.mha"]  # sigmoid: P(label 1)
    mask = assert_same_geometry(out_dir / "vol.mha", inputs / "vol.mha")
    assert set(np.unique(mask.array)) == {0, 1}
    prob = read_image(out_dir / "vol_prob1.mha")
    assert prob.array.dtype == np.float32 and prob.geometry == read_image(inputs / "vol.mha").geometry
    np.testing.assert_array_equal(mask.array, (prob.array >= 0.5).astype(np.uint8))


def test_probabilities_of_png_are_nifti(models, inputs, tmp_path):
    out_dir = tmp_path / "seg"
    result = run(inputs / "a.png", "-m", models["2d"], "-o", out_dir, "--save-probabilities", "-q")
    assert result.exit_code == 0, result.output
    assert visible(out_dir) == ["a.png", "a_prob0.nii.gz", "a_prob1.nii.gz", "a_prob2.nii.gz"]
    probs = np.stack([read_image(out_dir / f"a_prob{k}.nii.gz").array for k in range(3)])
    assert probs.shape == (3, 20, 27) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(read_mask(out_dir / "a.png").array, probs.argmax(0))


def test_refuses_output_folder_holding_the_inputs(models, inputs):
    before = {p: p.read_bytes() for p in inputs.iterdir()}
    result = run(inputs, "-m", models["2d"], "-o", inputs, "--per-slice", "z")
    assert result.exit_code == 2
    assert len(errors(result)) == 1 and "choose another output folder" in result.stderr
    assert {p: p.read_bytes() for p in inputs.iterdir()} == before


def test_refuses_to_overwrite_unless_asked(models, inputs, tmp_path):
    out_dir = tmp_path / "seg"
    assert run(inputs / "a.png", inputs / "b.nii.gz", "-m", models["2d"], "-o", out_dir).exit_code == 0
    (out_dir / "a.png").write_bytes(b"keep me")
    result = run(inputs / "a.png", inputs / "b.nii.gz", "-m", models["2d"], "-o", out_dir)
    assert result.exit_code == 2
    assert len(errors(result)) == 2 and "already exists" in result.stderr
    assert (out_dir / "a.png").read_bytes() == b"keep me"
    result = run(inputs / "a.png", "-m", models["2d"], "-o", out_dir, "--overwrite")
    assert result.exit_code == 0, result.output
    assert read_mask(out_dir / "a.png").array.shape == (20, 27)


def test_unreadable_input_among_good_ones(models, inputs, tmp_path):
    bad = inputs / "broken.nii.gz"
    bad.write_bytes(b"not an image at all")
    out_dir = tmp_path / "seg"
    result = run(inputs / "a.png", bad, inputs / "b.nii.gz", inputs / "missing.png", "-m", models["2d"], "-o", out_dir)
    assert result.exit_code == 2
    lines = errors(result)
    assert len(lines) == 2, result.stderr
    assert "broken.nii.gz" in lines[0] and "missing.png" in lines[1]
    assert visible(out_dir) == ["a.png", "b.nii.gz"]
    assert "2 mask(s) written" in result.stdout and "2 input(s) failed" in result.stdout


def test_2d_model_on_3d_without_per_slice(models, inputs, tmp_path):
    result = run(inputs / "stack.nii.gz", inputs / "a.png", "-m", models["2d"], "-o", tmp_path / "seg")
    assert result.exit_code == 2
    assert len(errors(result)) == 1 and "--per-slice" in errors(result)[0] and "stack.nii.gz" in errors(result)[0]
    assert visible(tmp_path / "seg") == ["a.png"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(models, inputs, tmp_path):
    result = run(inputs / "a.png", "-m", models["2d"], "-o", tmp_path / "seg", "--device", "cuda")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "CUDA is not available" in result.stderr
    assert not (tmp_path / "seg").exists()


@pytest.mark.parametrize("args, words", [
    (["--patch-size", "8,x"], "--patch-size"),
    (["--patch-size", "0,8"], "--patch-size"),
    (["--overlap", "1"], "--overlap"),
])
def test_bad_option_values(models, inputs, tmp_path, args, words):
    result = run(inputs / "a.png", "-m", models["2d"], "-o", tmp_path / "seg", *args)
    assert result.exit_code == 2 and words in result.stderr and len(errors(result)) == 1


def test_unloadable_model(inputs, tmp_path):
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"\x80\x04 definitely a pickle")
    result = run(inputs / "a.png", "-m", fake, "-o", tmp_path / "seg")
    assert result.exit_code == 2 and len(errors(result)) == 1 and "model.pt" in result.stderr


def test_help_shows_examples():
    result = runner.invoke(app, ["predict", "--help"])
    assert result.exit_code == 0
    for word in ("Examples", "--per-slice", "--patch-size", "--save-probabilities", "Exit status", "--normalize"):
        assert word in result.stdout, word
    assert "predict" in runner.invoke(app, ["--help"]).stdout


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from topofix.cli.app import app\n"
        "r = CliRunner().invoke(app, ['predict', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
