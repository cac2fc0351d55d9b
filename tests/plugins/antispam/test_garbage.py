"""Garbage detection: degenerate, constant and copied answers, and the garbage_guard scorer."""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
import pytest
from antispam_fakes import VOCAB, make_node, model_answer, text_task
from tnode.contracts.text import TopKPrediction
from tnode.errors import ConfigError
from tnode.events import SpamDetected
from tnode.node import Node
from tnode.plugins.antispam.garbage import (
    CONSTANT,
    DUPLICATE,
    EMPTY,
    NEAR_DUPLICATE,
    NON_FINITE,
    REPEATED,
    UNIFORM,
    copy_groups,
    degenerate_rule,
    l1_distance,
    probabilities,
)

pytestmark = pytest.mark.anyio


def rule(pred: TopKPrediction) -> str | None:
    return degenerate_rule(pred, uniform_tolerance=1e-4, min_positions=4)


def jitter(pred: TopKPrediction, scale: float, seed: int = 99) -> TopKPrediction:
    """The same answer with its probabilities perturbed by about ``scale`` (relative)."""
    rng = np.random.default_rng(seed)
    lp = pred.logprobs + rng.normal(0, scale, pred.logprobs.shape).astype(np.float32)
    return TopKPrediction(pred.ids.copy(), lp, pred.vocab_size)


# ----------------------------------------------------------------------------- degenerate answers
def test_an_honest_answer_is_not_degenerate() -> None:
    task = text_task()
    assert rule(model_answer(task, seed=1)) is None


def test_non_finite_and_empty_answers() -> None:
    good = model_answer(text_task(), seed=1)
    nan = good.logprobs.copy()
    nan[2, 3] = np.nan
    assert rule(TopKPrediction(good.ids, nan, VOCAB)) == NON_FINITE
    inf = good.logprobs.copy()
    inf[0, 0] = np.inf
    assert rule(TopKPrediction(good.ids, inf, VOCAB)) == NON_FINITE
    dead = good.logprobs.copy()
    dead[4] = -np.inf
    assert rule(TopKPrediction(good.ids, dead, VOCAB)) == EMPTY
    assert rule(TopKPrediction(np.zeros((0, 4), np.int64), np.zeros((0, 4), np.float32), VOCAB)) == EMPTY
    # A single −inf (zero probability) among real candidates is legitimate.
    zero = good.logprobs.copy()
    zero[1, -1] = -np.inf
    assert rule(TopKPrediction(good.ids, zero, VOCAB)) is None


def test_uniform_top_k_everywhere() -> None:
    good = model_answer(text_task(), seed=1)
    flat = np.full(good.logprobs.shape, np.log(1 / 8), dtype=np.float32)
    assert rule(TopKPrediction(good.ids, flat, VOCAB)) == UNIFORM
    # One uniform row among peaked ones is just a model unsure at one position.
    one = good.logprobs.copy()
    one[3] = np.log(1 / 8)
    assert rule(TopKPrediction(good.ids, one, VOCAB)) is None


def test_same_answer_at_every_position() -> None:
    good = model_answer(text_task(), seed=1)
    ids = np.tile(good.ids[0], (8, 1))
    lp = np.tile(good.logprobs[0], (8, 1))
    assert rule(TopKPrediction(ids, lp, VOCAB)) == CONSTANT
    # Too few positions to tell.
    assert rule(TopKPrediction(ids[:3], lp[:3], VOCAB)) is None


# ----------------------------------------------------------------------------- copies
def test_distance_between_answers() -> None:
    task = text_task()
    a = model_answer(task, seed=1)
    pa = probabilities(a)
    assert l1_distance(pa, pa) == 0.0
    assert 0 < l1_distance(pa, probabilities(jitter(a, 0.001))) < 0.01
    disjoint = TopKPrediction((a.ids + 100) % VOCAB, a.logprobs, VOCAB)
    far = l1_distance(pa, probabilities(disjoint))
    assert far > 1.5  # nearly all listed mass on different tokens
    # Reordering candidates within a row does not change the distribution.
    perm = np.argsort(a.ids, axis=1)
    reordered = TopKPrediction(np.take_along_axis(a.ids, perm, 1), np.take_along_axis(a.logprobs, perm, 1), VOCAB)
    assert l1_distance(pa, probabilities(reordered)) == pytest.approx(0.0, abs=1e-9)


def test_groups_of_copies() -> None:
    task = text_task()
    honest = {uid: model_answer(task, seed=uid) for uid in range(1, 6)}
    answers = dict(honest)
    answers[10] = honest[1]  # byte-identical copy
    answers[11] = jitter(honest[2], 0.0005)  # near-identical copy (noise to dodge exact matching)
    answers[12] = jitter(honest[2], 0.0005, seed=7)
    groups = copy_groups(answers, threshold=0.01)
    assert sorted(groups) == [[1, 10], [2, 11, 12]]
    # Threshold 0: byte-identical only.
    assert copy_groups(answers, threshold=0.0) == [[1, 10]]


def test_independent_models_with_the_same_top_tokens_are_not_copies() -> None:
    """Two honest models that agree on the likely tokens but not on the probabilities."""
    task = text_task()
    a = model_answer(task, seed=1)
    rng = np.random.default_rng(5)
    other = TopKPrediction(a.ids.copy(), (a.logprobs + rng.normal(0, 0.3, a.logprobs.shape)).astype(np.float32),
                           VOCAB)
    assert copy_groups({1: a, 2: other}, threshold=0.01) == []


# ----------------------------------------------------------------------------- the scorer
def guard_node(tmp_path, **options: Any) -> Node:
    return make_node(tmp_path, scorers={"ce": {"type": "cross_entropy"},
                                        "guard": {"type": "garbage_guard", "inner": "ce", **options}})


async def collect(node: Node) -> list[SpamDetected]:
    seen: list[SpamDetected] = []

    async def on(event: SpamDetected) -> None:
        seen.append(event)

    node.bus.subscribe(SpamDetected, on)
    return seen


async def test_copier_scores_zero_and_the_original_keeps_its_score(tmp_path) -> None:
    node = guard_node(tmp_path)
    node.chain.add_neuron("aa" * 32)
    node.chain.add_neuron("bb" * 32)
    node.chain.add_neuron("cc" * 32)
    seen = await collect(node)
    task = text_task()
    original, other = model_answer(task, seed=1), model_answer(task, seed=2)
    answers = {0: original, 1: other, 2: jitter(original, 0.0005), 3: None}
    latencies = {0: 0.10, 1: 0.12, 2: 0.30, 3: 1.0}
    async with node.running():
        guard = node.component("scorer", "guard")
        inner = node.component("scorer", "ce").score(task, answers, latencies)
        scores = guard.score(task, answers, latencies)
        await anyio.sleep(0.01)
    assert scores[2] == 0.0 and scores[3] == 0.0
    assert scores[0] == pytest.approx(inner[0]) and scores[1] == pytest.approx(inner[1])
    assert scores[0] > 0 and scores[1] > 0
    assert [(e.subject, e.kind) for e in seen] == [("cc" * 32, NEAR_DUPLICATE)]
    assert guard.stats()["flagged"] == {NEAR_DUPLICATE: 1}


async def test_the_faster_of_two_identical_answers_keeps_its_score(tmp_path) -> None:
    node = guard_node(tmp_path)
    task = text_task()
    a = model_answer(task, seed=1)
    async with node.running():
        scores = node.component("scorer", "guard").score(task, {0: a, 1: a}, {0: 0.5, 1: 0.2})
    assert scores[0] == 0.0 and scores[1] > 0


async def test_policy_both_and_off(tmp_path) -> None:
    task = text_task()
    a = model_answer(task, seed=1)
    answers = {0: a, 1: a, 2: model_answer(task, seed=2)}
    node = guard_node(tmp_path / "both", duplicates="both")
    async with node.running():
        both = node.component("scorer", "guard").score(task, answers, {0: 0.1, 1: 0.2, 2: 0.3})
    node = guard_node(tmp_path / "off", duplicates="off")
    async with node.running():
        off = node.component("scorer", "guard").score(task, answers, {0: 0.1, 1: 0.2, 2: 0.3})
    assert both[0] == both[1] == 0.0 and both[2] > 0
    assert off[0] == off[1] > 0


async def test_policy_lower_stake_keeps_the_staked_member(tmp_path) -> None:
    node = guard_node(tmp_path, duplicates="lower_stake")
    node.chain.add_neuron("aa" * 32, stake=1.0)
    node.chain.add_neuron("bb" * 32, stake=500.0)
    task = text_task()
    a = model_answer(task, seed=1)
    async with node.running():
        scores = node.component("scorer", "guard").score(task, {0: a, 1: a}, {0: 0.1, 1: 0.9})
    assert scores[0] == 0.0 and scores[1] > 0


async def test_same_answer_to_different_tasks_is_flagged(tmp_path) -> None:
    node = guard_node(tmp_path)
    first, second = text_task(seed=1), text_task(seed=2)
    fixed = model_answer(first, seed=1)
    async with node.running():
        guard = node.component("scorer", "guard")
        assert guard.score(first, {0: fixed}, {})[0] > 0
        assert guard.score(first, {0: fixed}, {})[0] > 0  # the same task asked twice: fine
        assert guard.score(second, {0: fixed}, {})[0] == 0.0
    assert guard.stats()["flagged"] == {REPEATED: 1}


async def test_degenerate_answers_score_zero_and_do_not_move_the_others(tmp_path) -> None:
    node = guard_node(tmp_path)
    task = text_task()
    good = model_answer(task, seed=1)
    flat = TopKPrediction(good.ids, np.full(good.logprobs.shape, np.log(1 / 8), dtype=np.float32), VOCAB)
    async with node.running():
        guard = node.component("scorer", "guard")
        alone = guard.score(task, {0: good}, {})
        mixed = guard.score(task, {0: good, 1: flat}, {})
    assert mixed[1] == 0.0
    assert mixed[0] == pytest.approx(alone[0])
    assert guard.stats()["flagged"] == {UNIFORM: 1}


async def test_reports_from_a_worker_thread_reach_the_bus(tmp_path) -> None:
    """Validators score in a worker thread; the SpamDetected event must still arrive."""
    node = guard_node(tmp_path)
    seen = await collect(node)
    task = text_task()
    a = model_answer(task, seed=1)
    async with node.running():
        guard = node.component("scorer", "guard")
        scores = await anyio.to_thread.run_sync(guard.score, task, {0: a, 1: a}, {0: 0.1, 1: 0.2})
        with anyio.fail_after(2):
            while not seen:
                await anyio.sleep(0.001)
    assert scores[1] == 0.0
    assert [(e.subject, e.kind) for e in seen] == [("uid:1", DUPLICATE)]


def test_guard_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot wrap itself"):
        make_node(tmp_path, scorers={"guard": {"type": "garbage_guard", "inner": "guard"}})
    with pytest.raises(ConfigError, match="needs a \\[chain\\]"):
        make_node(tmp_path, chain=False, scorers={"ce": {"type": "cross_entropy"},
                                                  "guard": {"type": "garbage_guard", "inner": "ce",
                                                            "duplicates": "lower_stake"}})
    with pytest.raises(ConfigError, match="cycle"):
        make_node(tmp_path, scorers={"a": {"type": "garbage_guard", "inner": "b"},
                                     "b": {"type": "latency", "inner": "a"}})
