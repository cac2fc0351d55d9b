"""tnode's Yamux against stock py-libp2p hosts and against itself, on real loopback connections."""

from __future__ import annotations

import contextlib
import os

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.host.ping import PingService
from libp2p.identity.identify.identify import ID as IDENTIFY_ID
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.network.stream.exceptions import StreamEOF, StreamReset
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.utils.varint import read_length_prefixed_protobuf
from tnode.keys import Keypair
from tnode.plugins.libp2p import yamux
from tnode.plugins.libp2p.framing import read_exactly
from tnode.plugins.libp2p.host import build_host
from tnode.plugins.libp2p.muxer import StreamLimits, buffered_bytes

pytestmark = pytest.mark.anyio

ECHO = "/test/echo/1"
LISTEN = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
PAIRS = [("stock", "tnode"), ("tnode", "stock"), ("tnode", "tnode")]  # (dialer, listener)


def _host(kind: str, limits: StreamLimits | None = None):
    if kind == "stock":
        return new_host()  # py-libp2p's defaults: Noise, its own Yamux, none of tnode's code
    if kind == "tnode-session":  # tnode's Yamux through the Noise session's own read/write
        host = build_host(Keypair.generate(), max_connections=16, listen=LISTEN)
        yamux.install(host, limits, direct_noise=False)
        return host
    return build_host(Keypair.generate(), max_connections=16, listen=LISTEN, stream_limits=limits, yamux_impl=kind)


@contextlib.asynccontextmanager
async def _pair(dialer: str, listener: str, limits: StreamLimits | None = None):
    """Two running hosts, the dialer connected to the listener."""
    a, b = _host(listener, limits), _host(dialer)
    async with a.run(LISTEN), b.run(LISTEN):
        try:
            with trio.fail_after(10):
                await b.connect(info_from_p2p_addr(multiaddr.Multiaddr(f"{a.get_addrs()[0]}")))
            yield a, b
        finally:
            with trio.CancelScope(shield=True):
                await b.close()
                await a.close()


def _muxed(host, peer_id):
    conns = host.get_network().get_connections(peer_id)
    return conns[0].muxed_conn if conns else None


async def _read_to_eof(stream) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = await stream.read(1 << 20)
        except StreamEOF:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


async def _echo_to_eof(stream) -> None:
    """Read the whole request (up to the peer's FIN), answer it reversed, then FIN."""
    try:
        data = await _read_to_eof(stream)
        await stream.write(data[::-1])
    finally:
        with contextlib.suppress(Exception):
            await stream.close()


@pytest.mark.parametrize(("dialer", "listener"), PAIRS)
async def test_messages_cross_intact_on_concurrent_streams_with_half_close(dialer, listener):
    async with _pair(dialer, listener) as (a, b):
        a.set_stream_handler(ECHO, _echo_to_eof)
        sizes = [1, 1024, 1 << 20, 4 << 20] * 3

        async def one(size: int) -> None:
            stream = await b.new_stream(a.get_id(), [ECHO])
            payload = os.urandom(size)
            await stream.write(payload)
            await stream.close()  # FIN: the peer's read ends; this side still reads the answer
            assert await _read_to_eof(stream) == payload[::-1]

        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                for size in sizes:
                    nursery.start_soon(one, size)


@pytest.mark.parametrize(("dialer", "listener"), [*PAIRS, ("tnode-session", "stock"), ("stock", "tnode-session")])
async def test_length_prefixed_echo_on_reused_streams(dialer, listener):
    async def echo(stream) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await read_exactly(stream, 4)
                await stream.write(head + await read_exactly(stream, int.from_bytes(head, "big")))

    async with _pair(dialer, listener) as (a, b):
        a.set_stream_handler(ECHO, echo)

        async def client() -> None:
            stream = await b.new_stream(a.get_id(), [ECHO])
            for size in (1, 1024, 300 * 1024, 1024, 1):
                payload = os.urandom(size)
                await stream.write(len(payload).to_bytes(4, "big") + payload)
                assert (await read_exactly(stream, 4 + size))[4:] == payload
            await stream.reset()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(16):
                    nursery.start_soon(client)


@pytest.mark.parametrize(("dialer", "listener"), PAIRS)
async def test_resets_reach_the_other_side_both_ways(dialer, listener):
    seen: list[str] = []

    async def reader(stream) -> None:
        try:
            while await stream.read(65536):
                pass
            seen.append("eof")
        except StreamEOF:
            seen.append("eof")
        except StreamReset:
            seen.append("reset")

    async def resetter(stream) -> None:
        await read_exactly(stream, 5)
        await stream.reset()

    async with _pair(dialer, listener) as (a, b):
        a.set_stream_handler(ECHO, reader)
        a.set_stream_handler("/test/reset/1", resetter)
        with trio.fail_after(10):
            stream = await b.new_stream(a.get_id(), [ECHO])
            await stream.write(b"some bytes")
            await stream.reset()  # the dialer resets: the listener's read fails
            while not seen:
                await trio.sleep(0.01)
            # py-libp2p's Yamux drops a reset stream before its reader looks, and answers EOF.
            assert seen == ["reset"] if listener == "tnode" else seen[0] in ("reset", "eof")
            stream = await b.new_stream(a.get_id(), ["/test/reset/1"])
            await stream.write(b"hello")
            # The listener resets: the dialer's read fails (py-libp2p's says EOF, see above).
            with pytest.raises(StreamReset if dialer == "tnode" else (StreamReset, StreamEOF)):
                while await stream.read(65536):
                    pass
            if listener == "tnode":  # a reset stream leaves nothing behind in tnode's muxer
                conn = _muxed(a, b.get_id())
                assert not any(s.reset_received for s in conn.streams.values())


@pytest.mark.parametrize(("dialer", "listener"), [("stock", "tnode"), ("tnode", "stock")])
async def test_ping_and_identify_across_implementations(dialer, listener):
    async with _pair(dialer, listener) as (a, b):
        with trio.fail_after(15):
            for x, y in ((b, a), (a, b)):
                rtts = await PingService(x).ping(y.get_id(), ping_amt=3)
                assert len(rtts) == 3
                stream = await x.new_stream(y.get_id(), [IDENTIFY_ID])
                msg = Identify()
                msg.ParseFromString(await read_length_prefixed_protobuf(stream, use_varint_format=True))
                await stream.close()
                assert msg.public_key == y.get_public_key().serialize()
        muxed = _muxed(a if listener == "tnode" else b, (b if listener == "tnode" else a).get_id())
        assert isinstance(muxed, yamux.Yamux)


@pytest.mark.parametrize("writer", ["stock", "tnode"])
async def test_a_reader_that_stops_holds_the_writer_within_the_window(writer):
    go, read = trio.Event(), trio.Event()
    got: list[bytes] = []

    async def late_reader(stream) -> None:
        await go.wait()
        got.append(await _read_to_eof(stream))
        read.set()

    size = 4 << 20
    async with _pair(writer, "tnode") as (a, b):
        a.set_stream_handler(ECHO, late_reader)
        payload = os.urandom(size)
        done = trio.Event()

        async def write() -> None:
            stream = await b.new_stream(a.get_id(), [ECHO])
            await stream.write(payload)
            await stream.close()
            done.set()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await trio.sleep(1.0)
                conn = _muxed(a, b.get_id())
                assert not done.is_set()  # held: nobody reads
                assert 0 < buffered_bytes(conn) <= yamux.INITIAL_WINDOW  # no more than the window
                go.set()
            await read.wait()  # the writer may finish before the reader has read the last window
        assert got == [payload]


H = yamux.HEADER


@pytest.mark.parametrize(("frames", "counter"), [
    ("overrun", "window_exceeded"),  # more DATA than the stream's window
    ("oversized", "window_exceeded"),  # a DATA frame larger than any window, for no known stream
    ("version", "protocol_errors"),
    ("type", "protocol_errors"),
])
async def test_protocol_violations_close_the_connection_and_are_counted(frames, counter):
    limits = StreamLimits(stats={})
    async with _pair("tnode", "tnode", limits) as (a, b):
        a.set_stream_handler(ECHO, _echo_to_eof)
        with trio.fail_after(10):
            stream = await b.new_stream(a.get_id(), [ECHO])  # an open stream on both ends
            sid = stream.muxed_stream.stream_id
            conn = _muxed(b, a.get_id())
            bad = {
                "overrun": [H.pack(0, yamux.TYPE_DATA, 0, sid, yamux.INITIAL_WINDOW + 1), bytes(60000)],
                "oversized": [H.pack(0, yamux.TYPE_DATA, 0, 999, limits.max_window_bytes + 1)],
                "version": [H.pack(1, yamux.TYPE_PING, yamux.FLAG_SYN, 0, 7)],
                "type": [H.pack(0, 9, 0, sid, 0)],
            }[frames]
            await conn._write(bad)
            while _muxed(a, b.get_id()) is not None:
                await trio.sleep(0.02)
            while not conn.is_closed:  # the peer sees the connection end too
                await trio.sleep(0.02)
        assert limits.stats[counter] == 1, limits.stats
        assert sum(limits.stats.values()) == 1, limits.stats


async def test_inbound_streams_past_the_limit_are_refused():
    limits = StreamLimits(max_inbound_streams=4, stats={})
    held = []

    async def hold(stream) -> None:
        held.append(stream)
        await trio.sleep_forever()

    async with _pair("stock", "tnode", limits) as (a, b):
        a.set_stream_handler(ECHO, hold)
        refused = 0
        with trio.fail_after(15):
            for _ in range(7):
                try:
                    await b.new_stream(a.get_id(), [ECHO])
                except Exception:  # reset while negotiating its protocol
                    refused += 1
        assert len(held) <= 4 and refused >= 3, (len(held), refused)
        assert limits.stats["streams_refused"] >= 3, limits.stats
        assert _muxed(a, b.get_id()).inbound_open <= 4


async def test_windows_grow_for_bulk_transfers_within_the_connection_bound():
    window, total = 1024 * 1024, 2 * 1024 * 1024
    limits = StreamLimits(max_inbound_streams=4, max_window_bytes=window, max_connection_bytes=total, stats={})
    got: list[int] = []

    async def sink(stream) -> None:  # reads all, never closes: the stream keeps its window
        got.append(len(await _read_to_eof(stream)))

    async with _pair("tnode", "tnode", limits) as (a, b):
        a.set_stream_handler(ECHO, sink)
        peak = {"over": -total, "one": 0, "bytes": 0}

        async def watch(conn) -> None:
            while True:
                streams = list(conn.streams.values())
                own = sum(1 for s in streams if s.is_initiator)
                windows = [s.target_recv_window for s in streams]
                peak["over"] = max(peak["over"], sum(windows) - limits.connection_bound(own))
                peak["one"] = max([peak["one"], *windows])
                peak["bytes"] = max(peak["bytes"], buffered_bytes(conn) - limits.connection_bound(own))
                await trio.sleep(0)

        async def send() -> None:
            stream = await b.new_stream(a.get_id(), [ECHO])
            await stream.write(bytes(4 << 20))
            await stream.close()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch, _muxed(a, b.get_id()))
                await send()  # alone: its window grows to the cap
                async with trio.open_nursery() as senders:  # three more: the connection's bound holds them
                    for _ in range(3):
                        senders.start_soon(send)
                while len(got) < 4:
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        assert got == [4 << 20] * 4
        assert peak["one"] == window
        assert peak["over"] <= 0 and peak["bytes"] <= 0, peak


class _SlowSession:
    """A secure connection whose writes take ``seconds`` each and which never has anything to read."""

    is_initiator = True

    def __init__(self, seconds: float) -> None:
        self.seconds, self.written, self.closed = seconds, [], False

    async def write(self, data: bytes) -> None:
        await trio.sleep(self.seconds)
        self.written.append(data)

    async def read(self, n=None) -> bytes:
        await trio.sleep_forever()

    async def close(self) -> None:
        self.closed = True


async def test_a_cancelled_write_still_sends_its_frames_whole():
    session = _SlowSession(0.2)
    conn = yamux.Yamux(session, None, limits=StreamLimits(stats={}))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.start)
        await conn.event_started.wait()
        with trio.move_on_after(0.05) as scope:
            await conn.open_stream()  # its SYN is being written when the caller gives up
        assert scope.cancelled_caught  # the cancellation is delivered...
        assert len(session.written) == 1 and not session.closed  # ...after the frame went out whole
        assert yamux.HEADER.unpack(session.written[0][:12])[2] == yamux.FLAG_SYN
        await conn.close()
    assert conn.is_closed and session.closed


async def test_a_write_the_peer_does_not_take_in_time_closes_the_connection(monkeypatch):
    monkeypatch.setattr(yamux, "FRAME_WRITE_SECONDS", 0.2)
    session = _SlowSession(10)
    conn = yamux.Yamux(session, None, limits=StreamLimits(stats={}))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.start)
            await conn.event_started.wait()
            with pytest.raises(Exception, match="cannot open a stream"):
                await conn.open_stream()
            await conn.event_closed.wait()  # the session is lost: closed, not reused
    assert session.closed and session.written == []


def test_the_yamux_switch_refuses_unknown_implementations(tmp_path):
    from tnode.errors import ConfigError
    from tnode.node import Node

    doc = {"transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "yamux": "mplex"},
           "modalities": {"echo": {"type": "echo"}}}
    with pytest.raises(ConfigError, match="yamux"):
        Node.from_dict(doc, data_dir=tmp_path / "n")
    with pytest.raises(ValueError, match="yamux_impl"):
        build_host(Keypair.generate(), max_connections=1, listen=LISTEN, yamux_impl="mplex")
