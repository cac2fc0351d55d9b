"""Peer announcements: served modalities, version and capacity.

Announcements travel as signed ``_announce`` requests on the task protocol: sent to every peer
when a connection opens and again every ``announce_interval`` seconds to connected peers. They
are advisory — nothing critical depends on them arriving — and the signature of the carrying
frame authenticates them.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import trio
from tnode import __version__
from tnode.errors import TaskError
from tnode.events import AnnouncementReceived, TaskReceived
from tnode.interfaces import TaskResult

SERVICE = "_announce"


class Announcer:
    def __init__(self, transport: Any) -> None:
        self.t = transport
        self.received: dict[str, AnnouncementReceived] = {}

    def payload(self) -> dict[str, Any]:
        node = self.t.node
        modalities = sorted(n for n in node.bus.served_keys(TaskReceived) if not n.startswith("_") and n != "chain")
        return {
            "modalities": modalities,
            "version": __version__,
            "capacity": self.t.config.capacity or self.t.config.max_concurrent_tasks,
            "addrs": self.t.listen_addrs(),
        }

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        undo = self.t.node.bus.serve(TaskReceived, self._on_announce, key=SERVICE)
        task_status.started()
        try:
            while True:
                await trio.sleep(self.t.config.announce_interval)
                for peer in list(self.t.peers()):
                    if peer.connected:
                        await self.greet(peer.peer_id)
        finally:
            undo()

    async def greet(self, peer_id: str) -> None:
        with contextlib.suppress(TaskError):
            await self.t.node.ready.wait()
            reply = await self.t.request(peer_id, SERVICE, "announce", self.payload(), timeout=5.0)
            self._record(peer_id, self.t._peer(peer_id).hotkey, reply.body)

    async def _on_announce(self, task: TaskReceived) -> TaskResult:
        self._record(task.peer_id, task.sender, task.body)
        return TaskResult(self.payload())

    def _record(self, peer_id: str, hotkey: str, body: dict[str, Any]) -> None:
        mods = body.get("modalities", [])
        addrs = body.get("addrs", [])
        capacity = body.get("capacity", 0)
        if not (isinstance(mods, list) and all(isinstance(m, str) for m in mods) and isinstance(addrs, list)
                and isinstance(capacity, int)):
            return
        event = AnnouncementReceived(peer_id, hotkey, tuple(mods), str(body.get("version", "")), capacity,
                                     tuple(str(a) for a in addrs))
        self.received[peer_id] = event
        peer = self.t._peer(peer_id)
        peer.announcement = event
        self.t.add_peer_addrs(peer_id, [a for a in event.addrs if "/p2p/" in a])
        self.t.node.bus.publish_nowait(event)
