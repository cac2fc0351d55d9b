"""The libp2p transport component: signed request/response over ``/tnode/task/1``.

Client side (:mod:`.client`): a small pool of open streams per peer, one request/response pair
at a time on each. Server side (:mod:`.server`): every stream is served by its own task; each frame is
verified (size, structure, signature, freshness, replay, body hash), then handed to
:mod:`tnode.dispatch` (spam filters, execution slot, the modality or ``svc:`` service it names).

Request body on the wire: ``{"args": <task body>, "timeout_ms": <client deadline>}``.
Response body: ``{"result": <body>}`` or, with a non-empty code, ``{"error": <message>}``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import anyio
import multiaddr
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from tnode import dispatch, wire
from tnode.errors import (
    ConfigError,
    TaskError,
)
from tnode.events import PeerConnected, PeerDisconnected
from tnode.interfaces import PeerInfo
from tnode.keys import public_key_from_peer_id

from .client import TASK_PROTOCOL, PeerState, RequestClient
from .config import Libp2pConfig
from .framing import FrameBudget
from .host import build_host, check_port_free
from .inbound import ViolationBans
from .inbound import install as install_inbound_gate
from .muxer import StreamLimits
from .server import TaskServer
from .tarpit import Tarpit

DHT_LOOKUP_SECONDS = 10.0  # upper bound of one lookup; a request's own deadline may cut it shorter


class Libp2pTransport(RequestClient):
    """Implements :class:`tnode.interfaces.Transport` over py-libp2p."""

    TASK_PROTOCOL = TASK_PROTOCOL

    def __init__(self, node: Any, name: str, config: Libp2pConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.key = node.hotkey
        self.hotkey = node.hotkey.public_hex
        self.peer_id = node.hotkey.peer_id
        self.log = node.log.bind(component="transport")
        self.verifier = wire.Verifier(self.hotkey, window_ms=int(config.freshness_seconds * 1000),
                                      max_frame=config.max_frame_bytes, replay_max_bytes=config.replay_memory_bytes)
        try:
            self._listen = [multiaddr.Multiaddr(a) for a in config.listen]
            self._announce = [multiaddr.Multiaddr(a) for a in config.announce]
        except Exception as exc:
            raise ConfigError(f"invalid multiaddr: {exc}", key_path=f"{name}.listen") from None
        self._peers: dict[str, PeerState] = {}
        # The execution slots and the task deadline cap are node-wide (every entry point shares them):
        # this transport's options set them on the node's dispatcher.
        dispatch.of(node).configure(max_concurrent_tasks=config.max_concurrent_tasks,
                                    max_task_seconds=config.max_task_seconds)
        self.host: Any = None
        self.inbound: Any = None  # .inbound.InboundGate once the host exists
        self.stats = {"served": 0, "refused": 0, "errors": 0, "idle_closed": 0, "read_timeouts": 0,
                      "budget_refused": 0, "inbound_refused": 0, "bad_responses": 0}
        # A peer whose connections tnode's Yamux keeps closing for protocol violations is refused
        # inbound connections for a while (stats peers_banned, banned_refused).
        self.bans = ViolationBans(after=config.violation_ban_after, seconds=config.violation_ban_seconds,
                                  stats=self.stats, log=self.log)
        self.budget = FrameBudget(config.partial_frame_bytes, config.partial_frame_bytes_per_peer)
        self._bug_logged: set[tuple[str, str]] = set()
        self.tarpit = Tarpit(after=config.tarpit_after, delay=config.tarpit_delay,
                             forgive_per_second=config.tarpit_forgive_per_second)
        self.server = TaskServer(self)
        self._tg: Any = None
        self.announcements: Any = None
        self.dht: Any = None  # .dht.Dht when config.dht
        self.gossip: Any = None  # .gossip.GossipAnnouncements when announcements go over gossipsub

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        for i, addr in enumerate(self._listen):
            check_port_free(addr, f"{self.name}.listen[{i}]")
        self.host = build_host(self.key, max_connections=self.config.max_connections, listen=self._listen,
                               announce=self._announce, mdns=self.config.mdns,
                               stream_limits=StreamLimits(self.config.max_streams_per_connection,
                                                          self.config.max_stream_window_bytes, self.stats),
                               yamux_impl=self.config.yamux, on_violation=self.bans.record)
        self.inbound = install_inbound_gate(
            self.host, total=self.config.max_connections, per_ip=self.config.max_inbound_per_ip,
            per_peer=self.config.max_inbound_per_peer, stats=self.stats, log=self.log, bans=self.bans)
        self.host.set_stream_handler(TASK_PROTOCOL, self.server.serve_stream)
        self.host.get_network().register_notifee(_Notifee(self))
        if self.config.announce_interval > 0:
            from .announce import Announcer

            self.announcements = Announcer(self)
        # Optional services register their protocol handlers and notifees before any connection.
        self._attach_optional_services()
        try:
            async with self.host.run(self._listen), trio.open_nursery() as nursery:
                self._tg = nursery
                if self.dht is not None:
                    await nursery.start(self.dht.run)
                if self.gossip is not None:
                    await nursery.start(self.gossip.run)
                for addr in self.config.bootstrap:
                    nursery.start_soon(self._bootstrap, addr)
                if self.announcements is not None:
                    await nursery.start(self.announcements.run)
                self.log.info("transport listening", addrs=self.listen_addrs())
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                # Without this the listen sockets outlive the node and keep accepting.
                with trio.move_on_after(5):
                    await self.host.close()

    def _attach_optional_services(self) -> None:
        """DHT and gossipsub are optional: if one cannot be built, the node runs without it."""
        if self.config.dht:
            try:
                from .dht import Dht

                self.dht = Dht(self.host, self.log)
            except Exception as exc:
                self.log.warning("DHT unavailable; peers are found by bootstrap, chain and announcements",
                                 error=repr(exc))
        if self.announcements is not None and self.config.gossip:
            try:
                from .gossip import GossipAnnouncements

                self.gossip = GossipAnnouncements(
                    self.host, self.key, self.log, self.announcements.record,
                    freshness_ms=int(self.config.freshness_seconds * 1000), min_gap_seconds=1.0)
                self.announcements.gossip = self.gossip
            except Exception as exc:
                self.log.warning("gossipsub unavailable; announcements use request/response", error=repr(exc))

    def log_peer_bug(self, peer_id: str, where: str, exc: BaseException) -> None:
        """Log an unexpected exception raised by a peer's input: a warning the first time per (peer, place).

        Later ones from the same peer go to debug, so a hostile peer cannot flood the log.
        """
        key = (peer_id, where)
        level = self.log.debug if key in self._bug_logged else self.log.warning
        if len(self._bug_logged) < 10_000:
            self._bug_logged.add(key)
        level("peer input raised an unexpected error; refused, still serving", remote=peer_id, where=where,
              error=repr(exc)[:300])

    async def guarded(self, where: str, peer_id: str, fn: Any, *args: Any) -> None:
        """Run a per-peer background job (greeting, DHT add); its failure is logged, never raised."""
        try:
            await fn(*args)
        except Exception as exc:
            self.stats["errors"] += 1
            self.log_peer_bug(peer_id, where, exc)

    # ------------------------------------------------------------------ addresses and peers
    def listen_addrs(self) -> list[str]:
        if self.host is None:
            return []
        return [str(a) for a in self.host.get_addrs()]

    def add_peer_addrs(self, peer_id: str, addrs: Sequence[str]) -> None:
        """Teach the transport dialable addresses of ``peer_id``.

        This is the hook for every address source outside libp2p itself: the chain (axon
        addresses published by neurons), the config, announcements. Multiaddrs may carry a
        ``/p2p/<id>`` suffix. They are tried in order before any DHT lookup.
        """
        peer = self._peer(peer_id)
        for addr in addrs:
            text = str(addr)
            if "/p2p/" in text:
                text = text.split("/p2p/")[0]
            if text and text not in peer.addrs:
                peer.addrs.append(text)
        if self.host is not None and peer.addrs:
            with contextlib.suppress(Exception):
                self.host.get_peerstore().add_addrs(ID.from_base58(peer_id),
                                                    [multiaddr.Multiaddr(a) for a in peer.addrs], 3600)

    def peers(self) -> list[PeerInfo]:
        out = []
        for p in self._peers.values():
            ann = p.announcement
            out.append(PeerInfo(p.peer_id, tuple(p.addrs), p.connected, p.hotkey,
                                tuple(ann.modalities) if ann else (), ann.version if ann else "",
                                ann.capacity if ann else 0))
        return out

    def _peer(self, peer_id: str) -> PeerState:
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = PeerState(peer_id, slots=trio.Semaphore(self.config.streams_per_peer))
            with contextlib.suppress(ValueError):
                peer.hotkey = public_key_from_peer_id(peer_id).hex()
            self._peers[peer_id] = peer
        return peer

    def _resolve(self, peer: str) -> str:
        if peer.startswith("/"):
            try:
                info = info_from_p2p_addr(multiaddr.Multiaddr(peer))
            except Exception as exc:
                raise TaskError("unreachable", f"not a dialable multiaddr with /p2p/: {peer} ({exc})") from None
            peer_id = info.peer_id.to_base58()
            self.add_peer_addrs(peer_id, [str(a) for a in info.addrs])
            return peer_id
        return peer

    async def connect(self, addr: str) -> str:
        peer_id = self._resolve(addr)
        await self._ensure_connected(self._peer(peer_id))
        return peer_id

    async def _ensure_connected(self, peer: PeerState) -> None:
        if peer.lib_id is None:
            peer.lib_id = ID.from_base58(peer.peer_id)
        pid = peer.lib_id
        if self._live_connections(pid):
            return
        async with peer.dial_lock:  # one dial per peer at a time; the others reuse its connection
            if self._live_connections(pid):
                return
            await self._dial(peer, pid)

    def connected_to(self, peer_id: str) -> bool:
        """Whether a live (not closing) connection to ``peer_id`` exists now."""
        return bool(self._live_connections(ID.from_base58(peer_id)))

    def _live_connections(self, pid: Any) -> list[Any]:
        """The swarm's connections to ``pid`` that are not closing.

        A connection the remote side closed stays listed until its muxer has noticed; counting it
        as connected would skip the dial and fail the next stream with "no valid connections".
        """
        live = []
        for conn in self.host.get_network().get_connections(pid):
            with contextlib.suppress(Exception):
                if not conn.is_closed and not conn.muxed_conn.is_closed:
                    live.append(conn)
        return live

    async def _dial(self, peer: PeerState, pid: Any) -> None:
        now = time.monotonic()
        if now < peer.next_dial:
            raise TaskError("unreachable", f"peer {peer.peer_id} in dial back-off for {peer.next_dial - now:.1f} s")
        addrs = list(peer.addrs) or self._peerstore_addrs(pid)
        errors: list[str] = []
        if await self._dial_each(peer, addrs, errors):
            return
        if self.dht is not None:
            # No address, or none answered: ask the DHT for current ones (bounded by the caller's deadline).
            found: list[str] = []
            with trio.move_on_after(DHT_LOOKUP_SECONDS):
                found = [a for a in await self.dht.find(peer.peer_id) if a.split("/p2p/")[0] not in addrs]
            if self._live_connections(pid):
                return  # the lookup itself reached the peer
            if found:
                self.add_peer_addrs(peer.peer_id, found)
            if await self._dial_each(peer, found, errors):
                return
            if not found:
                errors.append("not found in the DHT")
        if not addrs and not errors:
            errors.append("no known address")
        peer.failures += 1
        peer.next_dial = time.monotonic() + min(60.0, self.config.dial_backoff_seconds * 2 ** (peer.failures - 1))
        raise TaskError("unreachable", f"cannot reach {peer.peer_id}: {'; '.join(errors)}")

    def _peerstore_addrs(self, pid: Any) -> list[str]:
        try:
            return [str(a) for a in self.host.get_peerstore().addrs(pid)]
        except Exception:  # the peerstore raises for unknown peers
            return []

    async def _dial_each(self, peer: PeerState, addrs: Sequence[str], errors: list[str]) -> bool:
        """Dial ``addrs`` one by one; True once connected.

        ``host.connect`` would dial only the first address per transport from the peerstore (so a
        dead first address hides every other one), and after a failure refuses the peer for 60 s;
        dialing each address explicitly avoids both. tnode keeps its own per-peer back-off.
        """
        network = self.host.get_network()
        for addr in addrs:
            maddr = multiaddr.Multiaddr(addr.split("/p2p/")[0])
            try:
                conn = await network.dial_addr(maddr, peer.lib_id)
                started = getattr(conn, "event_started", None)
                if started is not None:
                    await started.wait()  # muxer and stream handlers ready
            except Exception as exc:
                errors.append(f"{addr}: {type(exc).__name__}: {exc}")
                continue
            with contextlib.suppress(Exception):
                self.host.get_peerstore().add_addrs(peer.lib_id, [maddr], 3600)
                network.unblock_peer(peer.lib_id)  # let libp2p's own dialers (DHT, pubsub) reach it too
            peer.failures = 0
            peer.next_dial = 0.0
            return True
        return False

    async def _bootstrap(self, addr: str) -> None:
        delay = max(self.config.dial_backoff_seconds, 0.1)
        while True:
            try:
                peer_id = await self.connect(addr)
                self.log.info("bootstrap connected", addr=addr, remote=peer_id)
                # Stay connected: check again later, re-dial if the peer went away.
                delay = max(self.config.dial_backoff_seconds, 0.1)
                await trio.sleep(10)
            except TaskError as exc:
                self.log.debug("bootstrap dial failed", addr=addr, error=str(exc), retry_in=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 60.0)

    # ------------------------------------------------------------------ connection events
    def _on_connected(self, peer_id: str, addr: str) -> None:
        peer = self._peer(peer_id)
        peer.connected = True
        if addr and addr not in peer.addrs and "/tcp/" in addr:
            pass  # inbound connections come from ephemeral ports: not dialable, not recorded
        self.node.bus.publish_nowait(PeerConnected(peer_id, tuple(peer.addrs)))
        if self._tg is None:
            return
        if self.announcements is not None:
            self._tg.start_soon(self.guarded, "greet", peer_id, self.announcements.greet, peer_id)
        if self.dht is not None:
            self._tg.start_soon(self.guarded, "dht", peer_id, self.dht.add_connected, peer_id)

    def _on_disconnected(self, peer_id: str) -> None:
        peer = self._peer(peer_id)
        peer.connected = False
        peer.idle.clear()
        peer.open_streams = 0
        self.node.bus.publish_nowait(PeerDisconnected(peer_id))


class _Notifee:
    """Forwards py-libp2p connection notifications to the transport."""

    def __init__(self, transport: Libp2pTransport) -> None:
        self.t = transport

    async def opened_stream(self, network: Any, stream: Any) -> None:
        return None

    async def closed_stream(self, network: Any, stream: Any) -> None:
        return None

    async def connected(self, network: Any, conn: Any) -> None:
        with contextlib.suppress(Exception):
            pid = conn.muxed_conn.peer_id.to_base58()
            self.t._on_connected(pid, "")

    async def disconnected(self, network: Any, conn: Any) -> None:
        with contextlib.suppress(Exception):
            pid = conn.muxed_conn.peer_id
            others = network.connections.get(pid) or []
            if not isinstance(others, list | tuple):
                others = [others]
            # The closing connection may still be listed while we are notified.
            if not [c for c in others if c is not conn]:
                self.t._on_disconnected(pid.to_base58())

    async def listen(self, network: Any, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        return None
