"""The lint and type gates: ruff's pyflakes rules on every Python file, mypy on the typed modules.

Tests, so that the README's test command (and CI) runs them; ruff's rules are in pyproject.toml.
mypy checks the modules of :data:`TYPED` (the batch engine and what it stands on); a module joins
the list once it passes, and never leaves it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    if ruff is None:
        try:
            import ruff as _  # noqa: F401
        except ImportError:
            pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
        command = [sys.executable, "-m", "ruff"]
    else:
        command = [ruff]
    done = subprocess.run([*command, "check", "--no-cache", "topofix", "tests", "bench", "scripts"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


TYPED = [
    "topofix/__init__.py", "topofix/_lazy.py", "topofix/_version.py", "topofix/assessment.py", "topofix/atomic.py",
    "topofix/batch.py", "topofix/checking.py", "topofix/choices.py", "topofix/cli/__init__.py",
    "topofix/cli/app.py", "topofix/cli/check_cmd.py", "topofix/cli/console.py", "topofix/cli/correct_cmd.py",
    "topofix/cli/evaluate_cmd.py", "topofix/cli/options.py", "topofix/cli/predict_cmd.py",
    "topofix/cli/progress.py", "topofix/cli/repair_cmd.py", "topofix/cli/report_cmd.py", "topofix/cluster.py",
    "topofix/correction.py", "topofix/dicom.py", "topofix/dicom_seg.py", "topofix/errors.py",
    "topofix/evaluation/__init__.py", "topofix/evaluation/arrays.py", "topofix/evaluation/driver.py",
    "topofix/evaluation/pairing.py", "topofix/evaluation/report.py", "topofix/evaluation/results.py",
    "topofix/evaluation/statistics.py", "topofix/files.py", "topofix/inputs.py", "topofix/io/__init__.py",
    "topofix/io/checked.py", "topofix/io/formats.py", "topofix/io/geometry.py", "topofix/io/labels.py",
    "topofix/io/metaimage.py", "topofix/io/nifti.py", "topofix/io/nrrd.py", "topofix/io/png.py",
    "topofix/io/read.py", "topofix/io/sitk_errors.py", "topofix/io/write.py", "topofix/journal.py",
    "topofix/losses.py", "topofix/map_repair.py", "topofix/maps.py", "topofix/mask_format.py",
    "topofix/metrics/__init__.py", "topofix/metrics/overlap.py", "topofix/metrics/surface.py",
    "topofix/models/__init__.py", "topofix/models/adam.py", "topofix/models/loading.py", "topofix/models/nnunet.py",
    "topofix/models/onnx_import.py", "topofix/models/weights.py", "topofix/nets.py", "topofix/outputs.py",
    "topofix/prediction.py", "topofix/report/__init__.py", "topofix/report/html.py", "topofix/report/loading.py",
    "topofix/report/pictures.py", "topofix/report/views.py", "topofix/report/volumes.py", "topofix/report_html.py",
    "topofix/slicing.py", "topofix/threads.py", "topofix/topology/__init__.py", "topofix/topology/_jit.py",
    "topofix/topology/betti.py", "topofix/topology/connectivity.py", "topofix/topology/differentiable.py",
    "topofix/topology/regions.py",
]


def test_mypy_finds_nothing_in_the_typed_modules(tmp_path):
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy is not installed (pip install -e '.[test]' installs it)")
    done = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
                           "--cache-dir", str(tmp_path / "mypy"), *TYPED], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


if __name__ == "__main__":  # the pre-commit hook (.pre-commit-config.yaml): mypy on TYPED, one list for both
    sys.exit(subprocess.call([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
                              *TYPED], cwd=ROOT))
