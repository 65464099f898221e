"""Exceptions that carry a one-line, user-facing message.

Every error a user can cause (a bad file, a malformed prior, an output that would
overwrite something) is raised as a :class:`TopofixError` subclass whose ``str()``
is a single line naming the file (when there is one) and the problem.  The CLI
prints that line and moves on to the next input; nothing else is caught.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "InputError",
    "OutputError",
    "PriorError",
    "TopofixError",
    "InputFailure",
    "exception_line",
    "shorten",
    "with_path",
]


class TopofixError(Exception):
    """Base class of all errors whose message is meant for the user."""


class InputError(TopofixError):
    """An input file cannot be used: missing, unreadable, corrupt or of the wrong kind.

    ``str(err)`` is ``"<path>: <problem>"`` on one line.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())  # force one line
        super().__init__(f"{self.path}: {self.problem}")


class OutputError(TopofixError):
    """An output cannot be written (would overwrite a file or an input, bad format...)."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


class PriorError(TopofixError, ValueError):
    """A malformed prior specification (``--betti``, ``--prior``, ``--label``)."""


@dataclass(frozen=True)
class InputFailure:
    """An input a batch command could not process (or not fully), with its one-line reason.

    Not an exception: ``check`` and ``evaluate`` record one per bad input in their
    report's ``errors`` and go on with the others (exit status 2). One type for both, so
    that a pipeline reads ``{"path", "error"}`` the same way from either JSON report.
    """

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "error": self.message}


# --------------------------------------------------------------------------- #
# Message helpers: the one home of "one line from an exception" and "name the file"
# --------------------------------------------------------------------------- #


def shorten(text: str, limit: int | None, *, mark: bool = True) -> str:
    """``text`` cut to at most ``limit`` characters, the cut shown by ``...`` when ``mark``.

    ``None`` leaves ``text`` whole.  Long library messages (a C++ matrix dump, a
    TorchScript graph) would otherwise push the file name off a terminal line.
    """
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..." if mark else text[:limit]


def exception_line(
    exc: BaseException,
    *,
    line: Literal["first", "last", "all"] = "last",
    limit: int | None = None,
    mark: bool = True,
    fallback: bool = True,
) -> str:
    """One line of ``exc``'s text, to quote inside a one-line user message.

    Why several choices: libraries put the useful line in different places.
    ``"last"`` (the default): the last non-blank line, where TorchScript, torch
    and SimpleITK put the actual error after their tracebacks.  ``"first"``: the
    first non-blank line (onnx, zipfile: a headline followed by details).
    ``"all"``: every line joined, runs of whitespace collapsed to one space.

    An exception without text gives its type name (``fallback``), or ``""``.
    The line is then cut to ``limit`` characters (:func:`shorten`).
    """
    text = str(exc)
    if line == "all":
        chosen = " ".join(text.split())
    else:
        lines = [part.strip() for part in text.splitlines() if part.strip()]
        chosen = (lines[0] if line == "first" else lines[-1]) if lines else ""
    if not chosen and fallback:
        chosen = type(exc).__name__
    return shorten(chosen, limit, mark=mark)


def with_path(message: str, path: str, *also: str, anywhere: bool = False) -> str:
    """``message`` led by ``"<path>: "`` unless it already names ``path`` (or one of ``also``).

    "Names" means starts with it, or contains it anywhere when ``anywhere``.  Errors
    raised deep inside (a reader, a prior check) usually name their file already;
    this keeps the file in every recorded line without ever writing it twice.
    """
    names = (path, *also)
    if anywhere:
        if any(name in message for name in names):
            return message
    elif message.startswith(names):
        return message
    return f"{path}: {message}"
