"""numba's compiled-kernel cache stays out of the installed package (issue 11, point 7).

A regular install that fills ``site-packages/topofix/**/__pycache__`` with numba's
``*.nbi``/``*.nbc`` files leaves a folder that pip does not remove, and that folder
hides a later editable install.  Each test imports a copy of the package from a
writable folder in a fresh interpreter (numba chooses the cache when a kernel is
decorated, once per process) and compiles one small kernel.  ``.ci/run`` does the
real thing: README's two install commands in a row, then the CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "topofix"

# Compiles one kernel (the 2D thinning) and prints where topofix caches kernels and
# numba's own cache setting afterwards (it must be restored for the user's functions).
SCRIPT = """
import numba, numpy as np
before = numba.config.CACHE_DIR
from topofix.topology import _jit
from topofix.topology._thinning import thin_kernel
mask = np.zeros((6, 6), np.uint8); mask[2:4, 2:4] = 1
thin_kernel(mask, np.array([14], np.int64), np.zeros(256, np.uint8))
print(_jit.cache_dir())
print(repr(numba.config.CACHE_DIR == before))
"""


def _cache_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc"))


def _run(tmp_path: Path, **env_changes: str | None) -> tuple[Path, str, list[str]]:
    """Copy the package under tmp_path/site, import it from there with ``env_changes``; (site, cache_dir, lines)."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "topofix", ignore=shutil.ignore_patterns("__pycache__"))
    return _run_in(site, tmp_path, **env_changes)


def _run_in(site: Path, tmp_path: Path, **env_changes: str | None) -> tuple[Path, str, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update({"PYTHONPATH": str(site), "HOME": str(tmp_path / "home"), "NUMBA_NUM_THREADS": "1"})
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[-1] == "True", "numba.config.CACHE_DIR was not restored"
    return site, lines[-2], lines


def test_kernels_are_cached_in_the_user_cache_dir_not_in_the_package(tmp_path):
    site, where, _ = _run(tmp_path, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert _cache_files(site) == []  # with numba's default: site/topofix/topology/__pycache__/*.nbi
    assert Path(where).parent == tmp_path / "xdg" / "topofix" / "numba"  # one sub-folder per version of the kernels
    names = [p.name for p in _cache_files(tmp_path / "xdg" / "topofix" / "numba")]
    assert any(n.startswith("_thinning.thin_kernel") and n.endswith(".nbi") for n in names), names
    # a changed kernel source gets a fresh folder: no stale machine code of a kernel it calls
    kernels = site / "topofix" / "topology" / "_kernels.py"
    kernels.write_text(kernels.read_text() + "\n# changed\n")
    _, changed, _ = _run_in(site, tmp_path, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert Path(changed).parent == Path(where).parent and changed != where


@pytest.mark.slow
def test_home_cache_dir_when_xdg_is_unset(tmp_path):
    site, where, _ = _run(tmp_path, XDG_CACHE_HOME=None)
    assert _cache_files(site) == []
    assert Path(where).parent == tmp_path / "home" / ".cache" / "topofix" / "numba"  # a sub-folder per version
    assert _cache_files(Path(where))


@pytest.mark.slow
def test_numba_cache_dir_set_by_the_user_is_used(tmp_path):
    site, where, _ = _run(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "mine"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert _cache_files(site) == [] and not (tmp_path / "xdg").exists()
    assert Path(where).parent == tmp_path / "mine" and _cache_files(tmp_path / "mine")  # a sub-folder per version


def test_no_writable_cache_dir_means_no_cache_and_no_failure(tmp_path):
    """A read-only home (as a file in the way here: root can write anywhere) must not break the
    kernels nor send the cache back into the package folder."""
    (tmp_path / "blocked").write_text("a file where the cache folder would go")
    site, where, _ = _run(tmp_path, XDG_CACHE_HOME=str(tmp_path / "blocked"))
    assert where == "None"
    assert _cache_files(site) == [] and _cache_files(tmp_path) == []


def test_njit_refuses_an_explicit_cache_flag():
    from topofix.topology._jit import njit

    with pytest.raises(TypeError, match="cache"):
        njit(cache=True)
