"""Shapley values over mixtures of miners: constructed games with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scoring_helpers import V, confident, task
from tnode.plugins.scoring.config import ShapleyConfig
from tnode.plugins.scoring.shapley import (
    ShapleyScorer,
    coalition_value,
    exact_shapley,
    monte_carlo_shapley,
    rotated_permutations,
    scores_from_values,
)

P = 16
GOOD, BAD = 0.9, 0.001
first_half = np.r_[np.full(P // 2, GOOD), np.full(P // 2, BAD)]
second_half = first_half[::-1].copy()
everywhere = np.full(P, GOOD)


def mc(probs: np.ndarray, permutations: int = 400, truncation: float = 0.0, seed: int = 1) -> np.ndarray:
    values, _ = monte_carlo_shapley(probs, V, permutations, truncation, np.random.default_rng(seed))
    return values


def test_value_of_a_coalition_is_loss_reduction_against_uniform() -> None:
    probs = np.stack([everywhere])
    assert coalition_value(probs, [0], V) == pytest.approx(math.log(V) + math.log(GOOD))
    assert coalition_value(probs, [], V) == 0.0


@pytest.mark.parametrize("solver", ["exact", "monte_carlo"])
def test_efficiency_values_sum_to_the_grand_coalition(solver: str) -> None:
    rng = np.random.default_rng(5)
    probs = rng.uniform(0.001, 0.9, size=(6, P))
    phi = exact_shapley(probs, V) if solver == "exact" else mc(probs, permutations=50)
    assert phi.sum() == pytest.approx(coalition_value(probs, range(6), V), rel=1e-9)


def test_efficiency_holds_within_the_truncation_tolerance() -> None:
    rng = np.random.default_rng(6)
    probs = rng.uniform(0.3, 0.9, size=(12, P))
    grand = coalition_value(probs, range(12), V)
    phi = mc(probs, permutations=64, truncation=0.02)
    assert abs(phi.sum() - grand) <= 0.02 * abs(grand) + 1e-12


def test_symmetric_players_get_equal_values() -> None:
    probs = np.stack([first_half, first_half, second_half])
    phi = exact_shapley(probs, V)
    assert phi[0] == pytest.approx(phi[1])
    approx = mc(probs, permutations=600)
    assert approx[0] == pytest.approx(approx[1], abs=0.05 * abs(phi[0]))


def test_monte_carlo_agrees_with_exact() -> None:
    rng = np.random.default_rng(7)
    probs = rng.uniform(0.001, 0.9, size=(7, P))
    exact = exact_shapley(probs, V)
    approx = mc(probs, permutations=700)
    assert np.abs(approx - exact).max() < 0.02 * np.abs(exact).max()


def test_rotations_put_every_player_at_every_position() -> None:
    perms = rotated_permutations(5, 10, np.random.default_rng(0))
    assert perms.shape == (10, 5)
    assert all(sorted(row) == list(range(5)) for row in perms.tolist())
    for position in range(5):
        assert sorted(perms[:5, position].tolist()) == list(range(5))


def test_a_redundant_copy_adds_nothing_and_splits_the_value() -> None:
    alone = coalition_value(np.stack([first_half]), [0], V)
    probs = np.stack([first_half, first_half])
    phi = exact_shapley(probs, V)
    assert phi.sum() == pytest.approx(alone)  # the pair is worth what one is worth
    assert phi[1] == pytest.approx(alone / 2)


def test_a_complementary_miner_adds_much() -> None:
    copy = exact_shapley(np.stack([first_half, first_half]), V)[1]
    complement = exact_shapley(np.stack([first_half, second_half]), V)[1]
    alone = coalition_value(np.stack([first_half]), [0], V)
    both = coalition_value(np.stack([first_half, second_half]), [0, 1], V)
    assert both > 1.5 * alone
    assert complement > 2 * copy


def test_a_miner_worse_than_uniform_gets_a_negative_value_and_score_zero() -> None:
    garbage = np.full(P, 1e-6)
    phi = exact_shapley(np.stack([everywhere, garbage]), V)
    assert phi[1] < 0 < phi[0]
    scores = scores_from_values(phi)
    assert scores[0] == 1.0 and scores[1] == 0.0


def test_truncation_saves_evaluations_on_redundant_players() -> None:
    probs = np.stack([everywhere] * 20)
    full, n_full = monte_carlo_shapley(probs, V, 40, 0.0, np.random.default_rng(0))
    cut, n_cut = monte_carlo_shapley(probs, V, 40, 0.01, np.random.default_rng(0))
    assert n_full == 40 * 20
    assert n_cut <= n_full // 10
    assert cut.sum() == pytest.approx(full.sum(), rel=0.01)


def test_sampling_is_seeded() -> None:
    rng = np.random.default_rng(8)
    probs = rng.uniform(0.001, 0.9, size=(10, P))
    assert np.array_equal(mc(probs, 20, seed=3), mc(probs, 20, seed=3))
    assert not np.array_equal(mc(probs, 20, seed=3), mc(probs, 20, seed=4))


def test_scorer_on_top_k_answers() -> None:
    targets = list(range(40, 40 + P))
    wrong = [t + 7 for t in targets]
    answers = {
        1: confident(targets, 0.9),
        2: confident(targets, 0.9),      # a copy of uid 1
        3: confident(targets, 0.5),
        4: confident(wrong, 0.99),       # confidently wrong
        5: None,
    }
    for exact_up_to in (8, 0):
        s = ShapleyScorer(None, "sh", ShapleyConfig(exact_up_to=exact_up_to, permutations=4000))
        values = s.values(task(targets), answers)
        assert set(values) == {1, 2, 3, 4}
        assert values[1] == pytest.approx(values[2], rel=0.05)
        assert values[4] < 0
        scores = s.score(task(targets), answers, {})
        assert scores[5] == 0.0 and scores[4] == 0.0
        assert max(scores.values()) == pytest.approx(1.0)
        assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_no_usable_answers_scores_everyone_zero() -> None:
    s = ShapleyScorer(None, "sh", ShapleyConfig())
    assert s.score(task([1, 2, 3]), {1: None, 2: None}, {}) == {1: 0.0, 2: 0.0}
