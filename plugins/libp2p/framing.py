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


async def read_exactly(stream: Any, n: int) -> bytes:
    """Read ``n`` bytes; raises :class:`TruncatedFrame` if the stream ends first (EOF inside a frame)."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        data = await stream.read(min(n - got, 1 << 20))
        if not data:
            raise TruncatedFrame(f"stream ended after {got} of {n} bytes")
        chunks.append(data)
        got += len(data)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_frame(stream: Any, max_frame: int, *, idle_seconds: float = math.inf,
                     frame_seconds: float = math.inf, budget: FrameBudget | None = None,
                     peer: str = "") -> bytes | None:
    """The bytes after the length prefix of the next frame, or ``None`` on a clean end of stream.

    The declared length is checked against ``max_frame`` before anything else is read. Raises
    :class:`StreamIdle` when no byte arrives within ``idle_seconds``, :class:`FrameReadTimeout` when
    the rest of the frame does not arrive within ``frame_seconds`` of its first byte, and
    :class:`FrameBudgetExhausted` when ``budget`` has no room for it before that deadline.
    """
    first = b""
    with trio.move_on_after(idle_seconds) as idle:
        first = await stream.read(4)
    if idle.cancelled_caught:
        raise StreamIdle(f"no frame within {idle_seconds:g} s")
    if not first:
        return None
    waiting_for_room = False
    with trio.move_on_after(frame_seconds):
        prefix = first if len(first) == 4 else first + await read_exactly(stream, 4 - len(first))
        size = wire.check_length(prefix, max_frame)
        if budget is None:
            return await read_exactly(stream, size)
        waiting_for_room = True
        await budget.reserve(peer, size)
        waiting_for_room = False
        try:
            return await read_exactly(stream, size)
        finally:
            budget.release(peer, size)
    if waiting_for_room:
        raise FrameBudgetExhausted(f"no room in the partial-frame budget within {frame_seconds:g} s")
    raise FrameReadTimeout(f"frame not complete within {frame_seconds:g} s of its first byte")
