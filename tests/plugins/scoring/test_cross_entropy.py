"""The cross-entropy scorer and the top-k probability rules it rests on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scoring_helpers import V, confident, only_scoring_plugins, task, uniform
from tnode.contracts.text import TopKPrediction
from tnode.node import Node
from tnode.plugins.scoring.config import CrossEntropyConfig
from tnode.plugins.scoring.cross_entropy import CrossEntropyScorer
from tnode.plugins.scoring.probs import true_token_probs

TARGETS = [10, 20, 30, 40, 50, 60, 70, 80]


def scorer(**kw: float) -> CrossEntropyScorer:
    return CrossEntropyScorer(None, "ce", CrossEntropyConfig(**kw))


def test_loss_of_a_hit_is_minus_log_of_its_probability() -> None:
    losses = scorer().losses(task(TARGETS), {1: confident(TARGETS, 0.8)})
    assert losses[1] == pytest.approx(-math.log(0.8), rel=1e-6)


def test_mass_outside_top_k_is_spread_over_the_rest_of_the_vocabulary() -> None:
    wrong = [t + 100 for t in TARGETS]
    pred = confident(wrong, 0.5, k=4)
    claimed = 0.5 + 3 * 0.5 / 8
    p = true_token_probs(pred, np.asarray(TARGETS), floor=1e-9)
    assert p == pytest.approx(np.full(len(TARGETS), (1 - claimed) / (V - 4)))


def test_a_confident_miss_costs_at_most_minus_log_floor() -> None:
    ids = np.array([[t + 1] for t in TARGETS])
    pred = TopKPrediction(ids=ids, logprobs=np.zeros((len(TARGETS), 1), dtype=np.float32), vocab_size=V)
    losses = scorer(floor=1e-4).losses(task(TARGETS), {3: pred})
    assert losses[3] == pytest.approx(-math.log(1e-4))


def test_over_claimed_probability_is_scaled_down() -> None:
    # Claiming probability 1 on each of four tokens is worth what an honest 1/4 each is.
    ids = np.stack([np.asarray(TARGETS) + j for j in range(4)], axis=1)
    greedy = TopKPrediction(ids=ids, logprobs=np.zeros(ids.shape, dtype=np.float32), vocab_size=V)
    losses = scorer().losses(task(TARGETS), {1: greedy})
    assert losses[1] == pytest.approx(math.log(4), rel=1e-6)


def test_better_predictions_score_higher_and_the_best_scores_one() -> None:
    answers = {1: confident(TARGETS, 0.9), 2: confident(TARGETS, 0.5), 3: uniform(len(TARGETS)), 4: None}
    scores = scorer().score(task(TARGETS), answers, {})
    assert scores[1] == pytest.approx(1.0)
    assert scores[1] > scores[2] > scores[3] > 0
    assert scores[4] == 0.0
    assert scores[2] == pytest.approx(math.exp(-(math.log(0.9) - math.log(0.5))), rel=1e-5)


def test_temperature_sharpens_the_gaps() -> None:
    answers = {1: confident(TARGETS, 0.9), 2: confident(TARGETS, 0.5)}
    soft = scorer(temperature=2.0).score(task(TARGETS), answers, {})
    sharp = scorer(temperature=0.5).score(task(TARGETS), answers, {})
    assert sharp[2] < soft[2] < 1.0


def test_a_lone_answer_worse_than_uniform_does_not_score_one() -> None:
    garbage = confident([t + 1 for t in TARGETS], 0.99)
    s = scorer()
    scores = s.score(task(TARGETS), {7: garbage}, {})
    loss = s.losses(task(TARGETS), {7: garbage})[7]
    assert loss > math.log(V)
    assert scores[7] == pytest.approx(math.exp(-(loss - math.log(V))), rel=1e-6)
    assert scores[7] < 0.01


def test_answers_with_the_wrong_number_of_positions_score_zero() -> None:
    short = confident(TARGETS[:4], 0.9)
    scores = scorer().score(task(TARGETS), {1: short, 2: "not a prediction", 3: confident(TARGETS, 0.3)}, {})
    assert scores[1] == 0.0 and scores[2] == 0.0 and scores[3] == pytest.approx(1.0)


def test_nan_and_inf_log_probabilities_do_not_break_scoring() -> None:
    pred = confident(TARGETS, 0.9)
    bad = pred.logprobs.copy()
    bad[0, 0] = np.nan
    bad[1, 1] = np.inf
    scores = scorer().score(task(TARGETS), {1: TopKPrediction(pred.ids, bad, V), 2: pred}, {})
    assert all(0.0 <= s <= 1.0 for s in scores.values())


def test_registered_as_a_component(tmp_path) -> None:
    node = Node.from_dict({"scorers": {"ce": {"type": "cross_entropy", "temperature": 0.5}}}, data_dir=tmp_path, plugins=only_scoring_plugins())
    comp = node.component("scorer", "ce")
    assert isinstance(comp, CrossEntropyScorer) and comp.config.temperature == 0.5
