"""Progress of a batch on the terminal: one tqdm bar, errors printed above it as they happen."""

from __future__ import annotations

import os
import sys
from typing import Any

from topofix.batch import CaseRecord, _flat_case
from topofix.cli.console import print_error, print_warning

__all__ = ["BatchProgress", "flat_case", "print_threshold_warning"]


def flat_case(record: CaseRecord) -> dict[str, Any]:
    """A case as the tables and the JSON report show it."""
    return _flat_case(record)


class BatchProgress:
    """Callbacks for :func:`topofix.batch.run_batch` (``on_start``/``on_case``/``on_step``)."""

    def __init__(self, what: str, quiet: bool) -> None:
        self.what = what
        self.quiet = quiet
        self.bar = None

    def start(self, path: str, index: int, total: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.what, unit="scan", disable=True if self.quiet else None,
                            file=sys.stderr, leave=False)
        self.bar.set_postfix_str(os.path.basename(path))

    def step(self, path: str, step: int, topo: float, sim: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{os.path.basename(path)} step {step} topo {topo:.3f} sim {sim:.2e}")

    def case(self, record: CaseRecord) -> None:
        if record.status == "error" and record.error:
            if self.bar is not None:
                from tqdm.auto import tqdm

                with tqdm.external_write_mode(file=sys.stderr):
                    print_error(record.error)
            else:
                print_error(record.error)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def print_threshold_warning(report: Any, given: bool) -> None:
    """``--threshold`` given for a model read with an argmax: say once that it changes nothing."""
    if not given:
        return
    from topofix.cli.options import threshold_warning

    for case in report.cases:
        activation, channels = case.result.get("activation"), case.result.get("channels")
        if activation and channels:
            message = threshold_warning(activation, int(channels))
            if message:
                print_warning(message)
            return
