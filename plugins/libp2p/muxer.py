"""Yamux connections that give back a reset stream's receive buffer at once.

This module patches py-libp2p's own Yamux (``[transport] yamux = "py-libp2p"``); the default,
tnode's Yamux (:mod:`.yamux`), has the same guarantees built in and shares :class:`StreamLimits`,
:data:`FRAME_WRITE_SECONDS` and :func:`buffered_bytes` with it.

py-libp2p 0.8.1's Yamux keeps a fully closed stream in its stream table while its receive buffer
holds unread bytes, for a grace period of 60 s (swept every 30 s), and it keeps appending the DATA
frames that still arrive for that stream. A peer that sends half of a large frame and stalls is
reset by the server's read deadline with bytes still buffered; the rest of the window it was
granted then lands in the dead stream's buffer. Cycling such streams pinned about 4 MiB per reset
for up to 90 s, outside the partial-frame budget, so memory grew with the attacker's rate.

A reset ends a stream in both directions (the Yamux spec's RST is an abrupt close; go-yamux answers
``ErrStreamReset`` rather than buffered data), so nothing will read those bytes. :func:`install`
makes every Yamux connection of one host drop a reset stream's buffer, event and table entry as
soon as the reset is finalized; later DATA for that id is read off the connection and discarded,
as for any unknown stream. py-libp2p builds its Yamux class directly (the muxer option's class is
not used for Yamux), so the hook is on the host's muxer negotiation, like :mod:`.inbound`'s.

The same hook bounds what one connection can make the node buffer (:class:`StreamLimits`):
py-libp2p accepts any number of inbound streams, doubles each stream's receive window up to
16 MiB while it is read, and appends DATA beyond the granted window with only a log line. So:

- at most ``max_inbound_streams`` accepted inbound streams are open per connection; a further one
  is reset as soon as it is accepted (``streams_refused``);
- a stream's receive window grows to ``max_window_bytes`` at most;
- a stream's unread bytes may not exceed twice its current window (py-libp2p's own accounting can
  hand out up to one read's worth of credit above the window, so a compliant sender stays below);
  a peer that goes past it, or sends one DATA frame larger than the window cap, is ignoring flow
  control and its connection is closed (``window_exceeded``), as go-yamux does.

It also makes every frame write whole (:func:`atomic_frame_writes`): py-libp2p's Noise session
encrypts a frame, advancing its nonce, before it sends it, so a write cancelled in between (a read
deadline that fires while the read is sending a window update) desynchronises the two ends and the
remote closes the connection on its next decrypt. A frame write is therefore shielded from
cancellation and bounded by its own deadline (``FRAME_WRITE_SECONDS``); a peer that does not take
a frame in that time has its connection closed, which a half-written frame would need anyway.

Receive credit goes back in halves (:func:`_credit_in_halves`), as go-yamux does: a WINDOW_UPDATE
is sent once the bytes read since the last one reach half the stream's window. py-libp2p 0.8.1
sends one after every read by default (``PY_YAMUX_RELEASE_ON_READ``), and a length-prefixed frame is
two reads, so a 1 KB request and its answer cost four window-update frames beside the two DATA
frames, each one a Noise message and a socket write on one side and a decrypt on the other.

Unread bytes per connection are then at most ``(max_inbound_streams + 11) * 2 * max_window_bytes``
(11: the 10 streams py-libp2p queues before they are accepted, and one being queued).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE, Yamux

#: Streams py-libp2p's Yamux holds before they are accepted: its new-stream channel (10) plus one
#: blocked on sending into it.
QUEUED_STREAMS = 11

#: How long one Yamux frame write may take before the connection is given up on.
FRAME_WRITE_SECONDS = 30.0

#: Sum of the receive windows of one connection's streams (tnode's Yamux): the per-peer budget of
#: partially received frames (``partial_frame_bytes_per_peer``'s default).
CONNECTION_BYTES = 32 * 1024 * 1024


@dataclass
class StreamLimits:
    """What one Yamux connection of the node may hold; refusals are counted in ``stats``."""

    max_inbound_streams: int = 64
    max_window_bytes: int = 1024 * 1024
    stats: dict[str, int] = field(default_factory=dict)
    #: tnode's Yamux (:mod:`.yamux`): the receive windows of one connection's streams grow only while
    #: their sum, plus the first windows of the inbound streams the peer may still open, stays within
    #: this (every stream's first 256 KiB are granted by the spec regardless).
    max_connection_bytes: int = CONNECTION_BYTES

    def __post_init__(self) -> None:
        if self.max_inbound_streams < 1:
            raise ValueError(f"max_inbound_streams must be >= 1, got {self.max_inbound_streams}")
        if self.max_window_bytes < DEFAULT_WINDOW_SIZE:
            # Every stream starts with this window (Yamux spec); a smaller cap could not be honoured.
            raise ValueError(f"max_window_bytes must be >= {DEFAULT_WINDOW_SIZE}, got {self.max_window_bytes}")
        if self.max_connection_bytes < self.max_window_bytes:
            raise ValueError(f"max_connection_bytes must be >= max_window_bytes ({self.max_window_bytes}), "
                             f"got {self.max_connection_bytes}")
        for key in ("streams_refused", "window_exceeded", "protocol_errors"):
            self.stats.setdefault(key, 0)

    @property
    def buffered_bound(self) -> int:
        """Most unread bytes one connection can make the node hold in its stream buffers, with
        py-libp2p's Yamux (tnode's stays within :meth:`connection_bound`, which is lower)."""
        return (self.max_inbound_streams + QUEUED_STREAMS) * 2 * self.max_window_bytes

    def connection_bound(self, own_streams: int) -> int:
        """Most unread bytes one connection of tnode's Yamux holds while the node itself has
        ``own_streams`` (outbound) streams open on it; the peer's are within the first term."""
        inbound = max(self.max_connection_bytes, self.max_inbound_streams * DEFAULT_WINDOW_SIZE)
        return inbound + own_streams * DEFAULT_WINDOW_SIZE


class WindowExceeded(trio.TooSlowError):
    """A peer sent more than the receive window it was granted.

    A subclass of ``trio.TooSlowError`` on purpose: that is the one exception every frame path of
    py-libp2p 0.8.1's Yamux reader answers by closing the connection (its DATA-body timeout).
    """


def _discard_locked(conn: Any, stream: Any) -> None:
    """Forget a reset stream of ``conn`` now (the caller holds ``conn.streams_lock``)."""
    sid = stream.stream_id
    if conn.streams.get(sid) is stream:
        del conn.streams[sid]
    buffer = conn.stream_buffers.pop(sid, None)
    if buffer is not None:
        buffer.clear()  # a reader still holding it sees it empty; the bytes are freed now
    event = conn.stream_events.pop(sid, None)
    if event is not None:
        event.set()  # a blocked reader wakes, finds the stream gone and raises reset/EOF
    # A woken reader puts a fresh event back under its id before it notices the stream is gone;
    # drop such orphans so the event table stays as small as the stream table.
    for orphan in [k for k in conn.stream_events if k not in conn.streams]:
        del conn.stream_events[orphan]


def free_reset_streams(conn: Any) -> None:
    """Make one Yamux connection drop each stream's buffered bytes as soon as the stream is reset."""
    finalize = conn._finalize_stream_locked  # py-libp2p's: called on every close and reset, under the lock

    def finalize_and_free(stream: Any, *, fully_closed: bool) -> None:
        finalize(stream, fully_closed=fully_closed)
        if fully_closed and stream.reset_received:
            _discard_locked(conn, stream)

    # Yamux calls ``self._finalize_stream_locked``: an instance attribute wins over the method.
    conn._finalize_stream_locked = finalize_and_free


def limit_inbound_streams(conn: Any, limits: StreamLimits) -> None:
    """Reset each inbound stream of ``conn`` accepted while ``limits.max_inbound_streams`` are open."""
    accept = conn.accept_stream
    accepted: set[int] = set()

    async def accept_within_limit() -> Any:
        while True:
            stream = await accept()
            # Only accepted streams count: those still queued behind this one are not served yet.
            accepted.intersection_update(sid for sid, s in conn.streams.items() if not s.closed)
            if stream.closed or len(accepted) < limits.max_inbound_streams:
                accepted.add(stream.stream_id)
                return stream
            limits.stats["streams_refused"] += 1
            with contextlib.suppress(Exception):  # the connection went away meanwhile: nothing to refuse
                await stream.reset()

    conn.accept_stream = accept_within_limit  # SwarmConn calls ``muxed_conn.accept_stream()``


class _BoundedBuffer(bytearray):
    """A stream's receive buffer that refuses DATA beyond twice the stream's window."""

    def __init__(self, stream: Any, limits: StreamLimits) -> None:
        super().__init__()
        self.stream = stream
        self.limits = limits

    def extend(self, data: Any) -> None:  # type: ignore[override]
        """Append ``data``, or raise :class:`WindowExceeded` when the peer ignored flow control."""
        allowed = 2 * self.stream.target_recv_window
        if len(self) + len(data) > allowed:
            self.limits.stats["window_exceeded"] += 1
            raise WindowExceeded(f"stream {self.stream.stream_id}: {len(self) + len(data)} unread bytes, "
                                 f"window {self.stream.target_recv_window}")
        super().extend(data)


def _cap_window(stream: Any, cap: int) -> None:
    """Keep ``stream``'s receive window from growing past ``cap`` (py-libp2p doubles it up to 16 MiB)."""
    grow_epoch = stream._apply_autotune_epoch  # the one place the target window grows

    def grow_epoch_capped(buffered: int) -> int:
        if stream.target_recv_window >= cap:
            stream.epoch_start = trio.current_time()
            return 0
        extra: int = grow_epoch(buffered)
        excess = stream.target_recv_window - cap
        if excess > 0:
            # Take back the credit granted above the cap before it is sent (the caller sends ``extra``).
            stream.target_recv_window = cap
            taken = min(extra, excess)
            stream.recv_window -= taken
            extra -= taken
        return extra

    stream._apply_autotune_epoch = grow_epoch_capped


def _credit_in_halves(stream: Any, conn: Any) -> None:
    """Make ``stream`` give receive credit back once the bytes read and not yet credited reach half
    its window (the window still grows by py-libp2p's auto-tuning, within the cap)."""

    async def release_credit(*, bytes_read: int = 0) -> None:
        async with stream.window_lock:
            buffered = len(conn.stream_buffers.get(stream.stream_id, b""))
            owed = stream.target_recv_window - (stream.recv_window + buffered)
            if owed <= 0 or owed < stream.target_recv_window // 2:
                return
            credit: int = stream._grow_to_delta(buffered) + stream._apply_autotune_epoch(buffered)
        if credit > 0:  # never hold window_lock across a write (py-libp2p's rule)
            await stream.send_window_update(credit, skip_lock=True)

    stream._auto_tune_and_send_window_update = release_credit


class _BoundedBuffers(dict):  # type: ignore[type-arg]
    """``Yamux.stream_buffers`` that caps each new stream's window and bounds its buffer."""

    def __init__(self, conn: Any, limits: StreamLimits) -> None:
        super().__init__(conn.stream_buffers)
        self.conn = conn
        self.limits = limits

    def __setitem__(self, sid: int, buffer: Any) -> None:
        # Yamux registers the stream in ``conn.streams`` before its buffer, on both open and accept.
        stream = self.conn.streams.get(sid)
        if stream is not None and not buffer:
            _cap_window(stream, self.limits.max_window_bytes)
            _credit_in_halves(stream, self.conn)
            buffer = _BoundedBuffer(stream, self.limits)
        super().__setitem__(sid, buffer)


def bound_streams(conn: Any, limits: StreamLimits) -> None:
    """Apply ``limits`` to one Yamux connection (before it has streams)."""
    limit_inbound_streams(conn, limits)
    conn.stream_buffers = _BoundedBuffers(conn, limits)
    read_body = conn._read_data_body

    async def read_body_within_window(length: int) -> bytes:
        # No window the node grants is larger than the cap, so a larger frame is a flow-control
        # violation; refuse it before reading (py-libp2p would read all of it, up to 4 GiB).
        if length > 2 * limits.max_window_bytes:
            limits.stats["window_exceeded"] += 1
            raise WindowExceeded(f"DATA frame of {length} bytes, window cap {limits.max_window_bytes}")
        data: bytes = await read_body(length)
        return data

    conn._read_data_body = read_body_within_window


def atomic_frame_writes(conn: Any, seconds: float = FRAME_WRITE_SECONDS) -> None:
    """Make each of ``conn``'s frame writes run to completion or close the connection."""
    write_frame = conn._write_frame

    async def write_whole_frame(data: bytes) -> None:
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + seconds
            await write_frame(data)
        if scope.cancelled_caught:  # part of a frame may be on the wire: the session is lost
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await conn.close()
            raise trio.BrokenResourceError(f"frame write took longer than {seconds:.0f} s; connection closed")
        await trio.lowlevel.checkpoint()  # a cancellation that arrived meanwhile is delivered here

    conn._write_frame = write_whole_frame


def install(host: Any, limits: StreamLimits | None = None) -> StreamLimits:
    """Apply :func:`free_reset_streams` and :func:`bound_streams` to every Yamux connection ``host``
    negotiates from now on; returns the limits in force (defaults when ``limits`` is None)."""
    limits = limits or StreamLimits()
    multistream = host.get_network().upgrader.muxer_multistream
    new_conn = multistream.new_conn

    async def new_conn_bounded(conn: Any, peer_id: Any) -> Any:
        muxed = await new_conn(conn, peer_id)
        if isinstance(muxed, Yamux):
            atomic_frame_writes(muxed)
            free_reset_streams(muxed)
            bound_streams(muxed, limits)
        return muxed

    multistream.new_conn = new_conn_bounded
    return limits


def buffered_bytes(muxed_conn: Any) -> int:
    """Bytes one muxed connection holds in its per-stream receive buffers (0 for a non-Yamux one)."""
    counted = getattr(muxed_conn, "buffered", None)  # tnode's Yamux keeps the sum
    if isinstance(counted, int):
        return counted
    buffers = getattr(muxed_conn, "stream_buffers", None) or {}
    return sum(len(b) for b in buffers.values())
