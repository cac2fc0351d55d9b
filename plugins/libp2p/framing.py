"""Reading and writing length-prefixed tnode frames on a libp2p stream."""

from __future__ import annotations

from typing import Any

from tnode import wire
from tnode.errors import TruncatedFrame


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


async def read_frame(stream: Any, max_frame: int) -> bytes | None:
    """The bytes after the length prefix of the next frame, or ``None`` on a clean end of stream.

    The declared length is checked against ``max_frame`` before anything else is read.
    """
    first = await stream.read(4)
    if not first:
        return None
    prefix = first if len(first) == 4 else first + await read_exactly(stream, 4 - len(first))
    size = wire.check_length(prefix, max_frame)
    return await read_exactly(stream, size)
