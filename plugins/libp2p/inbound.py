"""Inbound connection admission: tnode's own limits, with every slot given back when its connection closes.

py-libp2p 0.8.1's swarm takes an inbound slot per accepted connection and holds it (and the
handler task) until the swarm stops, so after ``max_connections`` connects in total it refuses
every new one. :func:`install` replaces that handler on one swarm instance with
:class:`InboundGate`, which counts open inbound connections in total, per IP address and per
peer id, and releases each count when that connection's close event fires.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

from libp2p.network.connection.raw_connection import RawConnection


def _remote_ip(rwc: Any) -> str:
    with contextlib.suppress(Exception):
        remote = rwc.get_remote_address()
        if remote:
            return str(remote[0])
    return ""


class InboundGate:
    """The inbound connection handler of one swarm, with bounded, released slots."""

    def __init__(self, swarm: Any, *, total: int, per_ip: int, per_peer: int, stats: dict[str, int],
                 log: Any) -> None:
        self.swarm = swarm
        self.total = total
        self.per_ip = per_ip
        self.per_peer = per_peer
        self.stats = stats
        self.log = log
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
