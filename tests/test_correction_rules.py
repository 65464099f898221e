"""The rules of the correction loop, on a network whose outputs are scripted step by step.

Why a scripted network: whether ``correct`` picks the right iterate (never worse per
structure, the best step rather than the last, stop on a plateau, survive NaN, leave
absent structures and met slices alone) is a question about the loop, not about
optimisation. A module that replays hand-made label maps, one per forward pass, makes
the answer known in advance; the Betti numbers of every frame are checked with
scipy's labelling (an independent oracle), not with topofix's own function.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import topofix
from topofix import CorrectionSettings, ModelContract

EIGHT = np.ones((3, 3), bool)


def betti_2d(mask: np.ndarray) -> tuple[int, int]:
    """Oracle: components 8-connected, holes = 4-connected background components off the border."""
    b0 = ndimage.label(mask, structure=EIGHT)[1]
    background, n = ndimage.label(np.pad(~mask, 1))
    return b0, n - 1


def ring(shape=(24, 24), centre=(12, 12), r_out=7, r_in=4, gap=False) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = np.hypot(yy - centre[0], xx - centre[1])
    mask = (d <= r_out) & (d > r_in)
    if gap:
        mask &= ~((np.abs(yy - centre[0]) <= 1) & (xx > centre[1]))
    return mask


def blob(shape=(24, 24), at=(3, 3), r=2) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.hypot(yy - at[0], xx - at[1]) <= r


def logits(labels: np.ndarray, channels: int, confidence: float = 4.0) -> np.ndarray:
    """Softmax logits whose argmax is ``labels`` (confident but not saturated)."""
    out = np.zeros((channels, *labels.shape), np.float32)
    for c in range(channels):
        out[c][labels == c] = confidence
    return out


class Replay(torch.nn.Module):
    """Returns frame k at step k (the last frame from then on). Step 0 is two passes: the prediction
    (as ``topofix.predict``, no graph) and the pass with a graph for the first update; both frame 0.

    A stack's frame is ``(S, C, H, W)``; the slices asked for are read from the input, whose
    slice ``z`` holds the value ``z`` (:func:`stack_image`), so a batch of some slices gets theirs.
    """

    def __init__(self, frames: list[np.ndarray]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.frames = [torch.as_tensor(f) for f in frames]
        self.calls = 0  # every forward pass
        self.graph_passes = 0  # the passes with a graph: one per step
        self.batches: list[list[int]] = []  # the slices of every forward pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frame = self.frames[min(self.graph_passes, len(self.frames) - 1)]
        self.calls += 1
        if torch.is_grad_enabled():  # step 0's prediction (no graph) and the pass that follows are one frame
            self.graph_passes += 1
        if frame.ndim == x.ndim:  # (S, C, H, W): a batch of slices
            slices = x[:, 0].flatten(1).mean(1).round().long()
            self.batches.append(slices.tolist())
            frame = frame[slices]
        else:
            frame = frame[None]
        return frame + self.weight * x.mean()  # a path to the parameter: Adam has a gradient


def stack_image(slices: int, size: int = 24) -> np.ndarray:
    """A stack whose slice z is the constant z: :class:`Replay` reads the slices it is asked for."""
    return np.broadcast_to(np.arange(slices, dtype=np.float32)[:, None, None], (slices, size, size)).copy()


CONTRACT = ModelContract(normalize="none", activation="softmax", pad_multiple=1, spatial_dims=2)


def run(frames, priors, image=None, **settings):
    model = Replay(frames)
    image = np.zeros(frames[0].shape[1:], np.float32) if image is None else image
    base = dict(steps=20, lr=1e-3, lam=10.0, patience=1, plateau=None, escalate=0, repair=False, evidence_floor=0.0,
                form="squared")
    base.update(settings)
    return topofix.correct(image, model, priors, settings=CorrectionSettings(**base), contract=CONTRACT), model


def two_label_map(one: np.ndarray, two: np.ndarray) -> np.ndarray:
    labels = np.zeros(one.shape, np.uint8)
    labels[one] = 1
    labels[two] = 2
    return labels


def test_a_structure_that_met_its_prior_is_never_made_worse():
    """Label 1 meets (1,0) at the start; every later step removes label 2's extra blob but splits
    label 1 along a weak line. The summed Betti error does not rise (1 -> 1) and the objective
    falls (the split is a short bar, the removed blob was a long one), so a rule on the sum
    would take the later steps."""
    one = blob(at=(6, 6), r=3)
    start = two_label_map(one, blob(at=(18, 18)) | blob(at=(18, 8)))  # label 2: two blobs (2,0)
    split = one.copy()
    split[:, 6] = False  # label 1 in two pieces
    later = two_label_map(split, blob(at=(18, 18)))
    assert betti_2d(start == 1) == (1, 0) and betti_2d(start == 2) == (2, 0)
    assert betti_2d(later == 1) == (2, 0) and betti_2d(later == 2) == (1, 0)
    weak = logits(later, 3)
    weak[0][one & ~split] = 0.2  # background wins the split line by a little: label 1 at p ~ 0.31 there
    frames = [logits(start, 3)] + [weak] * 30
    result, _ = run(frames, ["1=1,0", "2=1,0"], lam=1.0)
    np.testing.assert_array_equal(result.labels, start)  # nothing eligible but the start
    assert betti_2d(result.labels == 1) == (1, 0)
    assert not result.report.met_after


def test_the_best_step_is_kept_not_the_last():
    """Step 1 mends one of two gaps; every later step has two gaps again (eligible: no worse than
    the start, but a higher objective): step 1 is returned, not the last eligible step."""
    broken_twice = ring(gap=True)
    broken_twice[12:, 11:14] = False  # a second gap: two arcs, (2,0)
    once = ring(gap=True)  # one gap: (1,0)
    elsewhere = once.copy()
    elsewhere[4:10, 11:14] = False  # two gaps again, the second one at the top
    assert betti_2d(broken_twice) == (2, 0) and betti_2d(once) == (1, 0) and betti_2d(elsewhere) == (2, 0)
    frames = [logits(broken_twice.astype(np.uint8), 2), logits(once.astype(np.uint8), 2)]
    frames += [logits(elsewhere.astype(np.uint8), 2)] * 30
    result, _ = run(frames, "1=1,1")
    np.testing.assert_array_equal(result.labels, once)
    assert result.report.chosen_step == 1 and result.report.stop_reason == "max steps"


def test_plateau_stops_a_stuck_scan():
    stuck = ring(gap=True).astype(np.uint8)
    frames = [logits(stuck, 2)] * 100
    result, model = run(frames, "1=1,1", steps=100, plateau=7)
    assert result.report.stop_reason == "plateau"
    assert result.report.steps == 7 and model.calls == 9  # the prediction, then steps 0..7
    result, model = run(frames, "1=1,1", steps=100, plateau=None)
    assert result.report.stop_reason == "max steps" and model.calls == 102  # prediction + steps 0..100


def test_non_finite_outputs_end_the_loop_with_the_last_good_iterate():
    broken = ring(gap=True).astype(np.uint8)
    nan = np.full((2, 24, 24), np.nan, np.float32)
    frames = [logits(broken, 2), logits(broken, 2), nan]
    result, _ = run(frames, "1=1,1")
    assert result.report.stop_reason == "non-finite"
    np.testing.assert_array_equal(result.labels, broken)
    assert np.isfinite(result.probabilities).all()


def test_no_evidence_no_invention():
    """A slice with no structure (max probability 0.1 < floor): left byte-identical, reported absent;
    the network is not even fine-tuned (one forward pass)."""
    faint = np.zeros((2, 24, 24), np.float32)
    faint[1] = np.log(0.1 / 0.9)  # channel 1 at probability 0.1 everywhere
    result, model = run([faint] * 10, "1=1,1", evidence_floor=0.2)
    assert model.calls == 1 and result.report.stop_reason == "absent"
    assert result.report.absent and result.report.priors[0].absent
    assert not result.report.met_after  # the prior expects a ring: absent is reported, not hidden
    assert not result.labels.any()
    np.testing.assert_array_equal(result.probabilities, result.original_probabilities)
    # the prior allows absence: met
    result, _ = run([faint] * 10, "1=1,1|0,0", evidence_floor=0.2)
    assert result.report.met_after and result.report.stop_reason == "already met"
    # above the floor the loop does run (the faint structure may be real)
    result, model = run([faint] * 10, "1=1,1", evidence_floor=0.05, steps=3)
    assert model.calls == 5  # the prediction, then steps 0..3


def test_slices_that_meet_their_prior_are_not_changed_for_their_neighbours():
    """Per-slice stack: slice 1 is broken, slices 0 and 2 meet the prior. Every later frame
    fixes slice 1 but damages 0 and 2: the output takes slice 1 from it, 0 and 2 from the start."""
    good, broken = ring().astype(np.uint8), ring(gap=True).astype(np.uint8)
    damaged = ring(gap=True).astype(np.uint8)
    start = np.stack([good, broken, good])
    later = np.stack([damaged, good, damaged])
    assert [betti_2d(s.astype(bool)) for s in start] == [(1, 1), (1, 0), (1, 1)]
    frames = [np.stack([logits(s, 2) for s in start])] + [np.stack([logits(s, 2) for s in later])] * 30
    model = Replay(frames)  # one forward pass per step
    settings = CorrectionSettings(steps=5, lr=1e-3, lam=10.0, patience=1, repair=False)
    result = topofix.correct(stack_image(3), model, "1=1,1", settings=settings,
                             contract=CONTRACT, per_slice="z")
    expected = np.stack([good, good, good])
    np.testing.assert_array_equal(result.labels, expected)
    np.testing.assert_array_equal(result.probabilities[:, 0], result.original_probabilities[:, 0])
    np.testing.assert_array_equal(result.probabilities[:, 2], result.original_probabilities[:, 2])
    assert result.report.met_after and result.report.priors[0].failing_slices_before == [1]


def test_only_the_broken_slices_of_a_stack_go_through_the_network_while_fine_tuning():
    """Slices 1 and 3 of five are broken: after the first pass over the stack, every pass runs
    those two only (a stack with one broken slice costs about what a 2D slice does)."""
    good, broken = ring().astype(np.uint8), ring(gap=True).astype(np.uint8)
    start = np.stack([good, broken, good, broken, good])
    frames = [np.stack([logits(s, 2) for s in start])] * 40
    model = Replay(frames)
    settings = CorrectionSettings(steps=4, lr=1e-3, lam=10.0, patience=1, plateau=None, repair=False)
    result = topofix.correct(stack_image(5), model, "1=1,1", settings=settings, contract=CONTRACT, per_slice="z")
    assert model.batches[0] == [0, 1, 2, 3, 4]
    assert model.batches[1:] == [[1, 3]] * 5  # the graph for step 1, then steps 1..4
    assert result.report.steps == 4 and not result.report.met_after
    np.testing.assert_array_equal(result.labels, start)


@pytest.mark.parametrize("floor", [0.0, 0.3])
def test_report_records_absent_slices_of_a_stack(floor):
    """A stack whose first slice has nothing (probability 0.25 at most): absent only above that floor."""
    broken = ring(gap=True).astype(np.uint8)
    empty = np.zeros((2, 24, 24), np.float32)
    empty[1] = np.log(0.25 / 0.75)
    model = Replay([np.stack([empty, logits(broken, 2)])] * 40)
    settings = CorrectionSettings(steps=2, lr=1e-3, lam=10.0, patience=1, repair=False, evidence_floor=floor)
    result = topofix.correct(stack_image(2), model, "1=1,1", settings=settings,
                             contract=CONTRACT, per_slice="z")
    prior = result.report.priors[0]
    assert prior.absent_slices == ([0] if floor > 0.25 else [])
    assert not result.labels[0].any()  # an empty slice of a stack is never filled in


def test_escalation_raises_the_learning_rate_only_after_a_plateau():
    """Stuck scan, plateau 3, two escalations by 10: steps 0-3 at lr, 3-6 at 10 lr, 6-9 at 100 lr, then
    stop. Adam moves a parameter by about lr per step whatever the gradient's size, so the replayed
    network's weight trajectory shows the learning rate in force."""
    stuck = ring(gap=True).astype(np.uint8)
    model = Replay([logits(stuck, 2)] * 100)
    weights = []
    model.register_forward_hook(lambda m, i, o: weights.append(float(m.weight.detach())))
    image = np.ones((24, 24), np.float32)  # a non-zero input: the weight gets a gradient
    settings = CorrectionSettings(steps=100, lr=1e-3, lam=10.0, form="squared", patience=1, plateau=3, escalate=2,
                                  escalate_factor=10.0, repair=False, evidence_floor=0.0)
    result = topofix.correct(image, model, "1=1,1", settings=settings, contract=CONTRACT)
    assert result.report.stop_reason == "plateau" and result.report.steps == 9 and model.calls == 11
    moves = np.abs(np.diff(weights[1:]))  # after the prediction (same weights as step 0's pass)
    np.testing.assert_allclose(moves[:3], 1e-3, rtol=0.2)
    np.testing.assert_allclose(moves[3:6], 1e-2, rtol=0.2)
    np.testing.assert_allclose(moves[6:9], 1e-1, rtol=0.2)


def test_a_structure_with_evidence_is_not_fixed_by_erasing_it():
    """'1=1,1|0,0' is met by an empty mask, but a broken ring the network does see must not be
    'corrected' by erasing it (found on the hard benchmark: an escalated step emptied a gap slice,
    Dice 0.82 -> 0). Only the evidence floor decides absence."""
    broken = ring(gap=True).astype(np.uint8)
    empty = np.zeros_like(broken)
    frames = [logits(broken, 2)] + [logits(empty, 2)] * 30
    result, _ = run(frames, "1=1,1|0,0")
    np.testing.assert_array_equal(result.labels, broken)
    assert not result.report.met_after and betti_2d(result.labels.astype(bool)) == (1, 0)


def test_repair_stage_finishes_what_fine_tuning_left_and_is_reported():
    """A ring whose gap stays at p = 0.3 at every step (fine-tuning is stuck): the repair stage
    closes it along the gap (the loop exists at level 0.3, above the floor 0.2); without the
    stage the ring stays open."""
    broken = ring(gap=True)
    gap = ring() & ~broken
    frame = logits(broken.astype(np.uint8), 2)
    frame[1][gap] = np.log(0.3 / 0.7)  # channel 1 at p = 0.3 in the gap: argmax background
    frame[0][gap] = 0.0
    result, _ = run([frame] * 10, "1=1,1", repair=True, evidence_floor=0.2, steps=5)
    report = result.report
    assert report.repaired and report.repair_changed > 0 and report.met_after
    assert betti_2d(result.labels.astype(bool)) == (1, 1)
    changed = result.labels.astype(bool) != broken
    assert changed.sum() == report.repair_changed and (gap | ~changed).all()  # only gap pixels changed
    assert any("closed loop" in a for a in report.repair_actions)
    result, _ = run([frame] * 10, "1=1,1", repair=False, evidence_floor=0.2, steps=5)
    assert not result.report.repaired and betti_2d(result.labels.astype(bool)) == (1, 0)


# --------------------------------------------------------------------------- exact boundaries


@pytest.mark.parametrize("floor, absent", [(0.5, False), (float(np.nextafter(0.5, 1.0)), True)])
def test_evidence_exactly_at_the_floor_counts_as_evidence(floor, absent):
    """The floor is inclusive: a structure whose highest probability equals the floor is corrected,
    one a hair below it is absent. Equal softmax logits give exactly 0.5 (argmax: background)."""
    frame = np.zeros((2, 24, 24), np.float32)
    frame[1] = -4.0  # label 1 at p ~ 0.018 everywhere...
    frame[1][ring(gap=True)] = 0.0  # ...and at exactly 0.5 on a broken ring (a tie: argmax gives background)
    probability = torch.softmax(torch.as_tensor(frame), 0)[1].max()
    assert float(probability) == 0.5
    result, model = run([frame] * 10, "1=1,1", evidence_floor=floor, steps=3)
    assert result.report.absent is absent
    assert result.report.stop_reason == ("absent" if absent else "max steps")
    assert model.calls == (1 if absent else 5)  # absent: the prediction only; else prediction + steps 0..3


def test_an_iterate_exactly_as_broken_as_the_start_is_eligible():
    """Never worse means *no higher* Betti error (``<=``), not lower: a later step with the same
    broken mask and a lower objective (the gap's probability risen from 0.02 to 0.45, the loop's bar
    longer) is kept, probabilities included. With a strict rule nothing but a fix would be eligible."""
    broken = ring(gap=True)
    gap = ring() & ~broken
    start = logits(broken.astype(np.uint8), 2)
    closer = start.copy()
    closer[0][gap] = 0.2  # background still wins the gap (p(label 1) = 0.45): the same Betti numbers
    closer[1][gap] = 0.0
    assert betti_2d(np.argmax(closer, 0) == 1) == betti_2d(broken) == (1, 0)
    result, _ = run([start] + [closer] * 30, "1=1,1", steps=5)
    report = result.report
    assert report.stop_reason == "max steps" and not report.met_after
    assert report.chosen_step == 1  # the first step at the lowest objective
    np.testing.assert_array_equal(result.labels, broken)
    np.testing.assert_allclose(result.probabilities, torch.softmax(torch.as_tensor(closer), 0).numpy(), atol=1e-6)


# --------------------------------------------------------------------------- connectivity


def diamond(shape=(24, 24), centre=(12, 12), r=6) -> np.ndarray:
    """A one-pixel-thin loop whose pixels touch only at corners: a ring in the default ("full")
    connectivity (foreground 8-connected), whose inside, 4-connected, does not leak out."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.abs(yy - centre[0]) + np.abs(xx - centre[1]) == r


def test_a_ring_closed_through_corners_meets_its_prior_and_is_left_alone():
    """Judged by scipy's labelling, not by topofix: the loop is closed, so correct must say so and
    not fine-tune (a background taken 8-connected, as the foreground, would see an open ring)."""
    loop = diamond()
    assert betti_2d(loop) == (1, 1)
    result, model = run([logits(loop.astype(np.uint8), 2)] * 10, "1=1,1")
    assert result.report.met_before and result.report.stop_reason == "already met" and model.calls == 1
    np.testing.assert_array_equal(result.labels, loop)


def test_the_loop_stops_when_a_thin_ring_closes():
    """Step 1 closes a one-pixel gap of the thin ring: met there, returned, the loop stops."""
    loop = diamond()
    broken = loop.copy()
    broken[6, 12] = False  # the top corner
    assert betti_2d(broken) == (1, 0)
    frames = [logits(broken.astype(np.uint8), 2)] + [logits(loop.astype(np.uint8), 2)] * 30
    result, model = run(frames, "1=1,1")
    assert result.report.stop_reason == "met" and result.report.met_after and result.report.chosen_step == 1
    np.testing.assert_array_equal(result.labels, loop)
    assert betti_2d(result.labels.astype(bool)) == (1, 1)
