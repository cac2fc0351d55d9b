"""The detectors' measurements on constructed data."""

from __future__ import annotations

import numpy as np
import pytest
from collusion_data import VOCAB, model_logits, noisy, topk
from tnode.plugins.collusion.signals import (
    answer_distance,
    clusters,
    copy_distances,
    copy_ratio,
    deviation_cosines,
    lazy_fractions,
    normalize_rows,
    topk_distance,
)


def test_identical_answers_are_at_distance_zero_and_disjoint_ones_near_two() -> None:
    rng = np.random.default_rng(0)
    a = topk(rng.normal(0, 5, (4, VOCAB)))
    assert answer_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    ids = np.tile(np.arange(16), (4, 1))
    far = topk_distance(ids, np.full((4, 16), np.log(1 / 16)), ids + 100, np.full((4, 16), np.log(1 / 16)), VOCAB)
    assert far == pytest.approx(2.0, abs=1e-6)


def test_a_relay_with_noise_sits_close_to_its_source_and_independent_models_far() -> None:
    rng = np.random.default_rng(1)
    relay_d, other_d = [], []
    shift_a, shift_b = rng.normal(0, 1, VOCAB), rng.normal(0, 1, VOCAB)
    for _ in range(20):
        task = rng.normal(0, 1, (8, VOCAB))
        source = topk(model_logits(rng, task, shift_a))
        other = topk(model_logits(rng, task, shift_b))
        relay_d.append(answer_distance(source, noisy(source, rng, 0.05)))
        other_d.append(answer_distance(source, other))
    assert max(relay_d) < 0.25
    assert min(other_d) > 0.6


def test_answers_of_different_lengths_or_kinds_are_not_compared() -> None:
    rng = np.random.default_rng(2)
    assert answer_distance(topk(rng.normal(0, 1, (3, VOCAB))), topk(rng.normal(0, 1, (4, VOCAB)))) is None
    assert answer_distance("text", "text") is None
    assert answer_distance(None, np.zeros(3)) is None


def test_lazy_fractions_split_two_modes() -> None:
    junk, good = lazy_fractions([1.0, 0.0, 1.1, 0.05, 0.9], low=0.5, high=0.8)
    assert (junk, good) == (pytest.approx(0.4), pytest.approx(0.6))


def test_a_copier_of_the_others_mean_has_a_ratio_far_below_honest_ones() -> None:
    rng = np.random.default_rng(3)
    truth = rng.dirichlet(np.ones(32))
    w = np.array([np.abs(truth + rng.normal(0, 0.01, 32)) for _ in range(7)])
    stake = np.ones(8)
    w = np.vstack([w, w.mean(axis=0)])
    ratios = copy_ratio(copy_distances(normalize_rows(w), normalize_rows(w), stake))
    assert ratios[7] < 0.35
    assert np.all(ratios[:7] > 0.6)


def test_cabal_deviations_cluster_and_independent_noise_does_not() -> None:
    rng = np.random.default_rng(4)
    honest = rng.normal(0, 1, (6, 32))
    push = np.zeros(32)
    push[:3] = 5.0
    cabal = push + rng.normal(0, 1, (3, 32))
    cos = deviation_cosines(np.vstack([honest, cabal]))
    assert clusters(cos >= 0.7) == [[6, 7, 8]]
