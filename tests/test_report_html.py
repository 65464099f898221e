"""The HTML report (``topofix report``, ``topofix correct --html``), without a browser.

A fake ``topofix_report.json`` with tiny scans and masks (:func:`make_report`) covers
every kind of case: corrected 2D, corrected 3D per slice, already met (no original
mask saved), still not met, input moved, failed, skipped. ``test_report_browser.py``
opens the same report in Chromium.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

matplotlib_image = pytest.importorskip("matplotlib.image")

from topofix.cli.app import app
from topofix.io import write_image, write_mask
from topofix.report import (
    SORT_KEYS,
    case_outcome,
    load_report,
    render_html_report,
    write_html_report,
)

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- a fake run


def _ring(shape: tuple[int, int], gap: bool = False) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(y - shape[0] / 2 + 0.5, x - shape[1] / 2 + 0.5)
    mask = np.zeros(shape, np.uint8)
    mask[r < 4] = 3  # LV
    mask[(r >= 4) & (r < 7)] = 2  # MYO ring
    if gap:
        mask[(r >= 4) & (r < 7) & (x > shape[1] / 2 + 3) & (abs(y - shape[0] / 2) < 2)] = 0
    return mask


def _scan(mask: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (mask * 40.0 + rng.normal(0, 8, mask.shape)).astype(np.float32)


def _prior(before, after, failing_before=(), failing_after=()):
    return {"prior": "2=1,1", "expected": [1, 1], "betti_before": before, "betti_after": after,
            "met_before": not failing_before and all(b == [1, 1] for b in before),
            "met_after": not failing_after and all(a == [1, 1] for a in after),
            "failing_slices_before": list(failing_before), "failing_slices_after": list(failing_after)}


def _diagram(slice_index, kept_death_before=0.6):
    return {"slice": slice_index, "prior": "2", "expected": [1, 1],
            "before": [[0, 0.99, 0.0, True], [0, 0.7, 0.2, False], [1, 0.8, kept_death_before, True],
                       [1, 0.3, 0.25, False]],
            "after": [[0, 0.99, 0.0, True], [1, 0.95, 0.02, True], [0, 0.1, 0.05, False]]}


def _case(path, priors, *, steps, stop, seconds, changed, dice, topo, sim, curve=(), diagrams=(),
          status="processed"):
    return {"path": path, "priors": priors, "met_before": all(p["met_before"] for p in priors),
            "met_after": all(p["met_after"] for p in priors), "steps": steps, "stop_reason": stop,
            "chosen_step": steps, "seconds": seconds, "changed_fraction": changed,
            "dice_original_corrected": dice, "topo_loss": topo, "similarity_loss": sim,
            "loss_curve": [list(v) for v in curve], "diagrams": list(diagrams), "error": None, "status": status}


def make_report(root: Path, small: bool = False) -> Path:
    """Scans in ``root/scans``, a run's outputs in ``root/out``; returns the JSON report's path.

    Cases (in order): scan_2 corrected 2D, scan_10 corrected 3D (per slice, slices 1 and 3
    failing before), scan_1 already met (no original mask saved), scan_3 not met, scan_4
    whose input was moved away, scan_5 failed, scan_6 skipped. ``small``: only scan_1,
    scan_4 and scan_5 (quicker to render).
    """
    scans, out = root / "scans", root / "out"
    scans.mkdir(parents=True)
    out.mkdir()
    cases = []

    # scan_2: 2D, broken ring corrected
    good, broken = _ring((24, 24)), _ring((24, 24), gap=True)
    write_image(scans / "scan_2.nii.gz", _scan(good, 1))
    write_mask(out / "scan_2.nii.gz", good)
    write_mask(out / "scan_2_original.nii.gz", broken)
    cases.append(_case(str(scans / "scan_2.nii.gz"), [_prior([[1, 0]], [[1, 1]], failing_before=[])],
                       steps=4, stop="met", seconds=2.5, changed=float(np.mean(good != broken)), dice=0.95,
                       topo=0.2, sim=1e-3, curve=[(1.2, 0.0), (0.9, 1e-4), (0.5, 4e-4), (0.3, 8e-4)],
                       diagrams=[_diagram(None)]))
    cases[-1]["priors"][0]["met_before"] = False
    cases[-1]["met_before"] = False

    # scan_10: 3D stack (5 slices), per slice; slices 1 and 3 broken before, fixed after
    stack_good = np.stack([_ring((20, 20))] * 5)
    stack_broken = stack_good.copy()
    stack_broken[1] = _ring((20, 20), gap=True)
    stack_broken[3] = _ring((20, 20), gap=True)
    write_image(scans / "scan_10.nii.gz", _scan(stack_good, 2))
    write_mask(out / "scan_10.nii.gz", stack_good)
    write_mask(out / "scan_10_original.nii.gz", stack_broken)
    before = [[1, 1], [1, 0], [1, 1], [1, 0], [1, 1]]
    cases.append(_case(str(scans / "scan_10.nii.gz"), [_prior(before, [[1, 1]] * 5, failing_before=[1, 3])],
                       steps=7, stop="met", seconds=11.0, changed=float(np.mean(stack_good != stack_broken)),
                       dice=0.97, topo=0.1, sim=2e-3, curve=[(2.0, 0.0), (1.0, 1e-3)] * 3 + [(0.1, 2e-3)],
                       diagrams=[_diagram(1), _diagram(3, 0.5)]))

    # scan_1: PNG, already met, untouched, no original saved
    write_image(scans / "scan_1.png", (_ring((24, 24)) * 60).astype(np.uint8))
    write_mask(out / "scan_1.png", good)
    cases.append(_case(str(scans / "scan_1.png"), [_prior([[1, 1]], [[1, 1]])], steps=0, stop="already met",
                       seconds=0.3, changed=0.0, dice=1.0, topo=None, sim=None))

    # scan_3: not met after 100 steps
    write_image(scans / "scan_3.nii.gz", _scan(broken, 3))
    write_mask(out / "scan_3.nii.gz", broken)
    write_mask(out / "scan_3_original.nii.gz", broken)
    cases.append(_case(str(scans / "scan_3.nii.gz"), [_prior([[1, 0]], [[1, 0]], [0], [0])], steps=100,
                       stop="max steps", seconds=30.0, changed=0.0, dice=1.0, topo=0.9, sim=0.0,
                       curve=[(1.0, 0.0)] + [(0.95, 1e-5)] * 99, diagrams=[_diagram(None)]))
    cases[-1]["priors"][0]["failing_slices_before"] = []
    cases[-1]["priors"][0]["failing_slices_after"] = []

    # scan_4: corrected, but its input scan has been moved away since
    write_mask(out / "scan_4.nii.gz", good)
    write_mask(out / "scan_4_original.nii.gz", broken)
    cases.append(_case(str(scans / "moved" / "scan_4.nii.gz"), [_prior([[1, 0]], [[1, 1]])], steps=3,
                       stop="met", seconds=1.5, changed=0.01, dice=0.96, topo=0.3, sim=5e-4,
                       curve=[(1.0, 0.0), (0.6, 1e-4), (0.3, 3e-4)], diagrams=[_diagram(None)]))
    cases[-1]["priors"][0]["met_before"] = False
    cases[-1]["met_before"] = False

    # scan_5: could not be read; scan_6: skipped
    cases.append({"path": str(scans / "scan_5.nii.gz"), "status": "error",
                  "error": f"{scans / 'scan_5.nii.gz'}: truncated file <b>&"})
    cases.append({"path": str(scans / "scan_6.nii.gz"), "status": "skipped", "met_after": True, "priors": [],
                  "steps": 0, "stop_reason": "output exists", "seconds": 0.0, "dice_original_corrected": 1.0})

    if small:
        cases = [c for c in cases if Path(c["path"]).name.split(".")[0] in ("scan_1", "scan_4", "scan_5")]
    processed = [c for c in cases if c["status"] == "processed"]
    report = {
        "tool": "topofix correct", "model": "models/unet.pt", "priors": ["2=1,1"],
        "settings": {"steps": 100, "lr": 1e-4, "lam": 100.0, "per_slice": "z", "connectivity": "full"},
        "summary": {"scans": len(cases), "processed": len(processed),
                    "corrected": sum(c["met_after"] and not c["met_before"] for c in processed),
                    "not_met": sum(not c["met_after"] for c in processed),
                    "skipped": sum(c["status"] == "skipped" for c in cases),
                    "failed": sum(c["status"] == "error" for c in cases)},
        "cases": cases,
    }
    path = out / "topofix_report.json"
    path.write_text(json.dumps(report, indent=2))
    return path


@pytest.fixture()
def report_json(tmp_path) -> Path:
    return make_report(tmp_path)


@pytest.fixture()
def small_json(tmp_path) -> Path:
    return make_report(tmp_path, small=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The full fake report, rendered once for the tests that only read it: (JSON path, HtmlReport)."""
    path = make_report(tmp_path_factory.mktemp("report"))
    return path, render_html_report(path)


def section(text: str, index: int) -> str:
    match = re.search(rf'<section class="case" id="scan-{index}".*?</section>', text, re.DOTALL)
    assert match, f"no section scan-{index}"
    return match.group(0)


def table_rows(text: str) -> list[str]:
    body = re.search(r'<table id="scan-table">.*?<tbody>(.*?)</tbody>', text, re.DOTALL).group(1)
    return re.findall(r'<tr id="(row-\d+)"', body)


# --------------------------------------------------------------------------- the page


def test_self_contained_every_image_is_a_png(built):
    _, result = built
    text = result.html
    assert text.startswith("<!DOCTYPE html>")
    for forbidden in ("http://", "https://", 'src="/', "src='/", 'href="/', "<link", "@import", "url(", "<iframe",
                      "<script src"):
        assert forbidden not in text, forbidden
    assert re.findall(r'href="([^"#][^"]*)"', text) == []  # only in-page links
    sources = re.findall(r'<img [^>]*src="([^"]*)"', text)
    assert len(sources) == result.images >= 15
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        pixels = matplotlib_image.imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] > 4 and pixels.shape[1] > 4
    assert len(text) < 600_000  # 7 small scans: a few hundred kB at most


def test_page_keeps_no_template_layout(built):
    """The templates' line breaks and indentation stay out of the page: outside the inline CSS and
    script, the only line breaks are the three the page always had (after the doctype, the head
    and the closing tag), and no element is followed by indentation."""
    _, result = built
    outside = re.sub(r"<(style|script)>.*?</\1>", "", result.html, flags=re.DOTALL)
    assert outside.count("\n") == 3
    assert outside.endswith("</html>\n")
    assert re.findall(r">\s{2,}<", outside) == []


def test_templates_ship_as_package_data():
    """A regular (non-editable) install copies only what pyproject's package-data names: every
    template, stylesheet and script of topofix/report/templates must match a pattern there."""
    tomllib = pytest.importorskip("tomllib")
    import fnmatch

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["topofix.report"]
    folder = REPO / "topofix" / "report"
    files = [p.relative_to(folder).as_posix() for p in (folder / "templates").iterdir() if p.is_file()]
    assert {"templates/report.html.j2", "templates/report.css", "templates/report.js"} <= set(files)
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert unshipped == []


def test_old_module_name_still_imports():
    import topofix
    import topofix.report
    import topofix.report_html

    for name in ("render_html_report", "write_html_report", "HtmlReport", "load_report", "case_outcome", "SORT_KEYS"):
        assert getattr(topofix.report_html, name) is getattr(topofix.report, name)
    assert topofix.render_html_report is topofix.report.render_html_report


def test_summary_numbers_match_the_json(built):
    report_json, result = built
    data = json.loads(report_json.read_text())
    text = result.html
    counts = {k: int(v) for k, v in re.findall(r'data-count="([^"]+)"><b>(\d+)</b>', text)}
    s = data["summary"]
    assert counts == {"corrected": s["corrected"], "already met": s["processed"] - s["corrected"] - s["not_met"],
                      "not met": s["not_met"], "error": s["failed"], "skipped": s["skipped"]}
    assert counts == {"corrected": 3, "already met": 1, "not met": 1, "error": 1, "skipped": 1}
    assert [case_outcome(c) for c in data["cases"]] == ["corrected", "corrected", "already met", "not met",
                                                        "corrected", "error", "skipped"]
    assert "models/unet.pt" in text and "2=1,1" in text
    for key, value in data["settings"].items():
        assert f'<span data-setting="{key}"><i>{key}</i>{json.dumps(value) if value is None else value}</span>' in text


def test_every_scan_has_a_section_and_a_linked_row(built):
    report_json, result = built
    data = json.loads(report_json.read_text())
    text = result.html
    n = len(data["cases"])
    assert table_rows(text) == [f"row-{i}" for i in range(1, n + 1)]
    for i, case in enumerate(data["cases"], 1):
        assert f'<a href="#scan-{i}">{Path(case["path"]).name}</a>' in text
        assert Path(case["path"]).name in section(text, i)
    heads = re.findall(r'<th data-key="([^"]+)"', text)
    assert tuple(heads) == SORT_KEYS


def test_2d_corrected_scan_shows_overlays_diagrams_and_loss(built):
    _, result = built
    text = result.html
    scan = section(text, 1)
    for caption in ("before", "after", "changed voxels"):
        assert f"<figcaption>{caption}</figcaption>" in scan
    assert "persistence diagrams, prior 2 = (1,1)" in scan
    assert 'alt="loss curve"' in scan
    assert "label 2" in scan and "label 3" in scan and "added / relabelled" in scan
    assert 'class="note"' not in scan  # everything was found


def test_3d_stack_shows_the_failing_slices(built):
    _, result = built
    text = result.html
    scan = section(text, 2)
    assert re.findall(r"<h4>slice (\d+)</h4>", scan) == ["1", "3"]
    assert "slices whose topology was wrong before or after" in scan
    assert "persistence diagrams, prior 2 = (1,1), slice 1" in scan
    assert "persistence diagrams, prior 2 = (1,1), slice 3" in scan
    assert "2/5 slices fail" in scan


def test_3d_stack_without_failing_slices(tmp_path):
    """No failing slice recorded (a whole-volume prior): the slice the correction changed most,
    else the middle slice."""
    path = make_report(tmp_path)
    data = json.loads(path.read_text())
    case = data["cases"][1]
    case["priors"][0].update(failing_slices_before=[], failing_slices_after=[])
    whole = _diagram(None)  # a 3D prior on the whole volume: its diagram has a cavity (H2) bar
    whole["before"].append([2, 0.6, 0.1, False])
    case["diagrams"] = [whole]
    data["cases"] = [case]
    scan = section(render_html_report(data, masks_dir=path.parent).html, 1)
    assert re.findall(r"<h4>slice (\d+)</h4>", scan) == ["1"]  # slices 1 and 3 changed as much: the first
    assert "the slice the correction changed most" in scan
    assert "<h4>whole volume</h4>" in scan and "persistence diagrams, prior 2 = (1,1)</figcaption>" in scan
    case["diagrams"] = []

    shutil.copy(path.parent / "scan_10.nii.gz", path.parent / "scan_10_original.nii.gz")  # nothing changed
    scan = section(render_html_report(data, masks_dir=path.parent).html, 1)
    assert re.findall(r"<h4>slice (\d+)</h4>", scan) == ["2"]
    assert "the middle slice" in scan


def test_untouched_scan_without_original_shows_one_panel(built):
    _, result = built
    scan = section(result.html, 3)
    assert "<figcaption>mask (unchanged)</figcaption>" in scan
    assert "already met the prior: no optimisation" in scan
    assert 'class="note"' not in scan


def test_moved_input_is_said_in_its_section(built):
    _, result = built
    scan = section(result.html, 5)
    assert "input scan not found at" in scan and "moved" in scan
    assert "<figcaption>after</figcaption>" in scan  # masks still drawn, without the scan
    assert any("input scan not found" in n and "scan_4" in n for n in result.notes)
    assert len(result.notes) == 1


def test_missing_original_and_missing_masks(tmp_path):
    path = make_report(tmp_path)
    (path.parent / "scan_2_original.nii.gz").unlink()  # corrected 2D scan: original not kept
    (path.parent / "scan_3.nii.gz").unlink()  # not-met scan: corrected mask gone, original kept
    (path.parent / "scan_4.nii.gz").unlink()  # moved scan: both masks gone too
    (path.parent / "scan_4_original.nii.gz").unlink()
    data = load_report(path)
    data["cases"] = [data["cases"][0], data["cases"][3], data["cases"][4]]
    result = render_html_report(data, masks_dir=path.parent)
    first, second, third = (section(result.html, i) for i in (1, 2, 3))
    assert "scan_2_original.nii.gz not found" in first and "<figcaption>after</figcaption>" in first
    assert "<figcaption>before</figcaption>" not in first
    assert "corrected mask not found" in second and "only the original mask is shown" in second
    assert "<figcaption>before</figcaption>" in second and "<figcaption>after</figcaption>" not in second
    assert "no mask found" in third and "nothing to draw" in third and "<figcaption>" in third
    assert "persistence diagrams, prior 2 = (1,1)" in third  # the diagrams are in the JSON
    assert len(result.notes) == 4  # 1 + 1 + 2 (the input scan of the third is missing too)


def test_error_and_skipped_cases_get_a_row_with_their_message(built):
    _, result = built
    text = result.html
    row = re.search(r'<tr id="row-6".*?</tr>', text, re.DOTALL).group(0)
    assert "truncated file &lt;b&gt;&amp;" in row  # escaped
    assert "truncated file &lt;b&gt;&amp;" in section(text, 6)
    assert "<b>&" not in text
    assert "skipped: output exists" in section(text, 7)


def test_relative_inputs_are_found_from_the_report_folder(tmp_path, monkeypatch):
    path = make_report(tmp_path, small=True)
    data = json.loads(path.read_text())
    for case in data["cases"]:
        case["path"] = str(Path("..") / "scans" / Path(case["path"]).name)
    path.write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path / "scans")  # ../scans/x resolves from the report folder, not from here
    (tmp_path / "scans" / "scans").mkdir()
    result = render_html_report(path)
    assert not [n for n in result.notes if "scan_1" in n]
    assert [n for n in result.notes if "scan_4" in n]  # really moved


def test_render_from_a_dict_and_a_folder(small_json):
    data = load_report(small_json.parent)
    a = render_html_report(data, masks_dir=small_json.parent)
    b = render_html_report(small_json.parent)
    assert a.images == b.images and a.scans == b.scans == 3


def test_load_report_refuses_what_is_not_a_report(tmp_path):
    from topofix.errors import InputError

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_report(bad)
    bad.write_text(json.dumps({"cases": "x"}))
    with pytest.raises(InputError, match="not a topofix correct report"):
        load_report(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_report(tmp_path / "missing.json")


# --------------------------------------------------------------------------- topofix report


def report_cli(*args):
    return runner.invoke(app, ["report", *map(str, args)])


def test_cli_writes_beside_the_json_and_refuses_to_overwrite(small_json):
    result = report_cli(small_json)
    assert result.exit_code == 0, result.output
    html_file = small_json.parent / "topofix_report.html"
    assert html_file.is_file()
    assert "HTML report:" in result.stdout and "3 scan(s)" in result.stdout
    assert "warning:" in result.stderr and "scan_4" in result.stderr  # the moved input
    before = html_file.read_bytes()

    again = report_cli(small_json)
    assert again.exit_code == 2
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    assert html_file.read_bytes() == before

    forced = report_cli(small_json, "--overwrite", "-q")
    assert forced.exit_code == 0
    assert "warning:" not in forced.stderr


def test_cli_output_option_masks_option_and_folder_argument(small_json, tmp_path):
    other = tmp_path / "elsewhere" / "run.html"
    result = report_cli(small_json.parent, "-o", other)
    assert result.exit_code == 0, result.output
    assert other.is_file() and not (small_json.parent / "topofix_report.html").exists()

    moved = tmp_path / "json_only"
    moved.mkdir()
    shutil.copy(small_json, moved / "topofix_report.json")
    result = report_cli(moved / "topofix_report.json", "--masks", small_json.parent, "-q")
    assert result.exit_code == 0, result.output
    text = (moved / "topofix_report.html").read_text()
    assert "corrected mask not found" not in text


def test_cli_errors_exit_2_with_one_line(tmp_path, small_json):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    pickled = tmp_path / "report.pkl"
    pickled.write_bytes(pickle.dumps({"cases": []}))
    for args in ([tmp_path / "missing.json"], [bad], [pickled], [small_json, "-o", small_json, "--overwrite"],
                 [small_json, "-o", tmp_path]):
        result = report_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert json.loads(small_json.read_text())["cases"]  # the JSON was not replaced


def test_api_write_refuses_existing_file(small_json):
    from topofix.errors import OutputError

    first = write_html_report(small_json)
    assert first.path == small_json.parent / "topofix_report.html"
    with pytest.raises(OutputError, match="already exists"):
        write_html_report(small_json)


# --------------------------------------------------------------------------- topofix correct --html


def test_correct_html_with_a_tiny_network(tmp_path):
    """--html writes the originals and the HTML report; an existing HTML report stops the run."""
    import model_factory as mf

    model = mf.save_scripted(tmp_path, dims=2)
    rng = np.random.default_rng(0)
    write_image(tmp_path / "a.nii.gz", rng.normal(size=(16, 16)).astype(np.float32))
    write_image(tmp_path / "b.png", (rng.random((16, 16)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    args = ["correct", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.png"), "-m", str(model), "-o", str(out),
            "--prior", "1=1,0", "--always", "--steps", "2", "--device", "cpu", "--html", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 1), result.output
    for name in ("a.nii.gz", "a_original.nii.gz", "b.png", "b_original.png", "topofix_report.html"):
        assert (out / name).is_file(), name  # --html implies --save-original
    text = (out / "topofix_report.html").read_text()
    assert 'id="scan-1"' in text and 'id="scan-2"' in text and 'class="note"' not in text
    assert 'alt="loss curve"' in text and "persistence diagrams, prior 1 = (1,0)" in text
    before = (out / "topofix_report.html").read_bytes()

    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert "topofix_report" in again.stderr and "already exists" in again.stderr
    assert (out / "topofix_report.html").read_bytes() == before


SAMPLE = REPO / "sample_data"


@pytest.mark.slow
@pytest.mark.skipif(not (SAMPLE / "models" / "demo_unet.pt").is_file(), reason="sample model absent")
def test_correct_html_on_sample_data(tmp_path):
    out = tmp_path / "fixed"
    args = ["correct", str(SAMPLE / "images" / "img_001.png"), str(SAMPLE / "images" / "img_010.png"),
            "-m", str(SAMPLE / "models" / "demo_unet.pt"), "-o", str(out), "--prior", "2=1,1", "--steps", "10",
            "--device", "cpu", "--html", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    html_file = out / "topofix_report.html"
    assert html_file.is_file()
    for name in ("img_001.png", "img_001_original.png", "img_010.png", "img_010_original.png"):
        assert (out / name).is_file(), name  # --html implies --save-original
    text = html_file.read_text()
    data = json.loads((out / "topofix_report.json").read_text())
    assert [case_outcome(c) for c in data["cases"]] == ["already met", "corrected"]
    scan = section(text, 2)
    assert "<figcaption>before</figcaption>" in scan and "persistence diagrams" in scan
    assert 'class="note"' not in text

    again = runner.invoke(app, args)  # the HTML report is not silently replaced
    assert again.exit_code == 2
    assert "topofix_report" in again.stderr and "already exists" in again.stderr


def test_absent_structures_and_repair_actions_are_shown(small_json):
    data = load_report(small_json.parent)
    case = next(c for c in data["cases"] if c.get("priors"))
    case.update(absent=True, repaired=True, repair_changed=7,
                repair_actions=["slice 3: 2: closed loop at level 0.31 with 7 voxels"])
    case["priors"][0].update(absent=True, absent_slices=[0, 9])
    page = render_html_report(data, masks_dir=small_json.parent).html
    assert "closed loop at level 0.31 with 7 voxels" in page and "7 voxels" in page
    assert "absent (no evidence)" in page and "(slices 0, 9)" in page
    untouched = render_html_report(load_report(small_json.parent), masks_dir=small_json.parent).html
    assert "absent (no evidence)" not in untouched and "repair stage" not in untouched
