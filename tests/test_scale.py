"""Threads and shards (issue: scale out): what a cluster array job sees, checked by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from topofix.batch import parse_shard
from topofix.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "sample_data" / "models" / "demo_unet.pt"
IMAGES = ROOT / "sample_data" / "images"


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("text, env, expected", [
    ("0/4", {}, (0, 4)),
    ("3/4", {}, (3, 4)),
    ("auto", {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "5"}, (2, 4)),
    ("auto", {"JOB_COMPLETION_INDEX": "1", "TOPOFIX_SHARDS": "3"}, (1, 3)),
])
def test_shard_specs(text, env, expected):
    assert parse_shard(text, env) == expected


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1", "a/b", "auto"])
def test_bad_shard_specs_are_usage_errors(text, tmp_path):
    with pytest.raises(ValueError):
        parse_shard(text, {})
    result = cli("predict", IMAGES / "img_001.png", "-m", MODEL, "-o", tmp_path / "o", "--shard", text, "-q")
    assert result.exit_code == 2 and "--shard" in result.output and not (tmp_path / "o").exists()


def test_shards_split_the_inputs_and_merge_into_the_sequential_report(tmp_path):
    """Three shards of 7 scans (same folder, run one after the other here; on a cluster at once): every
    scan once, each shard its own journal and report, and the merged report equals an unsharded run's."""
    inputs = sorted(str(p) for p in IMAGES.glob("img_00[1-7].png"))
    common = ["-m", MODEL, "-p", "2=1,1", "--device", "cpu", "-q", "--threads", "1"]
    whole = cli("correct", *inputs, "-o", tmp_path / "whole", *common)
    assert whole.exit_code == 0, whole.output
    out = tmp_path / "sharded"
    for k in range(3):
        result = cli("correct", *inputs, "-o", out, *common, "--shard", f"{k}/3")
        assert result.exit_code == 0, result.output
        shard = json.loads((out / f"topofix_report.shard-{k}-of-3.json").read_text())
        assert [c["path"] for c in shard["cases"]] == inputs[k::3]  # nnU-Net's part_id::num_parts
    assert sorted(n for n in os.listdir(out) if n.endswith(".png")) == [os.path.basename(p) for p in inputs]
    merged = cli("report", out, "--merge", "-q")
    assert merged.exit_code == 0, merged.output
    a = json.loads((out / "topofix_report.json").read_text())
    b = json.loads((tmp_path / "whole" / "topofix_report.json").read_text())
    drop = {"seconds", "loss_curve", "diagrams"}
    strip = lambda c: {k: v for k, v in c.items() if k not in drop and k != "outputs"}  # noqa: E731
    assert [strip(c) for c in a["cases"]] == [strip(c) for c in b["cases"]]
    for name in map(os.path.basename, inputs):  # the masks are the same bytes' worth of voxels
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / name))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "whole" / name))))
    assert (out / "topofix_report.html").exists()


def test_threads_option_sets_torch_and_the_kernels(tmp_path):
    import torch

    from topofix.threads import get_threads, set_threads

    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1 and get_threads() == 1
        with pytest.raises(ValueError):
            set_threads(-2)
    finally:
        torch.set_num_threads(before)
    result = cli("predict", IMAGES / "img_001.png", "-m", MODEL, "-o", tmp_path / "o", "--threads", "0", "-q")
    assert result.exit_code == 2  # below the minimum: a usage error


def test_default_threads_share_the_cores_among_workers(monkeypatch):
    from topofix import threads

    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    assert threads.default_threads(1) == threads.DEFAULT_CAP
    assert threads.default_threads(8) == 2 and threads.default_threads(32) == 1


@pytest.mark.parametrize("command", ["correct", "predict"])
def test_two_workers_write_what_one_process_writes(tmp_path, command):
    """The 27 sample scans (5 broken), 2 worker processes of 1 thread against 1 process of 1 thread:
    the same files, byte for byte, the same report; one journal, every case once."""
    extra = ["-p", "2=1,1", "--per-slice", "z"] if command == "correct" else ["--per-slice", "z"]
    common = [IMAGES, "-m", MODEL, "--device", "cpu", "-q", "--threads", "1", *extra]
    one = cli(command, *common[:1], "-o", tmp_path / "one", *common[1:])
    two = cli(command, *common[:1], "-o", tmp_path / "two", *common[1:], "--workers", "2")
    assert one.exit_code == two.exit_code == 0, two.output
    names = sorted(n for n in os.listdir(tmp_path / "one") if not n.startswith(".") and "topofix_" not in n)
    assert len(names) == 27 and names == sorted(n for n in os.listdir(tmp_path / "two")
                                                 if not n.startswith(".") and "topofix_" not in n)
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    events = [json.loads(line) for line in (tmp_path / "two" / "topofix_journal.jsonl").read_text().splitlines()]
    done = [e["key"] for e in events if e["event"] == "done"]
    assert sorted(done) == names and len(set(done)) == 27
    if command == "correct":
        a = json.loads((tmp_path / "one" / "topofix_report.json").read_text())["cases"]
        b = json.loads((tmp_path / "two" / "topofix_report.json").read_text())["cases"]
        keep = ("key", "status", "priors", "steps", "stop_reason", "met_after", "repaired")
        assert [{k: c[k] for k in keep} for c in a] == [{k: c[k] for k in keep} for c in b]
