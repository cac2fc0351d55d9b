"""A devnet: an authority node and a client node over real libp2p on 127.0.0.1. The client
registers with proof of work, stakes, sets weights and reads the metagraph through the authority."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from chain_helpers import find_nonce, key
from tnode.errors import ChainError
from tnode.events import BlockProduced
from tnode.hyperparameters import Hyperparameters
from tnode.node import Node
from tnode.plugins.chain_local.codec import TOKEN
from tnode.weights import WeightVector

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AUTH_COLD, AUTH_HOT = key("dn-auth-cold"), key("dn-auth-hot")
CLIENT_COLD, CLIENT_HOT = key("dn-client-cold"), key("dn-client-hot")


def _transport() -> dict[str, Any]:
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"]}


def _has_libp2p() -> bool:
    try:
        from tnode.assembly import load_plugins_for

        return "libp2p" in load_plugins_for({}, None).registry.types("transport")
    except Exception:
        return False


@pytest.mark.skipif(not _has_libp2p(), reason="the libp2p transport plugin is not available")
async def test_client_registers_and_sets_weights_through_the_authority(tmp_path: Path) -> None:
    authority = Node.from_dict({
        "transport": _transport(),
        "chain": {"type": "local", "block_time": 0.05, "hyperparameters": {
            "tempo": 10, "difficulty": 64, "weights_rate_limit": 0, "immunity_period": 0}, "genesis": {"accounts": [
                {"coldkey": AUTH_COLD.public_hex, "hotkey": AUTH_HOT.public_hex, "stake": 10},
                {"coldkey": CLIENT_COLD.public_hex, "balance": 20}]}},
    }, data_dir=tmp_path / "auth", hotkey=AUTH_HOT, coldkey=AUTH_COLD)
    async with authority.running():
        addr = authority.transport.listen_addrs()[0]
        client = Node.from_dict({
            "transport": _transport(),
            "chain": {"type": "local", "mode": "client", "authority": addr, "request_timeout": 5.0},
        }, data_dir=tmp_path / "client", hotkey=CLIENT_HOT, coldkey=CLIENT_COLD)
        seen: list[int] = []

        async def on_block(ev: BlockProduced) -> None:
            seen.append(ev.number)

        client.bus.subscribe(BlockProduced, on_block)
        async with client.running():
            chain = client.chain
            assert chain.genesis_hash == authority.chain.genesis_hash
            # The rules arrive typed over libp2p, as the authority reports them (current burn in tokens).
            hp = await chain.hyperparameters()
            assert type(hp) is Hyperparameters and hp == await authority.chain.hyperparameters()
            assert (hp.tempo, hp.difficulty, hp.weights_rate_limit, hp.burn) == (10, 64, 0, 1.0)
            assert (await chain.metagraph()).hyperparameters == hp
            head = await chain.block_number()
            block_hash = bytes.fromhex(await chain.block_hash(head))
            nonce = find_nonce(block_hash, CLIENT_HOT.public_bytes, await chain.difficulty())
            uid = await chain.register(CLIENT_HOT, CLIENT_COLD.public_hex, block=head, nonce=nonce)
            assert uid == 1
            await chain.add_stake(CLIENT_COLD, CLIENT_HOT.public_hex, 15 * TOKEN)  # a stake majority
            await chain.wait_for_block(chain.head().number + 2, timeout=10)
            await chain.set_weights(CLIENT_HOT, WeightVector.from_floats([0, 1], [0.75, 0.25]))
            await chain.publish_addrs(CLIENT_HOT, client.transport.listen_addrs(), client.peer_id)
            with pytest.raises(ChainError) as err:
                await chain.transfer(CLIENT_COLD, AUTH_COLD.public_hex, 100 * TOKEN)
            assert err.value.code == "insufficient_balance"
            mg = await chain.metagraph(matrices=True)
            me = mg.by_hotkey(CLIENT_HOT.public_hex)
            assert me is not None and me.stake == 15.0 and me.peer_id == client.peer_id
            assert mg.weights is not None and mg.weights[1, 0] == 1.0
            assert await chain.balance(CLIENT_COLD.public_hex) == 5 * TOKEN
            with anyio.fail_after(20):  # an epoch passes: the client's weights made consensus
                while (await chain.metagraph()).neurons[1].dividends == 0:
                    await anyio.sleep(0.05)
            mg = await chain.metagraph()
            assert mg.neurons[0].incentive == pytest.approx(1.0)  # self-weights do not count
            assert mg.neurons[1].validator_permit and mg.neurons[1].dividends == pytest.approx(1.0)
        assert len(seen) >= 3 and seen == sorted(seen)


@pytest.mark.skipif(not _has_libp2p(), reason="the libp2p transport plugin is not available")
async def test_cli_registers_and_stakes_as_a_client(tmp_path: Path) -> None:
    import sys

    import orjson
    from tnode.keys import Keystore

    store = Keystore(tmp_path / "client-data")
    hot, cold = store.new("hotkey", role="hotkey"), store.new("coldkey", role="coldkey")
    authority = Node.from_dict({
        "transport": _transport(),
        # No epoch during the test (the three commands take seconds each): the stake stays what was added.
        "chain": {"type": "local", "block_time": 0.05, "hyperparameters": {"difficulty": 2000, "tempo": 100_000},
                  "genesis": {"accounts": [{"coldkey": cold.public_hex, "balance": 3}]}},
    }, data_dir=tmp_path / "auth", hotkey=AUTH_HOT, coldkey=AUTH_COLD)
    async with authority.running():
        toml = tmp_path / "client.toml"
        toml.write_text(f"""
[node]
data_dir = "client-data"

[transport]
type = "libp2p"
listen = ["/ip4/127.0.0.1/tcp/0"]

[chain]
type = "local"
mode = "client"
authority = "{authority.transport.listen_addrs()[0]}"
""")
        tnode = [sys.executable, "-c", "from tnode.cli import main; main()"]
        with anyio.fail_after(60):
            done = await anyio.run_process([*tnode, "register", "-c", str(toml), "--processes", "1"], check=False)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            assert b"as uid 0" in done.stdout
            done = await anyio.run_process([*tnode, "stake", "add", "1.5", "-c", str(toml)], check=False)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            done = await anyio.run_process([*tnode, "wallet", "balance", "-c", str(toml), "--json"], check=False)
        info = orjson.loads(done.stdout)
        assert info["balance"] == 1_500_000_000 and info["stake"] == 1_500_000_000
        mg = await authority.chain.metagraph()
        assert mg.by_hotkey(hot.public_hex) is not None and mg.neurons[0].stake == 1.5
