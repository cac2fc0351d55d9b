"""Subnets over the chain RPC: a client node on real libp2p (127.0.0.1) lists the subnets, registers,
sets weights and reads the metagraph of a chosen netuid; its default is its own ``[node] netuid``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from chain_helpers import key
from test_chain_devnet import _has_libp2p, _transport
from tnode.errors import ChainError, TnodeError, find_error
from tnode.events import EpochCompleted
from tnode.node import Node
from tnode.weights import WeightVector

pytestmark = [pytest.mark.anyio, pytest.mark.slow,
              pytest.mark.skipif(not _has_libp2p(), reason="the libp2p transport plugin is not available")]

AUTH_COLD, AUTH_HOT = key("snr-auth-cold"), key("snr-auth-hot")
CLIENT_COLD, CLIENT_HOT = key("snr-client-cold"), key("snr-client-hot")
RULES = {"tempo": 4, "difficulty": 64, "weights_rate_limit": 0, "immunity_period": 0}


def _authority(tmp_path: Path) -> Node:
    return Node.from_dict({
        "node": {"netuid": 1},
        "transport": _transport(),
        "chain": {"type": "local", "block_time": 0.05, "genesis": {"accounts": [
            {"coldkey": AUTH_COLD.public_hex, "hotkey": AUTH_HOT.public_hex, "stake": 10, "netuids": [1, 2]},
            {"coldkey": CLIENT_COLD.public_hex, "balance": 20}]},
            "subnets": [{"netuid": 1, "modality": "text", "emission_share": 0.5, "hyperparameters": RULES},
                        {"netuid": 2, "modality": "image", "emission_share": 0.5, "hyperparameters": RULES}]},
    }, data_dir=tmp_path / "auth", hotkey=AUTH_HOT, coldkey=AUTH_COLD)


def _client(tmp_path: Path, addr: str, netuid: int) -> Node:
    return Node.from_dict({
        "node": {"netuid": netuid},
        "transport": _transport(),
        "chain": {"type": "local", "mode": "client", "authority": addr, "request_timeout": 5.0},
    }, data_dir=tmp_path / f"client{netuid}", hotkey=CLIENT_HOT, coldkey=CLIENT_COLD)


async def test_a_client_works_in_the_subnet_it_names(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    async with authority.running():
        client = _client(tmp_path, authority.transport.listen_addrs()[0], 2)
        epochs: list[int] = []

        async def on_epoch(ev: EpochCompleted) -> None:
            epochs.append(ev.netuid)

        client.bus.subscribe(EpochCompleted, on_epoch)
        async with client.running():
            chain = client.chain
            assert await chain.subnets() == {1: "text", 2: "image"}
            uid = await chain.burned_register(CLIENT_HOT, CLIENT_COLD)  # default: the client's netuid 2
            assert uid == 1
            assert (await chain.metagraph()).netuid == 2
            assert (await chain.metagraph(netuid=2)).by_hotkey(CLIENT_HOT.public_hex) is not None
            assert (await chain.metagraph(netuid=1)).by_hotkey(CLIENT_HOT.public_hex) is None
            assert await chain.burned_register(CLIENT_HOT, CLIENT_COLD, netuid=1) == 1
            await chain.wait_for_block(chain.head().number + 2, timeout=10)
            await authority.chain.set_weights(AUTH_HOT, WeightVector.from_floats([1], [1.0]), netuid=2)
            with anyio.fail_after(20):
                while (await chain.metagraph(netuid=2)).neurons[1].incentive == 0:
                    await anyio.sleep(0.05)
            # Subnet 1 had no weights: its miner earns no incentive there.
            assert (await chain.metagraph(netuid=1)).neurons[1].incentive == 0
            assert (await chain.hyperparameters(netuid=2)).tempo == 4
            with pytest.raises(ChainError) as exc:
                await chain.metagraph(netuid=9)
            assert exc.value.code == "unknown_subnet"
            with anyio.fail_after(10):
                while not {1, 2} <= set(epochs):
                    await anyio.sleep(0.05)


async def test_a_client_whose_netuid_is_not_a_subnet_is_refused(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    async with authority.running():
        client = _client(tmp_path, authority.transport.listen_addrs()[0], 9)
        with pytest.raises(BaseException) as caught:
            async with client.running():
                pass
        error: Any = caught.value
        if isinstance(error, BaseExceptionGroup):
            error = find_error(error, TnodeError)
        # The node reports which component failed and why.
        assert isinstance(error, TnodeError)
        assert "unknown_subnet" in str(error) and "netuid 9" in str(error) and "subnets: 1, 2" in str(error)
