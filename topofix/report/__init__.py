"""A self-contained HTML report of a ``topofix correct`` run (``topofix report``, ``correct --html``).

One HTML file, readable offline and mailable: every picture is a PNG embedded as a
``data:`` URI, the CSS and the small table-sorting script are inline, nothing refers
to another file or to the network. It is built from the run's ``topofix_report.json``
(read as JSON, never unpickled), the input scans at the ``path`` each case records,
and the masks beside the report: the corrected mask under the input's name and, when
present, ``<stem>_original<ext>`` (``--save-original`` or ``--html``).

What it shows:

* a summary: scans corrected / already meeting the prior / still not meeting it /
  failed (/ skipped), the model, the priors and every optimisation setting;
* a table of all scans (click a header to sort, numbers sort as numbers), each row
  linking to the scan's section;
* per scan: the mask before and after on the image (grey, labels as translucent
  colours, a legend) and the voxels the correction changed, cropped to the masks;
  for 3D stacks on the slices whose topology was wrong before or after
  (``failing_slices_before`` + ``failing_slices_after``), else on the slice the
  correction changed most, else the middle slice; the persistence diagrams of each
  prior's probability map before and after (filled: the ``beta*`` bars the prior
  keeps and pushes to ``(1, 0)``; hollow: bars it pushes to the diagonal); the loss
  curve (topological and similarity terms).

Anything missing (an input scan moved, an original mask not saved, a failed or
skipped scan) is said in that scan's section, and listed in :attr:`HtmlReport.notes`.

The page's script also makes it testable in a browser: ``<body data-images-loaded=N>``
once every image has decoded, ``?sort=dice`` / ``?sort=-dice`` (or ``#sort=...``)
sorts the table on load, and ``window.topofixSort(key, descending)`` sorts it.

Modules, one job each: :mod:`~topofix.report.loading` (the JSON report, outcomes),
:mod:`~topofix.report.volumes` (the scan and masks of a case),
:mod:`~topofix.report.pictures` (PNG pictures, slice choice),
:mod:`~topofix.report.views` (the plain data the templates are given),
:mod:`~topofix.report.html` (the page, from the Jinja2 templates in ``templates/``).
"""

from __future__ import annotations

from topofix.report.html import COLUMNS, SORT_KEYS, HtmlReport, render_html_report, write_html_report
from topofix.report.loading import (
    OUTCOMES,
    REPORT_HTML,
    REPORT_JSON,
    case_outcome,
    default_output,
    load_report,
    outcome_counts,
)
from topofix.report.pictures import DISPLAY_WIDTH, MAX_SIDE, MAX_SLICES, label_colour

__all__ = [
    "COLUMNS",
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
