"""Peer announcements: served modalities, version, capacity and dialable addresses.

Two paths, both advisory (nothing critical depends on an announcement arriving):

- on every new connection, one signed call of the ``announce`` service (route ``svc:announce``,
  see :mod:`tnode.dispatch`) on the task protocol, so two peers know each other's modalities within milliseconds of connecting;
- every ``announce_interval`` seconds, one signed announcement on the gossipsub topic
  ``/tnode/announce/1`` (see :mod:`.gossip`), which also reaches peers we are not connected to.
  When gossipsub is off or has failed, the periodic announcement is sent by request/response to
  the connected peers instead.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import trio
from libp2p.peer.id import ID
from tnode import __version__, dispatch
from tnode.errors import TaskError
from tnode.events import AnnouncementReceived
from tnode.interfaces import TaskResult

from .host import wait_for_protocols

SERVICE = "announce"
MAX_LISTED = 64  # modalities or addresses kept from one announcement


class Announcer:
    """Builds this node's announcement, sends it, and records the ones peers send."""

    def __init__(self, transport: Any) -> None:
        self.t = transport
        self.received: dict[str, AnnouncementReceived] = {}
        self.gossip: Any = None  # GossipAnnouncements when gossipsub runs

    def payload(self) -> dict[str, Any]:
        node = self.t.node
        modalities = dispatch.of(node).modalities()
        return {
            "modalities": modalities,
            "version": __version__,
            "capacity": self.t.config.capacity or self.t.config.max_concurrent_tasks,
            "addrs": self.t.listen_addrs(),
        }

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        undo = dispatch.of(self.t.node).serve_service(SERVICE, self._on_announce)
        task_status.started()
        try:
            while True:
                await trio.sleep(self.t.config.announce_interval)
                if self.gossip is not None and await self.gossip.publish(self.payload()):
                    continue
                for peer in list(self.t.peers()):
                    if peer.connected:
                        with trio.move_on_after(5):
                            await self.greet(peer.peer_id)
        finally:
            undo()

    async def greet(self, peer_id: str) -> None:
        """Exchange announcements with one peer by request/response (its reply is its announcement)."""
        # Only peers that speak the task protocol (other libp2p software may connect too).
        if self.t.TASK_PROTOCOL not in await wait_for_protocols(self.t.host, ID.from_base58(peer_id)):
            return
        with contextlib.suppress(TaskError):
            await self.t.node.ready.wait()
            # dial=False: a peer that went away meanwhile is no reason to dial it back.
            reply = await self.t.request(peer_id, dispatch.service_route(SERVICE), "announce", self.payload(),
                                         timeout=5.0, dial=False)
            self.record(peer_id, self.t._peer(peer_id).hotkey, reply.body)

    async def _on_announce(self, task: dispatch.ServiceCall) -> TaskResult:
        self.record(task.peer_id, task.sender, dict(task.body))
        return TaskResult(self.payload())

    def record(self, peer_id: str, hotkey: str, body: dict[str, Any]) -> None:
        """Update the peer table from an authenticated announcement and publish the bus event."""
        mods = body.get("modalities", [])
        addrs = body.get("addrs", [])
        capacity = body.get("capacity", 0)
        if not (isinstance(mods, list) and all(isinstance(m, str) for m in mods) and isinstance(addrs, list)
                and isinstance(capacity, int) and len(mods) <= MAX_LISTED and len(addrs) <= MAX_LISTED):
            return
        event = AnnouncementReceived(peer_id, hotkey, tuple(mods), str(body.get("version", "")), capacity,
                                     tuple(str(a) for a in addrs))
        self.received[peer_id] = event
        peer = self.t._peer(peer_id)
        peer.announcement = event
        self.t.add_peer_addrs(peer_id, [a for a in event.addrs if a.endswith(f"/p2p/{peer_id}")])
        self.t.node.bus.publish_nowait(event)
