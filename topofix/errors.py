"""Exceptions that carry a one-line, user-facing message.

Every error a user can cause (a bad file, a malformed prior, an output that would
overwrite something) is raised as a :class:`TopofixError` subclass whose ``str()``
is a single line naming the file (when there is one) and the problem.  The CLI
prints that line and moves on to the next input; nothing else is caught.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


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
