"""Configuration schema of the libp2p transport."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import multiaddr  # the multiaddr parser only (cheap); py-libp2p itself is imported by the transport
from tnode.config import option


def _multiaddr_problem(text: str, *, need_tcp: bool, need_peer_id: bool) -> str:
    """Why ``text`` is not a usable multiaddr ("" when it is)."""
    try:
        addr = multiaddr.Multiaddr(text)
    except Exception as exc:  # the parser raises several unrelated classes
        return f"{text!r} is not a multiaddr: {exc}"
    protos = [p.name for p in addr.protocols()]
    if need_tcp and "tcp" not in protos:
        return f"{text!r} has no /tcp/<port> part (only TCP is served)"
    if "tcp" in protos:
        port = int(addr.value_for_protocol("tcp"))
        if not 0 <= port <= 65535:
            return f"{text!r}: TCP port {port} outside 0..65535"
    if need_peer_id and "p2p" not in protos:
        return f"{text!r} has no /p2p/<peer id> part"
    return ""


@dataclass(frozen=True)
class Libp2pConfig:
    """libp2p transport: TCP + Noise + Yamux, identify, ping, signed request/response `/tnode/task/1`."""

    listen: list[str] = option(["/ip4/127.0.0.1/tcp/4001"], "Multiaddrs to listen on (tcp port 0 picks a free port).")
    announce: list[str] = option([], "Multiaddrs to advertise instead of the listen addresses (NAT, proxies).")
    bootstrap: list[str] = option([], "Multiaddrs (with /p2p/<peer id>) dialled at start and re-dialled with backoff.")
    max_frame_bytes: int = option(16 * 1024 * 1024, "Largest accepted frame; larger ones are refused unread.",
                                  ge=1024, le=1 << 30)
    max_concurrent_tasks: int = option(
        64, "Inbound tasks executed at once on this node, from every entry point (tnode.dispatch's execution "
            "slots); more wait until their deadline.", ge=1)
    max_task_seconds: float = option(
        60.0, "Upper bound on any inbound task's deadline, in seconds (every entry point).", ge=0.01, le=86400.0
    )
    streams_per_peer: int = option(8, "Outbound streams kept open per peer (requests in flight per peer).", ge=1, le=256)
    sign_requests: bool = option(
        False, "Sign every request with the hotkey. Off (the default): requests ride the Noise session's "
               "authentication, whose peer id is the hotkey, and a peer that insists on signatures gets a signed "
               "retry; responses are always signed (see docs/security.md).")
    accept_unsigned_requests: bool = option(
        True, "Serve requests authenticated by the Noise session alone (sender = the connection's peer). Off: "
              "every request must carry a valid signature, or is refused as bad_signature.")
    freshness_seconds: float = option(30.0, "Accepted clock difference for signed messages.", ge=1.0, le=3600.0)
    replay_memory_bytes: int = option(
        64 * 1024 * 1024, "Bytes of memory for the nonces seen within the freshness window; at the cap the oldest "
        "are forgotten and older messages are refused as stale.", ge=1024 * 1024)
    max_connections: int = option(1024, "Connection limit of the host; also the limit of open inbound connections.",
                                  ge=1, le=1_000_000)
    max_inbound_per_peer: int = option(
        4, "Open inbound connections one peer id may hold; more are closed after the handshake.", ge=1, le=1024)
    max_inbound_per_ip: int = option(
        256, "Open (or handshaking) inbound connections from one IP address; more are closed before the handshake.",
        ge=1, le=1_000_000)
    frame_read_seconds: float = option(
        5.0, "Once a frame's first byte has arrived, the whole frame must arrive within this time, or the stream "
             "is reset and the peer earns a strike.", ge=0.05, le=600.0)
    stream_idle_seconds: float = option(
        120.0, "An inbound stream with no frame started for this long is closed (clients reopen one).",
        ge=1.0, le=86400.0)
    partial_frame_bytes: int = option(
        256 * 1024 * 1024, "Bytes of frames being received, all peers together; a frame that does not fit waits "
                           "for room until its read deadline, then is refused.", ge=1024, le=1 << 40)
    partial_frame_bytes_per_peer: int = option(
        32 * 1024 * 1024, "Bytes of frames being received from one peer (see partial_frame_bytes).",
        ge=1024, le=1 << 40)
    max_streams_per_connection: int = option(
        64, "Open inbound streams one connection may hold (a client keeps streams_per_peer for requests, plus "
            "identify, ping, DHT and gossip streams); a further stream is reset at once and counted.",
        ge=1, le=4096)
    max_stream_window_bytes: int = option(
        1024 * 1024, "Largest receive window a stream may grow to; a peer sending past its window is disconnected. "
                     "A connection's unread bytes stay below max(32 MiB, max_streams_per_connection x 256 KiB) + 256 KiB "
                     "per stream the node opened on it with yamux = "
                     "\"tnode\", (max_streams_per_connection + 11) x 2 x this with \"py-libp2p\".",
        ge=256 * 1024, le=16 * 1024 * 1024)
    yamux: str = option(
        "tnode", "Yamux implementation, same wire protocol either way: \"tnode\" (tnode's own: one reader task "
                 "per connection, Noise messages read and written on the socket directly, a connection's unread "
                 "bytes bounded by about 32 MiB, see max_stream_window_bytes) or \"py-libp2p\" (py-libp2p 0.8.1's, with tnode's stream limits, "
                 "reset-buffer and whole-frame patches; its unread-bytes bound is the one of "
                 "max_stream_window_bytes).", choices=["tnode", "py-libp2p"])
    dial_backoff_seconds: float = option(1.0, "First back-off after a failed dial; doubles up to 60 s.",
                                         ge=0.0, le=3600.0)
    announce_interval: float = option(
        30.0, "Seconds between gossip announcements (0 disables announcements, also on connect).", ge=0.0, le=86400.0
    )
    gossip: bool = option(True, "Send periodic announcements over gossipsub /tnode/announce/1 (else by request).")
    capacity: int = option(0, "Capacity announced to peers (0: max_concurrent_tasks).", ge=0)
    mdns: bool = option(False, "Discover peers on the LAN with mDNS (binds every interface; off by default).")
    tarpit_after: int = option(
        20, "Abuse refusals (unregistered, rate limited, oversized, forged, replayed…) a peer may collect "
            "before its further refusals are answered slowly; 0 disables slow refusals.", ge=0)
    tarpit_delay: float = option(0.5, "Seconds a slow refusal is held before it is sent.", ge=0.0, le=30.0)
    tarpit_forgive_per_second: float = option(5.0, "Strikes forgiven per second of good behaviour.",
                                              ge=0.0, le=1e6)
    violation_ban_after: int = option(
        2, "Yamux protocol violations (window overrun, bad version, unknown frame type, duplicate SYN; each closes "
           "its connection) by one peer id, each within violation_ban_seconds of the one before, that ban it: "
           "its new inbound connections are then refused for violation_ban_seconds (stats peers_banned, "
           "banned_refused); 0 disables bans. Needs yamux = \"tnode\".", ge=0, le=1_000_000)
    violation_ban_seconds: float = option(
        60.0, "Seconds a peer id that reached violation_ban_after is refused new inbound connections (after the "
              "Noise handshake names it); its violations are also forgotten after this long without a new one.",
        ge=0.5, le=86400.0)
    dht: bool = option(True, "Run a Kademlia DHT (server mode, /ipfs/kad/1.0.0) to find peers by id.")

    def check(self) -> Iterator[tuple[str, str, str]]:
        """Parse every multiaddr now, so `tnode validate` refuses what the transport could not use."""
        lists = (("listen", self.listen, True, False), ("announce", self.announce, False, False),
                 ("bootstrap", self.bootstrap, False, True))
        for key, addrs, need_tcp, need_peer_id in lists:
            for i, text in enumerate(addrs):
                problem = _multiaddr_problem(text, need_tcp=need_tcp, need_peer_id=need_peer_id)
                if problem:
                    yield f"{key}[{i}]", problem, "e.g. /ip4/127.0.0.1/tcp/4001 (ports 0..65535)"
        if self.partial_frame_bytes_per_peer > self.partial_frame_bytes:
            yield ("partial_frame_bytes_per_peer", "is larger than partial_frame_bytes",
                   "the per-peer budget is a share of the total")
        if self.partial_frame_bytes_per_peer < self.max_frame_bytes:
            yield ("partial_frame_bytes_per_peer", "is smaller than max_frame_bytes: a maximal frame could never "
                   "be received", "raise it to at least max_frame_bytes")
