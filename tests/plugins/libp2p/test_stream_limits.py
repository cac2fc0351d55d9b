"""One connection's inbound streams and receive windows are bounded; the node keeps serving past them."""

from __future__ import annotations

import contextlib

import pytest
import trio
from libp2p.peer.id import ID
from libp2p_helpers import make_node
from tnode import wire
from tnode.plugins.libp2p.muxer import StreamLimits, atomic_frame_writes, buffered_bytes

pytestmark = pytest.mark.anyio

TASK = "/tnode/task/1"
WINDOW = 512 * 1024
MAX_FRAME = 4 * 1024 * 1024


def _muxed_conn_to(node, peer_id: str):
    conns = node.transport.host.get_network().get_connections(ID.from_base58(peer_id))
    return conns[0].muxed_conn if conns else None


async def _echo(client, server) -> dict:
    return (await client.transport.request(server.peer_id, "echo", "echo", {"still": "serving"}, timeout=5)).body


async def test_streams_beyond_the_limit_are_reset_and_the_node_keeps_serving(tmp_path):
    limit, extra = 8, 6
    a = make_node(tmp_path, "a", dht=False, announce_interval=0, max_streams_per_connection=limit)
    b = make_node(tmp_path, "b", dht=False, announce_interval=0)
    async with a.running(), b.running():
        await b.transport.connect(a.transport.listen_addrs()[0])
        assert await _echo(b, a) == {"still": "serving"}  # identify and the first request are done
        held, refused = [], 0
        with trio.fail_after(20):
            for _ in range(limit + extra):
                try:
                    stream = await b.transport.host.new_stream(ID.from_base58(a.peer_id), [TASK])
                except Exception:  # reset during protocol negotiation
                    refused += 1
                    continue
                held.append(stream)
            for stream in list(held):  # a stream the node accepted waits for a frame; a refused one is reset
                with trio.move_on_after(0.5):
                    try:
                        await stream.read(1)
                    except Exception:
                        refused += 1
                        held.remove(stream)
        assert len(held) <= limit, len(held)
        assert refused >= extra, refused
        assert a.transport.stats["streams_refused"] >= extra, dict(a.transport.stats)
        for stream in held:  # the client gives its streams back; new ones are served again
            with contextlib.suppress(Exception):
                await stream.reset()
        await trio.sleep(0.2)
        assert await _echo(b, a) == {"still": "serving"}


async def test_receive_windows_stay_capped_and_a_peer_ignoring_them_is_disconnected(tmp_path):
    a = make_node(tmp_path, "a", dht=False, announce_interval=0, max_stream_window_bytes=WINDOW,
                  max_frame_bytes=MAX_FRAME, partial_frame_bytes=MAX_FRAME, partial_frame_bytes_per_peer=MAX_FRAME,
                  frame_read_seconds=4.0, tarpit_forgive_per_second=100.0)
    b = make_node(tmp_path, "b", dht=False, announce_interval=0)
    prefix = wire.PREFIX.pack(MAX_FRAME - 8)
    async with a.running(), b.running():
        await b.transport.connect(a.transport.listen_addrs()[0])
        conn = _muxed_conn_to(a, b.peer_id)
        bound = StreamLimits(a.transport.config.max_streams_per_connection, WINDOW).buffered_bound
        pid = ID.from_base58(a.peer_id)
        peak = {"bytes": 0, "window": 0}

        async def watch() -> None:
            while True:
                peak["bytes"] = max(peak["bytes"], buffered_bytes(conn))
                peak["window"] = max([peak["window"], *(s.target_recv_window for s in list(conn.streams.values()))])
                await trio.sleep(0.005)

        async def send(stream, data: bytes) -> None:
            with contextlib.suppress(Exception):  # cut short when the node resets or disconnects
                await stream.write(data)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                # A compliant sender: the node reads 3/4 of a maximal frame (its window grows), then stalls.
                reader = await b.transport.host.new_stream(pid, [TASK])
                await send(reader, prefix + bytes(3 * MAX_FRAME // 4))
                await trio.sleep(0.3)
                assert a.transport.stats["window_exceeded"] == 0, dict(a.transport.stats)
                # A hostile one: its frame waits for the budget the first holds, and it ignores the window.
                flood = await b.transport.host.new_stream(pid, [TASK])
                flood.muxed_stream.send_window = 1 << 30
                await send(flood, prefix + bytes(MAX_FRAME - 8))
                with trio.move_on_after(5):
                    while _muxed_conn_to(a, b.peer_id) is conn:
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
        assert peak["window"] <= WINDOW, peak
        assert a.transport.stats["window_exceeded"] >= 1, dict(a.transport.stats)
        assert _muxed_conn_to(a, b.peer_id) is not conn  # that connection is closed
        assert peak["bytes"] <= 2 * WINDOW * 2, peak  # two streams, each under twice its window
        assert peak["bytes"] <= bound
        await b.transport.connect(a.transport.listen_addrs()[0])
        assert await _echo(b, a) == {"still": "serving"}


class _SlowConn:
    """A muxed connection whose frame writes take ``seconds`` each (the shape py-libp2p's Yamux has)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.written, self.closed = seconds, [], False

    async def _write_frame(self, data: bytes) -> None:
        await trio.sleep(self.seconds)
        self.written.append(data)

    async def close(self) -> None:
        self.closed = True


async def test_a_cancelled_frame_write_still_writes_the_whole_frame():
    # Noise encrypts before it sends: a write cut short desynchronises the session for good.
    conn = _SlowConn(0.2)
    atomic_frame_writes(conn, seconds=5)
    with trio.move_on_after(0.05) as scope:
        await conn._write_frame(b"frame")
    assert scope.cancelled_caught  # the caller's cancellation is still delivered...
    assert conn.written == [b"frame"] and not conn.closed  # ...after the frame went out whole


async def test_a_frame_write_past_its_deadline_closes_the_connection():
    conn = _SlowConn(10)
    atomic_frame_writes(conn, seconds=0.1)
    with pytest.raises(trio.BrokenResourceError):
        await conn._write_frame(b"frame")
    assert conn.closed and conn.written == []
