"""Streams reset for stalling give back their buffered bytes at once, however many stall cycles run."""

from __future__ import annotations

import contextlib

import pytest
import trio
from libp2p.peer.id import ID
from libp2p_helpers import make_node
from tnode import wire
from tnode.plugins.libp2p.muxer import buffered_bytes

pytestmark = pytest.mark.anyio

MAX_FRAME = 2 * 1024 * 1024
STREAMS = 6  # one gets the per-peer budget, the others wait for room with bytes in their receive buffers
CYCLES = 5


def _muxed_conn_to(node, peer_id: str):
    conns = node.transport.host.get_network().get_connections(ID.from_base58(peer_id))
    assert conns, "the peers are not connected"
    return conns[0].muxed_conn


def _dead(conn) -> dict[int, int]:
    """Streams reset or closed but still in the muxer's table, with the bytes each holds."""
    return {sid: len(conn.stream_buffers.get(sid, b"")) for sid, s in conn.streams.items() if s.closed}


async def test_reset_stalled_streams_hold_no_buffers_across_cycles(tmp_path):
    a = make_node(tmp_path, "a", dht=False, announce_interval=0, frame_read_seconds=1.0,
                  stream_idle_seconds=3.0, max_frame_bytes=MAX_FRAME, partial_frame_bytes=MAX_FRAME,
                  partial_frame_bytes_per_peer=MAX_FRAME, tarpit_forgive_per_second=100.0)
    b = make_node(tmp_path, "b", dht=False, announce_interval=0)
    size = MAX_FRAME - 8
    half_frame = wire.PREFIX.pack(size) + bytes(size // 2)
    async with a.running(), b.running():
        await b.transport.connect(a.transport.listen_addrs()[0])
        conn = _muxed_conn_to(a, b.peer_id)
        stats = a.transport.stats
        peak = {"dead": 0, "bytes": 0}

        async def stall() -> None:
            stream = await b.transport.host.new_stream(ID.from_base58(a.peer_id), ["/tnode/task/1"])
            try:
                await stream.write(half_frame)  # half of a maximal frame, then nothing
                with trio.move_on_after(5):
                    while await stream.read(65536):  # until the node resets it
                        pass
            except Exception:  # the reset (or a write cut short by it)
                pass
            with contextlib.suppress(Exception):
                await stream.reset()

        async def watch() -> None:
            # A stream is retained when it is still dead 20 ms later: a reset marks the stream closed
            # a scheduling step before it is finalized, and that instant is not what is measured.
            before: dict[int, int] = {}
            while True:
                now = _dead(conn)
                kept = {sid: held for sid, held in now.items() if sid in before}
                peak["dead"], peak["bytes"] = max(peak["dead"], len(kept)), max(peak["bytes"], sum(kept.values()))
                before = now
                await trio.sleep(0.02)

        with trio.fail_after(35):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                for _ in range(CYCLES):
                    async with trio.open_nursery() as streams:
                        for _ in range(STREAMS):
                            streams.start_soon(stall)
                nursery.cancel_scope.cancel()
        # Every cycle ran into the deadline: the reader by the read timeout, the others by the budget.
        assert stats["read_timeouts"] + stats["budget_refused"] >= CYCLES * (STREAMS - 1), dict(stats)
        assert stats["budget_refused"] >= CYCLES, dict(stats)
        # py-libp2p alone keeps each reset stream with its unread bytes for 60-90 s: megabytes per cycle.
        assert peak["bytes"] <= 256 * 1024, peak
        with trio.fail_after(5):
            while conn.streams or buffered_bytes(conn):
                await trio.sleep(0.05)
        assert not conn.stream_events  # no bookkeeping left behind for streams that are gone
        assert (await b.transport.request(a.peer_id, "echo", "echo", {"after": "stalls"}, timeout=5)).body == \
            {"after": "stalls"}
