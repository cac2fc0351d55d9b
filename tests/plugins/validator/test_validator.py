"""The validator loop on tnode.testing's memory chain and loopback miners, with a fake modality."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from tnode.errors import ConfigError
from tnode.events import ResponseScored, WeightsSubmitted
from tnode.keys import Keypair
from tnode.node import Node
from tnode.testing import LoopbackNetwork
from validator_fakes import Net, answer_with, crash, dead, invalid, net_of, plugins_with_fakes, slow

pytestmark = pytest.mark.anyio


def doc(**validator: Any) -> dict[str, Any]:
    return {
        "transport": {"type": "loopback"},
        "chain": {"type": "memory"},
        "modalities": {"fake": {"type": "fake"}},
        "scorers": {"ce": {"type": "cross_entropy"}},
        "validator": {"type": "default", "modality": "fake", "step_interval": 3600, "timeout": 0.2, "seed": 1,
                      "ema_alpha": 0.5, **validator},
    }


@contextlib.asynccontextmanager
async def running(tmp_path, behaviours: list[Any], hp: dict[str, Any] | None = None,
                  keys: list[Keypair] | None = None, **validator: Any) -> AsyncIterator[Net]:
    """A validator node whose loop already ran its first step; later steps are driven by the test."""
    network = LoopbackNetwork()
    node = Node.from_dict(doc(**validator), data_dir=tmp_path, plugins=plugins_with_fakes(network=network))
    net = net_of(node, network)
    net.chain.hp = net.chain.hp.replace(**(hp or {}))
    net.chain.add_neuron(node.hotkey.public_hex)  # uid 0: the validator itself
    for i, behaviour in enumerate(behaviours):
        net.add_miner(behaviour, keys[i] if keys else None)
    async with node.running():
        with anyio.fail_after(10):
            while net.validator.steps < 1:
                await anyio.sleep(0.01)
        yield net


async def collect(net: Net, event_type: type) -> list[Any]:
    seen: list[Any] = []

    async def on(event: Any) -> None:
        seen.append(event)

    net.node.bus.subscribe(event_type, on, name=f"test-{event_type.__name__}")
    return seen


async def test_answers_are_scored_and_failures_score_zero(tmp_path) -> None:
    async with running(tmp_path, [answer_with(0.9), answer_with(0.4), dead, slow, invalid, crash]) as net:
        report = net.validator.last_report
    assert report.queried == [1, 2, 3, 4, 5, 6]  # never itself (uid 0)
    assert report.scores[1] == pytest.approx(1.0)
    assert report.scores[2] == pytest.approx(math.exp(math.log(0.4) - math.log(0.9)), rel=1e-4)
    assert [report.scores[u] for u in (3, 4, 5, 6)] == [0.0, 0.0, 0.0, 0.0]
    assert report.errors == {3: "unreachable", 4: "timeout", 5: "invalid_response", 6: "internal"}


async def test_events_and_weights_follow_the_scores(tmp_path) -> None:
    async with running(tmp_path, [answer_with(0.9), answer_with(0.4), dead]) as net:
        scored = await collect(net, ResponseScored)
        submitted = await collect(net, WeightsSubmitted)
        await net.validator.step()
        await anyio.sleep(0.05)
        block, uids, weights = net.weight_calls()[-1]
    assert {e.uid for e in scored} == {1, 2, 3}
    assert next(e for e in scored if e.uid == 3).error == "unreachable"
    assert uids == [1, 2]  # the dead miner and the validator itself get no weight
    assert weights[0] == 65535.0 and 0 < weights[1] < weights[0]
    assert submitted and submitted[-1].uids == (1, 2) and not submitted[-1].committed
    assert sum(submitted[-1].weights) == pytest.approx(1.0)


async def test_weights_respect_the_rate_limit(tmp_path) -> None:
    async with running(tmp_path, [answer_with(0.9)], hp={"weights_rate_limit": 3}) as net:
        for _ in range(8):
            await net.validator.step()
        blocks = [b for b, _, _ in net.weight_calls()]
    assert len(blocks) >= 3
    assert all(b2 - b1 >= 3 for b1, b2 in zip(blocks, blocks[1:], strict=False))


async def test_refused_weights_do_not_stop_the_validator(tmp_path) -> None:
    async with running(tmp_path, [answer_with(0.9)], hp={"weights_rate_limit": 8}) as net:
        net.chain.refuse_weights = "not_registered"
        net.chain.last_weights.clear()
        net.validator.state.last_weights_block = None
        refused = await net.validator.step()  # block 2
        net.chain.refuse_weights = ""
        waiting = await net.validator.step()  # block 3: retries after a quarter of the interval
        retried = await net.validator.step()  # block 4
    assert not refused.weights_submitted and not waiting.weights_submitted
    assert retried.weights_submitted and net.weight_calls()[-1][0] == 4


async def test_commit_then_reveal(tmp_path) -> None:
    hp = {"commit_reveal_weights_enabled": True, "commit_reveal_period": 2, "weights_rate_limit": 100}
    async with running(tmp_path, [answer_with(0.9), answer_with(0.5)], hp=hp) as net:
        submitted = await collect(net, WeightsSubmitted)
        assert len(net.commits()) == 1 and not net.weight_calls()
        for _ in range(4):
            await net.validator.step()
        await anyio.sleep(0.05)
    assert len(net.weight_calls("reveal")) == 1 and not net.commits()
    _, uids, weights = net.weight_calls("reveal")[0]
    assert uids == [1, 2] and weights[0] == 65535.0
    assert [e.committed for e in submitted] == [False]
    assert not net.validator.state.pending


async def test_a_miner_dying_mid_run_loses_its_weight(tmp_path) -> None:
    async with running(tmp_path, [answer_with(0.9), answer_with(0.6)]) as net:
        for _ in range(3):
            await net.validator.step()
        before = net.validator.state.scores()
        net.behave(net.miners[1], dead)
        for _ in range(6):
            await net.validator.step()
        after = net.validator.state.scores()
        _, uids, weights = net.weight_calls()[-1]
    assert before[1] > before[2]
    assert after[1] < 0.05 < after[2]
    assert dict(zip(uids, weights, strict=True))[2] == 65535.0


async def test_a_re_registered_uid_starts_from_zero(tmp_path) -> None:
    async with running(tmp_path, [answer_with(0.9), answer_with(0.9)]) as net:
        assert net.validator.state.scores()[1] > 0
        newcomer = Keypair.generate()
        net.chain.replace_hotkey(1, newcomer.public_hex)
        net.behave(newcomer, dead)
        await net.validator.step()
        record = net.validator.state.records[1]
    assert record.hotkey == newcomer.public_hex and record.ema == 0.0 and record.count == 1


async def test_sampling_reaches_every_miner(tmp_path) -> None:
    async with running(tmp_path, [answer_with(0.9)] * 6, sample_size=2) as net:
        for _ in range(5):
            report = await net.validator.step()
            assert len(report.queried) == 2
        counts = {uid: r.count for uid, r in net.validator.state.records.items() if uid}
    assert all(c >= 1 for c in counts.values()), counts


async def test_scores_survive_a_restart(tmp_path) -> None:
    miner = Keypair.generate()
    async with running(tmp_path, [answer_with(0.9)], keys=[miner]) as net:
        saved = net.validator.state.scores()[1]
    assert saved == pytest.approx(0.5)  # alpha 0.5, one perfect answer
    assert (tmp_path / "validator_state.json").exists()
    async with running(tmp_path, [dead], keys=[miner]) as net:
        resumed = net.validator.state.scores()[1]  # after one more step, answered by nobody
    assert resumed == pytest.approx(saved * 0.5)


async def test_the_loop_survives_chain_outages(tmp_path) -> None:
    network = LoopbackNetwork()
    node = Node.from_dict(doc(step_interval=0.01), data_dir=tmp_path, plugins=plugins_with_fakes(network=network))
    net = net_of(node, network)
    net.chain.add_neuron(node.hotkey.public_hex)
    net.add_miner(answer_with(0.9))
    net.chain.fail_reads = 3
    async with node.running():
        with anyio.fail_after(10):
            while net.validator.steps < 2:
                await anyio.sleep(0.01)
    assert net.chain.fail_reads == 0


async def test_a_single_node_can_validate_itself(tmp_path) -> None:
    async with running(tmp_path, [], query_self=True) as net:
        report = await net.validator.step()
    assert report.queried == [0] and report.scores[0] > 0.9 and not report.errors
    assert not net.weight_calls()  # its own uid gets no weight, and there is no other


def test_scorer_weights_must_match_scorers(tmp_path) -> None:
    with pytest.raises(ConfigError, match="scorer_weights"):
        Node.from_dict(doc(scorers=["ce"], scorer_weights=[1.0, 2.0]), data_dir=tmp_path, plugins=plugins_with_fakes())


async def test_scorers_are_combined_by_weight(tmp_path) -> None:
    d = doc(scorers=["ce", "lat"], scorer_weights=[3.0, 1.0])
    d["scorers"]["lat"] = {"type": "latency", "inner": "ce", "deadline": 1.0, "grace": 0.0, "min_factor": 0.0}
    node = Node.from_dict(d, data_dir=tmp_path, plugins=plugins_with_fakes())
    import numpy as np
    from validator_fakes import FakeModality
    modality = FakeModality(None, "fake", None)
    task = modality.make_task(np.random.default_rng(0))
    from tnode.contracts.text import TopKPrediction

    targets = np.asarray(task.truth)
    pred = TopKPrediction(targets[:, None], np.log(np.full((len(targets), 1), 0.9, dtype=np.float32)), 64)
    scores = node.component("validator").combined_scores(task, {1: pred, 2: None}, {1: 0.5, 2: 1.0})
    assert scores == {1: pytest.approx((3 * 1.0 + 1 * 0.5) / 4), 2: 0.0}


async def test_a_self_query_goes_through_the_spam_filters(tmp_path) -> None:
    # The node's own limits apply to its own queries exactly as to a remote peer's.
    d = doc(query_self=True)
    d["spam"] = {"size": {"type": "limits", "sequence_keys": ["targets"], "max_sequence_length": 2}}
    network = LoopbackNetwork()
    node = Node.from_dict(d, data_dir=tmp_path, plugins=plugins_with_fakes("antispam", network=network))
    net = net_of(node, network)
    net.chain.add_neuron(node.hotkey.public_hex)
    async with node.running():
        report = await net.validator.step()
        size = node.component("spam_filter", "size").stats()
    assert report.queried == [0] and report.errors == {0: "too_large"}
    assert set(size["refused"]) == {"sequence_length"} and size["admitted"] == 0  # every step's self-query


async def test_no_weights_while_every_miner_scored_zero(tmp_path) -> None:
    """Uniform weights would pay a garbage miner like the best: a validator whose miners all failed so far
    (e.g. none ready on its first step) waits for a score that tells them apart, then sets weights."""
    async with running(tmp_path, [dead, dead]) as net:
        for _ in range(3):
            report = await net.validator.step()
            assert not report.weights_submitted
        assert net.weight_calls() == []
        net.add_miner(answer_with(0.9))
        while not net.validator.last_report.scores.get(3):
            await net.validator.step()
        if not net.validator.last_report.weights_submitted:
            await net.validator.step()
        calls = net.weight_calls()
    assert calls
    _, uids, shares = calls[-1]
    weights = dict(zip(uids, shares, strict=True))
    assert weights.get(3, 0) > max(weights.get(1, 0), weights.get(2, 0))
