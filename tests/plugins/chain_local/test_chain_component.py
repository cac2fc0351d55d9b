"""The chain component in a running node: block production, events, the ChainBackend API,
group commit, nonce handling, the client protocol served on the bus, and the ledger lock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from chain_helpers import find_nonce, key
from tnode import dispatch
from tnode.errors import ChainError, ComponentStartError
from tnode.events import BlockProduced, EpochCompleted, NeuronRegistered
from tnode.hyperparameters import Hyperparameters
from tnode.interfaces import InboundRequest
from tnode.node import Node
from tnode.plugins.chain_local.codec import TOKEN
from tnode.plugins.chain_local.config import LocalChainConfig
from tnode.weights import WeightVector, quantize

pytestmark = pytest.mark.anyio

MINERS = [key(f"cc-miner-{i}") for i in range(3)]


def node_doc(coldkey: str, hotkey: str, **hyper: Any) -> dict[str, Any]:
    hp = {"tempo": 4, "difficulty": 8, "weights_rate_limit": 0, "immunity_period": 0,
          "max_registrations_per_block": 8, **hyper}
    return {"chain": {"type": "local", "block_time": 0.02, "hyperparameters": hp, "genesis": {"accounts": [
        {"coldkey": coldkey, "hotkey": hotkey, "balance": 50, "stake": 100},
    ]}}}


def make_node(tmp_path: Path, **hyper: Any) -> Node:
    cold, hot = key("cc-cold"), key("cc-hot")
    return Node.from_dict(node_doc(cold.public_hex, hot.public_hex, **hyper), data_dir=tmp_path, hotkey=hot,
                          coldkey=cold)


async def test_authority_produces_blocks_and_events(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    blocks: list[BlockProduced] = []
    regs: list[NeuronRegistered] = []
    epochs: list[EpochCompleted] = []

    async def on_block(ev: BlockProduced) -> None:
        blocks.append(ev)

    async def on_reg(ev: NeuronRegistered) -> None:
        regs.append(ev)

    async def on_epoch(ev: EpochCompleted) -> None:
        epochs.append(ev)

    node.bus.subscribe(BlockProduced, on_block)
    node.bus.subscribe(NeuronRegistered, on_reg)
    node.bus.subscribe(EpochCompleted, on_epoch)
    async with node.running():
        chain = node.chain
        cold = node.load_coldkey()
        for miner in MINERS:  # PoW registration through the component
            head = await chain.block_number()
            block_hash = bytes.fromhex(await chain.block_hash(head))
            nonce = find_nonce(block_hash, miner.public_bytes, await chain.difficulty())
            await chain.register(miner, cold.public_hex, block=head, nonce=nonce)
        # Weights set in a uid's registration block count as outdated: wait for the next block.
        await chain.wait_for_block(chain.head().number + 1, timeout=5)
        await chain.set_weights(node.hotkey, WeightVector.from_floats([1, 2, 3], [0.2, 0.3, 0.5]))
        start = chain.head().number
        await chain.wait_for_block(start + 9, timeout=10)
        mg = await chain.metagraph()
        await anyio.sleep(0.1)  # let subscribers drain
    numbers = [b.number for b in blocks]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # every block, in order
    assert [(r.uid, r.hotkey) for r in regs] == [(i + 1, m.public_hex) for i, m in enumerate(MINERS)]
    assert epochs and all(e.block % 4 == 0 for e in epochs)
    assert sum(mg.neurons[u].incentive for u in (1, 2, 3)) > 0.99
    assert mg.neurons[3].incentive > mg.neurons[1].incentive
    assert sum(n.stake for n in mg.neurons) > 100  # emission was paid into stake


async def test_concurrent_submissions_are_group_committed_in_nonce_order(tmp_path: Path) -> None:
    # No emission: epochs every few blocks would otherwise add to the stake this test reads back.
    node = make_node(tmp_path, block_emission=0.0)
    dests = [key(f"cc-dest-{i}").public_hex for i in range(40)]
    async with node.running():
        chain = node.chain
        cold = node.load_coldkey()
        async with anyio.create_task_group() as tg:
            for dest in dests:  # one signer, forty concurrent transfers: nonces must not collide
                tg.start_soon(chain.transfer, cold, dest, TOKEN)
        assert await chain.nonce(cold.public_hex) == 40
        assert [await chain.balance(d) for d in dests] == [TOKEN] * 40
        assert await chain.balance(cold.public_hex) == 10 * TOKEN
        with pytest.raises(ChainError) as err:
            await chain.transfer(cold, dests[0], 11 * TOKEN)
        assert err.value.code == "insufficient_balance"
        await chain.add_stake(cold, node.hotkey.public_hex, 2 * TOKEN)
        assert await chain.stake(cold.public_hex, node.hotkey.public_hex) == 102 * TOKEN
        await chain.remove_stake(cold, node.hotkey.public_hex, 2 * TOKEN)
        assert await chain.balance(cold.public_hex) == 10 * TOKEN


async def test_commit_reveal_through_the_component(tmp_path: Path) -> None:
    node = make_node(tmp_path, commit_reveal_weights_enabled=True, commit_reveal_period=2, commit_reveal_window=50)
    async with node.running():
        chain = node.chain
        cold = node.load_coldkey()
        await chain.burned_register(MINERS[0], cold)
        vector = WeightVector.from_floats([1], [1.0])
        digest = vector.commit_hash(node.hotkey.public_hex, "salty")
        await chain.commit_weights(node.hotkey, digest)
        with pytest.raises(ChainError) as err:
            await chain.reveal_weights(node.hotkey, vector, "salty")
        assert err.value.code == "reveal_too_early"
        (commit,) = await chain.commits(node.hotkey.public_hex)
        await chain.wait_for_block(commit["reveal_from"] - 1, timeout=10)
        await chain.reveal_weights(node.hotkey, vector, "salty")
        mg = await chain.metagraph(matrices=True)
        assert mg.weights is not None and mg.weights[0, 1] == 1.0


async def test_client_protocol_is_served_as_the_chain_service(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    async with node.running():
        chain = node.chain
        assert "chain" in dispatch.of(node).services()

        async def call(task: str, body: dict[str, Any]) -> dict[str, Any]:
            req = InboundRequest("00" * 32, "test", dispatch.service_route("chain"), task, body, 0, 0,
                                 time.monotonic() + 5)
            result = await dispatch.of(node).handle(req)
            return result.body

        assert (await call("balance", {"account": key("cc-cold").public_hex})) == {"ok": True, "result": 50 * TOKEN}
        bad = await call("balance", {"account": "nope"})
        assert bad["ok"] is False and bad["code"] == "invalid_args"
        assert (await call("mint", {}))["code"] == "unknown_call"
        mg = await call("metagraph", {})
        assert mg["result"]["neurons"]["hotkey"] == [key("cc-hot").public_hex]
        from tnode.plugins.chain_local.tx import Transaction

        cold = node.load_coldkey()
        tx = Transaction.create(cold, chain=chain.genesis_hash, nonce=0, call="set_weights",
                                args={"uids": [0], "weights": quantize([1.0]), "version_key": 0})
        reply = await call("submit_tx", {"tx": tx.to_wire()})
        assert reply == {"ok": False, "code": "not_registered",
                         "message": reply["message"]}  # the coldkey is not a registered hotkey
        assert (await call("submit_tx", {"tx": {"junk": 1}}))["code"] == "malformed_tx"


async def test_second_authority_on_the_same_ledger_is_refused(tmp_path: Path) -> None:
    first = make_node(tmp_path)
    second = make_node(tmp_path)
    async with first.running():
        with pytest.raises(ComponentStartError) as err:
            async with second.running():
                pass
        assert err.value.key_path == "chain" and "in use" in str(err.value)


async def test_metagraph_at_a_past_block(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    async with node.running():
        chain = node.chain
        cold = node.load_coldkey()
        before = await chain.block_number()
        await chain.burned_register(MINERS[1], cold)
        await chain.wait_for_block(before + 2, timeout=10)
        assert (await chain.metagraph(before)).n == 1
        assert (await chain.metagraph(before + 1)).n == 2
        with pytest.raises(ChainError) as err:
            await chain.metagraph(10**6)
        assert err.value.code == "unknown_block"


def test_a_client_refuses_hyperparameters_it_does_not_know() -> None:
    # What a client decodes from the authority's answer: an unknown key is refused, not ignored.
    from tnode.plugins.chain_local.api import QUERIES

    decode = QUERIES["hyperparameters"].decode
    wire = Hyperparameters(tempo=5).to_dict()
    assert decode(wire) == Hyperparameters(tempo=5)
    with pytest.raises(ChainError) as err:
        decode({**wire, "tempoo": 6})
    assert err.value.code == "invalid_response"
    assert "hyperparameters.tempoo" in err.value.message and "'tempo'" in err.value.message
    with pytest.raises(ChainError) as err:
        decode({**wire, "kappa": "high"})
    assert err.value.code == "invalid_response" and "hyperparameters.kappa" in err.value.message


def test_metagraph_wire_form_carries_typed_hyperparameters() -> None:
    from tnode.interfaces import Metagraph
    from tnode.plugins.chain_local.metagraph import from_wire, to_wire

    mg = Metagraph(3, 1, (), Hyperparameters(tempo=4, commit_reveal_weights_enabled=True))
    assert from_wire(to_wire(mg)).hyperparameters == mg.hyperparameters
    doc = to_wire(mg)
    doc["hyperparameters"]["surprise"] = 1
    with pytest.raises(ChainError) as err:
        from_wire(doc)
    assert err.value.code == "invalid_response"


def test_the_config_table_is_the_core_type() -> None:
    from tnode.config import load_table

    cfg = load_table(LocalChainConfig, {"hyperparameters": {"tempo": 9}})
    assert type(cfg.hyperparameters) is Hyperparameters and cfg.hyperparameters.tempo == 9


def test_weights_module_is_not_duplicated() -> None:
    import importlib

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tnode.plugins.chain_local.weights")
