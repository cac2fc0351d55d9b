"""tnode.testing: the in-memory chain keeps the subnet's rules; the loopback transport admits like a node."""

from __future__ import annotations

import numpy as np
import pytest
from tnode.errors import ChainError, ComponentStartError, TaskError
from tnode.events import TaskReceived
from tnode.hyperparameters import Hyperparameters
from tnode.interfaces import TaskResult
from tnode.keys import Keypair
from tnode.node import Node
from tnode.testing import TOKEN, LoopbackNetwork, MemoryChain, plugin_manager
from tnode.weights import WeightVector

pytestmark = pytest.mark.anyio


def keys(n: int) -> list[Keypair]:
    return [Keypair.from_seed(bytes([i + 1]) * 32) for i in range(n)]


# ----------------------------------------------------------------------------- chain
async def test_set_weights_is_validated_and_stored_max_upscaled() -> None:
    chain = MemoryChain(Hyperparameters(weights_rate_limit=0, min_allowed_weights=1))
    v, m = keys(2)
    chain.add_neuron(v.public_hex)
    chain.add_neuron(m.public_hex)
    await chain.set_weights(v, WeightVector((0, 1), (1000, 3000)))
    assert chain.weights[v.public_hex] == WeightVector((0, 1), (21845, 65535))
    graph = await chain.metagraph()
    assert graph.weights is not None and graph.weights[0, 1] == pytest.approx(0.75)
    with pytest.raises(ChainError) as err:
        await chain.set_weights(v, WeightVector((5,), (1,)))
    assert err.value.code == "uid_out_of_range"


async def test_weights_are_rate_limited_by_block() -> None:
    chain = MemoryChain(Hyperparameters(weights_rate_limit=3))
    (v,) = keys(1)
    chain.add_neuron(v.public_hex)
    await chain.set_weights(v, WeightVector((0,), (1,)))
    chain.advance(2)
    with pytest.raises(ChainError) as err:
        await chain.set_weights(v, WeightVector((0,), (1,)))
    assert err.value.code == "rate_limited"
    chain.advance(1)
    await chain.set_weights(v, WeightVector((0,), (1,)))
    assert [c[0] for c in chain.weight_calls] == [0, 3]


async def test_commit_then_reveal_within_the_window_only() -> None:
    hp = Hyperparameters(commit_reveal_weights_enabled=True, commit_reveal_period=2, commit_reveal_window=3,
                         weights_rate_limit=0)
    chain = MemoryChain(hp)
    (v,) = keys(1)
    chain.add_neuron(v.public_hex)
    vector = WeightVector((0,), (65535,))
    with pytest.raises(ChainError, match="commit"):
        await chain.set_weights(v, vector)
    await chain.commit_weights(v, vector.commit_hash(v.public_hex, "salt", 0))
    with pytest.raises(ChainError) as early:
        await chain.reveal_weights(v, vector, "salt")
    assert early.value.code == "reveal_too_early"
    chain.advance(2)
    with pytest.raises(ChainError) as wrong:
        await chain.reveal_weights(v, vector, "other salt")
    assert wrong.value.code == "no_commit"
    await chain.reveal_weights(v, vector, "salt")
    assert chain.weights[v.public_hex] == vector and chain.commits(v.public_hex) == []
    await chain.commit_weights(v, vector.commit_hash(v.public_hex, "late", 0))
    chain.advance(2 + 3)
    with pytest.raises(ChainError) as expired:
        await chain.reveal_weights(v, vector, "late")
    assert expired.value.code == "commit_expired"


async def test_burned_register_pays_the_burn_and_refuses_twice() -> None:
    chain = MemoryChain(Hyperparameters(burn=2.0))
    hot, cold = keys(2)
    chain.credit(cold.public_hex, 3 * TOKEN)
    assert await chain.burned_register(hot, cold) == 0
    assert await chain.balance(cold.public_hex) == 1 * TOKEN
    with pytest.raises(ChainError) as err:
        await chain.burned_register(hot, cold)
    assert err.value.code in ("already_registered", "insufficient_balance")
    other = Keypair.generate()
    with pytest.raises(ChainError) as poor:
        await chain.burned_register(other, cold)
    assert poor.value.code == "insufficient_balance"


async def test_failing_reads_then_recovery() -> None:
    chain = MemoryChain(blocks_per_read=1)
    chain.fail_reads = 1
    with pytest.raises(ChainError) as err:
        await chain.metagraph()
    assert err.value.code == "unreachable"
    assert (await chain.metagraph()).block == 1


# ----------------------------------------------------------------------------- loopback
def node(tmp_path, name: str, key: Keypair, chain: MemoryChain, network: LoopbackNetwork, **sections) -> Node:
    doc = {"transport": {"type": "loopback"}, "chain": {"type": "memory"}, **sections}
    return Node.from_dict(doc, data_dir=tmp_path / name, hotkey=key,
                          plugins=plugin_manager("echo", "antispam", chain=chain, network=network))


async def test_a_request_reaches_another_nodes_modality_through_the_bus(tmp_path) -> None:
    chain, network = MemoryChain(), LoopbackNetwork()
    a, b = keys(2)
    served = node(tmp_path, "a", a, chain, network, modalities={"echo": {"type": "echo"}})
    asking = node(tmp_path, "b", b, chain, network)
    async with served.running(), asking.running():
        payload = np.arange(6, dtype=np.float32).reshape(2, 3)
        reply = await asking.transport.request(served.transport.listen_addrs()[0], "echo", "any", {"x": [1, 2]},
                                               payload, timeout=2.0)
        assert reply.body == {"x": [1, 2]} and reply.hotkey == a.public_hex
        assert isinstance(reply.payload, np.ndarray) and reply.payload.tolist() == payload.tolist()
        assert reply.payload is not payload  # the receiver had its own copy, as after the wire
        with pytest.raises(TaskError) as unknown:
            await asking.transport.request(a.peer_id, "image", "any", {}, timeout=2.0)
        assert unknown.value.code == "unknown_modality"
        own = await served.transport.request(a.peer_id, "echo", "self", {"y": 1}, timeout=2.0)
        assert own.body == {"y": 1}


async def test_spam_filters_of_the_receiver_refuse(tmp_path) -> None:
    chain, network = MemoryChain(), LoopbackNetwork()
    a, b = keys(2)
    spam = {"rate": {"type": "token_bucket", "rate": 0.001, "burst": 1}}
    served = node(tmp_path, "a", a, chain, network, modalities={"echo": {"type": "echo"}}, spam=spam)
    asking = node(tmp_path, "b", b, chain, network)
    async with served.running(), asking.running():
        await asking.transport.request(a.peer_id, "echo", "t", {}, timeout=2.0)
        with pytest.raises(TaskError) as refused:
            await asking.transport.request(a.peer_id, "echo", "t", {}, timeout=2.0)
        assert refused.value.code == "rate_limited"


async def test_responders_unreachable_peers_and_timeouts(tmp_path) -> None:
    import anyio

    chain, network = MemoryChain(), LoopbackNetwork()
    a, good, stuck = keys(3)

    async def answer(task: TaskReceived) -> TaskResult:
        return TaskResult({"got": task.body["q"], "from": task.sender[:8]})

    async def never(task: TaskReceived) -> TaskResult:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    network.add_responder(good, answer)
    network.add_responder(stuck, never)
    asking = node(tmp_path, "a", a, chain, network)
    async with asking.running():
        reply = await asking.transport.request(good.peer_id, "text", "t", {"q": 3}, timeout=2.0)
        assert reply.body == {"got": 3, "from": a.public_hex[:8]} and reply.hotkey == good.public_hex
        with pytest.raises(TaskError) as slow:
            await asking.transport.request(stuck.peer_id, "text", "t", {}, timeout=0.05)
        assert slow.value.code == "timeout"
        with pytest.raises(TaskError) as gone:
            await asking.transport.request(Keypair.generate().peer_id, "text", "t", {}, timeout=1.0)
        assert gone.value.code == "unreachable"
        with pytest.raises(TaskError) as bad:
            await asking.transport.request(good.peer_id, "text", "t", {"q": object()}, timeout=1.0)
        assert bad.value.code == "invalid_request"
    assert (a.peer_id, good.peer_id, "text", "t") in network.requests


def test_plugin_manager_names_unknown_builtins() -> None:
    with pytest.raises(ValueError, match="unknown built-in plugin"):
        plugin_manager("no_such_plugin", chain=MemoryChain())


async def test_two_nodes_cannot_share_a_peer_id(tmp_path) -> None:
    chain, network = MemoryChain(), LoopbackNetwork()
    (a,) = keys(1)
    first, second = node(tmp_path, "1", a, chain, network), node(tmp_path, "2", a, chain, network)
    async with first.running():
        with pytest.raises(ComponentStartError, match="already on this loopback network"):
            async with second.running():
                pass
