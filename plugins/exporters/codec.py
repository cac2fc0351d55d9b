"""The feed's message format, shared by the publisher, ``tnode events`` and the bench.

A message is three ZeroMQ frames, as in bitcoind's notifications:

1. topic: the event class name in ASCII (``BlockProduced``);
2. body: the event's fields as one orjson object;
3. sequence: a little-endian unsigned 32-bit counter, per topic, starting at 0 and wrapping at 2^32.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from tnode.events import Event

SEQ = struct.Struct("<I")
SEQ_MODULO = 1 << 32


def known_event_types() -> dict[str, type[Event]]:
    """Every :class:`Event` subclass imported so far (core events and loaded plugins' own), by name."""
    found: dict[str, type[Event]] = {}
    pending: list[type[Event]] = [Event]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            module = sys.modules.get(sub.__module__)
            # dataclass(slots=True) replaces the class it decorates; keep the one its module exports.
            if getattr(module, sub.__qualname__, None) is sub or sub.__name__ not in found:
                found[sub.__name__] = sub
            pending.append(sub)
    return found


def encode_body(event: Event) -> bytes:
    """The event's fields as JSON (orjson serializes frozen/slotted dataclasses natively)."""
    return orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass
class Gap:
    """Messages of ``topic`` a subscriber missed: sequence numbers ``expected`` up to ``got`` - 1."""

    topic: str
    expected: int
    got: int

    @property
    def missed(self) -> int:
        return (self.got - self.expected) % SEQ_MODULO


class GapTracker:
    """Follows the per-topic sequence numbers a subscriber receives and reports what it missed."""

    def __init__(self) -> None:
        self.next_seq: dict[str, int] = {}
        self.received = 0
        self.missed = 0

    def see(self, topic: str, seq: int) -> Gap | None:
        """Record one message; returns the gap before it, if any (the first message per topic sets the start)."""
        self.received += 1
        expected = self.next_seq.get(topic)
        self.next_seq[topic] = (seq + 1) % SEQ_MODULO
        if expected is None or expected == seq:
            return None
        gap = Gap(topic, expected, seq)
        self.missed += gap.missed
        return gap


def decode(frames: Iterable[bytes]) -> tuple[str, bytes, int]:
    """(topic, body, sequence) of one message; ``ValueError`` when it is not in the feed's shape."""
    parts = list(frames)
    if len(parts) != 3 or len(parts[2]) != SEQ.size:
        raise ValueError(f"expected 3 frames (topic, body, 4-byte sequence), got {len(parts)}")
    return parts[0].decode("ascii"), parts[1], SEQ.unpack(parts[2])[0]
