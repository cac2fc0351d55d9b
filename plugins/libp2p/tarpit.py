"""Slow refusals for abusive peers.

A refusal costs the node a signature check, a signed error frame and a write. A peer that keeps
earning refusals for abuse (unregistered sender, rate limited, oversized or forged frames) gets
its further refusals answered only after a delay: a sender that waits for answers — any client
with bounded requests in flight — is slowed to ``in_flight / delay`` requests per second, and the
node's CPU goes back to the peers it serves. A delayed refusal holds only its stream; it takes no
execution slot. Honest peers are never delayed: served requests, ``overloaded`` and ``timeout``
answers do not count, and strikes are forgiven at a steady rate.
"""

from __future__ import annotations

import time

from tnode import dispatch

# Refusal codes that count as abuse: the core's one set (tnode.dispatch.REFUSALS). ``overloaded``,
# ``starting``, ``timeout`` and ``internal`` are the node's own state, not the sender's fault.
STRIKE_CODES = dispatch.STRIKE_CODES


class Tarpit:
    """Per-peer strike levels (a leaky counter) and the delay they earn; bounded in memory."""

    def __init__(self, *, after: int, delay: float, forgive_per_second: float, max_peers: int = 4096) -> None:
        self.after = after
        self.delay_seconds = delay
        self.forgive = forgive_per_second
        self.max_peers = max_peers
        self._levels: dict[str, tuple[float, float]] = {}  # peer id -> (level, last update)
        self.delayed = 0

    @property
    def enabled(self) -> bool:
        return self.after > 0 and self.delay_seconds > 0

    def level(self, peer: str, now: float | None = None) -> float:
        entry = self._levels.get(peer)
        if entry is None:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, entry[0] - (now - entry[1]) * self.forgive)

    def strike(self, peer: str, code: str) -> None:
        """Record a refusal with ``code`` for ``peer`` (codes outside :data:`STRIKE_CODES` are ignored)."""
        if not self.enabled or code not in STRIKE_CODES:
            return
        now = time.monotonic()
        level = self.level(peer, now) + 1.0
        self._levels.pop(peer, None)  # re-insert at the end: the dict stays ordered by last strike
        self._levels[peer] = (level, now)
        if len(self._levels) > self.max_peers:
            del self._levels[next(iter(self._levels))]  # the peer idle the longest

    def delay(self, peer: str) -> float:
        """Seconds to hold this peer's refusal before sending it (0 below the threshold)."""
        if not self.enabled or self.level(peer) <= self.after:
            return 0.0
        self.delayed += 1
        return self.delay_seconds
