"""A peer whose connections keep breaking the Yamux protocol is refused inbound connections for a while."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import trio
from libp2p.peer.id import ID
from libp2p_helpers import make_node
from tnode.errors import TaskError
from tnode.plugins.libp2p import inbound, yamux
from tnode.plugins.libp2p.inbound import ViolationBans

TASK = "/tnode/task/1"
BAN_SECONDS = 3.0


def _muxed_conn_to(node, peer_id: str):
    conns = node.transport.host.get_network().get_connections(ID.from_base58(peer_id))
    return conns[0].muxed_conn if conns else None


async def _echo(client, server) -> dict:
    return (await client.transport.request(server.peer_id, "echo", "echo", {"still": "serving"}, timeout=5)).body


async def _overrun_window(a, b) -> None:
    """``b`` sends one DATA frame past its stream's window; returns once both ends dropped the connection."""
    await b.transport.connect(a.transport.listen_addrs()[0])
    stream = await b.transport.host.new_stream(ID.from_base58(a.peer_id), [TASK])  # open on both ends
    conn = _muxed_conn_to(b, a.peer_id)
    sid = stream.muxed_stream.stream_id
    await conn._write([yamux.HEADER.pack(0, yamux.TYPE_DATA, 0, sid, yamux.INITIAL_WINDOW + 1), bytes(60000)])
    while _muxed_conn_to(a, b.peer_id) is not None or not conn.is_closed:
        await trio.sleep(0.02)


@pytest.mark.anyio
async def test_a_peer_overrunning_its_window_twice_is_refused_for_the_ban_time(tmp_path):
    a = make_node(tmp_path, "a", dht=False, announce_interval=0, violation_ban_after=2,
                  violation_ban_seconds=BAN_SECONDS)
    b = make_node(tmp_path, "b", dht=False, announce_interval=0)
    async with a.running(), b.running():
        stats = a.transport.stats
        with trio.fail_after(20):
            await _overrun_window(a, b)
            assert stats["window_exceeded"] == 1 and stats["peers_banned"] == 0, dict(stats)
            assert await _echo(b, a) == {"still": "serving"}  # one violation: the peer is still welcome
            await trio.sleep(0.1)  # let the new connection settle before it is broken again
            await _overrun_window(a, b)
            banned_at = time.monotonic()
            assert stats["window_exceeded"] == 2 and stats["peers_banned"] == 1, dict(stats)
            # Its next connection is refused once the handshake names the peer.
            with pytest.raises(TaskError):
                await b.transport.request(a.peer_id, "echo", "echo", {"still": "serving"}, timeout=2)
            assert time.monotonic() - banned_at < BAN_SECONDS  # refused within the ban, not after it
            assert stats["banned_refused"] >= 1, dict(stats)
            while _muxed_conn_to(a, b.peer_id) is not None:
                await trio.sleep(0.02)
            # Once the ban is over it is served again.
            await trio.sleep(max(0.0, banned_at + BAN_SECONDS + 0.2 - time.monotonic()))
            refused = stats["banned_refused"]
            b.transport._peer(a.peer_id).next_dial = 0.0  # the client's own dial back-off is not under test
            await b.transport.connect(a.transport.listen_addrs()[0])
            assert await _echo(b, a) == {"still": "serving"}
            assert stats["banned_refused"] == refused and stats["peers_banned"] == 1, dict(stats)


def test_violations_are_forgotten_after_the_ban_time_and_bans_are_bounded(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(inbound, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    stats: dict[str, int] = {}

    class Log:
        def warning(self, *args, **kw) -> None:
            pass

    bans = ViolationBans(after=2, seconds=10.0, stats=stats, log=Log(), max_peers=2)
    bans.record("p", "window_exceeded")
    clock[0] += 11.0  # the first violation is forgotten: the second is a first again
    bans.record("p", "protocol_errors")
    assert bans.banned("p") == 0 and stats["peers_banned"] == 0
    clock[0] += 1.0
    bans.record("p", "window_exceeded")
    assert bans.banned("p") == 10.0 and stats["peers_banned"] == 1
    clock[0] += 9.5
    assert bans.banned("p") == pytest.approx(0.5)
    clock[0] += 1.0
    assert bans.banned("p") == 0
    for peer in ("q", "r", "s"):
        bans.record(peer, "protocol_errors")
    assert len(bans._peers) == 2  # the peer quiet the longest is forgotten
    assert not ViolationBans(after=0, seconds=10.0, stats={}, log=Log()).enabled
