"""A feed subscriber on trio/anyio: a SUB socket read by one owner task.

The ZeroMQ file descriptor is edge-triggered and any ZeroMQ call may consume the edge, so the
reader drains with ``NOBLOCK`` until ``Again``, re-checks ``EVENTS`` and only then waits on the
descriptor, with a short timeout as a guard against a missed edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
import anyio.lowlevel
import zmq

from .codec import GapTracker, decode

FD_GUARD_SECONDS = 0.005


class FeedSubscriber:
    """Subscribes to ``topics`` (all when empty) of the feed at ``endpoint``.

    Use as a context manager; iterate :meth:`messages` for ``(topic, body, seq)``; gaps in the
    sequence numbers accumulate in :attr:`gaps` (a :class:`GapTracker`).
    """

    def __init__(self, endpoint: str, topics: Sequence[str] = (), *, rcvhwm: int = 0) -> None:
        self.endpoint = endpoint
        self.topics = list(topics)
        self.gaps = GapTracker()
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._sock: zmq.Socket[bytes] = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        if rcvhwm:
            self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        for topic in self.topics or [""]:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii"))
        self._sock.connect(endpoint)

    def __enter__(self) -> FeedSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close(linger=0)

    async def _readable(self) -> None:
        sock = self._sock
        fd = int(sock.getsockopt(zmq.FD))  # type: ignore[call-overload]
        while not int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:  # type: ignore[call-overload]
            with anyio.move_on_after(FD_GUARD_SECONDS):
                await anyio.wait_readable(fd)

    async def batches(self, max_batch: int = 1024) -> AsyncIterator[list[tuple[str, bytes, int]]]:
        """Messages as they arrive, in batches of what was queued (at most ``max_batch``)."""
        sock = self._sock
        while True:
            await self._readable()
            batch: list[tuple[str, bytes, int]] = []
            while len(batch) < max_batch:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                topic, body, seq = decode(frames)
                batch.append((topic, body, seq))
            if batch:
                yield batch
            else:
                await anyio.lowlevel.checkpoint()

    async def messages(self) -> AsyncIterator[tuple[str, bytes, int]]:
        """Every message in order, one at a time."""
        async for batch in self.batches():
            for item in batch:
                yield item
