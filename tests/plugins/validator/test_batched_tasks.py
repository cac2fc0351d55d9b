"""A validator with several tasks per step sends each miner one batched request and scores every task."""

from __future__ import annotations

import contextlib

import anyio
import numpy as np
import pytest
from tnode.interfaces import BatchingModality, Reply
from tnode.keys import Keypair
from tnode.node import Node
from tnode.testing import LoopbackNetwork, MemoryChain, plugin_manager

pytestmark = pytest.mark.anyio

CORPUS = "the quick brown fox jumps over the lazy dog. " * 200


def text_node(tmp_path, name: str, model: dict, plugins, key: Keypair, **extra) -> Node:
    (tmp_path / "corpus.txt").write_text(CORPUS)
    return Node.from_dict({
        "transport": {"type": "loopback"}, "chain": {"type": "memory"},
        "datasets": {"d": {"type": "text_files", "path": str(tmp_path / "corpus.txt")}},
        "models": {"m": model},
        "modalities": {"text": {"type": "text", "model": "m", "dataset": "d", "sequence_length": 16}},
        **extra,
    }, data_dir=tmp_path / name, hotkey=key, plugins=plugins)


async def test_one_request_per_miner_carries_the_step_and_the_good_model_scores_higher(tmp_path) -> None:
    chain, network = MemoryChain(), LoopbackNetwork()
    plugins = plugin_manager("text", "scoring", "validator", chain=chain, network=network)
    vkey = Keypair.generate()
    chain.add_neuron(vkey.public_hex, stake=100.0, permit=True)
    validator = text_node(tmp_path, "v", {"type": "uniform"}, plugins, vkey,
                          scorers={"ce": {"type": "cross_entropy"}},
                          validator={"type": "default", "modality": "text", "tasks_per_step": 4, "seed": 2,
                                     "step_interval": 3600, "timeout": 5.0})
    miners = {"ngram": {"type": "ngram", "dataset": "d"}, "uniform": {"type": "uniform"}}
    peers: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        uids = {}
        for name, model in miners.items():
            key = Keypair.generate()
            node = text_node(tmp_path, name, model, plugins, key)
            peers[name] = key.peer_id
            await stack.enter_async_context(node.running())
            uids[name] = chain.add_neuron(key.public_hex, addrs=[network.address(key.peer_id)], peer_id=key.peer_id)
        await stack.enter_async_context(validator.running())
        v = validator.component("validator")
        assert isinstance(v.modality, BatchingModality)
        with anyio.fail_after(60):
            while v.steps < 1:  # the validator's own loop runs its first step at start, then sleeps an hour
                await anyio.sleep(0.05)
            sent_before = len(network.requests)
            counted_before = {name: v.state.records[uids[name]].count for name in miners}
            report = await v.step()
    for name in miners:  # the four tasks of the step travelled together: one request per miner
        asked = [r for r in network.requests[sent_before:] if r[1] == peers[name]]
        assert asked == [(validator.peer_id, peers[name], "text", "next_token")]
    assert not report.errors, report.errors
    records = v.state.records
    for name in miners:  # each of the four tasks was scored on its own
        assert records[uids[name]].count == counted_before[name] + 4
    scores = v.state.scores()
    assert scores[uids["ngram"]] > scores[uids["uniform"]]


async def test_a_reply_without_one_answer_per_task_is_invalid(tmp_path) -> None:
    from tnode.errors import TaskError

    chain, network = MemoryChain(), LoopbackNetwork()
    plugins = plugin_manager("text", chain=chain, network=network)
    node = text_node(tmp_path, "n", {"type": "uniform"}, plugins, Keypair.generate())
    modality = node.component("modality", "text")
    rng = np.random.default_rng(0)
    async with node.running():
        tasks = [modality.make_task(rng) for _ in range(3)]
    batch = modality.batch_tasks(tasks)
    assert batch is not None and batch.body["batch"] == 3 and batch.payload.shape == (3, 16)
    short = Reply({"ids": [[[1]], [[2]]]}, np.zeros((2, 1, 1), np.float32), "p", "h", 0.1)
    with pytest.raises(TaskError) as err:
        modality.unbatch_reply(batch, tasks, short)
    assert err.value.code == "invalid_response"
    whole = Reply({"ids": [[[i]] for i in range(3)]}, np.zeros((3, 1, 1), np.float32), "p", "h", 0.1)
    parts = modality.unbatch_reply(batch, tasks, whole)
    assert [p.body["ids"] for p in parts] == [[[0]], [[1]], [[2]]]
    assert modality.batch_tasks(tasks * 10) is None  # more than a miner's max_tasks (16) cannot share one request
