"""The hard quality benchmark (bench/quality): generator determinism, ground truth, the baseline."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
QUALITY = ROOT / "bench" / "quality"


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, QUALITY / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gen():
    return _load("make_hard_set")


@pytest.fixture(scope="module")
def runner():
    return _load("run_quality")


def _betti(mask: np.ndarray) -> tuple[int, int]:
    """8-connected foreground components, 4-connected background holes (border = outside)."""
    mask = np.asarray(mask, bool)
    _, b0 = ndimage.label(mask, structure=np.ones((3, 3), bool))
    _, nbg = ndimage.label(np.pad(~mask, 1, constant_values=True), structure=ndimage.generate_binary_structure(2, 1))
    return b0, nbg - 1


@pytest.mark.parametrize("seed,kind", [(71021, "gap"), (71025, "extra_ring"), (71033, "filled_cavity"),
                                       (71001, "faint_blood")])
def test_generator_is_deterministic_and_ring(gen, seed, kind):
    img1, lab1 = gen.make_2d(seed, kind)
    img2, lab2 = gen.make_2d(seed, kind)
    assert img1.tobytes() == img2.tobytes() and lab1.tobytes() == lab2.tobytes()
    for sigma in gen.NOISE_LEVELS:
        assert gen.add_noise(img1, sigma, seed).tobytes() == gen.add_noise(img2, sigma, seed).tobytes()
    assert _betti(lab1 == gen.MYO) == (1, 1)


def test_manifest_ground_truth(gen):
    """Every committed label: MYO one ring (1,1) where the manifest says so, no MYO elsewhere."""
    manifest = json.loads((QUALITY / "data" / "MANIFEST.json").read_text(encoding="utf-8"))
    kinds = set()
    for case in manifest["cases"]:
        lab = gen.read_array(QUALITY / "data" / case["label"])
        assert gen.array_sha256(lab) == case["label_sha256"]
        for z, sl in enumerate(lab[None] if lab.ndim == 2 else lab):
            kind = case["slice_kinds"][z]
            kinds.add(kind)
            want = (1, 1) if case["gt_has_myo"][z] else (0, 0)
            assert _betti(sl == gen.MYO) == want, (case["case"], z)
            assert case["gt_has_myo"][z] == (kind != "no_heart")
        if case["dim"] == 3:  # the ends of a stack are beyond the heart
            assert case["slice_kinds"][0] == case["slice_kinds"][-1] == "no_heart"
    assert kinds == set(gen.HARD_KINDS) | {"none"}


def test_stack_is_deterministic(gen):
    name, seed, hard = gen.STACKS[0]
    a = gen.make_stack_case(seed, hard)
    b = gen.make_stack_case(seed, hard)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
    assert not (a[1][0] == gen.MYO).any() and not (a[1][-1] == gen.MYO).any()


def test_keep_largest_fill_known_answer(runner):
    # a MYO ring (with a small extra hole in its wall) around an LV, plus a stray MYO piece
    lab = np.zeros((20, 20), np.uint8)
    lab[3:16, 3:16] = 2
    lab[6:13, 6:13] = 3  # cavity: the largest hole, kept
    lab[4, 4] = 0  # a 1-pixel hole inside the wall: filled
    lab[17:19, 17:19] = 2  # a stray piece: removed
    prob = np.zeros((4, 20, 20), np.float32)
    prob[0] = 0.2
    prob[1, 17:19, 17:19] = 0.7  # the stray piece's most probable other label is RV
    out = runner.keep_largest_fill_slice(lab, prob)
    want = lab.copy()
    want[4, 4] = 2
    want[17:19, 17:19] = 1
    assert np.array_equal(out, want)
    assert _betti(out == 2) == (1, 1)
    # no MYO: unchanged
    empty = np.zeros((8, 8), np.uint8)
    assert np.array_equal(runner.keep_largest_fill_slice(empty, np.zeros((4, 8, 8))), empty)


def test_settings_parsing(runner):
    got = runner.parse_settings("lr=3e-4,steps=20,form=linear,roi_threshold=none")
    assert got == {"lr": 3e-4, "steps": 20, "form": "linear", "roi_threshold": None}
    assert {"network", "keep_largest_fill", "reference", "topofix_v1", "topofix"} <= set(runner.METHODS)
