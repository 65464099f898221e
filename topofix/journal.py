"""The run journal of an output folder: what finished, with what, written as it happens.

Why: a batch that is interrupted (Ctrl-C, ``docker stop``, the OOM killer) must
lose at most the case in progress, and a resumed batch must neither redo work
nor *invent* results. So every case is recorded the moment it finishes, as one
JSON line appended to ``topofix_journal.jsonl`` and flushed to disk, together
with the *fingerprint* of the run (tool, model content hash, priors, every
setting). A resume (``--skip-existing``) carries a case forward only when its
last entry is ``done`` under the same fingerprint and its outputs still read
back; anything else is redone.

Format (one JSON object per line, UTF-8):

* ``{"event": "run", "fingerprint": F, "run": {...}}`` at the start of every run
  (tool, version, model path and sha256, priors, settings, start time);
* ``{"event": "start", "key": K, "fingerprint": F}`` before a case writes anything;
* ``{"event": "done", "key": K, "fingerprint": F, "case": {...}}`` once its
  outputs are verified and in place, or ``{"event": "error", ...}``.

A line cut short by SIGKILL is skipped on reading (and the next append starts on
a new line). Only JSON is ever read back.

Concurrency: the folder is locked (``flock`` on ``.topofix.lock``) for the run's
lifetime; a second run on the same folder is refused with a message naming the
holder. The kernel drops the lock when the process dies, even by SIGKILL, so a
stale lock never blocks. With the lock held, leftover hidden temporary folders
of earlier, killed runs are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topofix.errors import OutputError
from topofix.outputs import JOURNAL, LOCK, TEMP_PREFIX

__all__ = ["FolderLock", "Journal", "JournalEntry", "file_sha256", "fingerprint", "json_safe", "remove_stale_temporaries"]


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Content hash of a file (the model's identity in the journal: a path can be replaced)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(run: Mapping[str, Any]) -> str:
    """Hash of what decides a case's result: the run description minus times, paths and version.

    The model enters by its content hash, not its path; the tool version does not
    enter (a patch release must not force a cohort to be redone), it is recorded.
    """
    relevant = {k: v for k, v in run.items() if k not in ("started", "version", "model_path", "command")}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class FolderLock:
    """An exclusive lock on an output folder for one run (see the module docstring)."""

    def __init__(self, folder: Path, suffix: str = "") -> None:
        self.path = folder / (LOCK + suffix)  # a shard locks its own part (".topofix.lock.shard-0-of-4")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (documented); the journal still records everything
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(self.path.parent, f"cannot write in the output folder: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputError(self.path.parent, "another topofix run is writing to this folder"
                              + (f" ({holder})" if holder else "") + "; wait for it or choose another --output") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def remove_stale_temporaries(folder: Path) -> int:
    """Remove hidden temporaries (``.topofix-tmp-*`` folders, ``.*.tmp`` files) left by killed runs.

    Only call with the folder's lock held: then no other run can own them.
    """
    removed = 0
    if not folder.is_dir():
        return 0
    for root, dirs, files in os.walk(folder):
        for name in list(dirs):
            if name.startswith(TEMP_PREFIX):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
                dirs.remove(name)
                removed += 1
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(root, name))
                    removed += 1
                except OSError:
                    pass
    return removed


@dataclass
class JournalEntry:
    """The last state of one case in the journal."""

    key: str
    event: str  # "start", "done" or "error"
    fingerprint: str
    case: dict[str, Any] = field(default_factory=dict)


class Journal:
    """Append-only journal of an output folder (see the module docstring)."""

    def __init__(self, folder: Path, suffix: str = "") -> None:
        stem = JOURNAL[: -len(".jsonl")]
        self.path = folder / f"{stem}{suffix}.jsonl"  # a shard's: topofix_journal.shard-0-of-4.jsonl
        self.torn_lines = 0

    # -- reading -------------------------------------------------------------------------
    def size(self) -> int:
        """Bytes in the journal now (a position to read from with ``records(since=...)``)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def records(self, since: int = 0) -> Iterator[dict[str, Any]]:
        """Every well-formed record, in order, from byte ``since`` on (torn or foreign lines skipped
        and counted)."""
        self.torn_lines = 0
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                handle.seek(since)
                for line in handle:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:
                        self.torn_lines += 1
                        continue
                    if isinstance(record, dict) and "event" in record:
                        yield record
                    else:
                        self.torn_lines += 1
        except FileNotFoundError:
            return

    def last_entries(self) -> dict[str, JournalEntry]:
        """The last start/done/error record of every case key."""
        entries: dict[str, JournalEntry] = {}
        for record in self.records():
            if record.get("event") in ("start", "done", "error") and isinstance(record.get("key"), str):
                entries[record["key"]] = JournalEntry(record["key"], record["event"], str(record.get("fingerprint")),
                                                      record.get("case") or {})
        return entries

    def runs(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == "run"]

    # -- writing -------------------------------------------------------------------------
    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line, flushed and fsynced (raises OutputError on any I/O error)."""
        line = json.dumps(json_safe(record), default=_json_default, allow_nan=False, separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size and not _ends_with_newline(self.path):
                    data = b"\n" + data  # after a torn line: start a new one
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(28, "short write (disk full?)")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputError(self.path, f"cannot append to the journal: {exc.strerror or exc}") from None


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def json_safe(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become null (a report never shows a number that is not one);
    numpy scalars become Python numbers, tuples lists."""
    import math

    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
