"""Kademlia DHT: a node reaches a peer it only knows by id through a common bootstrap peer."""

from __future__ import annotations

import contextlib

import pytest
import trio
from libp2p.peer.id import ID
from libp2p_helpers import make_node
from tnode.errors import TaskError

pytestmark = pytest.mark.anyio


async def _wait_routing(node, size: int) -> None:
    with trio.fail_after(10):
        while node.transport.dht.routing_table_size() < size:
            await trio.sleep(0.05)


def _knows_addrs(node, peer_id: str) -> bool:
    peer = node.transport._peers.get(peer_id)
    if peer is not None and peer.addrs:
        return True
    return bool(node.transport._peerstore_addrs(ID.from_base58(peer_id)))


@contextlib.asynccontextmanager
async def _line(tmp_path, **transport):
    """Three nodes A - B - C: A and C bootstrap only to B. Announcements off (they carry addresses)."""
    b = make_node(tmp_path, "b", announce_interval=0, **transport)
    async with b.running():
        boot = (b.transport.listen_addrs()[0],)
        a = make_node(tmp_path, "a", bootstrap=boot, announce_interval=0, **transport)
        c = make_node(tmp_path, "c", bootstrap=boot, announce_interval=0, **transport)
        async with a.running(), c.running():
            yield a, b, c


async def test_peer_found_by_id_through_the_dht(tmp_path):
    async with _line(tmp_path) as (a, b, c):
        await _wait_routing(b, 2)
        await _wait_routing(a, 1)
        assert not _knows_addrs(a, c.peer_id)  # only the DHT can tell A where C is
        reply = await a.transport.request(c.peer_id, "echo", "echo", {"via": "dht"}, b"x", timeout=10)
        assert reply.body == {"via": "dht"} and reply.hotkey == c.hotkey.public_hex
        assert a.transport.dht.lookups == 1
        assert _knows_addrs(a, c.peer_id)


async def test_without_dht_a_peer_known_only_by_id_is_unreachable(tmp_path):
    async with _line(tmp_path, dht=False) as (a, b, c):
        with trio.fail_after(10):
            while not any(p.connected for p in a.transport.peers()):
                await trio.sleep(0.05)
        assert a.transport.dht is None
        with pytest.raises(TaskError) as err:
            await a.transport.request(c.peer_id, "echo", "echo", {}, timeout=5)
        assert err.value.code == "unreachable"
        assert "no known address" in err.value.message


async def test_dht_lookup_of_an_absent_peer_fails_cleanly(tmp_path):
    from tnode.keys import Keypair

    async with _line(tmp_path) as (a, b, c):
        await _wait_routing(a, 1)
        ghost = Keypair.generate().peer_id
        with trio.fail_after(15):
            with pytest.raises(TaskError) as err:
                await a.transport.request(ghost, "echo", "echo", {}, timeout=5)
        assert err.value.code in ("unreachable", "timeout")
