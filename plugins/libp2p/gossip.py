"""Announcements over gossipsub: topic ``/tnode/announce/1``, advisory only.

Each message is a tnode wire frame (kind ``ann``, service ``_announce``, task ``announce``) signed
with the node key and addressed to nobody: its receiver is empty, so it can never be replayed as
a request to a node (those must name the node's hotkey). A topic validator checks it before it is delivered or forwarded: the frame's
signature, freshness and nonce (:class:`tnode.wire.Verifier`), that its signer is the peer that
originated the gossip message, its size, and a per-origin minimum gap. A forged, stale, replayed
or too frequent announcement is dropped and not relayed.

gossipsub is tuned for low-rate traffic (heartbeat 1 s, per-topic rate limit raised above the
default 10 msg/s so a relay forwarding many peers' announcements is not mistaken for a spammer).
Nothing relies on delivery: a lost announcement is repeated at the next interval.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.pubsub_notifee import PubsubNotifee
from tnode import wire
from tnode.errors import FrameTooLarge, WireError
from tnode.keys import public_key_from_peer_id

from .services import run_isolated

TOPIC = "/tnode/announce/1"
SERVICE = "_announce"
MAX_ANNOUNCEMENT_BYTES = 16 * 1024
HEARTBEAT_SECONDS = 1
# Per forwarding peer and topic. A relay forwards everyone's announcements: with a 30 s interval
# 100/s leaves room for thousands of peers, while a flood is still cut.
MAX_MESSAGES_PER_SECOND = 100.0

Record = Callable[[str, str, dict[str, Any]], None]


class GossipAnnouncements:
    """gossipsub router + pubsub for the announcement topic."""

    def __init__(self, host: Any, key: Any, log: Any, record: Record, *, freshness_ms: int,
                 min_gap_seconds: float) -> None:
        self.host = host
        self.key = key
        self.log = log
        self.record = record
        self.min_gap = min_gap_seconds
        self.me = host.get_id()
        self.verifier = wire.Verifier("", window_ms=freshness_ms, max_frame=MAX_ANNOUNCEMENT_BYTES)
        self.router = GossipSub(
            [PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=6, degree_low=4, degree_high=12,
            heartbeat_interval=HEARTBEAT_SECONDS,
            spam_protection_enabled=True,
            max_messages_per_topic_per_second=MAX_MESSAGES_PER_SECOND,
        )
        # Constructing Pubsub registers its stream handlers and a connection notifee: do it before
        # the first connection so every peer gets a pubsub stream.
        self.pubsub = Pubsub(host, self.router, strict_signing=True, max_inbound_rpc_size=256 * 1024,
                             allowed_topics={TOPIC})
        self.pubsub.set_topic_validator(TOPIC, self._validate, False)
        self.running = False
        self.stats = {"published": 0, "accepted": 0, "dropped": 0, "errors": 0}
        self._bug_logged: set[str] = set()
        self._last: dict[str, float] = {}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run pubsub and the router, subscribe and drain the topic until cancelled."""

        def stopped() -> None:
            self.running = False
            self._detach()

        async def services(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await run_isolated(self.log, "gossipsub", [self.pubsub, self.router], on_stop=stopped,
                               task_status=task_status)

        async with trio.open_nursery() as nursery:
            ok = bool(await nursery.start(services))
            if ok:
                try:
                    with trio.fail_after(5):
                        await self.pubsub.wait_until_ready()
                    subscription = await self.pubsub.subscribe(TOPIC)
                    self.running = True
                except Exception as exc:
                    self.log.warning("gossipsub did not start; announcements use request/response only",
                                     error=repr(exc))
                    ok = False
            task_status.started()
            if ok:
                # Messages were accepted by the validator already; the queue only has to be emptied.
                with contextlib.suppress(Exception):
                    while True:
                        await subscription.get()
            await trio.sleep_forever()

    def _detach(self) -> None:
        """After pubsub stopped, its notifee must not block connection events on a dead channel."""
        network = self.host.get_network()
        for notifee in list(getattr(network, "notifees", [])):
            if isinstance(notifee, PubsubNotifee):
                network.remove_notifee(notifee)
        for channel in (self.pubsub.peer_receive_channel, self.pubsub.dead_peer_receive_channel):
            with contextlib.suppress(Exception):
                channel.close()

    async def publish(self, body: dict[str, Any]) -> bool:
        """Publish one signed announcement; ``False`` when gossipsub is not running or failed."""
        if not self.running:
            return False
        frame = wire.encode(self.key, kind="ann", modality=SERVICE, task="announce", receiver="", body=body,
                            nonce=os.urandom(16).hex())
        try:
            await self.pubsub.publish(TOPIC, frame)
        except Exception as exc:
            self.log.debug("gossip publish failed", error=repr(exc))
            return False
        self.stats["published"] += 1
        return True

    def mesh_size(self) -> int:
        """Peers in our mesh for the announcement topic."""
        return len(self.router.mesh.get(TOPIC, ()))

    def _validate(self, forwarder: ID, msg: Any) -> bool:
        """Topic validator: accept (and record) only authentic, fresh, not too frequent announcements.

        Never raises: an exception here would stop gossipsub for the rest of the run, so anything
        unexpected a message triggers drops that message and is logged once per origin.
        """
        try:
            return self._check(forwarder, msg)
        except Exception as exc:
            self.stats["dropped"] += 1
            self.stats["errors"] += 1
            origin = ""
            with contextlib.suppress(Exception):
                origin = ID(msg.from_id).to_base58()
            level = self.log.debug if origin in self._bug_logged else self.log.warning
            if len(self._bug_logged) < 10_000:
                self._bug_logged.add(origin)
            level("gossip announcement raised an unexpected error; dropped", origin=origin, error=repr(exc)[:300])
            return False

    def _check(self, forwarder: ID, msg: Any) -> bool:
        origin = ID(msg.from_id)
        if origin == self.me:
            return True
        origin_id = origin.to_base58()
        reason = ""
        try:
            if len(msg.data) > MAX_ANNOUNCEMENT_BYTES:
                raise FrameTooLarge(f"{len(msg.data)} bytes > {MAX_ANNOUNCEMENT_BYTES}")
            message = self.verifier.verify_frame(msg.data, expect_kind="ann")
            if message.modality != SERVICE:
                reason = f"service {message.modality!r} is not {SERVICE}"
            elif message.sender != public_key_from_peer_id(origin_id).hex():
                reason = "announcement signed by another key than its gossip origin"
        except (WireError, ValueError) as exc:
            reason = f"{getattr(exc, 'code', 'invalid')}: {exc}"
        if not reason:
            now = time.monotonic()
            if now - self._last.get(origin_id, -1e9) < self.min_gap:
                reason = "announcing too often"
            else:
                self._last[origin_id] = now
                if len(self._last) > 100_000:  # bounded: forget the oldest half
                    for old in sorted(self._last, key=self._last.__getitem__)[:50_000]:
                        del self._last[old]
        if reason:
            self.stats["dropped"] += 1
            self.log.debug("gossip announcement dropped", origin=origin_id, forwarder=forwarder.to_base58(),
                           reason=reason)
            return False
        self.stats["accepted"] += 1
        self.record(origin_id, message.sender, message.body)
        return True
