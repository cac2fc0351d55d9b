"""The ``chain/evm`` component in a running node: deploy on start, block and epoch events, and the
chain's endpoint going away and coming back while the node keeps running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from evm_helpers import key, register
from tnode.errors import ChainError
from tnode.events import BlockProduced, EpochCompleted
from tnode.node import Node
from tnode.plugins.chain_evm.anvil import Anvil
from tnode.weights import WeightVector

pytestmark = pytest.mark.anyio


def make_node(tmp_path: Path, url: str) -> Node:
    hp = {"tempo": 5, "difficulty": 4, "weights_rate_limit": 0, "immunity_period": 0,
          "max_registrations_per_block": 8, "max_registrations_per_interval": 64}
    doc = {"chain": {"type": "evm", "rpc_url": url, "contract": "deploy", "keeper": True, "poll_interval": 0.05,
                     "max_backoff": 0.2, "request_timeout": 1.0, "hyperparameters": hp}}
    return Node.from_dict(doc, data_dir=tmp_path, hotkey=key("node-hot"), coldkey=key("node-cold"))


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.05)


async def test_node_follows_blocks_and_posts_epochs(anvil_bin: str, tmp_path: Path) -> None:
    blocks: list[BlockProduced] = []
    epochs: list[EpochCompleted] = []
    with Anvil(block_time=1) as anvil:
        node = make_node(tmp_path, anvil.url)

        async def on_block(ev: BlockProduced) -> None:
            blocks.append(ev)

        async def on_epoch(ev: EpochCompleted) -> None:
            epochs.append(ev)

        node.bus.subscribe(BlockProduced, on_block)
        node.bus.subscribe(EpochCompleted, on_epoch)
        async with node.running():
            chain = node.chain
            client = chain.client
            assert await chain.subnets() == {node.netuid: "text"}
            cold = key("node-cold")
            await client.fund(chain.operator, cold, 10**12)
            for name in ("v", "m1", "m2"):
                await register(client, key(name), cold)
            await chain.add_stake(cold, key("v").public_hex, 10**10)
            await chain.set_weights(key("v"), WeightVector((1, 2), (65535, 30000)))
            await _wait(lambda: any(sum(e.incentive) > 0.99 for e in epochs), 30, "an epoch with weights")
    numbers = [b.number for b in blocks]
    assert numbers == sorted(numbers) and len(numbers) >= 3
    last = [e for e in epochs if sum(e.incentive) > 0.99][-1]
    assert last.block % 5 == 0 and last.incentive[1] > last.incentive[2] > 0


async def test_anvil_killed_mid_run_then_back(anvil_bin: str, tmp_path: Path) -> None:
    state = tmp_path / "anvil-state.json"
    anvil = Anvil(block_time=1, state=state).start()
    try:
        node = make_node(tmp_path, anvil.url)
        async with node.running():
            chain = node.chain
            await _wait(lambda: chain.head >= 1, 10, "a block")
            await anyio.sleep(1.5)  # the state file is written every second
            anvil.stop()
            await _wait(lambda: not chain.reachable, 10, "the outage to be noticed")
            with pytest.raises(ChainError) as err:
                await chain.block_number()
            assert err.value.code == "unreachable"
            assert node.bus is not None  # the node itself keeps running
            before = chain.head
            anvil = Anvil(port=anvil.port, block_time=1, state=state).start()
            await _wait(lambda: chain.reachable and chain.head > before, 20, "the chain to be back")
            assert chain.unreachable_count >= 1
            assert await chain.subnets() == {node.netuid: "text"}  # same contract, same state
    finally:
        anvil.stop()
