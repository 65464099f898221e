"""Atomic, no-clobber writing of small output files (reports).

Why: a pipeline may read a report while topofix is still running, or kill
topofix half-way; a report must then be either absent or complete. We write to a
temporary file in the destination folder and ``os.replace`` it into place, which
is atomic on POSIX and Windows within one file system. Existing files are never
replaced unless the caller says so.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from topofix.errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_existing(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Return ``path`` as a Path, raising :class:`OutputError` if it exists and may not be replaced."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(target, "is a folder, expected a file name")
    if target.exists() and not overwrite:
        raise OutputError(target, "already exists (use --overwrite to replace it)")
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False,
                       verify: Callable[[Path], None] | None = None) -> Path:
    """Write ``data`` to ``path`` atomically; refuse to replace an existing file unless ``overwrite``.

    ``verify(temporary_path)`` runs on the complete temporary file before it takes its final name
    (a DICOM-SEG is read back there); it raises to refuse the file, which is then removed.
    Raises :class:`OutputError` naming ``path`` when it may not be replaced or the write fails
    (the error of ``os.fsync`` names no file); the previous file, if any, is then left as it was.
    """
    target = refuse_existing(path, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give reports the usual mode
        if verify is not None:
            verify(Path(tmp))
        if not overwrite and target.exists():  # appeared while we were writing
            raise OutputError(target, "already exists (use --overwrite to replace it)")
        os.replace(tmp, target)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError):  # a full disk, an I/O error: fsync's names no file, say which
            raise OutputError(target, f"could not be written ({error.strerror or error})") from error
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
