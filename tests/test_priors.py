"""Prior syntax shared by every command."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topofix import Prior, PriorError, build_priors, parse_betti, parse_prior
from topofix.priors import parse_alternatives


@pytest.mark.parametrize(
    "spec, expected",
    [("0", (0,)), ("1,1", (1, 1)), ("1,1,0", (1, 1, 0)), (" 2 , 0 ", (2, 0)), ("0,0,3", (0, 0, 3))],
)
def test_parse_betti(spec, expected):
    assert parse_betti(spec) == expected


@pytest.mark.parametrize("spec", ["", "1,", "a,b", "1,1,0,0", "1.5,0", "-1,0", "1;1", "1,,1", "1", "2"])
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


# --------------------------------------------------------------------------- #
# Alternatives: "2=1,1|0,0" (a ring, or absent)
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize(
    "spec, labels, alternatives",
    [
        ("2=1,1|0,0", (2,), ((1, 1), (0, 0))),
        ("1+2=1,0|2,0|0", (1, 2), ((1, 0), (2, 0), (0,))),
        ("3= 1,0,0 | 1,0,1 ", (3,), ((1, 0, 0), (1, 0, 1))),
        ("2=1,1|1,2", (2,), ((1, 1), (1, 2))),
    ],
)
def test_parse_prior_with_alternatives(spec, labels, alternatives):
    prior = parse_prior(spec)
    assert prior.labels == labels and prior.alternatives == alternatives
    assert prior.betti == alternatives[0]  # betti stays the first alternative
    assert parse_prior(prior.spec) == prior
    assert prior.to_dict()["alternatives"] == [list(a) for a in alternatives]


def test_spec_writes_alternatives_back():
    assert parse_prior("2=1,1|0,0").spec == "2=1,1|0,0"
    assert parse_prior("2 = 1, 1 | 0,0".replace(" = ", "=")).spec == "2=1,1|0,0"
    assert Prior(alternatives=((1, 1), (0, 0)), labels=(2,)).spec == "2=1,1|0,0"
    assert Prior(betti=(1, 1), labels=(2,)).spec == "2=1,1"


# two or three numbers, or a lone 0 (absent): the accepted forms
_alternative = st.one_of(st.lists(st.integers(0, 4), min_size=2, max_size=3).map(tuple), st.just((0,)))


def _stripped(values):
    values = list(values)
    while values and values[-1] == 0:
        values.pop()
    return tuple(values)


@settings(max_examples=150, deadline=None)
@given(
    labels=st.lists(st.integers(1, 9), min_size=1, max_size=3, unique=True).map(tuple),
    alternatives=st.lists(_alternative, min_size=1, max_size=4, unique_by=_stripped).map(tuple),
)
def test_round_trip_through_the_syntax(labels, alternatives):
    spec = "+".join(map(str, labels)) + "=" + "|".join(",".join(map(str, a)) for a in alternatives)
    prior = parse_prior(spec)
    assert prior.labels == labels and prior.alternatives == alternatives and prior.betti == alternatives[0]
    assert prior.spec == spec and parse_prior(prior.spec) == prior
    # the --betti form reads the same alternatives
    assert build_priors(prior.betti_spec, "+".join(map(str, labels))) == [prior]
    assert prior.allows_absent == any(not any(a) for a in alternatives)


@pytest.mark.parametrize(
    "spec, bad",
    [
        ("2=1,1|", "alternative 2 of 2 is empty"),
        ("2=|1,1", "alternative 1 of 2 is empty"),
        ("2=1,1||0,0", "alternative 2 of 3 is empty"),
        ("2=1,1|1,1", "'1,1' repeats '1,1'"),
        ("2=1,1|1,1,0", "'1,1,0' repeats '1,1'"),
        ("2=1,1|a", "'a'"),
        ("2=1,1|1,2,3,4", "'1,2,3,4'"),
        ("2=1,1|-1,0", "'-1,0'"),
        ("2|3=1,1", "'2|3'"),
    ],
)
def test_malformed_alternatives_are_refused_on_one_line_naming_the_bad_part(spec, bad):
    with pytest.raises(PriorError) as info:
        parse_prior(spec)
    message = str(info.value)
    assert "\n" not in message and "malformed" in message and bad in message, message
    if "=" in spec and "|" in spec.split("=")[1]:
        assert repr(spec) in message  # the whole prior is named too


def test_malformed_betti_alternatives_from_the_betti_option():
    with pytest.raises(PriorError, match=r"'1,1\|': alternative 2 of 2 is empty"):
        build_priors("1,1|", "2")
    assert parse_alternatives("1,0|0") == ((1, 0), (0,))


def test_mixed_lengths_are_fine_missing_numbers_are_zero():
    prior = parse_prior("2=1,0|0,1,0|0,0,1")
    assert prior.options(3) == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    with pytest.raises(PriorError, match=r"alternative 0,0,1 of prior 2=1,0\|0,1,0\|0,0,1 asks for beta2=1"):
        prior.options(2)  # refused as for a single prior: a 2D mask has no cavities
    assert parse_prior("2=1,1|0").options(2) == [(1, 1), (0, 0)]


def test_prior_stays_backward_compatible():
    old = Prior((1, 1), (2,))
    assert old.alternatives == ((1, 1),) and old.betti == (1, 1) and old.labels == (2,)
    assert old == Prior(labels=(2,), alternatives=((1, 1),))
    assert old.to_dict() == {"name": "2", "labels": [2], "betti": [1, 1], "alternatives": [[1, 1]]}
    two = Prior(alternatives=[[1, 1], [0, 0]], labels=(2,))  # lists are normalised to tuples
    assert two.betti == (1, 1) and two.alternatives == ((1, 1), (0, 0)) and hash(two) is not None
    assert two.expected(3) == (1, 1, 0)  # expected() is the first alternative, as losses use it
    assert Prior(betti=(1, 1), alternatives=((1, 1), (0, 0))).alternatives == ((1, 1), (0, 0))
    with pytest.raises(PriorError, match="first alternative"):
        Prior(betti=(0, 0), alternatives=((1, 1), (0, 0)))
    report_only = Prior(labels=(2,))
    assert report_only.alternatives == () and report_only.options(2) == []
    assert report_only.to_dict()["alternatives"] is None and not report_only.allows_absent


def test_build_priors_reads_alternatives():
    assert build_priors("1,1|0,0", "2") == [Prior(labels=(2,), alternatives=((1, 1), (0, 0)))]
    assert build_priors([(1, 1), (0, 0)]) == [Prior(alternatives=((1, 1), (0, 0)))]
    assert build_priors((1, 0)) == [Prior(betti=(1, 0))]
    with pytest.raises(PriorError, match="repeats"):
        build_priors([(1, 1), (1, 1, 0)])


def test_is_met_error_nearest_by_hand():
    ring_or_absent = parse_prior("2=1,1|0,0")
    assert ring_or_absent.allows_absent and not parse_prior("2=1,1").allows_absent
    cases = {  # measured: (met, error, nearest)
        (1, 1): (True, 0, (1, 1)),
        (0, 0): (True, 0, (0, 0)),
        (1, 0): (False, 1, (1, 1)),  # tie (1 to either): the first listed
        (0, 1): (False, 1, (1, 1)),  # tie again
        (2, 1): (False, 1, (1, 1)),
        (3, 0): (False, 3, (1, 1)),  # 2+1 to (1,1), 3+0 to (0,0): a tie, the first
        (1, 1, 0): (True, 0, (1, 1, 0)),
        (0, 0, 1): (False, 1, (0, 0, 0)),
    }
    for betti, (met, error, nearest) in cases.items():
        assert ring_or_absent.is_met(betti) is met, betti
        assert ring_or_absent.error(betti) == error, betti
        assert ring_or_absent.nearest(betti) == nearest, betti
    # the order of the alternatives breaks ties, nothing else
    absent_or_ring = parse_prior("2=0,0|1,1")
    assert absent_or_ring.nearest((1, 0)) == (0, 0) and absent_or_ring.nearest((2, 1)) == (1, 1)
    # a later alternative wins when it is strictly nearer
    two_or_ring = parse_prior("2=3,0|1,1")
    assert two_or_ring.nearest((1, 0)) == (1, 1) and two_or_ring.error((1, 0)) == 1
    assert two_or_ring.nearest((4, 0)) == (3, 0) and two_or_ring.error((4, 0)) == 1
    # report-only: always met, no error, nothing to aim for
    assert Prior().is_met((5, 3)) and Prior().error((5, 3)) == 0 and Prior().nearest((5, 3)) is None
    # a single alternative: error is the plain L1 distance
    assert parse_prior("2=1,1").error((3, 0)) == 3


@settings(max_examples=150, deadline=None)
@given(
    alternatives=st.lists(st.lists(st.integers(0, 4), min_size=2, max_size=2).map(tuple),
                          min_size=1, max_size=4, unique=True),
    betti=st.lists(st.integers(0, 6), min_size=2, max_size=2).map(tuple),
)
def test_error_and_nearest_agree_with_a_brute_force_definition(alternatives, betti):
    prior = Prior(labels=(2,), alternatives=tuple(alternatives))
    distances = [abs(betti[0] - a[0]) + abs(betti[1] - a[1]) for a in alternatives]
    assert prior.error(betti) == min(distances)
    assert prior.nearest(betti) == alternatives[distances.index(min(distances))]
    assert prior.is_met(betti) == (betti in alternatives) == (prior.error(betti) == 0)
    assert prior.narrowed(prior.nearest(betti)).error(betti) == prior.error(betti)


def test_narrowed_keeps_the_structure_and_one_alternative():
    prior = parse_prior("1+2=1,1|0,0")
    absent = prior.narrowed((0, 0))
    assert absent == Prior(betti=(0, 0), labels=(1, 2)) and absent.alternatives == ((0, 0),)
    assert absent.spec == "1+2=0,0"
    assert prior.narrowed((1, 1, 0)) == Prior(betti=(1, 1), labels=(1, 2))  # padded, as nearest() gives it
    assert prior.narrowed(prior.nearest((1, 0, 0))).betti == (1, 1)
    with pytest.raises(PriorError, match="not an alternative"):
        prior.narrowed((2, 0))


@pytest.mark.parametrize("spec", ["1", "2", "1,1|1", "3"])
def test_one_nonzero_number_is_refused_everywhere(spec):
    """The usage says B0,B1[,B2]: '1' would silently mean 1,0 (issue 11, point 7). A lone 0 is absent."""
    with pytest.raises(PriorError, match="give at least B0,B1"):
        build_priors(spec, "2")
    with pytest.raises(PriorError, match="give at least B0,B1"):
        parse_prior(f"2={spec}")
    assert parse_prior("2=1,1|0").alternatives == ((1, 1), (0,))
