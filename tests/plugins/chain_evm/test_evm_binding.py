"""Identity binding: a key bound to an EVM account by a signature that does not verify is ignored
by every node, in the metagraph and in the epoch."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from evm_helpers import key, register
from tnode.plugins.chain_evm import pow as pow_
from tnode.plugins.chain_evm.epochs import compute_epoch
from tnode.weights import WeightVector

pytestmark = pytest.mark.anyio


async def test_forged_binding_is_ignored_in_metagraph_and_epoch(evm: Any) -> None:
    _anvil, client, dev = evm
    cold = key("cold")
    await client.fund(dev, cold, 10**12)
    val, m1, m2 = key("val"), key("m1"), key("m2")
    for k in (val, m1, m2):
        await register(client, k, cold)
    await client.add_stake(cold, val.public_hex, 10**11)
    await client.set_weights(val, WeightVector((1, 2), (65535, 0)))
    await client.publish_addrs(m1, ["/ip4/127.0.0.1/tcp/4001"], m1.peer_id)

    # Someone else's hotkey, claimed by an account the key never signed for.
    victim = key("victim")
    forger = Account.create()
    await client.fund(dev, forger.address, 10**12)
    await client._send(forger, "bindKey", victim.public_bytes, b"\x07" * 64)
    head = await client.block_number()
    nonce = pow_.solve(bytes.fromhex(await client.block_hash(head)), victim.public_bytes, await client.difficulty(),
                       start_nonce=0)
    await client._send(forger, "register", 1, head, nonce, victim.public_bytes)  # owns itself as coldkey
    await client._send(forger, "addStake", victim.public_bytes, value=10**21)  # outweighs the honest validator
    await client._send(forger, "publishAddrs", 1, "/ip4/6.6.6.6/tcp/6666", victim.peer_id)
    await client._send(forger, "setWeights", 1, [2], [65535], 0)

    mg = await client.metagraph(matrices=True)
    forged = mg.by_hotkey(victim.public_hex)
    assert forged is not None and forged.uid == 3
    assert forged.stake == 0.0 and forged.addrs == () and forged.peer_id == ""
    assert not forged.active and not forged.validator_permit
    assert mg.weights is not None and not mg.weights[3].any()
    honest = mg.by_hotkey(m1.public_hex)
    assert honest is not None and honest.addrs == ("/ip4/127.0.0.1/tcp/4001",)
    assert mg.by_hotkey(val.public_hex).stake == pytest.approx(100.0)  # type: ignore[union-attr]

    epoch = (await client.block_number() // 10 + 1) * 10
    await client.rpc.call("anvil_mine", hex(12))
    view = await compute_epoch(client, 1, epoch, None)
    assert not view.validator_permit[3]
    assert view.incentive[1] == pytest.approx(1.0)  # only the honest validator's weights count
    assert view.incentive[2] == 0.0
