"""Kademlia DHT (``/ipfs/kad/1.0.0``, server mode): finding a peer's addresses by its peer id.

Every connected peer that speaks the DHT protocol (learned through identify) enters the routing
table; a request to a peer id with no usable address asks the DHT (``FIND_NODE``) before dialing.
Records: strict validation is on, so only the standard validated namespaces (``/pk/``, ``/ipns/``)
can be stored on this node — peers cannot use it as free storage.
"""

from __future__ import annotations

from typing import Any

import trio
from libp2p.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.peer.id import ID

from .host import wait_for_protocols
from .services import run_isolated

IDENTIFY_WAIT_SECONDS = 5.0  # how long a new connection may take to finish identify


class Dht:
    """The transport's DHT: routing table fed from connections, ``find`` for lookups."""

    def __init__(self, host: Any, log: Any) -> None:
        self.host = host
        self.log = log
        # Registers the /ipfs/kad/1.0.0 handler now, before any connection exists.
        self.kad = KadDHT(host, DHTMode.SERVER, strict_validation=True)
        self.running = False
        self.lookups = 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the DHT service until cancelled (a crash is logged and disables lookups only)."""

        def stopped() -> None:
            self.running = False

        async def service(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await run_isolated(self.log, "Kademlia DHT", [self.kad], on_stop=stopped, task_status=task_status)

        async with trio.open_nursery() as nursery:
            self.running = bool(await nursery.start(service))
            task_status.started()

    async def add_connected(self, peer_id: str) -> bool:
        """Put a newly connected peer in the routing table once identify told us it serves the DHT."""
        if not self.running:
            return False
        pid = ID.from_base58(peer_id)
        if PROTOCOL_ID not in await wait_for_protocols(self.host, pid, IDENTIFY_WAIT_SECONDS):
            return False  # a client-mode peer, one that does not speak the DHT, or identify failed
        try:
            return bool(await self.kad.add_peer(pid))
        except Exception as exc:
            self.log.debug("dht add_peer failed", remote=peer_id, error=repr(exc))
            return False

    async def find(self, peer_id: str) -> list[str]:
        """Addresses of ``peer_id`` from the DHT (routing table, peerstore, then a network lookup).

        Returns ``[]`` when the DHT is off or the peer was not found; callers bound the time.
        """
        if not self.running:
            return []
        self.lookups += 1
        try:
            info = await self.kad.find_peer(ID.from_base58(peer_id))
        except Exception as exc:
            self.log.debug("dht lookup failed", remote=peer_id, error=repr(exc))
            return []
        if info is None:
            return []
        return [str(a) for a in info.addrs]

    def routing_table_size(self) -> int:
        """Peers in the routing table."""
        return int(self.kad.get_routing_table_size())
