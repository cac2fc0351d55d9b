"""Inbound connection admission: tnode's own limits, with every slot given back when its connection closes.

py-libp2p 0.8.1's swarm takes an inbound slot per accepted connection and holds it (and the
handler task) until the swarm stops, so after ``max_connections`` connects in total it refuses
every new one. :func:`install` replaces that handler on one swarm instance with
:class:`InboundGate`, which counts open inbound connections in total, per IP address and per
peer id, and releases each count when that connection's close event fires.

It also refuses the inbound connections of a peer id serving a ban (:class:`ViolationBans`): a peer
whose connections tnode's Yamux closed for protocol violations (window overrun, bad version, unknown
frame type, duplicate SYN) ``after`` times is refused, once its Noise handshake names it, for
``seconds``; the violations it collected are forgotten after ``seconds`` without a new one.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import Any

from libp2p.network.connection.raw_connection import RawConnection


def _remote_ip(rwc: Any) -> str:
    with contextlib.suppress(Exception):
        remote = rwc.get_remote_address()
        if remote:
            return str(remote[0])
    return ""


class ViolationBans:
    """Per-peer protocol-violation counts and the bans they earn; bounded in memory.

    :meth:`record` is the muxer's ``on_violation`` callback; :meth:`banned` is asked by the gate.
    Stats: ``peers_banned`` (bans imposed), ``banned_refused`` (inbound connections refused for one).
    """

    def __init__(self, *, after: int, seconds: float, stats: dict[str, int], log: Any, max_peers: int = 4096) -> None:
        self.after = after
        self.seconds = seconds
        self.stats = stats
        self.log = log
        self.max_peers = max_peers
        self._peers: dict[Any, tuple[int, float, float]] = {}  # peer id -> (violations, last one, banned until)
        for key in ("peers_banned", "banned_refused"):
            stats.setdefault(key, 0)

    @property
    def enabled(self) -> bool:
        return self.after > 0 and self.seconds > 0

    def record(self, peer: Any, key: str) -> None:
        """One protocol violation (counted under ``key`` in the muxer's stats) by ``peer``."""
        if not self.enabled or peer is None:
            return
        now = time.monotonic()
        count, last, until = self._peers.pop(peer, (0, 0.0, 0.0))  # re-inserted last: ordered by activity
        count = count + 1 if now - last <= self.seconds else 1
        if count >= self.after:
            count, until = 0, now + self.seconds
            self.stats["peers_banned"] += 1
            self.log.warning("peer refused inbound connections for repeated protocol violations", remote=str(peer),
                             violation=key, seconds=self.seconds)
        self._peers[peer] = (count, now, until)
        if len(self._peers) > self.max_peers:
            del self._peers[next(iter(self._peers))]  # the peer quiet the longest

    def banned(self, peer: Any) -> float:
        """Seconds left of ``peer``'s ban (0 when it has none)."""
        entry = self._peers.get(peer)
        return max(0.0, entry[2] - time.monotonic()) if entry is not None else 0.0


class InboundGate:
    """The inbound connection handler of one swarm, with bounded, released slots."""

    def __init__(self, swarm: Any, *, total: int, per_ip: int, per_peer: int, stats: dict[str, int],
                 log: Any, bans: ViolationBans | None = None) -> None:
        self.swarm = swarm
        self.total = total
        self.per_ip = per_ip
        self.per_peer = per_peer
        self.stats = stats
        self.log = log
        self.bans = bans
        self.open = 0
        self.by_ip: Counter[str] = Counter()
        self.by_peer: Counter[Any] = Counter()

    def _refuse(self, why: str, ip: str) -> None:
        self.stats["inbound_refused"] += 1
        self.log.debug("inbound connection refused", reason=why, ip=ip)

    async def handle(self, rwc: Any, maddr: Any) -> None:
        """Admit, upgrade (Noise + Yamux) and hold one inbound connection until it closes."""
        ip = _remote_ip(rwc)
        if self.open >= self.total or self.by_ip[ip] >= self.per_ip:
            self._refuse("total limit" if self.open >= self.total else "per-IP limit", ip)
            with contextlib.suppress(Exception):
                await rwc.close()
            return
        # Counted synchronously (no checkpoint since the check), so concurrent handlers cannot overshoot.
        self.open += 1
        self.by_ip[ip] += 1
        peer = None
        try:
            raw = RawConnection(rwc, False)
            try:
                muxed = await self.swarm.upgrade_inbound_raw_conn(raw, maddr)
            except Exception as exc:  # handshake failed, timed out or was refused by the swarm
                self.log.debug("inbound upgrade failed", ip=ip, error=repr(exc)[:200])
                with contextlib.suppress(Exception):
                    await raw.close()
                return
            peer = muxed.peer_id
            self.by_peer[peer] += 1
            conn = next((c for c in self.swarm.connections.get(peer, ()) if c.muxed_conn is muxed), None)
            if conn is None:
                return  # the swarm already dropped it (trimmed, or refused at registration)
            if self.bans is not None and self.bans.banned(peer):
                self.stats["banned_refused"] += 1
                self._refuse("banned for protocol violations", ip)
                with contextlib.suppress(Exception):
                    await conn.close()
                return
            if self.by_peer[peer] > self.per_peer:
                self._refuse("per-peer limit", ip)
                with contextlib.suppress(Exception):
                    await conn.close()
                return
            # Hold the slot exactly as long as the connection lives.
            await conn.event_closed.wait()
        finally:
            self.open -= 1
            self.by_ip[ip] -= 1
            if self.by_ip[ip] <= 0:
                del self.by_ip[ip]
            if peer is not None:
                self.by_peer[peer] -= 1
                if self.by_peer[peer] <= 0:
                    del self.by_peer[peer]


def install(host: Any, **limits: Any) -> InboundGate:
    """Replace the inbound handler of ``host``'s swarm (before it listens) with an :class:`InboundGate`."""
    swarm = host.get_network()
    gate = InboundGate(swarm, **limits)
    # The swarm's listeners call ``self._handle_inbound_connection``: an instance attribute wins.
    swarm._handle_inbound_connection = gate.handle
    return gate
