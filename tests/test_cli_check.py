"""`topofix check` end to end through the CLI: tables, reports, exit codes, bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from badfiles import BAD_FILES
from typer.testing import CliRunner

from topofix.cli.app import app

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data" / "masks"
GOOD = str(SAMPLES / "sa_001.png")  # MYO ring intact
BROKEN = str(SAMPLES / "sa_003.png")  # MYO ring broken open
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_help_teaches():
    result = run("--help")
    assert result.exit_code == 0 and "check" in result.stdout
    result = run("check", "--help")
    assert result.exit_code == 0
    for word in ("--betti", "--prior", "--connectivity", "--per-slice", "--json", "Exit status", "Examples"):
        assert word in result.stdout, word


def test_version():
    from topofix import __version__

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"topofix {__version__}"


def test_check_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from topofix.cli.app import app\n"
        f"r = CliRunner().invoke(app, ['check', {GOOD!r}, '--betti', '1,0'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "inputs, prior, code",
    [([GOOD], "2=1,1", 0), ([GOOD, BROKEN], "2=1,1", 1), ([BROKEN], "2+3=1,0", 0)],
)
def test_exit_status_follows_the_prior(inputs, prior, code):
    result = run("check", *inputs, "--prior", prior)
    assert result.exit_code == code, result.output
    assert "mask(s) checked" in result.stdout


def test_betti_and_label_options_and_table(tmp_path):
    result = run("check", GOOD, BROKEN, "--label", "2", "--betti", "1,1")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "pass" in result.stdout
    assert "1 met every prior, 1 did not" in result.stdout


def test_json_and_csv_reports(tmp_path):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "sub" / "r.csv"
    result = run("check", str(SAMPLES), "-p", "2=1,1", "-p", "2+3=1,0", "--json", str(out_json), "--csv", str(out_csv))
    assert result.exit_code == 1
    data = json.loads(out_json.read_text())
    by_file = {(Path(r["path"]).name, r["prior"]): r for r in data["results"]}
    assert by_file[("sa_003.png", "2")]["status"] == "fail"
    assert by_file[("sa_003.png", "2")]["betti"] == [1, 0]
    assert by_file[("sa_005.png", "2")]["betti"] == [2, 1]
    assert by_file[("sa_001.png", "2")]["status"] == "pass"
    assert data["summary"]["checked"] == 13 and data["exit_code"] == 1
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == len(data["results"])
    row = next(r for r in rows if r["path"].endswith("sa_005.png") and r["prior"] == "2")
    assert (row["b0"], row["b1"], row["status"], row["expected"]) == ("2", "1", "fail", "1,1")


def test_reports_are_not_overwritten_silently(tmp_path):
    out_json = tmp_path / "r.json"
    out_json.write_text("keep me")
    result = run("check", GOOD, "--json", str(out_json))
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert out_json.read_text() == "keep me"
    assert run("check", GOOD, "--json", str(out_json), "--overwrite").exit_code == 0
    assert json.loads(out_json.read_text())["summary"]["checked"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_per_slice_reports_empty_slices_not_failures(tmp_path):
    out_json = tmp_path / "r.json"
    stack = str(SAMPLES / "stack_01.nii.gz")
    result = run("check", stack, "--per-slice", "z", "-p", "2=1,1", "--json", str(out_json))
    assert result.exit_code == 0, result.output
    statuses = [r["status"] for r in json.loads(out_json.read_text())["results"]]
    assert statuses.count("empty") == 2 and statuses.count("fail") == 0
    result = run("check", stack, "--per-slice", "z", "-p", "2=1,1", "--empty", "fail")
    assert result.exit_code == 1
    result = run("check", str(SAMPLES / "stack_03.nii.gz"), "--per-slice", "z", "-p", "2=1,1")
    assert result.exit_code == 1 and "5:(1,0)" in result.stdout


def test_folder_and_quoted_glob_inputs():
    result = run("check", str(SAMPLES / "sa_00[12].png"), "--betti", "1,1", "--label", "2", "-q")
    assert result.exit_code == 0 and "2 mask(s) checked" in result.stdout
    assert "┃" not in result.stdout  # --quiet: no table


@pytest.mark.parametrize("keyword", sorted(BAD_FILES))
def test_each_bad_input_is_one_line_named_error_and_batch_goes_on(tmp_path, keyword):
    bad = BAD_FILES[keyword](tmp_path)
    out_json = tmp_path / "r.json"
    result = run("check", GOOD, str(bad), BROKEN, "-p", "2=1,1", "--json", str(out_json))
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert str(bad) in errors[0] and keyword.lower() in errors[0].lower()
    data = json.loads(out_json.read_text())
    assert [Path(p["path"]).name for p in data["results"]] == ["sa_001.png", "sa_003.png"]
    assert data["errors"][0]["path"] == str(bad)


def test_inputs_are_never_modified(tmp_path):
    copy = tmp_path / "case.nii.gz"
    shutil.copy(SAMPLES / "sa_007.nii.gz", copy)
    before = copy.read_bytes()
    assert run("check", str(copy), "-p", "2=1,1").exit_code == 0
    assert copy.read_bytes() == before


@pytest.mark.parametrize(
    "args, words",
    [
        (["--betti", "1,x"], "malformed Betti numbers"),
        (["--prior", "2:1,1"], "malformed prior"),
        (["--label", "0", "--betti", "1,0"], "background"),
        (["--connectivity", "diagonal"], "diagonal"),
    ],
)
def test_usage_errors_exit_2(args, words):
    result = run("check", GOOD, *args)
    assert result.exit_code == 2
    assert words in result.stderr or words in result.output


# --------------------------------------------------------------------------- #
# Alternatives: --prior '2=1,1|0,0' (a ring, or absent)
# --------------------------------------------------------------------------- #


def _oracle_per_slice(path: str, labels: tuple[int, ...]) -> list[tuple[int, int]]:
    """Betti numbers per z slice by scipy labelling (8-connected foreground, 4-connected holes)."""
    from scipy import ndimage

    from topofix.io import read_mask

    out = []
    for plane in read_mask(path).array:
        mask = np.isin(plane, labels)
        b0 = ndimage.label(mask, structure=np.ones((3, 3)))[1]
        holes = ndimage.label(np.pad(~mask, 1, constant_values=True))[1] - 1
        out.append((b0, holes))
    return out


def test_help_shows_the_alternative_syntax():
    result = runner.invoke(app, ["check", "--help"], env={"COLUMNS": "250"})
    text = " ".join(result.stdout.split())  # rich wraps and pads the help
    assert "'2=1,1|0,0': a ring, or absent (e.g. slices above the base or below the apex)" in text
    assert "'1,1|0,0' = a ring, or absent" in text


@pytest.mark.parametrize("empty", ["skip", "fail"])
def test_ring_or_absent_prior_passes_the_absent_slices(tmp_path, empty):
    stack = str(SAMPLES / "stack_01.nii.gz")
    oracle = _oracle_per_slice(stack, (2,))
    assert oracle[0] == oracle[-1] == (0, 0) and set(oracle[1:-1]) == {(1, 1)}  # absent at both ends
    out_json = tmp_path / "r.json"
    result = run("check", stack, "--per-slice", "z", "-p", "2=1,1|0,0", "--empty", empty, "--json", str(out_json))
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    assert [tuple(r["betti"]) for r in data["results"]] == oracle
    assert [r["status"] for r in data["results"]] == ["pass"] * len(oracle)
    assert [r["expected"] for r in data["results"]] == [[0, 0]] + [[1, 1]] * (len(oracle) - 2) + [[0, 0]]
    assert data["priors"][0]["alternatives"] == [[1, 1], [0, 0]]
    # the prior without the alternative fails the absent slices under --empty fail
    result = run("check", stack, "--per-slice", "z", "-p", "2=1,1", "--empty", empty)
    assert result.exit_code == (1 if empty == "fail" else 0), result.output


def test_ring_or_absent_still_fails_a_broken_ring():
    stack = str(SAMPLES / "stack_03.nii.gz")
    assert _oracle_per_slice(stack, (2,))[5] == (1, 0)
    result = run("check", stack, "--per-slice", "z", "-p", "2=1,1|0,0")
    assert result.exit_code == 1 and "5:(1,0)" in result.stdout
    result = run("check", stack, "--per-slice", "z", "--label", "2", "--betti", "1,1|1,0|0,0")
    assert result.exit_code == 0, result.output


def test_alternatives_in_the_csv_expected_column(tmp_path):
    out_csv = tmp_path / "r.csv"
    result = run("check", BROKEN, GOOD, "-p", "2=2,0|1,1", "--csv", str(out_csv))
    assert result.exit_code == 1
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out_csv.open())}
    assert (rows["sa_003.png"]["status"], rows["sa_003.png"]["expected"]) == ("fail", "2,0")  # tie: first
    assert (rows["sa_001.png"]["status"], rows["sa_001.png"]["expected"]) == ("pass", "1,1")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--prior", "2=1,1|"], "'2=1,1|'"),
        (["--prior", "2=1,1|1,1"], "repeats"),
        (["--betti", "1,1||0,0"], "alternative 2 of 3 is empty"),
        (["--prior", "2=1,1|1,0,1"], "no cavities"),
    ],
)
def test_malformed_alternatives_exit_2_on_one_line(args, words):
    result = run("check", GOOD, *args)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and words in errors[0], result.stderr
