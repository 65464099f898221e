"""Turn what a user typed (files, folders, globs) into a list of image paths.

Why its own module: every batch command takes ``INPUT...`` the same way, and a
path that matches nothing (or a broken link) must become one reported error, not
a crash that stops the batch nor a silent skip.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from topofix.dicom import dicom_scans, is_seg_file
from topofix.errors import InputError
from topofix.io import image_extension
from topofix.outputs import own_output_stem

_GLOB_CHARS = set("*?[")



@dataclass(frozen=True)
class InputItem:
    """One path to process, or the error that stands in its place."""

    path: str
    error: InputError | None = None


def _split(name: str) -> tuple[str, str] | None:
    """``(stem, ext)`` of an image file name (``.nii.gz`` counts as one extension); None if not an image."""
    ext = image_extension(name)
    if ext is None:
        return None
    return name[: len(name) - len(ext)], ext


def _seg_split(path: Path) -> tuple[str, str] | None:
    """``(stem, ".dcm")`` of a DICOM-SEG file (a mask, :mod:`topofix.dicom_seg`); None for anything else."""
    if path.name.lower().endswith(".dcm") and len(path.name) > 4 and is_seg_file(path):
        return path.name[:-4], path.name[-4:]
    return None


def _broken_link(path: str) -> InputError:
    try:
        target = f" {os.readlink(path)}"
    except OSError:
        target = ""
    return InputError(path, f"broken symbolic link (its target{target} does not exist)")


def _is_broken_link(path: str | Path) -> bool:
    return os.path.islink(path) and not os.path.exists(path)


def _folder_items(folder: Path, include_own_outputs: bool) -> list[InputItem]:
    """The folder's images and DICOM-SEG files, sorted; a broken link with an image's name is an error item.

    topofix's own outputs (``<stem>_original<ext>``, ``<stem>_prob<L><ext>``) are
    left out when an image named ``<stem>`` with an image extension sits in the
    same folder, unless ``include_own_outputs``: a folder written by ``correct``
    or ``predict --save-probabilities`` is then checked, evaluated or segmented
    as its masks alone, instead of failing on probability maps.
    """
    entries: list[tuple[Path, tuple[str, str]]] = []
    for p in folder.iterdir():
        split = _split(p.name) or _seg_split(p)
        if split is not None and (p.is_file() or _is_broken_link(p)):
            entries.append((p, split))
    stems = {stem for p, (stem, _) in entries if p.is_file()}
    items = []
    for p, (stem, _) in sorted(entries):
        own = own_output_stem(stem)
        if own is not None and not include_own_outputs and own in stems:
            continue
        items.append(InputItem(str(p), _broken_link(str(p)) if _is_broken_link(p) else None))
    return items


def expand_inputs(
    specs: Iterable[str | os.PathLike[str]], *, include_own_outputs: bool = False
) -> list[InputItem]:
    """Expand files, folders (their supported images, sorted, not recursive) and globs.

    A spec that matches nothing is kept as an :class:`InputItem` carrying an
    :class:`InputError`, so the caller reports it and goes on; so is a broken
    symbolic link (in a folder, with an image's name; in a glob, any), instead of
    being skipped without a word. Duplicates are dropped (first occurrence kept).
    A file given explicitly is kept whatever its extension: reading it then
    produces the precise error. In folders, topofix's own outputs next to their
    scan (:func:`topofix.outputs.own_output_stem`) are skipped unless ``include_own_outputs``;
    files and globs are taken as given.
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
        for item in _spec_items(os.fspath(spec), include_own_outputs):
            add(item)
    return items


def _spec_items(text: str, include_own_outputs: bool) -> list[InputItem]:
    """The inputs one spec names: a DICOM folder's series, a folder's images, a file, a glob's
    matches; or one item carrying the reason it names nothing."""
    path = Path(text)
    if path.is_dir():
        scans = dicom_scans(path)
        if scans:  # DICOM series: each is one scan (topofix.dicom)
            return [InputItem(scan) for scan in scans]
        found = _folder_items(path, include_own_outputs)
        return found or [InputItem(text, InputError(text, "folder holds no supported image"))]
    if path.exists():
        return [InputItem(text)]
    if _is_broken_link(text):
        return [InputItem(text, _broken_link(text))]
    if _GLOB_CHARS & set(text):
        matches = sorted(m for m in glob.glob(text, recursive=True) if os.path.isfile(m) or _is_broken_link(m))
        if not matches:
            return [InputItem(text, InputError(text, "no file matches this pattern"))]
        return [InputItem(m, _broken_link(m) if _is_broken_link(m) else None) for m in matches]
    return [InputItem(text, InputError(text, "file does not exist"))]
