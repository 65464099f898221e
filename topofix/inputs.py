"""Turn what a user typed (files, folders, globs) into a list of image paths.

Why its own module: every batch command takes ``INPUT...`` the same way, and a
path that matches nothing must become one reported error, not a crash that stops
the batch.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from topofix.errors import InputError
from topofix.io import is_supported_image

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class InputItem:
    """One path to process, or the error that stands in its place."""

    path: str
    error: InputError | None = None


def _folder_images(folder: Path) -> list[str]:
    return sorted(
        str(p) for p in folder.iterdir() if p.is_file() and is_supported_image(p)
    )


def expand_inputs(specs: Iterable[str | os.PathLike[str]]) -> list[InputItem]:
    """Expand files, folders (their supported images, sorted, not recursive) and globs.

    A spec that matches nothing is kept as an :class:`InputItem` carrying an
    :class:`InputError`, so the caller reports it and goes on. Duplicates are
    dropped (first occurrence kept). A file given explicitly is kept whatever its
    extension: reading it then produces the precise error.
    """
    items: list[InputItem] = []
    seen: set[str] = set()

    def add(item: InputItem) -> None:
        key = os.path.abspath(item.path)
        if item.error is None and key in seen:
            return
        seen.add(key)
        items.append(item)

    for spec in specs:
        text = os.fspath(spec)
        path = Path(text)
        if path.is_dir():
            found = _folder_images(path)
            if not found:
                add(InputItem(text, InputError(text, "folder holds no supported image")))
            for f in found:
                add(InputItem(f))
        elif path.exists():
            add(InputItem(text))
        elif _GLOB_CHARS & set(text):
            matches = sorted(m for m in glob.glob(text, recursive=True) if os.path.isfile(m))
            if not matches:
                add(InputItem(text, InputError(text, "no file matches this pattern")))
            for m in matches:
                add(InputItem(m))
        else:
            add(InputItem(text, InputError(text, "file does not exist")))
    return items
