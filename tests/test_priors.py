"""Prior syntax shared by every command."""

from __future__ import annotations

import numpy as np
import pytest

from topofix import Prior, PriorError, build_priors, parse_betti, parse_prior


@pytest.mark.parametrize(
    "spec, expected",
    [("1", (1,)), ("1,1", (1, 1)), ("1,1,0", (1, 1, 0)), (" 2 , 0 ", (2, 0)), ("0,0,3", (0, 0, 3))],
)
def test_parse_betti(spec, expected):
    assert parse_betti(spec) == expected


@pytest.mark.parametrize("spec", ["", "1,", "a,b", "1,1,0,0", "1.5,0", "-1,0", "1;1", "1,,1"])
def test_malformed_betti_is_refused_with_a_clear_message(spec):
    with pytest.raises(PriorError) as info:
        parse_betti(spec)
    message = str(info.value)
    assert "\n" not in message and repr(spec) in message


@pytest.mark.parametrize(
    "spec, labels, betti",
    [("2=1,1", (2,), (1, 1)), ("1+2=1,0", (1, 2), (1, 0)), ("3=1,0,0", (3,), (1, 0, 0))],
)
def test_parse_prior(spec, labels, betti):
    prior = parse_prior(spec)
    assert prior.labels == labels and prior.betti == betti
    assert parse_prior(prior.spec) == prior  # round trip through the syntax


@pytest.mark.parametrize("spec", ["2", "2=", "=1,1", "a=1,1", "0=1,0", "1+1=1,0", "2=1,1=1", "1+=1,0"])
def test_malformed_prior_is_refused(spec):
    with pytest.raises(PriorError, match="malformed"):
        parse_prior(spec)


def test_third_number_must_be_zero_for_2d_masks():
    assert Prior(betti=(1, 1, 0)).expected(2) == (1, 1)
    assert Prior(betti=(1, 1)).expected(3) == (1, 1, 0)
    with pytest.raises(PriorError, match="2D"):
        Prior(betti=(1, 0, 1)).expected(2)


def test_build_priors_combines_betti_label_and_repeated_priors():
    priors = build_priors("1,1", "2", ["1+3=2,0", "3=1,0"])
    assert [p.name for p in priors] == ["2", "1+3", "3"]
    assert priors[0] == Prior(betti=(1, 1), labels=(2,))
    # nothing at all: measure the foreground
    assert build_priors() == [Prior()]
    # --label alone: measure that label
    assert build_priors(label="2") == [Prior(labels=(2,))]
    # a tuple of ints works from Python
    assert build_priors((1, 0)) == [Prior(betti=(1, 0))]
    with pytest.raises(PriorError, match="more than one prior"):
        build_priors("1,1", "2", ["2=1,0"])


def test_select_labels_and_unions():
    labels = np.array([[0, 1, 2, 3]])
    assert Prior().select(labels).tolist() == [[False, True, True, True]]
    assert Prior(labels=(2,)).select(labels).tolist() == [[False, False, True, False]]
    assert Prior(labels=(1, 3)).select(labels).tolist() == [[False, True, False, True]]


def test_is_met():
    ring = Prior(betti=(1, 1))
    assert ring.is_met((1, 1)) and not ring.is_met((1, 0)) and ring.is_met((1, 1, 0))
    assert not ring.is_met((1, 1, 1))
    assert Prior().is_met((5, 3))  # report-only priors are always met
