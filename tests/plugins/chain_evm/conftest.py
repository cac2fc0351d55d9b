"""Fixtures of the EVM backend tests: a fresh anvil node with the contract and one subnet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest


@pytest.fixture
def anvil_bin() -> str:
    from tnode.errors import ChainError
    from tnode.plugins.chain_evm.anvil import anvil_binary

    try:
        return anvil_binary()
    except ChainError as exc:
        pytest.skip(str(exc))


@pytest.fixture
async def evm(anvil_bin: str) -> AsyncIterator[Any]:
    """(anvil, client, dev account) with subnet 1 created and the emission reserve funded."""
    from eth_account import Account
    from tnode.hyperparameters import Hyperparameters
    from tnode.plugins.chain_evm.anvil import DEV_KEY, Anvil
    from tnode.plugins.chain_evm.client import EvmSubnets
    from tnode.plugins.chain_evm.rpc import Rpc

    anvil = Anvil().start()
    rpc = Rpc(anvil.url)
    try:
        dev = Account.from_key(DEV_KEY)
        client = await EvmSubnets.connect(rpc, await EvmSubnets.deploy(rpc, dev))
        hp = Hyperparameters(difficulty=4, min_difficulty=1, weights_rate_limit=0, immunity_period=0, tempo=10,
                             max_registrations_per_block=64, max_registrations_per_interval=1024)
        await client.create_subnet(dev, 1, "text", hp)
        await client.fund_reserve(dev, 10**21)
        yield anvil, client, dev
    finally:
        await rpc.aclose()
        anvil.stop()
