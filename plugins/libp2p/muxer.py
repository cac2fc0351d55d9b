"""Yamux connections that give back a reset stream's receive buffer at once.

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
"""

from __future__ import annotations

from typing import Any

from libp2p.stream_muxer.yamux.yamux import Yamux


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


def install(host: Any) -> None:
    """Apply :func:`free_reset_streams` to every Yamux connection ``host`` negotiates from now on."""
    multistream = host.get_network().upgrader.muxer_multistream
    new_conn = multistream.new_conn

    async def new_conn_freeing_resets(conn: Any, peer_id: Any) -> Any:
        muxed = await new_conn(conn, peer_id)
        if isinstance(muxed, Yamux):
            free_reset_streams(muxed)
        return muxed

    multistream.new_conn = new_conn_freeing_resets


def buffered_bytes(muxed_conn: Any) -> int:
    """Bytes one muxed connection holds in its per-stream receive buffers (0 for a non-Yamux one)."""
    buffers = getattr(muxed_conn, "stream_buffers", None) or {}
    return sum(len(b) for b in buffers.values())
