"""The HTML report in a real browser: headless Chromium renders it, loads every embedded
image, and sorts the table from the URL. Skipped when Chromium is not installed
(Debian: ``apt-get install chromium``), and the skip is listed in pytest's summary
(``-ra``); CI (``.ci/run``) installs it and sets ``TOPOFIX_REQUIRE_CHROMIUM=1``, under
which a missing Chromium fails these tests instead of skipping them.

The page's own script is what is tested: it sets ``<body data-images-loaded=N
data-images-total=M>`` once the page has loaded (N counts images with ``complete &&
naturalWidth > 0``), and sorts the table on load from ``?sort=KEY`` / ``?sort=-KEY`` or
``#sort=KEY``; ``--dump-dom`` prints the DOM after that.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("TOPOFIX_REQUIRE_CHROMIUM") == "1"
if CHROMIUM is None and REQUIRED:
    pytest.fail("TOPOFIX_REQUIRE_CHROMIUM=1 but Chromium is not installed (apt-get install chromium): "
                "the browser tests of the HTML report cannot run", pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed: the browser tests of the "
                                "HTML report did not run (apt-get install chromium)")

matplotlib_image = pytest.importorskip("matplotlib.image")

from test_report_html import make_report

from topofix.report import write_html_report


def chromium(tmp_path: Path, *args: str, timeout: float = 120.0) -> str:
    profile = tmp_path / "chromium-profile"
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The fake report of test_report_html written as HTML: (folder, html path, HtmlReport)."""
    root = tmp_path_factory.mktemp("browser")
    report_json = make_report(root)
    result = write_html_report(report_json)
    return root, result.path, result


class _Rows(HTMLParser):
    """Row ids of the scan table's body, in DOM order, and the table's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.table: dict[str, str | None] = {}
        self.body: dict[str, str | None] = {}
        self.sorted_head: tuple[str | None, str | None] | None = None
        self._in_table = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "body":
            self.body = attributes
        if tag == "table" and attributes.get("id") == "scan-table":
            self._in_table = True
            self.table = attributes
        if self._in_table and tag == "tr" and (attributes.get("id") or "").startswith("row-"):
            self.rows.append(attributes["id"])
        if self._in_table and tag == "th" and attributes.get("aria-sort"):
            self.sorted_head = (attributes.get("data-key"), attributes.get("aria-sort"))

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False


def dom(tmp_path: Path, url: str) -> _Rows:
    parser = _Rows()
    parser.feed(chromium(tmp_path, "--dump-dom", url))
    return parser


def test_screenshot_is_not_blank(page, tmp_path):
    _, html_file, _ = page
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", html_file.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000
    pixels = matplotlib_image.imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05  # not a uniform page
    colours = {tuple(v) for v in (rgb[::7, ::7].reshape(-1, 3) * 255).astype(int)}
    assert len(colours) > 200  # text, badges, pictures: many colours
    # the overlays' label colours are on screen (pictures drawn, not broken-image icons)
    reddish = (rgb[..., 0] > 0.6) & (rgb[..., 1] < 0.45) & (rgb[..., 2] < 0.5)
    assert reddish.sum() > 200


def test_every_image_loads(page, tmp_path):
    _, html_file, result = page
    parsed = dom(tmp_path, html_file.as_uri())
    assert parsed.body.get("data-images-total") == str(result.images)
    assert parsed.body.get("data-images-loaded") == str(result.images)
    assert result.images >= 15


def test_a_broken_image_is_not_counted(page, tmp_path):
    """The images-loaded marker really looks at the images: a corrupt PNG is not counted."""
    _, html_file, result = page
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r'src="data:image/png;base64,[^"]*"', 'src="data:image/png;base64,iVBORw0KGgoAAAA="',
                             html_file.read_text(), count=1))
    parsed = dom(tmp_path, broken.as_uri())
    assert parsed.body.get("data-images-total") == str(result.images)
    assert parsed.body.get("data-images-loaded") == str(result.images - 1)


def _dice_order(page) -> list[str]:
    """Expected row order for ?sort=-dice: descending Dice, rows without a Dice last, ties by position."""
    import json

    root, _, _ = page
    cases = json.loads((root / "out" / "topofix_report.json").read_text())["cases"]
    known = [(i, c["dice_original_corrected"]) for i, c in enumerate(cases, 1)
             if isinstance(c.get("dice_original_corrected"), (int, float))]
    missing = [i for i, c in enumerate(cases, 1) if not isinstance(c.get("dice_original_corrected"), (int, float))]
    ordered = sorted(known, key=lambda item: (-item[1], item[0]))
    return [f"row-{i}" for i, _ in ordered] + [f"row-{i}" for i in missing]


def test_table_sorts_from_the_query_string(page, tmp_path):
    _, html_file, _ = page
    unsorted = dom(tmp_path, html_file.as_uri())
    assert unsorted.rows == [f"row-{i}" for i in range(1, 8)]
    assert unsorted.sorted_head is None

    by_dice = dom(tmp_path, html_file.as_uri() + "?sort=-dice")
    assert by_dice.rows == _dice_order(page)
    assert by_dice.rows[-1] == "row-6"  # the failed scan has no Dice: last, whatever the direction
    assert by_dice.sorted_head == ("dice", "descending")
    assert by_dice.table.get("data-sort") == "-dice"

    # numeric, not lexicographic: 100 steps after 7 steps; failed scan (no steps) last
    by_steps = dom(tmp_path, html_file.as_uri() + "?sort=steps")
    steps = {"row-1": 4, "row-2": 7, "row-3": 0, "row-4": 100, "row-5": 3, "row-7": 0}
    expected = sorted(steps, key=lambda r: (steps[r], int(r[4:]))) + ["row-6"]
    assert by_steps.rows == expected
    assert by_steps.sorted_head == ("steps", "ascending")


def test_table_sorts_names_naturally_from_the_fragment(page, tmp_path):
    _, html_file, _ = page
    by_name = dom(tmp_path, html_file.as_uri() + "#sort=scan")
    # scan_1, scan_2, scan_3, ..., scan_10 (numeric-aware text order)
    names = {"row-1": 2, "row-2": 10, "row-3": 1, "row-4": 3, "row-5": 4, "row-6": 5, "row-7": 6}
    assert by_name.rows == sorted(names, key=names.get)
    assert by_name.sorted_head == ("scan", "ascending")


def test_unknown_sort_key_leaves_the_table_alone(page, tmp_path):
    _, html_file, _ = page
    parsed = dom(tmp_path, html_file.as_uri() + "?sort=nonsense")
    assert parsed.rows == [f"row-{i}" for i in range(1, 8)]
    assert parsed.body.get("data-images-loaded") is not None


def test_headers_are_buttons_wired_to_the_sort(page):
    """The click handler calls the same function the URL drives (no way to click with --dump-dom)."""
    _, html_file, _ = page
    text = html_file.read_text()
    assert len(re.findall(r'<th data-key="[a-z]+"[^>]*><button type="button">', text)) == 11
    assert 'button.addEventListener("click"' in text and "window.topofixSort = sortTable" in text
