"""tnode's Yamux: the ``/yamux/1.0.0`` stream muxer, lean, with tnode's limits built in.

Wire-compatible with the Yamux spec (hashicorp/yamux ``spec.md``: 12-byte header of version,
type, flags, stream id and length; DATA, WINDOW_UPDATE, PING, GO_AWAY; SYN/ACK/FIN/RST; 256 KiB
initial windows; odd stream ids for the dialer) and so with go-yamux, rust-yamux and py-libp2p's
own; it implements py-libp2p's ``IMuxedConn``/``IMuxedStream``, so the swarm, identify, ping, the
DHT and gossip run on it unchanged.

How it is built (one connection, this module; a stream's buffer, windows, reads and writes are
:mod:`.yamux_stream`'s :class:`~.yamux_stream.YamuxStream`):

- one reader task parses frames out of the decrypted byte stream (several per receive); a DATA
  body goes straight into its stream's receive buffer as it arrives, and the stream's reader is
  woken by one event; there are no locks on the read path;
- writes are serialized per connection by flat combining: the first writer flushes every frame
  queued meanwhile in one Noise seal and one socket write, shielded from cancellation and bounded
  by :data:`FRAME_WRITE_SECONDS` (a Noise write cut short desynchronises the session, so a flush
  that does not finish in time closes the connection); frames the reader task itself must send
  (ACK, RST of a refused stream, PING answers) go through a writer task, so the reader never
  blocks on the socket;
- flow control as go-yamux: receive credit goes back once half the stream's window has been
  read; a window grows (doubling, up to ``max_window_bytes``) when the sender was held by it,
  that is when less than a quarter of it was left when credit went back, and only within the
  connection's bound (below); a writer waits
  on a zero send window, up to :data:`SEND_WINDOW_SECONDS`; a write is split into DATA frames no
  larger than the window and than one Noise message carries.

Limits (:class:`~.muxer.StreamLimits`), kept from the py-libp2p muxer's patches:

- at most ``max_inbound_streams`` inbound streams are open (accepted or queued) per connection;
  a SYN beyond is answered by RST (``streams_refused``);
- a DATA frame longer than what is left of its stream's window (or than ``max_window_bytes`` for a
  stream no longer known) is a flow-control violation: GO_AWAY and the connection is closed
  (``window_exceeded``); a bad version, an unknown frame type or a duplicate SYN likewise
  (``protocol_errors``);
- a reset stream's buffer is freed at once and later DATA for it is read and discarded;
- a connection's unread bytes stay below ``max(max_connection_bytes, max_inbound_streams x 256 KiB)
  + 256 KiB x the streams this node opened on it`` (256 KiB: the window every stream starts with,
  granted by the spec without asking): a window grows only while the windows of all streams, plus
  the first windows of the inbound streams the peer may still open, fit in ``max_connection_bytes``.

A protocol violation (``window_exceeded``, ``protocol_errors``) is also reported, with the peer id,
to the ``on_violation`` callback given to :func:`install` before the connection is closed: the
transport counts violations per peer and refuses a repeat offender's inbound connections for a while.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import IMuxedConn, IMuxedStream
from libp2p.stream_muxer.exceptions import MuxedConnUnavailable, MuxedStreamError

from .muxer import FRAME_WRITE_SECONDS, StreamLimits
from .noise_frames import frames_for
from .yamux_stream import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    HEADER,
    HEADER_SIZE,
    INITIAL_WINDOW,
    MAX_DATA,
    SEND_WINDOW_SECONDS,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    YamuxStream,
)

PROTOCOL_ID = "/yamux/1.0.0"
#: Bytes of queued frames past which a writer waits for the flush (backpressure).
QUEUE_BYTES = 512 * 1024
MAX_STREAM_ID = (1 << 32) - 1

#: Told of each protocol violation before its connection closes: ``(peer id, counter key)``.
ViolationCallback = Callable[[Any, str], None]

__all__ = [
    "FLAG_ACK", "FLAG_FIN", "FLAG_RST", "FLAG_SYN", "GO_AWAY_NORMAL", "GO_AWAY_PROTOCOL_ERROR", "HEADER",
    "HEADER_SIZE", "INITIAL_WINDOW", "MAX_DATA", "MAX_STREAM_ID", "PROTOCOL_ID", "QUEUE_BYTES",
    "SEND_WINDOW_SECONDS", "TYPE_DATA", "TYPE_GO_AWAY", "TYPE_PING", "TYPE_WINDOW_UPDATE", "ProtocolViolation",
    "ViolationCallback", "Yamux", "YamuxStream", "install",
]


class ProtocolViolation(Exception):
    """The peer broke the Yamux protocol; ``key`` names the counter it goes to."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(why)
        self.key = key


class Yamux(IMuxedConn):
    """One Yamux session over a secure connection (``IMuxedConn``)."""

    def __init__(self, secured_conn: Any, peer_id: Any, is_initiator: bool | None = None,
                 limits: StreamLimits | None = None, on_close: Callable[[], Awaitable[Any]] | None = None,
                 direct_noise: bool = True, on_violation: ViolationCallback | None = None) -> None:
        self.secured_conn = secured_conn
        self.peer_id = peer_id
        self.limits = limits or StreamLimits()
        self.on_close = on_close
        self.on_violation = on_violation
        self.is_initiator_value = secured_conn.is_initiator if is_initiator is None else is_initiator
        self._next_id = 1 if self.is_initiator_value else 2
        self.streams: dict[int, YamuxStream] = {}
        self.inbound_open = 0
        self.buffered = 0  # unread bytes in all stream buffers
        self.granted = 0  # sum of the streams' receive windows
        self.event_started = trio.Event()
        self.event_closed = trio.Event()
        self.event_shutting_down = trio.Event()
        self._io = frames_for(secured_conn, direct=direct_noise)
        self._accept_send, self._accept_recv = trio.open_memory_channel[YamuxStream](math.inf)
        self._queue: list[bytes] = []
        self._queued = 0
        self._flushing = False
        self._room: trio.Event | None = None
        self._kick = trio.Event()
        self._broken = False
        self._goaway_received = False
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------------------ IMuxedConn
    @property
    def is_initiator(self) -> bool:
        return self.is_initiator_value

    @property
    def is_established(self) -> bool:
        return self.event_started.is_set() and not self.event_shutting_down.is_set()

    @property
    def is_closed(self) -> bool:
        return self.event_closed.is_set()

    @property
    def stream_buffers(self) -> dict[int, bytearray]:
        """Each open stream's receive buffer, by stream id (a snapshot)."""
        return {sid: s.buffer for sid, s in self.streams.items()}

    @property
    def stream_events(self) -> dict[int, trio.Event]:
        """The wake-up event of each open stream whose reader is waiting, by stream id (a snapshot)."""
        return {sid: s._read_waiter for sid, s in self.streams.items() if s._read_waiter is not None}

    def get_transport_addresses(self) -> list[Any]:
        return list(self.secured_conn.get_transport_addresses())

    def get_connection_type(self) -> Any:
        return self.secured_conn.get_connection_type()

    def get_remote_address(self) -> tuple[str, int] | None:
        with contextlib.suppress(Exception):
            remote: tuple[str, int] | None = self.secured_conn.get_remote_address()
            return remote
        return None

    async def start(self) -> None:
        """Run the session: the reader (this task) and the control writer, until the connection ends."""
        if self.event_started.is_set():
            return
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._control_writer)
                self.event_started.set()
                await self._read_loop()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.close()

    async def open_stream(self) -> YamuxStream:
        if self.event_shutting_down.is_set() or self._goaway_received:
            raise MuxedStreamError("connection is closing")
        sid = self._next_id
        if sid > MAX_STREAM_ID:
            raise MuxedStreamError("stream ids exhausted on this connection")
        self._next_id += 2
        stream = self._add_stream(sid, True)
        try:
            await self._write([HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_SYN, sid, 0)], wait=False)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._drop(stream)
            raise MuxedStreamError(f"cannot open a stream: {exc}") from exc
        try:
            await trio.lowlevel.checkpoint_if_cancelled()  # a cancellation held off by the shielded flush
        except trio.Cancelled:
            self._reset_locally(stream)  # nobody will hold it: the peer learns at once
            self._send_soon(HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_RST, sid, 0))
            raise
        return stream

    async def accept_stream(self) -> IMuxedStream:
        try:
            return await self._accept_recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise MuxedConnUnavailable("connection closed") from None

    async def close(self, error_code: int = GO_AWAY_NORMAL) -> None:
        """GO_AWAY, then close the socket; every stream ends (one that had the peer's FIN keeps its bytes)."""
        if self.event_shutting_down.is_set():
            await self.event_closed.wait()
            return
        self.event_shutting_down.set()
        with trio.CancelScope(shield=True):
            if not self._broken:
                with trio.move_on_after(1.0), contextlib.suppress(Exception):
                    await self._write([HEADER.pack(0, TYPE_GO_AWAY, 0, 0, error_code)], wait=False)
            self._end_streams()
            await self._io.aclose()
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            self.event_closed.set()
            if self.on_close is not None:
                with contextlib.suppress(Exception):
                    await self.on_close()

    # --------------------------------------------------------------------------- stream table
    def _add_stream(self, sid: int, initiator: bool) -> YamuxStream:
        stream = YamuxStream(self, sid, initiator)
        self.streams[sid] = stream
        self.granted += INITIAL_WINDOW
        if not initiator:
            self.inbound_open += 1
        return stream

    def _drop(self, stream: YamuxStream) -> None:
        """Take ``stream`` out of the table and free its buffer."""
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
            self.granted -= stream.target_recv_window
            if not stream.is_initiator:
                self.inbound_open -= 1
        if stream.buffer:
            self.buffered -= len(stream.buffer)
            stream.buffer = bytearray()

    def _forget_if_done(self, stream: YamuxStream) -> None:
        if stream.closed and not stream.buffer:
            self._drop(stream)

    def _reset_locally(self, stream: YamuxStream) -> None:
        stream.reset_received = stream.send_closed = stream.recv_closed = True
        self._drop(stream)
        stream._wake_reader()
        stream._wake_writer()

    def _end_streams(self) -> None:
        """The connection is gone: wake every stream; only those the peer had finished keep their bytes."""
        with contextlib.suppress(trio.ClosedResourceError):
            self._accept_send.close()
        for stream in list(self.streams.values()):
            stream.send_closed = True
            if stream.recv_closed and not stream.reset_received:
                del self.streams[stream.stream_id]  # still readable to its end, not counted any more
                self.buffered -= len(stream.buffer)
            else:
                stream.reset_received = stream.recv_closed = True
                self._drop(stream)
            stream._wake_reader()
            stream._wake_writer()
        self.streams.clear()
        self.inbound_open = 0
        self.granted = 0
        self.buffered = 0

    def _credit(self, stream: YamuxStream) -> int:
        """Receive credit to give back for ``stream`` now (its window may grow); 0 for none."""
        grow = 0
        target = stream.target_recv_window
        cap = self.limits.max_window_bytes
        if target < cap and stream.recv_window < target >> 2:  # the sender was held by the window
            # The first windows of the inbound streams the peer may still open are set aside.
            reserve = INITIAL_WINDOW * max(0, self.limits.max_inbound_streams - self.inbound_open)
            grow = min(target, cap - target, max(0, self.limits.max_connection_bytes - self.granted - reserve))
            stream.target_recv_window = target + grow
            self.granted += grow
        delta = stream.consumed + grow
        stream.consumed = 0
        stream.recv_window += delta
        return delta

    # ---------------------------------------------------------------------------------- write
    async def _write(self, frames: list[bytes], *, wait: bool = True) -> None:
        """Queue ``frames`` and flush unless another task is flushing (it sends them with its own)."""
        if self._broken or self.event_closed.is_set():
            raise trio.ClosedResourceError("connection closed")
        while wait and self._queued > QUEUE_BYTES:
            room = self._room if self._room is not None else trio.Event()
            self._room = room
            await room.wait()
            if self._broken:
                raise trio.ClosedResourceError("connection closed")
        self._queue.extend(frames)
        self._queued += sum(len(f) for f in frames)
        if not self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        self._flushing = True
        try:
            with trio.CancelScope(shield=True) as scope:
                try:
                    while self._queue:
                        frames, self._queue, self._queued = self._queue, [], 0
                        room = self._room
                        if room is not None:
                            self._room = None
                            room.set()
                        scope.deadline = trio.current_time() + FRAME_WRITE_SECONDS
                        await self._io.send_all(self._io.seal(frames))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self._broken = True
                    raise trio.BrokenResourceError(f"connection lost while writing: {exc!r}") from None
            if scope.cancelled_caught:  # part of a message may be on the wire: the session is lost
                self._broken = True
                raise trio.BrokenResourceError(f"frame write took longer than {FRAME_WRITE_SECONDS:.0f} s")
        finally:
            self._flushing = False
            if self._broken:
                room = self._room
                if room is not None:
                    room.set()
                if self._nursery is not None:
                    self._nursery.cancel_scope.cancel()  # the session ends; start() closes it

    def _send_soon(self, frame: bytes) -> None:
        """Queue a frame of the reader task's; the control writer flushes it (the reader never blocks)."""
        self._queue.append(frame)
        self._queued += len(frame)
        self._kick.set()

    async def _control_writer(self) -> None:
        while True:
            await self._kick.wait()
            self._kick = trio.Event()
            if self._queue and not self._flushing:
                try:
                    await self._flush()
                except trio.BrokenResourceError:
                    return

    # ----------------------------------------------------------------------------------- read
    async def _read_loop(self) -> None:
        """Parse frames until the connection ends or the peer breaks the protocol."""
        try:
            await self._parse()
        except ProtocolViolation as exc:
            self.limits.stats[exc.key] = self.limits.stats.get(exc.key, 0) + 1
            if self.on_violation is not None:  # before the close, so a reconnect already meets its verdict
                with contextlib.suppress(Exception):
                    self.on_violation(self.peer_id, exc.key)
            with trio.CancelScope(shield=True):
                await self.close(GO_AWAY_PROTOCOL_ERROR)
        except Exception:
            return  # the connection went away (or its Noise session broke): start() closes it

    async def _parse(self) -> None:
        rest = b""  # bytes of an incomplete header left from the previous receive
        body_left = 0
        body_stream: YamuxStream | None = None
        body_flags = 0
        streams = self.streams
        receive = self._io.receive
        while True:
            chunk = await receive()
            if not chunk:
                return
            buf = rest + chunk if rest else chunk
            pos, end = 0, len(buf)
            while True:
                if body_left:
                    take = min(body_left, end - pos)
                    if not take:
                        break
                    stream = body_stream
                    if stream is not None and not stream.reset_received:
                        stream.buffer += buf if take == end and not pos else memoryview(buf)[pos:pos + take]
                        self.buffered += take
                        stream._wake_reader()
                    pos += take
                    body_left -= take
                    if body_left:
                        break
                    if stream is not None and body_flags & (FLAG_FIN | FLAG_RST):
                        self._on_flags(stream, body_flags)
                    continue
                if end - pos < HEADER_SIZE:
                    break
                version, typ, flags, sid, length = HEADER.unpack_from(buf, pos)
                pos += HEADER_SIZE
                if version != 0:
                    raise ProtocolViolation("protocol_errors", f"Yamux version {version}")
                if typ == TYPE_DATA:
                    stream = streams.get(sid)
                    if flags & FLAG_SYN:
                        stream = self._on_syn(sid, stream)
                    elif flags & FLAG_ACK and stream is not None:
                        pass
                    if stream is not None:
                        if length > stream.recv_window:
                            raise ProtocolViolation("window_exceeded", f"stream {sid}: DATA of {length} bytes, "
                                                    f"{stream.recv_window} left of its window")
                        stream.recv_window -= length
                    elif length > self.limits.max_window_bytes:
                        raise ProtocolViolation("window_exceeded", f"DATA of {length} bytes for a closed stream")
                    if length:
                        body_left, body_stream, body_flags = length, stream, flags
                    elif stream is not None and flags & (FLAG_FIN | FLAG_RST):
                        self._on_flags(stream, flags)
                elif typ == TYPE_WINDOW_UPDATE:
                    stream = streams.get(sid)
                    if flags & FLAG_SYN:
                        stream = self._on_syn(sid, stream)
                    if stream is not None:
                        if length:
                            stream.send_window += length
                            stream._wake_writer()
                        if flags & (FLAG_FIN | FLAG_RST):
                            self._on_flags(stream, flags)
                elif typ == TYPE_PING:
                    if flags & FLAG_SYN:
                        self._send_soon(HEADER.pack(0, TYPE_PING, FLAG_ACK, 0, length))
                elif typ == TYPE_GO_AWAY:
                    self._goaway_received = True  # no new streams; the peer closes the connection
                else:
                    raise ProtocolViolation("protocol_errors", f"unknown Yamux frame type {typ}")
            rest = buf[pos:] if pos < end else b""

    def _on_syn(self, sid: int, stream: YamuxStream | None) -> YamuxStream | None:
        """A stream the peer opens: accepted (ACK), or refused (RST) past the inbound limit."""
        if stream is not None or sid == 0:
            raise ProtocolViolation("protocol_errors", f"SYN for stream {sid}, which is open")
        if (sid & 1) == (1 if self.is_initiator_value else 0):
            raise ProtocolViolation("protocol_errors", f"SYN for stream {sid}, an id of this side's")
        if self.inbound_open >= self.limits.max_inbound_streams or self.event_shutting_down.is_set():
            self.limits.stats["streams_refused"] += 1
            self._send_soon(HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_RST, sid, 0))
            return None
        stream = self._add_stream(sid, False)
        self._send_soon(HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_ACK, sid, 0))
        self._accept_send.send_nowait(stream)
        return stream

    def _on_flags(self, stream: YamuxStream, flags: int) -> None:
        if flags & FLAG_RST:
            stream.reset_received = stream.recv_closed = stream.send_closed = True
            self._drop(stream)  # nothing will read those bytes: freed now
            stream._wake_reader()
            stream._wake_writer()
        elif flags & FLAG_FIN:
            stream.recv_closed = True
            stream._wake_reader()
            self._forget_if_done(stream)


def install(host: Any, limits: StreamLimits | None = None, *, direct_noise: bool = True,
            on_violation: ViolationCallback | None = None) -> StreamLimits:
    """Make ``host`` run every ``/yamux/1.0.0`` connection it negotiates from now on on :class:`Yamux`
    (py-libp2p builds its own Yamux class directly, so the hook is on the muxer negotiation);
    returns the limits in force (defaults when ``limits`` is None). ``on_violation`` is told of every
    protocol violation that closes one of those connections, with the peer's id (a libp2p ``ID``)."""
    from libp2p.stream_muxer.muxer_multistream import MuxerMultistream

    limits = limits or StreamLimits()
    multistream = host.get_network().upgrader.muxer_multistream
    new_conn = multistream.new_conn

    async def new_conn_lean(conn: Any, peer_id: Any) -> Any:
        protocol, transport_class = await multistream._selector.select(
            conn, conn.is_initiator, multistream.negotiate_timeout)
        if protocol != PROTOCOL_ID:  # another muxer was agreed: py-libp2p's own path builds it
            return MuxerMultistream._annotate_connection(transport_class(conn, peer_id), conn, protocol)
        muxed = Yamux(conn, peer_id, is_initiator=conn.is_initiator, limits=limits, direct_noise=direct_noise,
                      on_violation=on_violation)
        return MuxerMultistream._annotate_connection(muxed, conn, protocol)

    new_conn_lean.__wrapped__ = new_conn  # type: ignore[attr-defined]
    multistream.new_conn = new_conn_lean
    return limits
