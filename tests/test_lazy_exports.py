"""The lazy public names of ``topofix`` and ``topofix.models`` (one mapping each, :mod:`topofix._lazy`).

The oracle for "every public name" is the ``if TYPE_CHECKING:`` import block of each
``__init__.py``, read with :mod:`ast` (the list that IDEs and type checkers see): it must
name exactly the mapping's names, from the same modules, and every one of them must resolve
at run time to the object its module defines.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _type_checking_imports(init: Path) -> dict[str, str]:
    """name -> module of the ``from M import a, b`` statements under ``if TYPE_CHECKING:``."""
    tree = ast.parse(init.read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                for alias in stmt.names:
                    found[alias.asname or alias.name] = stmt.module
    return found


PACKAGES = [("topofix", ROOT / "topofix" / "__init__.py"), ("topofix.models", ROOT / "topofix" / "models" / "__init__.py")]


@pytest.mark.parametrize("package, init", PACKAGES, ids=[p for p, _ in PACKAGES])
def test_every_public_name_resolves_to_its_module_object(package, init):
    static = _type_checking_imports(init)
    assert len(static) > 5
    pkg = importlib.import_module(package)
    public = [n for n in pkg.__all__ if n != "__version__"]
    assert sorted(public) == sorted(static)
    assert len(set(pkg.__all__)) == len(pkg.__all__)  # no name twice
    for name, module in static.items():
        assert getattr(pkg, name) is getattr(importlib.import_module(module), name), name
        assert name in dir(pkg)


@pytest.mark.parametrize("package", ["topofix", "topofix.models"])
def test_unknown_name_is_an_attribute_error(package):
    pkg = importlib.import_module(package)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        pkg.no_such_name  # noqa: B018
    assert not hasattr(pkg, "no_such_name")


def test_star_import_and_laziness_in_a_fresh_interpreter():
    static = _type_checking_imports(ROOT / "topofix" / "__init__.py")
    code = (
        "import sys\n"
        "import topofix\n"
        "heavy = [m for m in ('numpy', 'torch', 'SimpleITK', 'scipy', 'cc3d', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert topofix.__version__ and '__version__' in topofix.__all__\n"
        "namespace = {}\n"
        "exec('from topofix import *', namespace)\n"
        f"missing = sorted(set({sorted(static)!r}) - set(namespace))\n"
        "assert not missing, missing\n"
        "assert namespace['check'] is __import__('topofix.checking', fromlist=['check']).check\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
