"""``[exporters.NAME] type = "zmq"``: bus events published on a ZeroMQ PUB socket.

One bus subscription (to the base :class:`Event` class, filtered by name) is the socket's only
user, so the socket has one owner task as ZeroMQ requires. Sends are non-blocking: a PUB socket
never waits, it drops for a subscriber whose queue reached the high-water mark, and that
subscriber sees the gap in the per-topic sequence numbers. Between the bus and the socket the
subscription's queue is bounded with ``drop_newest``, so the node never waits for the feed;
those drops are counted in :attr:`ZmqFeed.dropped`.
"""

from __future__ import annotations

import difflib
from typing import Any

import anyio
import zmq
from tnode.errors import ConfigError
from tnode.events import Event

from .codec import SEQ, SEQ_MODULO, encode_body, known_event_types
from .config import ZmqFeedConfig


class ZmqFeed:
    """The event feed component."""

    def __init__(self, node: Any, name: str, config: ZmqFeedConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.endpoint = config.bind
        self.sent: dict[str, int] = {}
        self.send_errors = 0
        self._seq: dict[str, int] = {}
        self._topics: dict[str, bytes] = {}
        self._by_type: dict[type[Event], bytes | None] = {}
        self._sub: Any = None
        self._socket: zmq.Socket[bytes] | None = None

    def _resolve(self) -> None:
        known = known_event_types()
        for i, event_name in enumerate(self.config.events):
            cls = known.get(event_name)
            if cls is None:
                close = difflib.get_close_matches(event_name, list(known), n=1)
                raise ConfigError(f"unknown event class {event_name!r}", key_path=f"events[{i}]",
                                  hint=f"did you mean {close[0]!r}?" if close else
                                  "known: " + ", ".join(sorted(known)))
            self._topics[cls.__name__] = cls.__name__.encode("ascii")

    async def run(self, *, task_status: Any) -> None:
        self._resolve()
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, self.config.hwm)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            try:
                sock.bind(self.config.bind)
            except zmq.ZMQError as exc:
                raise ConfigError(f"cannot bind {self.config.bind!r}: {exc}", key_path="bind") from None
            self.endpoint = bytes(sock.getsockopt(zmq.LAST_ENDPOINT)).decode()  # type: ignore[arg-type]
            self._socket = sock
            self._sub = self.node.bus.subscribe(Event, self._send, name=f"exporter:{self.name}",
                                                maxsize=self.config.queue, when_full="drop_newest")
            self.node.log.info("event feed publishing", endpoint=self.endpoint,
                               topics=[t.decode() for t in self._topics.values()])
            task_status.started()
            await anyio.sleep_forever()
        finally:
            if self._sub is not None:
                self._sub.close()
            self._socket = None
            sock.close(linger=0)

    async def _send(self, event: Event) -> None:
        cls = type(event)
        try:
            topic = self._by_type[cls]
        except KeyError:
            # By name: slotted dataclasses are rebuilt at definition, so class objects are not a reliable key.
            topic = self._by_type[cls] = self._topics.get(cls.__name__)
        sock = self._socket
        if topic is None or sock is None:
            return
        name = topic.decode()
        seq = self._seq.get(name, 0)
        try:
            sock.send_multipart((topic, encode_body(event), SEQ.pack(seq)), flags=zmq.NOBLOCK, copy=True)
        except zmq.Again:  # a PUB socket drops rather than blocks; kept for socket types that do not
            self.send_errors += 1
            return
        self._seq[name] = (seq + 1) % SEQ_MODULO
        self.sent[name] = self.sent.get(name, 0) + 1

    @property
    def dropped(self) -> int:
        """Events dropped between the bus and the socket because the feed fell behind."""
        return self._sub.dropped if self._sub is not None else 0

    def stats(self) -> dict[str, Any]:
        """``{"endpoint", "sent": {topic: n}, "dropped", "send_errors"}``."""
        return {"endpoint": self.endpoint, "sent": dict(self.sent), "dropped": self.dropped,
                "send_errors": self.send_errors}
