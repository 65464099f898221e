"""The message helpers of topofix.errors: one line from an exception, the file named once.

Oracles are hand-made exceptions whose expected line is written out literally.
"""

from __future__ import annotations

import pytest

from topofix.errors import InputError, exception_line, shorten, with_path

# A SimpleITK/TorchScript-like message: a headline, blank lines, indented details, the real error last.
_MULTI = RuntimeError("Traceback of TorchScript (most recent call last):\n\n  File x.py, line 3\n   boom here  \n\n")
_LONG = ValueError("a" * 250)


def test_last_line_is_the_default():
    assert exception_line(_MULTI) == "boom here"


def test_first_line():
    assert exception_line(_MULTI, line="first") == "Traceback of TorchScript (most recent call last):"


def test_all_lines_joined_with_single_spaces():
    assert exception_line(_MULTI, line="all") == (
        "Traceback of TorchScript (most recent call last): File x.py, line 3 boom here"
    )


@pytest.mark.parametrize("line", ["first", "last", "all"])
def test_no_text_gives_the_type_name_or_nothing(line):
    assert exception_line(KeyError(), line=line) == "KeyError"
    assert exception_line(OSError(" \n "), line=line) == "OSError"
    assert exception_line(KeyError(), line=line, fallback=False) == ""


def test_limit_marks_the_cut_or_cuts_hard():
    assert exception_line(_LONG, limit=200) == "a" * 197 + "..."
    assert exception_line(_LONG, limit=200, mark=False) == "a" * 200
    assert exception_line(_LONG) == "a" * 250
    assert exception_line(ValueError("short"), limit=5) == "short"  # exactly at the limit: whole


def test_shorten():
    assert shorten("abcdef", None) == "abcdef"
    assert shorten("abcdef", 5) == "ab..."
    assert shorten("abcdef", 5, mark=False) == "abcde"


def test_with_path_names_the_file_once():
    assert with_path("label 3 missing", "a.nii.gz") == "a.nii.gz: label 3 missing"
    assert with_path("a.nii.gz: label 3 missing", "a.nii.gz") == "a.nii.gz: label 3 missing"
    # another of the case's files leading the message (evaluation: the ground truth)
    assert with_path("gt/a.nii.gz: truncated file", "a.nii.gz", "gt/a.nii.gz") == "gt/a.nii.gz: truncated file"
    # named in the middle: prefixed unless anywhere=True
    assert with_path("--cluster x: a.nii.gz lost", "a.nii.gz") == "a.nii.gz: --cluster x: a.nii.gz lost"
    assert with_path("--cluster x: a.nii.gz lost", "a.nii.gz", anywhere=True) == "--cluster x: a.nii.gz lost"


def test_input_error_is_one_line():
    err = InputError("a.png", "first\nsecond")
    assert str(err) == "a.png: first second"
