"""SimpleITK's exception text, cleaned up to the one line a user can act on.

SimpleITK raises ``RuntimeError`` with a multi-line C++ message (file, line,
class address, then the reason); MetaIO even reports a truncated file as the OS
error of its last failed call ("No such file or directory").  Every message that
quotes SimpleITK goes through :func:`short_reason` so that a refusal stays one line.
"""

from __future__ import annotations

import re

from topofix.errors import shorten

__all__ = ["read_failure", "short_reason"]

_PREFIXES = (
    re.compile(r"^(?:sitk::ERROR|ITK ERROR|itk::ERROR)\s*:\s*"),
    re.compile(r"^\w+\(0x[0-9a-fA-F]+\)\s*:\s*"),  # MetaImageIO(0x55...):
    re.compile(r"^\[\w+\]\s*\w+\s*:\s*"),  # [nrrd] _nrrdEncodingRaw_read:
    re.compile(r"^\*+\s*(?:ERROR\s*)?:?\s*"),  # ** ERROR: (nifticlib)
)


def short_reason(exc: BaseException, limit: int = 200) -> str:
    """Reduce SimpleITK's multi-line exception text to its most useful line."""
    reasons: list[str] = []
    for raw in str(exc).splitlines():
        line = raw.strip()
        if not line or line.startswith("Exception thrown in SimpleITK"):
            continue
        changed = True
        while changed:
            changed = False
            for pattern in _PREFIXES:
                new = pattern.sub("", line, count=1)
                if new != line:
                    line, changed = new.strip(), True
        if line:
            reasons.append(line)
    if not reasons:
        return "unknown error"
    reason = reasons[-1]
    if reason.startswith("Reason:") and len(reasons) >= 2:
        reason = f"{reasons[-2]} {reason}"
    return shorten(reason, limit)


def read_failure(exc: BaseException) -> str:
    """The problem to report when SimpleITK fails to read a file that passed our own checks."""
    reason = short_reason(exc)
    low = reason.lower()
    # MetaIO reports a truncated/corrupt file as an OS error of the *last*
    # failed call ("No such file or directory", or even "Success"): misleading.
    if low.endswith("no such file or directory") or low.endswith("reason: success"):
        return "cannot read image (corrupt or truncated file?)"
    if re.search(r"fread got only|but received|unexpected end|premature end|truncat", low):
        return f"cannot read image (truncated file?): {reason}"
    if "unable to determine imageio reader" in low:
        return f"cannot read image: {reason} (unknown format or corrupt file)"
    return f"cannot read image: {reason}"
