"""nnU-Net v2 model folders (``-m FOLDER``): safe checkpoints, nnUNetv2_predict's label maps, correct.

Oracles: nnU-Net's own predictor (``nnUNetPredictor.predict_from_files_sequential``, which loads the
folder its own way and writes with its own writer) for ``predict``; scipy.ndimage.label for the
topology of corrected masks; SimpleITK for geometry; a pickle that creates a file when unpickled for
the allow-list. The first group needs only torch; the rest is skipped without nnunetv2 (pip install
'topofix[nnunet]') and is marked slow (importing nnunetv2 alone takes several seconds).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import correct_models as cm
import model_factory as mf
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from typer.testing import CliRunner

from topofix.cli.app import app
from topofix.errors import InputError

runner = CliRunner()

try:
    import nnunetv2  # noqa: F401

    HAVE_NNUNET = True
except ImportError:
    HAVE_NNUNET = False

needs_nnunet = pytest.mark.skipif(not HAVE_NNUNET, reason="nnunetv2 is not installed (pip install 'topofix[nnunet]')")


def _one_line_error(result) -> str:
    text = result.stderr.strip()
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert len(text.splitlines()) == 1, text
    return text


def _fake_folder(root: Path) -> Path:
    """The files that make a folder an nnU-Net trained-model folder (contents never read here)."""
    folder = root / "nnUNetTrainer__nnUNetPlans__2d"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text("{}")
    (folder / "dataset.json").write_text("{}")
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"not read")
    return folder


# ------------------------------------------------------------------------------ no nnunetv2 needed


def test_checkpoint_with_numpy_scalars_loads_like_a_full_unpickling(tmp_path):
    from topofix.models.nnunet import load_checkpoint

    conv = torch.nn.Conv2d(1, 2, 3)
    saved = {"network_weights": conv.state_dict(), "_best_ema": np.float64(0.25), "current_epoch": 3,
             "logging": {"mean_fg_dice": [np.float64(0.5), np.float32(0.75)], "ema": [np.int64(2)]},
             "init_args": {"configuration": "2d", "device": torch.device("cpu"), "fold": 0},
             "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1)}
    torch.save(saved, tmp_path / "checkpoint_final.pth")
    loaded = load_checkpoint(tmp_path / "checkpoint_final.pth")
    trusted = torch.load(tmp_path / "checkpoint_final.pth", weights_only=False)  # our own file: the oracle
    assert loaded.keys() == trusted.keys()
    for key, value in trusted["network_weights"].items():
        assert torch.equal(loaded["network_weights"][key], value)
    assert loaded["logging"] == trusted["logging"] and type(loaded["_best_ema"]) is np.float64
    assert loaded["init_args"] == trusted["init_args"]


@pytest.mark.parametrize("where", ["top", "init_args"])
def test_checkpoint_holding_another_type_is_refused_without_running_it(tmp_path, where):
    from topofix.models.nnunet import load_checkpoint

    marker = tmp_path / "unpickled"
    trap = mf.Trap(marker)
    content = {"network_weights": torch.nn.Conv2d(1, 1, 1).state_dict(), "trainer_name": "nnUNetTrainer",
               "init_args": {"configuration": "2d"}}
    if where == "top":
        content["extra"] = trap
    else:
        content["init_args"]["plans"] = trap
    torch.save(content, tmp_path / "checkpoint_final.pth")
    with pytest.raises(InputError) as info:
        load_checkpoint(tmp_path / "checkpoint_final.pth")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "open" in message and "weights_only=False" in message  # what, and how to convert
    assert not marker.exists()
    # the trap is real: a full unpickling runs it
    torch.load(tmp_path / "checkpoint_final.pth", weights_only=False)
    assert marker.exists()


def test_without_nnunetv2_a_model_folder_asks_for_the_extra(tmp_path, monkeypatch):
    folder = _fake_folder(tmp_path)
    image = tmp_path / "case.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.float32)), str(image))
    monkeypatch.setitem(sys.modules, "nnunetv2", None)  # import nnunetv2 -> ImportError
    for command in (["predict", str(image), "-m", str(folder), "-o", str(tmp_path / "out")],
                    ["correct", str(image), "-m", str(folder), "-o", str(tmp_path / "out2"), "-p", "1=1,1"]):
        text = _one_line_error(runner.invoke(app, command))
        assert "install topofix[nnunet]" in text and str(folder) in text


def test_nnunet_options_on_a_torchscript_model_are_a_one_line_error(tmp_path):
    model = mf.save_scripted(tmp_path)
    image = tmp_path / "case.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.float32)), str(image))
    text = _one_line_error(runner.invoke(app, ["predict", str(image), "-m", str(model), "-o", str(tmp_path / "o"),
                                               "--folds", "0,1"]))
    assert "nnU-Net model folders only" in text
    text = _one_line_error(runner.invoke(app, ["predict", str(image), "-m", str(model), "-o", str(tmp_path / "o"),
                                               "--folds", "zero"]))
    assert "--folds zero" in text


def test_topofix_never_imports_nnunetv2_by_itself():
    code = ("import sys, topofix, topofix.files, topofix.cli.app, topofix.models.nnunet, topofix.models; "
            "topofix.models.nnunet.is_nnunet_folder('.'); assert 'nnunetv2' not in sys.modules, 'imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------- with nnunetv2


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    if not HAVE_NNUNET:
        pytest.skip("nnunetv2 is not installed (pip install 'topofix[nnunet]')")
    import nnunet_factory as nf

    root = tmp_path_factory.mktemp("nnunet_models")
    two_d = nf.model_folder(root / "d2", 2, steps=120)
    # 3D: two folds, anisotropic target spacing, a transposed axis order, few training steps (the
    # comparison with nnU-Net needs a network, not a good one)
    three_d = nf.model_folder(root / "d3", 3, folds=(0, 1), spacing=[2.0, 1.0, 1.25], patch=[8, 16, 16],
                              transpose=[0, 2, 1], steps=15)
    return {"2d": two_d, "3d": three_d}


def _nnunet_oracle(folder: Path, image: Path, out: Path, tta: bool = True) -> sitk.Image:
    """nnU-Net's own prediction of ``image``, written by nnU-Net."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=tta, device=torch.device("cpu"),
                                perform_everything_on_device=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), None)
    out.mkdir(parents=True, exist_ok=True)
    predictor.predict_from_files_sequential([[str(image)]], [str(out / "oracle")], save_probabilities=False,
                                            overwrite=True)
    return sitk.ReadImage(str(out / ("oracle" + "".join(image.suffixes))))


def _same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    assert np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    assert np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-6)
    assert np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def _write(path: Path, array: np.ndarray, spacing, origin) -> Path:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.slow
@needs_nnunet
def test_predict_2d_gives_nnunetv2_predicts_label_map(models, tmp_path):
    # spacing 0.8 against the plans' 1.0: nnU-Net resamples in and out
    _, image = cm.ring_scene(gap=0.4, gap_half_width=2.0, seed=3)
    path = _write(tmp_path / "ring.nii.gz", image * 3.0 + 7.0, (0.8, 0.8), (3.0, -4.0))
    result = runner.invoke(app, ["predict", str(path), "-m", str(models["2d"]), "-o", str(tmp_path / "seg"),
                                 "--device", "cpu", "--save-probabilities"])
    assert result.exit_code == 0, result.stdout + result.stderr
    ours = sitk.ReadImage(str(tmp_path / "seg" / "ring.nii.gz"))
    oracle = _nnunet_oracle(models["2d"], path, tmp_path / "oracle")
    assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(oracle))
    assert sitk.GetArrayFromImage(ours).any()  # not trivially equal
    _same_geometry(ours, oracle)
    _same_geometry(ours, sitk.ReadImage(str(path)))
    prob = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "seg" / "ring_prob1.nii.gz")))
    assert np.array_equal(prob >= 0.5, sitk.GetArrayFromImage(ours) == 1)


@pytest.mark.slow
@needs_nnunet
def test_predict_3d_two_fold_ensemble_gives_nnunetv2_predicts_label_map(models, tmp_path):
    rng = np.random.default_rng(1)
    clean, image = cm.ball_scene(center=(7.5, 7.5, 7.5), radius=4.5, seed=2)
    volume = np.pad(image, ((0, 2), (3, 5), (1, 6))) + rng.normal(0, 0.05, (18, 24, 23))
    path = _write(tmp_path / "ball.nii.gz", volume, (0.9, 1.1, 1.5), (1.0, 2.0, 3.0))
    for extra in ([], ["--disable-tta", "--folds", "1"]):
        out = tmp_path / ("seg" + "".join(extra))
        result = runner.invoke(app, ["predict", str(path), "-m", str(models["3d"].parent), "--configuration",
                                     "3d_fullres", "-o", str(out), "--device", "cpu", *extra])
        assert result.exit_code == 0, result.stdout + result.stderr
        ours = sitk.ReadImage(str(out / "ball.nii.gz"))
        if extra:
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

            predictor = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"),
                                        perform_everything_on_device=False, allow_tqdm=False)
            predictor.initialize_from_trained_model_folder(str(models["3d"]), (1,))
            (tmp_path / "o1").mkdir()
            predictor.predict_from_files_sequential([[str(path)]], [str(tmp_path / "o1" / "oracle")])
            oracle = sitk.ReadImage(str(tmp_path / "o1" / "oracle.nii.gz"))
        else:
            oracle = _nnunet_oracle(models["3d"], path, tmp_path / "oracle")
        assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(oracle))
        _same_geometry(ours, oracle)
    journal = (tmp_path / "seg" / "topofix_journal.jsonl").read_text()
    assert "nnunet" in journal or "3d_fullres" in journal


@pytest.mark.slow
@needs_nnunet
def test_correct_closes_a_broken_ring_in_the_inputs_geometry(models, tmp_path):
    from scipy import ndimage

    _, image = cm.ring_scene(gap=0.5, gap_half_width=2.0, seed=3)
    path = _write(tmp_path / "ring.nii.gz", image, (1.0, 1.0), (5.0, 6.0))
    result = runner.invoke(app, ["correct", str(path), "-m", str(models["2d"]), "-o", str(tmp_path / "fixed"),
                                 "-p", "1=1,1", "--device", "cpu", "--disable-tta", "--save-original", "--no-repair"])
    assert result.exit_code == 0, result.stdout + result.stderr
    eight = np.ones((3, 3), bool)  # topofix's default: 8-connected foreground, 4-connected background
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "fixed" / "ring_original.nii.gz")))
    # not one ring: not (one component with one hole)
    assert (ndimage.label(original == 1, eight)[1], ndimage.label(original != 1)[1]) != (1, 2)
    fixed_image = sitk.ReadImage(str(tmp_path / "fixed" / "ring.nii.gz"))
    fixed = sitk.GetArrayFromImage(fixed_image)
    assert ndimage.label(fixed == 1, eight)[1] == 1 and ndimage.label(fixed != 1)[1] == 2  # a closed ring
    _same_geometry(fixed_image, sitk.ReadImage(str(path)))
    # the original is nnU-Net's own prediction (same TTA setting)
    oracle = _nnunet_oracle(models["2d"], path, tmp_path / "oracle", tta=False)
    assert np.array_equal(original, sitk.GetArrayFromImage(oracle))
    report = json.loads((tmp_path / "fixed" / "topofix_report.json").read_text())
    case = report["cases"][0]
    assert case["met_before"] is False and case["met_after"] is True


@pytest.mark.slow
@needs_nnunet
def test_a_model_folder_with_a_foreign_type_in_a_checkpoint_is_refused(models, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(models["2d"], folder)
    marker = tmp_path / "unpickled"
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    content = torch.load(checkpoint, weights_only=False)  # made by the fixture: trusted
    content["init_args"]["trap"] = mf.Trap(marker)
    torch.save(content, checkpoint)
    image = _write(tmp_path / "x.nii.gz", np.zeros((32, 32)), (1.0, 1.0), (0.0, 0.0))
    text = _one_line_error(runner.invoke(app, ["predict", str(image), "-m", str(folder), "-o", str(tmp_path / "o")]))
    assert str(checkpoint) in text and "open" in text
    assert not marker.exists()


@pytest.mark.slow
@needs_nnunet
def test_the_network_correct_fine_tunes_is_nnunets_fold_ensemble_with_mirroring(models):
    """Step 0 of correct: the module topofix trains gives nnU-Net's logits (mean of the folds, each
    averaged over its mirrorings) on a preprocessed patch."""
    from topofix.models.nnunet import NnUNetSelection, _ensemble_module, load_nnunet

    model = load_nnunet(models["3d"], NnUNetSelection(), device="cpu")
    assert model.folds == ["0", "1"] and model.mirror_axes == (0, 1, 2)
    patch = tuple(model.configuration_manager.patch_size)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, *patch)).astype(np.float32))
    with torch.no_grad():
        ours = _ensemble_module(model, mirror=True)(x[None])[0]
    # nnU-Net's own code; on the CPU it sums the Gaussian-weighted windows in float16 (about 3
    # significant digits), hence a relative tolerance
    oracle = model.predictor().predict_logits_from_preprocessed_data(x).float()

    def error(logits):
        return float((logits - oracle).abs().max() / oracle.abs().max())

    assert error(ours) < 0.01
    one = load_nnunet(models["3d"], NnUNetSelection(folds=("1",)), device="cpu")
    with torch.no_grad():
        assert error(_ensemble_module(one, mirror=True)(x[None])[0]) > 0.05  # one fold is not the ensemble
        assert error(_ensemble_module(model, mirror=False)(x[None])[0]) > 0.05  # nor is it without mirroring


@pytest.mark.slow
@needs_nnunet
def test_correct_with_resampling_reports_the_masks_as_written(models, tmp_path):
    """Spacing 0.8 against the plans' 1.0: fine-tuned on nnU-Net's 1.0 grid, exported to 0.8; the
    report's Betti numbers are those of the files (scipy's count), the prior is met there."""
    from scipy import ndimage

    _, image = cm.ring_scene(gap=0.35, gap_half_width=2.0, seed=3)
    path = _write(tmp_path / "ring.nii.gz", image, (0.8, 0.8), (3.0, 4.0))
    result = runner.invoke(app, ["correct", str(path), "-m", str(models["2d"]), "-o", str(tmp_path / "fixed"),
                                 "-p", "1=1,1", "--device", "cpu", "--disable-tta", "--save-original"])
    assert result.exit_code == 0, result.stdout + result.stderr
    case = json.loads((tmp_path / "fixed" / "topofix_report.json").read_text())["cases"][0]
    eight = np.ones((3, 3), bool)
    for name, key in (("ring_original", "betti_before"), ("ring", "betti_after")):
        written = sitk.ReadImage(str(tmp_path / "fixed" / f"{name}.nii.gz"))
        _same_geometry(written, sitk.ReadImage(str(path)))
        mask = sitk.GetArrayFromImage(written) == 1
        betti = [ndimage.label(mask, eight)[1], ndimage.label(~mask)[1] - 1]
        assert case["priors"][0][key] == [betti]
    assert case["met_after"] is True and case["priors"][0]["betti_after"] == [[1, 1]]


@pytest.mark.slow
@needs_nnunet
def test_a_2d_configuration_corrects_every_slice_of_a_stack(models, tmp_path):
    """nnU-Net runs a 2D configuration on the slices along its first axis: correct does too, and judges
    the prior per slice there; another --per-slice axis is a one-line error for that scan."""
    from scipy import ndimage

    volume = np.stack([cm.ring_scene(gap=g, gap_half_width=2.0, seed=3 + i)[1]
                       for i, g in enumerate((None, 0.5, 0.45))])
    path = _write(tmp_path / "stack.nii.gz", volume, (1.0, 1.0, 3.0), (0.0, 0.0, 0.0))
    result = runner.invoke(app, ["correct", str(path), "-m", str(models["2d"]), "-o", str(tmp_path / "fixed"),
                                 "-p", "1=1,1", "--device", "cpu", "--disable-tta"])
    assert result.exit_code == 0, result.stdout + result.stderr
    fixed_image = sitk.ReadImage(str(tmp_path / "fixed" / "stack.nii.gz"))
    _same_geometry(fixed_image, sitk.ReadImage(str(path)))
    for plane in sitk.GetArrayFromImage(fixed_image):
        assert (ndimage.label(plane == 1, np.ones((3, 3)))[1], ndimage.label(plane != 1)[1]) == (1, 2)
    result = runner.invoke(app, ["correct", str(path), "-m", str(models["2d"]), "-o", str(tmp_path / "x"),
                                 "-p", "1=1,1", "--per-slice", "x", "--device", "cpu"])
    assert result.exit_code == 2
    case = json.loads((tmp_path / "x" / "topofix_report.json").read_text())["cases"][0]
    assert "use --per-slice z" in case["error"] and len(case["error"].splitlines()) == 1
