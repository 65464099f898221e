"""``numba.njit`` for topofix's kernels, with the compiled-kernel cache kept out of the package.

Why: ``@njit(cache=True)`` makes numba write its cache (``*.nbi`` index and
``*.nbc`` machine code) into ``__pycache__`` next to the module whenever that
folder is writable, i.e. inside ``site-packages/topofix`` after a regular
``pip install``.  pip does not know those files, so uninstalling topofix (or
replacing it by an editable install, README's second command after its first)
leaves ``site-packages/topofix/`` behind, holding only ``__pycache__`` folders:
a namespace package that hides the real one, and every command then fails with
``ModuleNotFoundError: topofix.topology.betti``.

So the kernels are cached in one directory, chosen once per process:

1. ``NUMBA_CACHE_DIR`` when the user set it (numba's documented variable; the
   Docker image sets it to a folder it fills at build time);
2. else ``$XDG_CACHE_HOME/topofix/numba`` (``~/.cache/topofix/numba`` when
   ``XDG_CACHE_HOME`` is unset or not absolute);
3. when that directory cannot be created or written (read-only home, no home):
   no caching at all.  The kernels are then compiled in every process (about
   15 s on a 2-core CPU), which is slower but never breaks, and nothing is
   written anywhere, in particular not into a read-only ``site-packages``.

numba binds a cached function to its directory when the function is
decorated, so :func:`njit` sets ``numba.config.CACHE_DIR`` only around the
decoration and restores it: the user's own numba functions keep their cache
where numba would put them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["cache_dir", "default_cache_dir", "njit"]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/topofix/numba``, or ``~/.cache/topofix/numba`` (XDG Base Directory rules)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "topofix" / "numba"


def _writable(folder: Path) -> bool:
    """Create ``folder`` if needed and check that a file can be made in it (as numba checks)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except (OSError, RuntimeError):  # RuntimeError: Path.home() without a home directory
        return False
    return True


@lru_cache(maxsize=1)
def kernels_fingerprint() -> str:
    """A hash of the source of every module that defines or calls kernels (this folder's ``*.py``).

    Why: numba re-validates a cached kernel against its own file only; a kernel that calls a
    kernel of another file keeps its stale machine code when only that other file changes (seen
    here: ``_fast2d`` calling ``radix_order``). Each version of the sources gets its own cache
    folder instead.
    """
    import hashlib

    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


@lru_cache(maxsize=1)
def cache_dir() -> Path | None:
    """Where topofix's kernels are cached in this process; ``None``: not cached (see the module doc).

    A sub-folder per version of the kernels' sources (:func:`kernels_fingerprint`).
    """
    given = getattr(numba.config, "CACHE_DIR", "") or os.environ.get("NUMBA_CACHE_DIR", "")
    try:
        folder = (Path(given) if given else default_cache_dir()) / kernels_fingerprint()
    except RuntimeError:  # no home directory to put the default under
        return None
    return folder if _writable(folder) else None


@contextlib.contextmanager
def _numba_cache_dir(folder: Path) -> Iterator[None]:
    saved = numba.config.CACHE_DIR  # type: ignore[attr-defined]  # numba sets its config at import
    numba.config.CACHE_DIR = str(folder)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        numba.config.CACHE_DIR = saved  # type: ignore[attr-defined]


def njit(**options: Any) -> Callable[[F], F]:
    """``numba.njit(**options)`` cached in :func:`cache_dir` (or not cached), never in the package.

    Use as ``@njit(nogil=True)``; ``cache`` must not be given.
    """
    if "cache" in options:
        raise TypeError("topofix's njit chooses the cache itself; do not pass cache=")

    def decorate(function: F) -> F:
        folder = cache_dir()
        if folder is None:
            return numba.njit(cache=False, **options)(function)
        with _numba_cache_dir(folder):
            return numba.njit(cache=True, **options)(function)

    return decorate
