"""registered_only: senders need a uid (and optionally stake or a permit); the view follows blocks."""

from __future__ import annotations

import anyio
import pytest
from antispam_fakes import hotkey, key, make_node, plugins, request
from tnode import dispatch
from tnode.errors import ConfigError, TaskError
from tnode.events import BlockProduced, SpamDetected
from tnode.interfaces import TaskResult
from tnode.node import Node

pytestmark = pytest.mark.anyio

ALICE, MALLORY = hotkey("alice"), hotkey("mallory")


async def settle(node: Node, reads: int) -> None:
    """Wait (bounded) until the fake chain served ``reads`` metagraph reads and the bus is idle."""
    chain = node.chain
    with anyio.fail_after(2):
        while chain.reads < reads:
            await anyio.sleep(0.001)
    for _ in range(10):
        await anyio.sleep(0)


async def test_registered_sender_is_admitted_and_unregistered_refused(tmp_path) -> None:
    node = make_node(tmp_path, {"reg": {"type": "registered_only"}})
    node.chain.add_neuron(ALICE)
    async with node.running():
        flt = node.component("spam_filter", "reg")
        assert await flt.admit(request(ALICE)) is None
        with pytest.raises(TaskError) as err:
            await flt.admit(request(MALLORY))
    assert err.value.code == "unregistered"
    assert flt.stats()["admitted"] == 1
    assert flt.stats()["refused"] == {"not_registered": 1}


async def test_services_never_reach_it_so_newcomers_can_register(tmp_path) -> None:
    node = make_node(tmp_path, {"reg": {"type": "registered_only"}})

    async def probe(call: dispatch.ServiceCall) -> TaskResult:
        return TaskResult({"pong": call.sender})

    async with node.running():
        pipeline = dispatch.of(node)
        undo = pipeline.serve_service("probe", probe)
        try:
            answer = await pipeline.handle(request(MALLORY, modality=dispatch.service_route("probe")))
            assert answer.body == {"pong": MALLORY}
            with pytest.raises(TaskError) as err:
                await pipeline.handle(request(MALLORY, modality="text"))
        finally:
            undo()
    assert err.value.code == "unregistered"
    assert node.component("spam_filter", "reg").stats()["refused"] == {"not_registered": 1}


async def test_allowlisted_hotkey_needs_no_uid(tmp_path) -> None:
    node = make_node(tmp_path, {"reg": {"type": "registered_only", "allow": [MALLORY]}})
    async with node.running():
        await node.component("spam_filter", "reg").admit(request(MALLORY))


async def test_min_stake_and_validator_permit(tmp_path) -> None:
    bob, carol = hotkey("bob"), hotkey("carol")
    node = make_node(tmp_path, {"reg": {"type": "registered_only", "min_stake": 10.0,
                                        "validator_permit_only": True}})
    node.chain.add_neuron(ALICE, stake=100.0, permit=True)
    node.chain.add_neuron(bob, stake=1.0, permit=True)
    node.chain.add_neuron(carol, stake=100.0, permit=False)
    async with node.running():
        flt = node.component("spam_filter", "reg")
        await flt.admit(request(ALICE))
        for sender in (bob, carol):
            with pytest.raises(TaskError) as err:
                await flt.admit(request(sender))
            assert err.value.code == "unregistered"
    assert flt.stats()["refused"] == {"low_stake": 1, "no_permit": 1}


async def test_view_refreshes_at_most_once_per_block(tmp_path) -> None:
    node = make_node(tmp_path, {"reg": {"type": "registered_only"}})
    async with node.running():
        flt = node.component("spam_filter", "reg")
        chain = node.chain
        assert chain.reads == 1  # loaded once at start
        with pytest.raises(TaskError):
            await flt.admit(request(MALLORY))
        chain.add_neuron(MALLORY)  # registers in block 2: not visible until that block is announced
        with pytest.raises(TaskError):
            await flt.admit(request(MALLORY))
        chain.block = 2
        for _ in range(3):
            await node.bus.publish(BlockProduced(2, "00" * 32, 0.0))
        await node.bus.publish(BlockProduced(1, "00" * 32, 0.0))  # an old block changes nothing
        await settle(node, 2)
        assert chain.reads == 2
        await flt.admit(request(MALLORY))
        chain.block = 3
        await node.bus.publish(BlockProduced(3, "00" * 32, 0.0))
        await settle(node, 3)
        assert chain.reads == 3
        assert flt.stats()["block"] == 3


async def test_filters_share_one_view_per_node(tmp_path) -> None:
    node = make_node(tmp_path, {"reg": {"type": "registered_only"}, "prio": {"type": "stake_priority"}})
    async with node.running():
        await node.bus.publish(BlockProduced(2, "00" * 32, 0.0))
        node.chain.block = 2
        await settle(node, 2)
        assert node.chain.reads == 2  # one start-up load and one per block, not one per filter


async def test_unreachable_chain_fails_closed_until_it_answers(tmp_path) -> None:
    node = make_node(tmp_path, {"reg": {"type": "registered_only"}})
    node.chain.add_neuron(ALICE)
    node.chain.fail_reads = 1_000_000
    async with node.running():
        flt = node.component("spam_filter", "reg")
        with pytest.raises(TaskError) as err:
            await flt.admit(request(ALICE))
        assert "not loaded" in err.value.message
        node.chain.fail_reads = 0
        node.chain.block = 2
        await node.bus.publish(BlockProduced(2, "00" * 32, 0.0))
        await settle(node, 2)
        await flt.admit(request(ALICE))
    assert flt.stats()["refused"] == {"no_metagraph": 1}


async def test_refusals_are_reported_once_per_sender_and_rule(tmp_path) -> None:
    node = make_node(tmp_path, {"reg": {"type": "registered_only"}})
    seen: list[SpamDetected] = []

    async def collect(event: SpamDetected) -> None:
        seen.append(event)

    node.bus.subscribe(SpamDetected, collect)
    async with node.running():
        flt = node.component("spam_filter", "reg")
        for _ in range(50):
            with pytest.raises(TaskError):
                await flt.admit(request(MALLORY))
        await anyio.sleep(0.01)
    assert [(e.subject, e.kind) for e in seen] == [(MALLORY, "not_registered")]
    assert flt.stats()["refused"]["not_registered"] == 50


def test_needs_a_chain(tmp_path) -> None:
    with pytest.raises(ConfigError, match="needs a \\[chain\\]"):
        make_node(tmp_path, {"reg": {"type": "registered_only"}}, chain=False)


async def test_against_the_local_chain(tmp_path) -> None:
    """The real embedded chain: a genesis-registered hotkey is served, a stranger is not."""
    alice, cold = key("alice"), key("alice-cold")
    doc = {
        "transport": {"type": "loopback"},
        "chain": {"type": "local", "block_time": 0.05,
                  "genesis": {"accounts": [{"coldkey": cold.public_hex, "balance": 10.0, "hotkey": alice.public_hex,
                                            "stake": 5.0, "register": True}]}},
        "spam": {"reg": {"type": "registered_only", "min_stake": 1.0}},
    }
    node = Node.from_dict(doc, data_dir=tmp_path, plugins=plugins("chain_local"))
    async with node.running():
        flt = node.component("spam_filter", "reg")
        await flt.admit(request(alice.public_hex))
        with pytest.raises(TaskError):
            await flt.admit(request(MALLORY))
        with anyio.fail_after(5):
            while flt.view.block < 3:  # follows the chain's blocks
                await anyio.sleep(0.02)
