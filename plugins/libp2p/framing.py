"""Reading and writing length-prefixed tnode frames on a libp2p stream, with deadlines and a memory budget."""

from __future__ import annotations

import math
from typing import Any

import trio
from tnode import wire
from tnode.errors import TruncatedFrame, WireError


class FrameReadTimeout(WireError):
    """A frame started but did not arrive completely within the read deadline (a stalled or slow peer)."""

    code = "read_timeout"


class FrameBudgetExhausted(WireError):
    """No room in the partial-frame memory budget before the frame's read deadline."""

    code = "overloaded"


class StreamIdle(Exception):
    """No frame started on the stream within the idle timeout; the stream is closed cleanly."""


class FrameBudget:
    """Bytes reserved for frames being received, in total and per peer.

    A frame reserves its declared size once its length prefix is known, before its bytes are read
    (nothing is allocated up front: the reservation only bounds what the reads may accumulate). A
    frame that does not fit waits for room until its read deadline.
    """

    def __init__(self, total: int, per_peer: int) -> None:
        self.total = total
        self.per_peer = per_peer
        self.used = 0
        self.by_peer: dict[str, int] = {}
        self._room = trio.Event()  # set (and replaced) whenever a reservation is released

    def _fits(self, peer: str, n: int) -> bool:
        return self.used + n <= self.total and self.by_peer.get(peer, 0) + n <= self.per_peer

    async def reserve(self, peer: str, n: int) -> None:
        """Reserve ``n`` bytes for ``peer``, waiting for room (the caller's cancel scope bounds the wait)."""
        if n > self.per_peer or n > self.total:
            raise FrameBudgetExhausted(f"frame of {n} bytes exceeds the partial-frame budget")
        while not self._fits(peer, n):
            await self._room.wait()
        self.used += n
        self.by_peer[peer] = self.by_peer.get(peer, 0) + n

    def release(self, peer: str, n: int) -> None:
        """Give back a reservation made by :meth:`reserve`."""
        self.used -= n
        left = self.by_peer.get(peer, 0) - n
        if left > 0:
            self.by_peer[peer] = left
        else:
            self.by_peer.pop(peer, None)
        self._room.set()
        self._room = trio.Event()


#: How much a greedy frame read asks the stream for at once (one Yamux read usually holds a whole frame).
READ_CHUNK = 1 << 16


async def read_exactly(stream: Any, n: int, head: bytes = b"") -> bytes:
    """``head`` plus ``n`` more bytes; raises :class:`TruncatedFrame` if the stream ends first (EOF inside a frame)."""
    chunks: list[bytes] = [head] if head else []
    got = 0
    while got < n:
        data = await stream.read(min(n - got, 1 << 20))
        if not data:
            raise TruncatedFrame(f"stream ended after {got} of {n} bytes")
        chunks.append(data)
        got += len(data)
    if not chunks:
        return b""
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_frame(stream: Any, max_frame: int, *, idle_seconds: float = math.inf,
                     frame_seconds: float = math.inf, budget: FrameBudget | None = None,
                     peer: str = "", carry: bytearray | None = None) -> bytes | None:
    """The bytes after the length prefix of the next frame, or ``None`` on a clean end of stream.

    The declared length is checked against ``max_frame`` before anything else is read. Raises
    :class:`StreamIdle` when no byte arrives within ``idle_seconds``, :class:`FrameReadTimeout` when
    the rest of the frame does not arrive within ``frame_seconds`` of its first byte, and
    :class:`FrameBudgetExhausted` when ``budget`` has no room for it before that deadline.

    With ``carry`` the read is greedy: it asks the stream for up to :data:`READ_CHUNK` bytes at once
    (usually the whole frame in one read instead of two) and keeps whatever follows the frame in
    ``carry`` for the next call; pass the same buffer for every frame of one stream. Without it,
    nothing past the frame is read.
    """
    pending = carry if carry is not None else bytearray()
    ask = READ_CHUNK if carry is not None else 4
    waiting_for_room = started = False
    # One cancel scope for both deadlines: idle until the first byte, then the frame's own.
    with trio.CancelScope() as scope:
        if not pending:
            scope.deadline = trio.current_time() + idle_seconds
            first = await stream.read(ask)
            if not first:
                return None
            pending += first
        started = True
        scope.deadline = trio.current_time() + frame_seconds
        while len(pending) < 4:
            more = await stream.read(ask if carry is not None else 4 - len(pending))
            if not more:
                raise TruncatedFrame(f"stream ended after {len(pending)} of 4 prefix bytes")
            pending += more
        size = wire.check_length(bytes(pending[:4]), max_frame)
        end = 4 + size
        if len(pending) >= end:  # the whole frame is in hand
            with memoryview(pending) as view:
                frame = bytes(view[4:end])
            del pending[:end]
            return frame
        with memoryview(pending) as view:
            head = bytes(view[4:])
        pending.clear()
        if budget is None:
            return await read_exactly(stream, size - len(head), head)
        waiting_for_room = True
        await budget.reserve(peer, size)
        waiting_for_room = False
        try:
            return await read_exactly(stream, size - len(head), head)
        finally:
            budget.release(peer, size)
    if not started:
        raise StreamIdle(f"no frame within {idle_seconds:g} s")
    if waiting_for_room:
        raise FrameBudgetExhausted(f"no room in the partial-frame budget within {frame_seconds:g} s")
    raise FrameReadTimeout(f"frame not complete within {frame_seconds:g} s of its first byte")
