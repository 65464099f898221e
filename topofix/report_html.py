"""The HTML report's former home, kept so ``from topofix.report_html import ...`` still works.

The report now lives in the package :mod:`topofix.report` (loading, volumes, pictures,
html and the Jinja2 templates); this module only re-exports its public names.
"""

from __future__ import annotations

from topofix.report import (
    DISPLAY_WIDTH,
    MAX_SIDE,
    MAX_SLICES,
    OUTCOMES,
    REPORT_HTML,
    REPORT_JSON,
    SORT_KEYS,
    HtmlReport,
    case_outcome,
    default_output,
    label_colour,
    load_report,
    outcome_counts,
    render_html_report,
    write_html_report,
)

__all__ = [
    "DISPLAY_WIDTH",
    "MAX_SIDE",
    "MAX_SLICES",
    "OUTCOMES",
    "REPORT_HTML",
    "REPORT_JSON",
    "SORT_KEYS",
    "HtmlReport",
    "case_outcome",
    "default_output",
    "label_colour",
    "load_report",
    "outcome_counts",
    "render_html_report",
    "write_html_report",
]
