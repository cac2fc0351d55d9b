"""The latency wrapper."""

from __future__ import annotations

import pytest
from scoring_helpers import confident, only_scoring_plugins, task
from tnode.errors import ConfigError
from tnode.node import Node
from tnode.plugins.scoring.latency import latency_factor

pytestmark = pytest.mark.anyio
TARGETS = [5, 6, 7, 8]


def test_factor_is_flat_then_linear_down_to_the_minimum() -> None:
    assert latency_factor(0.5, 10.0, 0.25, 0.5) == 1.0
    assert latency_factor(2.5, 10.0, 0.25, 0.5) == 1.0
    assert latency_factor(6.25, 10.0, 0.25, 0.5) == pytest.approx(0.75)
    assert latency_factor(10.0, 10.0, 0.25, 0.5) == pytest.approx(0.5)
    assert latency_factor(30.0, 10.0, 0.25, 0.5) == pytest.approx(0.5)
    assert latency_factor(5.0, 10.0, 1.0, 0.0) == 1.0


def make_node(tmp_path, **latency: object) -> Node:
    return Node.from_dict({"scorers": {
        "ce": {"type": "cross_entropy"},
        "fast": {"type": "latency", "inner": "ce", "deadline": 4.0, **latency},
    }}, data_dir=tmp_path, plugins=only_scoring_plugins())


async def test_wrapper_discounts_the_inner_scores(tmp_path) -> None:
    node = make_node(tmp_path, grace=0.0, min_factor=0.0)
    async with node.running():
        fast = node.component("scorer", "fast")
        answers = {1: confident(TARGETS, 0.9), 2: confident(TARGETS, 0.9), 3: None}
        inner = node.component("scorer", "ce").score(task(TARGETS), answers, {})
        scores = fast.score(task(TARGETS), answers, {1: 1.0, 2: 3.0, 3: 4.0})
    assert inner[1] == inner[2] == pytest.approx(1.0)
    assert scores[1] == pytest.approx(0.75)
    assert scores[2] == pytest.approx(0.25)
    assert scores[3] == 0.0


async def test_an_unmeasured_latency_is_not_discounted(tmp_path) -> None:
    node = make_node(tmp_path)
    async with node.running():
        scores = node.component("scorer", "fast").score(task(TARGETS), {1: confident(TARGETS, 0.9)}, {})
    assert scores[1] == pytest.approx(1.0)


def test_a_wrapper_cannot_wrap_itself(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot wrap itself"):
        Node.from_dict({"scorers": {"x": {"type": "latency", "inner": "x"}}}, data_dir=tmp_path, plugins=only_scoring_plugins())


def test_the_inner_scorer_must_be_configured(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"scorers\.y"):
        Node.from_dict({"scorers": {"x": {"type": "latency", "inner": "y"}}}, data_dir=tmp_path, plugins=only_scoring_plugins())


def test_a_cycle_of_wrappers_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cycle: a → b → a"):
        Node.from_dict({"scorers": {
            "a": {"type": "latency", "inner": "b"},
            "b": {"type": "latency", "inner": "a"},
        }}, data_dir=tmp_path, plugins=only_scoring_plugins())
