"""Helpers of the EVM backend tests."""

from __future__ import annotations

from typing import Any

from tnode.keys import Keypair
from tnode.plugins.chain_evm import pow as pow_


def key(name: str) -> Keypair:
    return Keypair.from_seed(name.encode().ljust(32, b"\0")[:32])


async def register(client: Any, hotkey: Keypair, coldkey: Keypair) -> int:
    await client._as(hotkey)
    head = await client.block_number()
    nonce = pow_.solve(bytes.fromhex(await client.block_hash(head)), hotkey.public_bytes, await client.difficulty(),
                       start_nonce=0)
    return int(await client.register(hotkey, coldkey.public_hex, block=head, nonce=nonce))
