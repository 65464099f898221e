"""The examples in topofix's docstrings run, and give what they say (the doctest gate).

Why a test rather than ``pytest --doctest-modules topofix`` in CI only: the README's test
command then runs them too, and a docstring example that goes stale fails where the change
is made. Same run as ``python -m pytest --doctest-modules topofix``, with the stdlib's
doctest, module by module; the count of examples is checked so that the examples cannot
silently stop being found (a rename of the package, a module that no longer imports).
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import topofix

OPTIONAL = {"dask", "distributed"}  # extras (pip install topofix[distributed]); a module needing them is skipped
MIN_EXAMPLES = 9  # pytest --doctest-modules topofix found 9 docstrings with examples on 2026-11-29


def _modules() -> list[str]:
    names = [topofix.__name__]
    names += [m.name for m in pkgutil.walk_packages(topofix.__path__, prefix=topofix.__name__ + ".")]
    return sorted(names)


def test_every_docstring_example_runs_and_gives_what_it_says():
    finder = doctest.DocTestFinder(exclude_empty=True)
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    seen: set[tuple[str, int | None]] = set()  # a function re-exported by a package is found twice
    examples = 0
    for name in _modules():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name and error.name.split(".")[0] in OPTIONAL:
                continue
            raise
        for test in finder.find(module, name):
            key = (test.filename or "", test.lineno)
            if not test.examples or key in seen:
                continue
            seen.add(key)
            examples += len(test.examples)
            runner.run(test, out=report.write)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, report.getvalue()
    assert len(seen) >= MIN_EXAMPLES, f"only {len(seen)} docstrings with examples ({examples} examples) in topofix"
