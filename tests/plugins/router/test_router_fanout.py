"""The router over the testing kit's loopback network: k at once, k_min, stragglers, failures, backoff."""

from __future__ import annotations

import time

import anyio
import numpy as np
import pytest
import tnode.plugins.router as router_plugin
from tnode.errors import TaskError
from tnode.events import TaskReceived
from tnode.interfaces import TaskResult
from tnode.keys import Keypair
from tnode.node import Node
from tnode.testing import LoopbackNetwork, MemoryChain, plugin_manager

pytestmark = pytest.mark.anyio


def topk_answer(favourite: int):
    async def respond(task: TaskReceived) -> TaskResult:
        rows = 1 if task.body.get("positions") == "last" else len(task.payload)
        ids = [[favourite, (favourite + 1) % 256]] * rows
        return TaskResult({"ids": ids}, np.log(np.array([[0.6, 0.2]] * rows, dtype=np.float32)))
    return respond


def slow(seconds: float, inner):
    async def respond(task: TaskReceived) -> TaskResult:
        await anyio.sleep(seconds)
        return await inner(task)
    return respond


async def refuse(task: TaskReceived) -> TaskResult:
    raise TaskError("overloaded", "busy")


async def garbage(task: TaskReceived) -> TaskResult:
    return TaskResult({"ids": [[1, 1]]}, np.zeros((1, 2), np.float32))


def setup(tmp_path, responders, **router):
    chain, network = MemoryChain(), LoopbackNetwork()
    me = Keypair.generate()
    hot = []
    for respond in responders:
        key = Keypair.generate()
        addr = network.add_responder(key, respond)
        chain.add_neuron(key.public_hex, addrs=[addr], peer_id=key.peer_id)
        hot.append(key.public_hex)
    cfg = {"type": "moe", "modality": "text", "seed": 3, "timeout": 1.0, "timeout_after_k_min": 0.05, **router}
    node = Node.from_dict({"transport": {"type": "loopback"}, "chain": {"type": "memory"}, "routers": {"r": cfg}},
                          data_dir=tmp_path / "client", hotkey=me,
                          plugins=plugin_manager(chain=chain, network=network, extra=[router_plugin]))
    return node, hot, network


async def test_returns_after_k_min_and_cancels_the_straggler(tmp_path) -> None:
    node, hot, _ = setup(tmp_path, [topk_answer(10), topk_answer(20), slow(5.0, topk_answer(30))], k=3, k_min=2)
    async with node.running():
        r = node.component("router")
        start = time.monotonic()
        mixed = await r.next_token(np.array([1, 2, 3]))
        elapsed = time.monotonic() - start
    assert elapsed < 0.5
    assert sorted(mixed.used) == sorted(hot[:2]) and mixed.outcome.late == [hot[2]]
    assert mixed.value.shape == (1, 256) and abs(mixed.value.sum() - 1) < 1e-9
    assert mixed.value[0, 10] > 0.25 and mixed.value[0, 20] > 0.25


async def test_refusals_and_invalid_answers_are_dropped_and_back_off(tmp_path) -> None:
    node, hot, network = setup(tmp_path, [topk_answer(10), refuse, garbage], k=3, k_min=3, backoff_base=10.0,
                               backoff_max=10.0)
    async with node.running():
        r = node.component("router")
        mixed = await r.next_token(np.array([1, 2, 3]))
        assert mixed.used == [hot[0]]
        assert mixed.outcome.failures == {hot[1]: "overloaded", hot[2]: "invalid_response"}
        assert r.board.miners[hot[1]].backoff_until > time.monotonic() + 5
        asked = len(network.requests)
        mixed = await r.next_token(np.array([1, 2, 3]), k=1)
        assert mixed.used == [hot[0]] and len(network.requests) == asked + 1  # the others are skipped


async def test_no_answer_at_all_is_an_error_naming_the_codes(tmp_path) -> None:
    node, _, _ = setup(tmp_path, [refuse, refuse], k=2, k_min=1)
    async with node.running():
        with pytest.raises(TaskError) as failed:
            await node.component("router").next_token(np.array([1, 2, 3]))
    assert failed.value.code == "unreachable" and "overloaded" in failed.value.message


async def test_a_completion_is_generated_token_by_token_from_the_mixture(tmp_path) -> None:
    node, hot, _ = setup(tmp_path, [topk_answer(ord("a")), topk_answer(ord("a"))], k=2, k_min=2)
    async with node.running():
        ids, steps = await node.component("router").complete(np.frombuffer(b"xy", np.uint8), 4)
    assert bytes(ids) == b"aaaa" and len(steps) == 4
    assert {row["status"] for row in steps[0].miners(node.component("router").board)} == {"used"}


def confident(favourite: int, p: float):
    async def respond(task: TaskReceived) -> TaskResult:
        rows = 1 if task.body.get("positions") == "last" else len(task.payload)
        return TaskResult({"ids": [[favourite]] * rows}, np.log(np.full((rows, 1), p, np.float32)))
    return respond


async def test_a_completion_follows_the_miner_that_explains_its_prompt(tmp_path) -> None:
    # Equal weights: the confident wrong miner alone would win the first token (0.5·0.99 > 0.5·0.6).
    node, hot, _ = setup(tmp_path, [confident(ord("a"), 0.6), confident(ord("z"), 0.99)], k=2, k_min=2)
    async with node.running():
        router = node.component("router")
        before = {h: router.board.miners[h].weight for h in hot}
        ids, steps = await router.complete(np.frombuffer(b"a" * 16, np.uint8), 4)
        after = {h: router.board.miners[h].weight for h in hot}
    assert bytes(ids) == b"aaaa"
    assert steps[-1].weights[steps[-1].used.index(hot[1])] < 0.05
    assert after[hot[1]] > 0.3 and before[hot[1]] > after[hot[1]]  # the router's own weights move one step only


async def test_images_are_combined_without_the_outlier(tmp_path) -> None:
    truth = np.full((8, 8, 1), 100, np.uint8)

    def paint(value: int):
        async def respond(task: TaskReceived) -> TaskResult:
            return TaskResult({}, np.full(task.payload.shape, value, np.uint8))
        return respond

    node, hot, _ = setup(tmp_path, [paint(100), paint(102), paint(98), paint(250)], k=4, k_min=4)
    async with node.running():
        r = node.component("router")
        r.config = type(r.config)(**{**r.config.__dict__, "modality": "image"})
        mixed = await r.image("denoise", truth, {"sigma": 10.0}, how="median")
    assert mixed.dropped == [hot[3]] and int(mixed.value[0, 0, 0]) == 100
