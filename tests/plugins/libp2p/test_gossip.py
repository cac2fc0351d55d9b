"""Announcements over gossipsub: relayed across hops, forged ones dropped, never critical."""

from __future__ import annotations

import contextlib

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from libp2p_helpers import make_node
from tnode import wire
from tnode.events import AnnouncementReceived
from tnode.keys import Keypair
from tnode.plugins.libp2p.gossip import TOPIC
from tnode.plugins.libp2p.host import libp2p_keypair

pytestmark = pytest.mark.anyio


def _collect(node) -> list[AnnouncementReceived]:
    got: list[AnnouncementReceived] = []

    async def on_ann(ev: AnnouncementReceived) -> None:
        got.append(ev)

    node.bus.subscribe(AnnouncementReceived, on_ann)
    return got


async def test_announcement_relayed_by_gossip_to_a_peer_not_connected(tmp_path):
    b = make_node(tmp_path, "b", announce_interval=1.0, dht=False)
    async with b.running():
        boot = (b.transport.listen_addrs()[0],)
        a = make_node(tmp_path, "a", bootstrap=boot, announce_interval=1.0, dht=False)
        c = make_node(tmp_path, "c", bootstrap=boot, announce_interval=1.0, dht=False)
        got = _collect(c)
        async with a.running(), c.running():
            with trio.fail_after(15):
                while not any(ev.peer_id == a.peer_id for ev in got):
                    await trio.sleep(0.05)
            ann = next(ev for ev in got if ev.peer_id == a.peer_id)
            assert ann.hotkey == a.hotkey.public_hex and "echo" in ann.modalities and ann.capacity == 64
            assert ann.addrs == tuple(a.transport.listen_addrs())
            # C never connected to A: the announcement came through B's gossip relay.
            assert not c.transport._peers[a.peer_id].connected
            assert c.transport.gossip.stats["accepted"] >= 1
            table = {p.peer_id: p for p in c.transport.peers()}
            assert table[a.peer_id].modalities == ("echo",)
            # ...and its addresses are now enough to reach A directly.
            reply = await c.transport.request(a.peer_id, "echo", "echo", {"k": "v"}, timeout=5)
            assert reply.body == {"k": "v"}


@contextlib.asynccontextmanager
async def _plain_gossiper(key: Keypair, target: str):
    """A py-libp2p host with stock gossipsub (not tnode code), connected to ``target``."""
    host = new_host(key_pair=libp2p_keypair(key))
    router = GossipSub([PROTOCOL_ID], degree=6, degree_low=4, degree_high=12, heartbeat_interval=1)
    pubsub = Pubsub(host, router)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            async with background_trio_service(pubsub), background_trio_service(router):
                await pubsub.wait_until_ready()
                info = info_from_p2p_addr(multiaddr.Multiaddr(target))
                await host.connect(info)
                with trio.fail_after(10):
                    while info.peer_id not in pubsub.peer_topics.get(TOPIC, ()):
                        await trio.sleep(0.05)
                yield pubsub
        finally:
            with trio.CancelScope(shield=True):
                await host.close()


async def test_forged_announcements_dropped(tmp_path):
    a = make_node(tmp_path, "a", announce_interval=30.0, dht=False)
    got = _collect(a)
    async with a.running():
        gossiper = Keypair.generate()
        mallory = Keypair.generate()

        def frame(signer: Keypair, **kw) -> bytes:
            body = {"modalities": ["evil"], "version": "0", "capacity": 1, "addrs": []}
            return wire.encode(signer, kind="ann", modality="_announce", task="announce", receiver="", body=body,
                               **kw)

        async with _plain_gossiper(gossiper, a.transport.listen_addrs()[0]) as pubsub:
            # Signed by another key than the gossip origin's.
            await pubsub.publish(TOPIC, frame(mallory))
            # Claims the origin's key but the signature is mallory's.
            await pubsub.publish(TOPIC, frame(mallory).replace(mallory.public_hex.encode(),
                                                                gossiper.public_hex.encode()))
            await pubsub.publish(TOPIC, b"not a frame")
            await pubsub.publish(TOPIC, frame(gossiper, ts_ms=1_000))  # stale
            stats = a.transport.gossip.stats
            with trio.fail_after(10):
                while stats["dropped"] < 4:
                    await trio.sleep(0.05)
            assert stats["accepted"] == 0 and not got
            # Control: the same host with an authentic announcement is accepted.
            await pubsub.publish(TOPIC, frame(gossiper))
            with trio.fail_after(10):
                while not got:
                    await trio.sleep(0.05)
    assert [(ev.peer_id, ev.modalities) for ev in got] == [(gossiper.peer_id, ("evil",))]


async def test_gossip_failure_is_not_fatal(tmp_path, monkeypatch):
    async def broken_heartbeat(self) -> None:
        raise RuntimeError("heartbeat broke")

    monkeypatch.setattr(GossipSub, "heartbeat", broken_heartbeat)
    a = make_node(tmp_path, "a", announce_interval=0.3, dht=False)
    async with a.running():
        b = make_node(tmp_path, "b", bootstrap=(a.transport.listen_addrs()[0],), announce_interval=0.3, dht=False)
        got = _collect(b)
        async with b.running():
            with trio.fail_after(10):
                while a.transport.gossip.running or b.transport.gossip.running:
                    await trio.sleep(0.05)
            reply = await b.transport.request(a.peer_id, "echo", "echo", {"still": "up"}, timeout=5)
            assert reply.body == {"still": "up"}
            # Periodic announcements fall back to request/response: more keep arriving.
            before = len([ev for ev in got if ev.peer_id == a.peer_id])
            with trio.fail_after(10):
                while len([ev for ev in got if ev.peer_id == a.peer_id]) < before + 2:
                    await trio.sleep(0.05)
            assert a.transport.gossip.stats["published"] == 0
