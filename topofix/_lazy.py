"""Lazy public names (PEP 562) for a package, from one mapping ``name -> module``.

Why: ``import topofix`` and ``topofix --help`` must stay fast, so the package
``__init__`` files import nothing heavy (SimpleITK, cc3d, torch, onnx) until a
name is used. Before this helper each ``__init__`` wrote its list of names
three times (the mapping, ``__all__`` and the loader); now the mapping is the
only list, and ``__all__``, ``__getattr__`` and ``__dir__`` are built from it.
(The ``if TYPE_CHECKING:`` imports that IDEs and type checkers read cannot be
built at run time; a test checks that they name the same things as the mapping.)

Imports only :mod:`importlib`, so that using it costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: Mapping[str, str], eager: tuple[str, ...] = ()
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` whose public names live in other modules.

    Parameters
    ----------
    package:
        The package's ``__name__`` (for the AttributeError message).
    namespace:
        The package's ``globals()``: a name, once imported, is stored there, so
        that later look-ups do not go through ``__getattr__`` again.
    exports:
        Public name -> the module that defines it.
    eager:
        Public names already defined in the package itself (``__version__``),
        listed first in ``__all__``.
    """
    names = [*eager, *exports]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return names, __getattr__, __dir__


__all__ = ["lazy_exports"]
