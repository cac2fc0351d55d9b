"""The epoch trust model: a keeper's honest posting verifies everywhere; a wrong one is detected by
every other node, which can dispute it on-chain."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from evm_helpers import key, register
from tnode.plugins.chain_evm.client import EvmSubnets
from tnode.plugins.chain_evm.contract import events
from tnode.plugins.chain_evm.epochs import EpochBook, compute_epoch
from tnode.weights import WeightVector

pytestmark = pytest.mark.anyio


async def _subnet_with_weights(client: EvmSubnets, dev: Any) -> None:
    cold = key("cold")
    await client.fund(dev, cold, 10**12)
    val, m1, m2 = key("val"), key("m1"), key("m2")
    for k in (val, m1, m2):
        await register(client, k, cold)
    await client.add_stake(cold, val.public_hex, 10**11)
    await client.set_weights(val, WeightVector((1, 2), (65535, 20000)))


async def _other_node(client: EvmSubnets) -> EvmSubnets:
    from tnode.plugins.chain_evm.rpc import Rpc

    return await EvmSubnets.connect(Rpc(client.rpc.url), client.address)


async def test_honest_keeper_verifies_on_every_node(evm: Any) -> None:
    _anvil, client, dev = evm
    await _subnet_with_weights(client, dev)
    keeper = EpochBook(client)
    others = [EpochBook(await _other_node(client)) for _ in range(2)]
    try:
        await client.rpc.call("anvil_mine", hex(12))
        posted = await keeper.keep(dev, 1)
        assert posted is not None and sum(posted.emission) > 0
        topic, _ = events()["EpochPosted"]
        postings = await client.rpc.call("eth_getLogs", {"address": client.address, "fromBlock": "0x0",
                                                         "topics": ["0x" + topic.hex()]})
        assert postings
        for book in others:
            assert await book.verify(1) == []
            assert book.checked == len(postings)
        mg = await client.metagraph()
        assert [round(n.emission * 1e9) for n in mg.neurons] == list(posted.emission)
        assert mg.neurons[1].incentive > mg.neurons[2].incentive > 0
    finally:
        for book in others:
            await book.client.rpc.aclose()


async def test_wrong_epoch_is_detected_by_every_other_node(evm: Any) -> None:
    _anvil, client, dev = evm
    await _subnet_with_weights(client, dev)
    others = [EpochBook(await _other_node(client)) for _ in range(2)]
    try:
        await client.rpc.call("anvil_mine", hex(12))
        honest = await compute_epoch(client, 1, 10, None)
        wrong = list(honest.emission)
        wrong[1], wrong[2] = wrong[2], wrong[1] + 5  # the keeper shifts a miner's pay
        await client.post_epoch(dev, 1, 10, wrong)
        for book in others:
            alarms = await book.verify(1)
            assert len(alarms) == 1
            assert alarms[0].block == 10 and alarms[0].computed == honest.emission
        # A registered node records the disagreement on-chain, where anyone can see it.
        from eth_abi import encode
        from eth_utils import keccak

        expected = keccak(b"".join(encode(["uint64"], [e]) for e in honest.emission))
        await others[0].client.dispute_epoch(key("val"), 1, 10, expected)
        topic, _ = events()["EpochDisputed"]
        logs = await client.rpc.call("eth_getLogs", {"address": client.address, "fromBlock": "0x0",
                                                     "topics": ["0x" + topic.hex()]})
        assert len(logs) == 1
    finally:
        for book in others:
            await book.client.rpc.aclose()


async def test_tnode_chain_verify_exits_non_zero_on_a_wrong_epoch(evm: Any, tmp_path: Any) -> None:
    """``tnode chain verify -c node.toml`` (a node on the contract) and its alias ``tnode evm verify``."""
    import sys
    from pathlib import Path

    _anvil, client, dev = evm
    (tmp_path / "node.toml").write_text(
        f'[node]\nname = "checker"\ndata_dir = "./data"\ncreate_keys = true\n\n'
        f'[chain]\ntype = "evm"\nrpc_url = "{client.rpc.url}"\ncontract = "{client.address}"\n')
    chain_verify = [str(Path(sys.executable).with_name("tnode")), "chain", "verify", "-c", str(tmp_path / "node.toml")]
    await _subnet_with_weights(client, dev)
    await client.rpc.call("anvil_mine", hex(12))
    tnode = [str(Path(sys.executable).with_name("tnode")), "evm", "verify", "--contract", client.address,
             "--rpc-url", client.rpc.url]
    honest = await compute_epoch(client, 1, 10, None)
    await client.post_epoch(dev, 1, 10, honest.emission)
    done = await anyio.run_process(tnode, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert b"1 epoch(s) checked, 0 mismatch(es)" in done.stdout
    done = await anyio.run_process(chain_verify, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert b"1 epoch(s) checked, 0 mismatch(es)" in done.stdout
    second = await compute_epoch(client, 1, 20, honest)
    wrong = list(second.emission)
    wrong[1], wrong[2] = wrong[2], wrong[1]
    await client.post_epoch(dev, 1, 20, wrong)
    done = await anyio.run_process(tnode, check=False)
    assert done.returncode == 1
    assert b"MISMATCH epoch 20" in done.stdout
    done = await anyio.run_process(chain_verify, check=False)
    assert done.returncode == 1, done.stderr.decode()
    assert b"MISMATCH" in done.stdout and b"epoch 20" in done.stdout
    assert b"2 epoch(s) checked, 1 mismatch(es)" in done.stdout


async def test_tnode_evm_register_solves_the_contracts_proof_of_work(evm: Any, tmp_path: Any) -> None:
    import sys
    from pathlib import Path

    _anvil, client, _dev = evm
    (tmp_path / "node.toml").write_text(
        f'[node]\nname = "miner"\ndata_dir = "./data"\ncreate_keys = true\n\n'
        f'[chain]\ntype = "evm"\nrpc_url = "{client.rpc.url}"\ncontract = "{client.address}"\n')
    cmd = [str(Path(sys.executable).with_name("tnode")), "evm", "register", "-c", str(tmp_path / "node.toml")]
    done = await anyio.run_process(cmd, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.strip() == b"registered as uid 0"
    mg = await client.metagraph()
    assert mg.n == 1 and mg.neurons[0].coldkey != "00" * 32
    again = await anyio.run_process(cmd, check=False, cwd=tmp_path)  # already registered: the same uid
    assert again.returncode == 0 and again.stdout.strip() == b"registered as uid 0"
