"""Turning score averages into a weight vector the chain accepts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tnode.plugins.validator.weights import WeightsUnsatisfiable, cap_shares, compute_weights, tells_apart
from tnode.weights import U16_MAX


def test_weights_are_proportional_to_scores_and_skip_the_own_uid() -> None:
    v = compute_weights({0: 0.9, 1: 0.8, 2: 0.4, 3: 0.0}, n=4, own_uid=0)
    assert v.uids == (1, 2)
    assert v.values == (U16_MAX, round(U16_MAX / 2))
    assert sum(v.shares) == pytest.approx(1.0)


def test_nothing_scored_gives_uniform_weights() -> None:
    v = compute_weights({}, n=4, own_uid=2)
    assert v.uids == (0, 1, 3) and set(v.values) == {U16_MAX}


def test_negative_and_non_finite_scores_count_as_zero() -> None:
    v = compute_weights({1: -1.0, 2: float("nan"), 3: 0.5}, n=4, own_uid=0)
    assert v.uids == (3,)


def test_min_allowed_weights_pads_with_the_smallest_weights() -> None:
    v = compute_weights({1: 1.0}, n=5, own_uid=0, min_allowed_weights=3)
    assert v.uids == (1, 2, 3)
    assert v.values[0] == U16_MAX and 0 < v.values[1] <= 3 and v.values[1] == v.values[2]


def test_max_weight_limit_caps_every_share() -> None:
    v = compute_weights({1: 1.0, 2: 0.1, 3: 0.1, 4: 0.0}, n=5, own_uid=0, max_weight_limit=0.4)
    assert max(v.shares) <= 0.4 + 1 / U16_MAX
    assert v.shares[0] == pytest.approx(0.4, abs=1e-4)


def test_rules_that_cannot_be_met_are_reported() -> None:
    with pytest.raises(WeightsUnsatisfiable):
        compute_weights({1: 1.0}, n=3, own_uid=0, max_weight_limit=0.3)
    with pytest.raises(WeightsUnsatisfiable):
        compute_weights({1: 1.0}, n=3, own_uid=0, min_allowed_weights=3)
    with pytest.raises(WeightsUnsatisfiable):
        compute_weights({}, n=1, own_uid=0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=60), st.floats(0.05, 1.0))
def test_capped_shares_sum_to_one_and_respect_the_cap(weights: list[float], limit: float) -> None:
    if limit * len(weights) < 1:
        with pytest.raises(WeightsUnsatisfiable):
            cap_shares(weights, limit)
        return
    shares = cap_shares(weights, limit)
    assert sum(shares) == pytest.approx(1.0)
    assert max(shares) <= limit + 1e-9


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=300), st.floats(0.01, 1.0), st.integers(1, 5))
def test_quantized_vectors_meet_the_chain_rules(weights: list[float], limit: float, min_allowed: int) -> None:
    n = len(weights) + 1
    try:
        v = compute_weights(dict(enumerate(weights, start=1)), n=n, own_uid=0, min_allowed_weights=min_allowed,
                            max_weight_limit=limit)
    except WeightsUnsatisfiable:
        assert limit * len(weights) < 1 or min_allowed > len(weights)
        return
    assert len(v.uids) >= min(min_allowed, n)
    assert max(v.values) == U16_MAX and all(0 < x <= U16_MAX for x in v.values)
    if len(v.uids) > 1:
        assert max(v.values) / sum(v.values) <= limit + 1 / U16_MAX
    # The chain's own check (the one tnode.weights function every chain backend calls) accepts it as is.
    assert v.validate(n=n, min_allowed_weights=min_allowed, max_weight_limit=limit) == v


def test_tells_apart_counts_scores_as_the_weights_do() -> None:
    assert not tells_apart({}, n=4, own_uid=0)
    assert not tells_apart({0: 0.9, 1: 0.0, 2: -1.0, 3: float("nan")}, n=4, own_uid=0)  # own uid, ≤ 0, NaN
    assert not tells_apart({1: float("inf"), 7: 0.5}, n=4, own_uid=0)  # inf counts 0; uid 7 is not a uid of 4
    assert tells_apart({1: 0.0, 2: 1e-9}, n=4, own_uid=0)
