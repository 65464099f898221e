"""`topofix correct` end to end, through the CLI, with small networks trained here to break topology.

The networks (tests/correct_models.py) follow the image intensity: a faint gap in a
ring comes out as a broken ring, a faint blob as a spurious component. Every test
checks that the original prediction really breaks the prior before it checks the
correction, and passes the optimisation settings explicitly (the CLI defaults are
being tuned and are not what these tests are about).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import correct_models as cm
import numpy as np
import pytest
from oracles import betti as oracle_betti
from typer.testing import CliRunner

from topofix.cli.app import app
from topofix.io import Geometry, read_image, read_mask, write_image

runner = CliRunner()

# Settings that fix every broken scene below within a few steps (see correct_models for the scenes);
# given in full so that a change of the CLI defaults does not change these tests.
SETTINGS = ["--lr", "1e-3", "--lambda", "10", "--steps", "60", "--seed", "0", "--threshold", "0.5",
            "--loss", "squared", "--connectivity", "full", "--device", "cpu", "-q"]

BROKEN_RING = {"gap": 0.35, "gap_angle": 1.0, "seed": 3}  # predicted (1, 0): the gap comes out at p ~ 0.3
RING_AND_BLOB = {"blob": 0.6, "seed": 3}  # predicted (2, 1)
DISC_AND_BLOB = {"disc": 1.0, "blob": 0.8, "seed": 3}  # a solid disc and a blob: (2, 0)
BROKEN_RING_AND_BLOB = {"gap": 0.35, "gap_angle": 1.0, "blob": 0.6, "seed": 3}  # (2, 0); needs ~17 steps
GOOD_RING = {"seed": 4, "gap_angle": 2.0}  # predicted (1, 1)
BROKEN_HEART = {"gap": 0.5, "gap_angle": 1.0, "disc": cm.HEART_LEVELS[2], "seed": 3}  # MYO (1, 0), MYO+LV (1, 0)
BALL_AND_BLOB = {"blob": 0.7, "blob_at": (12.0, 3.0, 3.0), "seed": 3}  # 3D, (2, 0, 0)
# with 12^3 windows the blended blob of intensity 0.7 touched the ball (26-connected) on this
# machine's test-trained model: a brighter blob stays a separate component in both runs
BALL_AND_BRIGHT_BLOB = {**BALL_AND_BLOB, "blob": 0.9}
PIERCED_SHELL = {"radius": 6.5, "inner": 3.5, "hole": 0.4, "seed": 3}  # 3D hollow ball with a hole: (1, 0, 0)

GEOMETRY_2D = Geometry((0.8, 0.9), (10.0, -4.0), (0.0, 1.0, -1.0, 0.0))
GEOMETRY_3D = Geometry((1.25, 1.25, 2.0), (1.0, 2.0, 3.0), (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return cm.shared_models(tmp_path_factory)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: deterministic, and no oversubscription on a busy 2-core machine."""
    with cm.one_thread():
        yield


def run(*args):
    return runner.invoke(app, ["correct", *map(str, args)])


def predict(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def stdout(result) -> str:
    """stdout with the console's line wrapping undone."""
    return " ".join(result.stdout.split())


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def write_ring(path: Path, png: bool = False, geometry: Geometry | None = GEOMETRY_2D, **scene) -> Path:
    _, image = cm.ring_scene(**scene)
    if png:
        write_image(path, cm.as_png_pixels(image))
    else:
        write_image(path, image, geometry)
    return path


def write_ball(path: Path, **scene) -> Path:
    _, image = cm.ball_scene(**scene)
    write_image(path, image, GEOMETRY_3D)
    return path


def report(folder: Path) -> dict:
    return json.loads((folder / "topofix_report.json").read_text())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def assert_geometry(output: Path, source: Path) -> np.ndarray:
    mask, image = read_mask(output), read_image(source)
    assert mask.array.shape == image.array.shape
    for a, b in zip((mask.geometry.spacing, mask.geometry.origin, mask.geometry.direction),
                    (image.geometry.spacing, image.geometry.origin, image.geometry.direction)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    return mask.array


RUN_FILES = {"topofix_journal.jsonl", ".topofix.lock"}  # every run's journal and folder lock


def assert_only(folder: Path, names: set[str]) -> None:
    """Exactly these files besides the journal and the lock (hidden temporaries included)."""
    assert set(os.listdir(folder)) == names | RUN_FILES


# --------------------------------------------------------------------------- corrections


@pytest.mark.parametrize("kind, name", [("ring_scripted", "scan.nii.gz"), ("ring_traced", "scan.png"),
                                        ("ring_onnx", "scan.mha")])
def test_closes_a_broken_ring(models, tmp_path, kind, name):
    scan = write_ring(tmp_path / "in" / name, png=name.endswith(".png"), **BROKEN_RING)
    before = scan.read_bytes()
    out = tmp_path / "out"
    result = run(scan, "-m", models.files[kind], "-o", out, "--betti", "1,1", "--save-original", *SETTINGS)
    assert result.exit_code == 0, result.output
    stem, ext = name.split(".", 1)
    assert_only(out, {name, f"{stem}_original.{ext}", "topofix_report.json", "topofix_report.csv"})
    original = assert_geometry(out / f"{stem}_original.{ext}", scan)
    corrected = assert_geometry(out / name, scan)
    assert oracle_betti(original) == (1, 0)  # the network really broke the ring
    assert oracle_betti(corrected) == (1, 1)
    assert 0 < np.mean(original != corrected) < 0.1  # closed, not repainted
    case = report(out)["cases"][0]
    assert (case["status"], case["met_before"], case["met_after"], case["stop_reason"]) == (
        "done", False, True, "met")
    assert case["priors"][0]["betti_before"] == [[1, 0]] and case["priors"][0]["betti_after"] == [[1, 1]]
    assert 0 < case["steps"] <= 60 and case["chosen_step"] == case["steps"]
    assert "1 corrected" in stdout(result)
    assert scan.read_bytes() == before  # the input is never touched


@pytest.mark.parametrize("scene, betti, before", [(RING_AND_BLOB, "1,1", (2, 1)), (DISC_AND_BLOB, "1,0", (2, 0))])
def test_removes_a_spurious_blob(models, tmp_path, scene, betti, before):
    scan = write_ring(tmp_path / "scan.nii.gz", **scene)
    out = tmp_path / "out"
    result = run(scan, "-m", models.files["ring_scripted"], "-o", out, "--betti", betti, "--save-original",
                 *SETTINGS)
    assert result.exit_code == 0, result.output
    original = read_mask(out / "scan_original.nii.gz").array
    corrected = read_mask(out / "scan.nii.gz").array
    assert oracle_betti(original) == before
    assert oracle_betti(corrected) == tuple(map(int, betti.split(",")))
    y, x = np.mgrid[:cm.SIZE_2D, :cm.SIZE_2D]
    near_blob = np.hypot(y - 4, x - 26) <= 4  # the scene's blob is at (4, 26)
    assert original[near_blob].any() and not corrected[near_blob].any()  # the blob went
    kept = original.astype(bool) & ~near_blob
    assert (corrected.astype(bool) & kept).sum() / kept.sum() > 0.95  # the object stayed
    assert report(out)["cases"][0]["stop_reason"] == "met"


def test_correct_prediction_is_left_byte_identical(models, tmp_path):
    scan = write_ring(tmp_path / "in" / "good.nii.gz", **GOOD_RING)
    model = models.files["ring_scripted"]
    predicted = predict(scan, "-m", model, "-o", tmp_path / "pred", "--normalize", "zscore", "--device", "cpu", "-q")
    assert predicted.exit_code == 0, predicted.output
    assert oracle_betti(read_mask(tmp_path / "pred" / "good.nii.gz").array) == (1, 1)
    result = run(scan, "-m", model, "-o", tmp_path / "out", "--betti", "1,1", "--normalize", "zscore", *SETTINGS)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "good.nii.gz").read_bytes() == (tmp_path / "pred" / "good.nii.gz").read_bytes()
    case = report(tmp_path / "out")["cases"][0]
    assert case["stop_reason"] == "already met" and case["steps"] == 0 and case["met_before"]
    assert case["changed_fraction"] == 0.0 and case["dice_original_corrected"] == 1.0
    assert "0 corrected, 1 already met the prior, 0 still do not" in stdout(result)


@pytest.mark.parametrize("kind", ["heart_scripted", "heart_onnx"])
def test_multilabel_priors_on_a_softmax_model(models, tmp_path, kind):
    scan = write_ring(tmp_path / "heart.nii.gz", **BROKEN_HEART)
    out = tmp_path / "out"
    result = run(scan, "-m", models.files[kind], "-o", out, "--prior", "1=1,1", "--prior", "1+2=1,0",
                 "--save-original", "--save-probabilities", *SETTINGS)
    assert result.exit_code == 0, result.output
    assert_only(out, {"heart.nii.gz", "heart_original.nii.gz", "heart_prob0.nii.gz", "heart_prob1.nii.gz",
                      "heart_prob2.nii.gz", "topofix_report.json", "topofix_report.csv"})
    original = read_mask(out / "heart_original.nii.gz").array
    corrected = assert_geometry(out / "heart.nii.gz", scan)
    assert [oracle_betti(original == 1), oracle_betti(original > 0)] == [(1, 0), (1, 0)]  # MYO broken, LV leaks
    assert [oracle_betti(corrected == 1), oracle_betti(corrected > 0)] == [(1, 1), (1, 0)]
    assert set(np.unique(corrected)) == {0, 1, 2}
    probs = np.stack([read_image(out / f"heart_prob{k}.nii.gz").array for k in range(3)])
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), corrected)  # the probabilities of the corrected mask
    case = report(out)["cases"][0]
    assert [p["prior"] for p in case["priors"]] == ["1=1,1", "1+2=1,0"]
    assert [p["met_before"] for p in case["priors"]] == [False, True]
    assert [p["met_after"] for p in case["priors"]] == [True, True]
    with open(out / "topofix_report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["prior"], r["betti_before"], r["betti_after"]) for r in rows] == [
        ("1=1,1", "1,0", "1,1"), ("1+2=1,0", "1,0", "1,0")]  # one CSV row per prior


def test_2d_model_per_slice_on_a_3d_stack(models, tmp_path):
    """Slices: empty, good ring, broken ring, good ring, empty (the stack is not normalised as a
    whole: --normalize none on slices z-scored like the training scenes)."""
    c1, good1 = cm.ring_scene(seed=1)
    _, broken = cm.ring_scene(seed=2, **{k: v for k, v in BROKEN_RING.items() if k != "seed"})
    _, good2 = cm.ring_scene(seed=5, radius=7.5, gap_angle=2.0)
    stack = np.stack([cm.background_like(c1, good1, 10), good1, broken, good2, cm.background_like(c1, good1, 11)])
    scan = tmp_path / "stack.nii.gz"
    write_image(scan, stack, GEOMETRY_3D)
    out = tmp_path / "out"
    result = run(scan, "-m", models.files["ring_scripted"], "-o", out, "--per-slice", "z", "--betti", "1,1",
                 "--normalize", "none", "--save-original", *SETTINGS)
    assert result.exit_code == 0, result.output
    original = read_mask(out / "stack_original.nii.gz").array
    corrected = assert_geometry(out / "stack.nii.gz", scan)
    assert [oracle_betti(s) for s in original] == [(0, 0), (1, 1), (1, 0), (1, 1), (0, 0)]
    assert [oracle_betti(s) for s in corrected] == [(0, 0), (1, 1), (1, 1), (1, 1), (0, 0)]
    assert not corrected[0].any() and not corrected[4].any()  # empty slices stay empty
    prior = report(out)["cases"][0]["priors"][0]
    assert prior["failing_slices_before"] == [2] and prior["failing_slices_after"] == []


@pytest.mark.parametrize("kind", ["ball_scripted", "ball_traced"])
def test_3d_model_removes_a_spurious_blob(models, tmp_path, kind):
    scan = write_ball(tmp_path / "ball.nii.gz", **BALL_AND_BLOB)
    out = tmp_path / "out"
    result = run(scan, "-m", models.files[kind], "-o", out, "--betti", "1,0,0", "--save-original", *SETTINGS)
    assert result.exit_code == 0, result.output
    original = read_mask(out / "ball_original.nii.gz").array
    corrected = assert_geometry(out / "ball.nii.gz", scan)
    assert oracle_betti(original) == (2, 0, 0)
    assert oracle_betti(corrected) == (1, 0, 0)
    case = report(out)["cases"][0]
    assert case["stop_reason"] == "met" and case["dice_original_corrected"] > 0.9


@pytest.mark.parametrize("kind", ["ball_scripted", "ball_onnx"])
def test_3d_model_closes_a_pierced_shell(models, tmp_path, kind):
    """A hollow ball whose shell has a faint hole: predicted (1, 0, 0), the cavity is restored."""
    scan = write_ball(tmp_path / "shell.nii.gz", **PIERCED_SHELL)
    out = tmp_path / "out"
    result = run(scan, "-m", models.files[kind], "-o", out, "--betti", "1,0,1", "--save-original", *SETTINGS)
    assert result.exit_code == 0, result.output
    assert oracle_betti(read_mask(out / "shell_original.nii.gz").array) == (1, 0, 0)
    assert oracle_betti(assert_geometry(out / "shell.nii.gz", scan)) == (1, 0, 1)


# --------------------------------------------------------------------------- batches, resume


def test_batch_gives_each_scan_what_it_gets_alone(models, tmp_path):
    """Every scan starts from the original weights: a batch's outputs are byte-identical to
    one run per scan."""
    inputs = tmp_path / "in"
    for name, scene in (("a", RING_AND_BLOB), ("b", BROKEN_RING_AND_BLOB), ("c", BROKEN_RING)):
        write_ring(inputs / f"{name}.nii.gz", **scene)
    model = models.files["ring_scripted"]
    result = run(inputs, "-m", model, "-o", tmp_path / "batch", "--betti", "1,1", *SETTINGS)
    assert result.exit_code == 0, result.output
    assert "3 scan(s) processed: 3 corrected" in stdout(result)
    for name in ("a", "b", "c"):
        alone = run(inputs / f"{name}.nii.gz", "-m", model, "-o", tmp_path / name, "--betti", "1,1", *SETTINGS)
        assert alone.exit_code == 0, alone.output
        batch_bytes = (tmp_path / "batch" / f"{name}.nii.gz").read_bytes()
        assert (tmp_path / name / f"{name}.nii.gz").read_bytes() == batch_bytes, name


def test_resume_with_skip_existing(models, tmp_path):
    inputs = tmp_path / "in"
    scans = [write_ring(inputs / "a.nii.gz", **BROKEN_RING), write_ring(inputs / "b.nii.gz", **GOOD_RING),
             write_ring(inputs / "c.nii.gz", **RING_AND_BLOB)]
    out = tmp_path / "out"
    model = models.files["ring_scripted"]
    first = run(scans[0], scans[1], "-m", model, "-o", out, "--betti", "1,1", *SETTINGS)  # interrupted batch
    assert first.exit_code == 0, first.output
    earlier = report(out)["cases"]
    stats = {name: (out / name).stat().st_mtime_ns for name in ("a.nii.gz", "b.nii.gz")}
    kept = {name: (out / name).read_bytes() for name in ("a.nii.gz", "b.nii.gz")}

    again = run(inputs, "-m", model, "-o", out, "--betti", "1,1", "--skip-existing", *SETTINGS)
    assert again.exit_code == 0, again.output
    cases = report(out)["cases"]
    assert [os.path.basename(c["path"]) for c in cases] == ["a.nii.gz", "b.nii.gz", "c.nii.gz"]
    for before, after in zip(earlier, cases[:2]):  # their real results, carried forward (timings: not run again)
        assert after["status"] == "resumed" and before["status"] == "done"
        assert {k: v for k, v in after.items() if k != "status"} == {k: v for k, v in before.items() if k != "status"}
    assert cases[2]["status"] == "done" and cases[2]["stop_reason"] == "met"
    for name in ("a.nii.gz", "b.nii.gz"):
        assert (out / name).stat().st_mtime_ns == stats[name] and (out / name).read_bytes() == kept[name]
    assert oracle_betti(read_mask(out / "c.nii.gz").array) == (1, 1)
    assert_only(out, {"a.nii.gz", "b.nii.gz", "c.nii.gz", "topofix_report.json", "topofix_report.csv"})


def test_skip_existing_refuses_an_output_the_journal_does_not_know(models, tmp_path):
    """A mask that exists but that no journal entry of this model, prior and settings describes is
    neither accepted as done nor overwritten: that case fails with one line naming it, the others run."""
    inputs = tmp_path / "in"
    write_ring(inputs / "a.nii.gz", **BROKEN_RING)
    write_ring(inputs / "b.nii.gz", **BROKEN_RING)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.nii.gz").write_bytes(b"the user's own mask")
    result = run(inputs, "-m", models.files["ring_scripted"], "-o", out, "--betti", "1,1", "--skip-existing",
                 *SETTINGS)
    assert result.exit_code == 2, result.output
    assert (out / "a.nii.gz").read_bytes() == b"the user's own mask"
    assert errors(result) == [f"error: {out / 'a.nii.gz'}: it was written by a run with another model, prior or "
                              "settings (or by something else); use --overwrite to redo it"]
    data = report(out)
    assert [c["status"] for c in data["cases"]] == ["error", "done"]
    assert data["summary"]["processed"] == 1 and data["summary"]["failed"] == 1


@pytest.mark.parametrize("kind", ["ball_scripted", "ball_traced"])
def test_3d_sliding_windows(models, tmp_path, kind):
    """Windows of 12^3 over a 16^3 volume (8 windows, Gaussian blending), differentiated through."""
    scan = write_ball(tmp_path / "ball.mha", **BALL_AND_BRIGHT_BLOB)
    out = tmp_path / "out"
    result = run(scan, "-m", models.files[kind], "-o", out, "--betti", "1,0,0", "--patch-size", "12,12,12",
                 "--overlap", "0.5", "--save-original", *SETTINGS)
    assert result.exit_code == 0, result.output
    assert oracle_betti(read_mask(out / "ball_original.mha").array) == (2, 0, 0)
    assert oracle_betti(assert_geometry(out / "ball.mha", scan)) == (1, 0, 0)


# --------------------------------------------------------------------------- bad inputs, exit codes


def test_unreadable_scan_among_good_ones(models, tmp_path):
    inputs = tmp_path / "in"
    write_ring(inputs / "a.nii.gz", **GOOD_RING)
    write_ring(inputs / "c.nii.gz", **BROKEN_RING)
    bad = inputs / "b.nii.gz"
    bad.write_bytes(b"not an image at all")
    before = snapshot(inputs)
    out = tmp_path / "out"
    result = run(inputs, "-m", models.files["ring_scripted"], "-o", out, "--betti", "1,1", *SETTINGS)
    assert result.exit_code == 2
    lines = errors(result)
    assert len(lines) == 1 and "b.nii.gz" in lines[0], result.stderr
    assert_only(out, {"a.nii.gz", "c.nii.gz", "topofix_report.json", "topofix_report.csv"})
    cases = report(out)["cases"]
    assert [c["status"] for c in cases] == ["done", "error", "done"]
    assert "b.nii.gz" in cases[1]["error"]
    assert oracle_betti(read_mask(out / "c.nii.gz").array) == (1, 1)
    assert "1 could not be processed" in stdout(result)
    assert snapshot(inputs) == before


def test_refuses_an_output_folder_holding_the_inputs(models, tmp_path):
    inputs = tmp_path / "in"
    write_ring(inputs / "a.nii.gz", **BROKEN_RING)
    write_ring(inputs / "b.nii.gz", **GOOD_RING)
    before = snapshot(inputs)
    result = run(inputs, "-m", models.files["ring_scripted"], "-o", inputs, "--betti", "1,1", *SETTINGS)
    assert result.exit_code == 2
    assert len(errors(result)) == 1 and "choose another output folder" in result.stderr
    assert snapshot(inputs) == before  # nothing written, nothing replaced


def test_existing_outputs_without_overwrite(models, tmp_path):
    inputs = tmp_path / "in"
    write_ring(inputs / "a.nii.gz", **BROKEN_RING)
    write_ring(inputs / "b.nii.gz", **GOOD_RING)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.nii.gz").write_bytes(b"keep me")
    model = models.files["ring_scripted"]
    result = run(inputs, "-m", model, "-o", out, "--betti", "1,1", *SETTINGS)
    assert result.exit_code == 2
    lines = errors(result)
    assert len(lines) == 1 and "a.nii.gz" in lines[0] and "already exists" in lines[0]
    assert (out / "a.nii.gz").read_bytes() == b"keep me"  # per-file refusal, the other scan written
    assert_only(out, {"a.nii.gz", "b.nii.gz", "topofix_report.json", "topofix_report.csv"})

    # a second run finds the reports: refused as a whole, nothing touched
    before = snapshot(out)
    result = run(inputs, "-m", model, "-o", out, "--betti", "1,1", *SETTINGS)
    assert result.exit_code == 2 and len(errors(result)) == 1 and "--overwrite" in result.stderr
    assert snapshot(out) == before

    result = run(inputs, "-m", model, "-o", out, "--betti", "1,1", "--overwrite", *SETTINGS)
    assert result.exit_code == 0, result.output
    assert oracle_betti(read_mask(out / "a.nii.gz").array) == (1, 1)
    assert_only(out, {"a.nii.gz", "b.nii.gz", "topofix_report.json", "topofix_report.csv"})


def test_failed_write_leaves_no_temporary_file(models, tmp_path, monkeypatch):
    """A write that fails half-way (the image file written in the temporary folder, then an error):
    one error line for that scan, no partial output, no temporary file; the other scan is written."""
    import SimpleITK as sitk

    inputs = tmp_path / "in"
    write_ring(inputs / "a.nii.gz", **BROKEN_RING)
    write_ring(inputs / "b.nii.gz", **GOOD_RING)
    real = sitk.WriteImage

    def failing(image, path, *args):
        real(image, path, *args)
        if os.path.basename(path) == "a.nii.gz":
            raise RuntimeError("No space left on device")

    monkeypatch.setattr(sitk, "WriteImage", failing)
    out = tmp_path / "out"
    result = run(inputs, "-m", models.files["ring_scripted"], "-o", out, "--betti", "1,1", *SETTINGS)
    assert result.exit_code == 2
    lines = errors(result)
    assert len(lines) == 1 and "a.nii.gz" in lines[0] and "No space left" in lines[0], result.stderr
    assert_only(out, {"b.nii.gz", "topofix_report.json", "topofix_report.csv"})

    # an output name taken by a folder: refused before anything is written
    monkeypatch.setattr(sitk, "WriteImage", real)
    (out / "a.nii.gz").mkdir()
    result = run(inputs, "-m", models.files["ring_scripted"], "-o", out, "--betti", "1,1", "--overwrite",
                 *SETTINGS)
    assert result.exit_code == 2 and len(errors(result)) == 1 and "a.nii.gz" in errors(result)[0]
    assert_only(out, {"a.nii.gz", "b.nii.gz", "topofix_report.json", "topofix_report.csv"})
    assert not os.listdir(out / "a.nii.gz")


@pytest.mark.parametrize("args, words", [
    ([], "needs a prior"),
    (["--label", "1"], "needs a prior"),
    (["--prior", "1=1,x"], "malformed"),
    (["--prior", "1:1,1"], "malformed prior"),
    (["--betti", "1,-1"], "negative"),
    (["--betti", "1,1", "--loss", "cubic"], "--loss"),
    (["--betti", "1,1", "--overlap", "1"], "--overlap"),
])
def test_usage_errors(models, tmp_path, args, words):
    scan = write_ring(tmp_path / "a.nii.gz", **BROKEN_RING)
    result = run(scan, "-m", models.files["ring_scripted"], "-o", tmp_path / "out", *args, "-q")
    assert result.exit_code == 2
    assert len(errors(result)) == 1 and words in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_exit_codes(models, tmp_path):
    model = models.files["ring_scripted"]
    fixable = write_ring(tmp_path / "in" / "a.nii.gz", **BROKEN_RING_AND_BLOB)
    result = run(fixable, "-m", model, "-o", tmp_path / "few", "--betti", "1,1", *SETTINGS, "--steps", "2")
    assert result.exit_code == 1, result.output  # not met after 2 steps
    case = report(tmp_path / "few")["cases"][0]
    assert case["status"] == "done" and not case["met_after"] and case["stop_reason"] == "max steps"
    assert "0 corrected, 0 already met the prior, 1 still do not" in stdout(result)
    # never worse: the iterate kept has no more topological loss than the original prediction
    assert case["topo_loss"] <= case["loss_curve"][0][0] + 1e-6
    result = run(fixable, "-m", model, "-o", tmp_path / "enough", "--betti", "1,1", *SETTINGS)
    assert result.exit_code == 0, result.output
    assert oracle_betti(read_mask(tmp_path / "enough" / "a.nii.gz").array) == (1, 1)
    missing = tmp_path / "in" / "missing.nii.gz"
    result = run(fixable, missing, "-m", model, "-o", tmp_path / "two", "--betti", "1,1", *SETTINGS)
    assert result.exit_code == 2 and len(errors(result)) == 1 and "missing.nii.gz" in result.stderr
    assert (tmp_path / "two" / "a.nii.gz").exists()


def test_unloadable_model(tmp_path):
    scan = write_ring(tmp_path / "a.nii.gz", **BROKEN_RING)
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"\x80\x04 a pickle")
    result = run(scan, "-m", fake, "-o", tmp_path / "out", "--betti", "1,1", *SETTINGS)
    assert result.exit_code == 2 and len(errors(result)) == 1 and "model.pt" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ring_scripted", "ring_traced", "ring_onnx"])
def test_settings_fix_a_sweep_of_broken_rings(models, tmp_path, kind):
    """Robustness of the settings above: gaps at 8 angles, blobs in the 4 corners, both together;
    every scan is broken before and meets the prior after, in one batch."""
    inputs = tmp_path / "in"
    scenes = [{"gap": 0.35, "gap_angle": a, "seed": 10 + i} for i, a in enumerate(np.linspace(-np.pi, np.pi, 8, False))]
    scenes += [{"blob": 0.6, "blob_at": at, "seed": 20 + i} for i, at in enumerate([(4, 26), (26, 4), (27, 27), (4, 4)])]
    scenes += [{"gap": 0.35, "gap_angle": 2.0, "blob": 0.6, "blob_at": (27, 27), "seed": 30}]
    for i, scene in enumerate(scenes):
        write_ring(inputs / f"s{i:02d}.nii.gz", **scene)
    out = tmp_path / "out"
    result = run(inputs, "-m", models.files[kind], "-o", out, "--betti", "1,1", *SETTINGS)
    assert result.exit_code == 0, result.output
    cases = report(out)["cases"]
    assert len(cases) == len(scenes)
    assert all(not c["met_before"] and c["met_after"] and c["stop_reason"] == "met" for c in cases), [
        (c["path"], c["priors"][0]["betti_before"], c["priors"][0]["betti_after"]) for c in cases]
    for path in sorted(out.glob("s*.nii.gz")):
        assert oracle_betti(read_mask(path).array) == (1, 1), path.name
