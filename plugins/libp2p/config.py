"""Configuration schema of the libp2p transport."""

from __future__ import annotations

from dataclasses import dataclass

from tnode.config import option


@dataclass(frozen=True)
class Libp2pConfig:
    """libp2p transport: TCP + Noise + Yamux, identify, ping, signed request/response `/tnode/task/1`."""

    listen: list[str] = option(["/ip4/127.0.0.1/tcp/4001"], "Multiaddrs to listen on (tcp port 0 picks a free port).")
    announce: list[str] = option([], "Multiaddrs to advertise instead of the listen addresses (NAT, proxies).")
    bootstrap: list[str] = option([], "Multiaddrs (with /p2p/<peer id>) dialled at start and re-dialled with backoff.")
    max_frame_bytes: int = option(16 * 1024 * 1024, "Largest accepted frame; larger ones are refused unread.", ge=1024)
    max_concurrent_tasks: int = option(64, "Inbound tasks executed at once; more wait until their deadline.", ge=1)
    max_task_seconds: float = option(
        60.0, "Upper bound on any inbound task's deadline, in seconds.", ge=0.01
    )
    streams_per_peer: int = option(8, "Outbound streams kept open per peer (requests in flight per peer).", ge=1, le=256)
    freshness_seconds: float = option(30.0, "Accepted clock difference for signed messages.", ge=1.0)
    max_connections: int = option(1024, "Connection limit of the host.", ge=1)
    dial_backoff_seconds: float = option(1.0, "First back-off after a failed dial; doubles up to 60 s.", ge=0.0)
    announce_interval: float = option(
        30.0, "Seconds between gossip announcements (0 disables announcements, also on connect).", ge=0.0
    )
    gossip: bool = option(True, "Send periodic announcements over gossipsub /tnode/announce/1 (else by request).")
    capacity: int = option(0, "Capacity announced to peers (0: max_concurrent_tasks).", ge=0)
    mdns: bool = option(False, "Discover peers on the LAN with mDNS (binds every interface; off by default).")
    tarpit_after: int = option(
        20, "Abuse refusals (unregistered, rate limited, oversized, forged, replayed…) a peer may collect "
            "before its further refusals are answered slowly; 0 disables slow refusals.", ge=0)
    tarpit_delay: float = option(0.5, "Seconds a slow refusal is held before it is sent.", ge=0.0, le=30.0)
    tarpit_forgive_per_second: float = option(5.0, "Strikes forgiven per second of good behaviour.", ge=0.0)
    dht: bool = option(True, "Run a Kademlia DHT (server mode, /ipfs/kad/1.0.0) to find peers by id.")
