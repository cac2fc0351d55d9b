"""What the node looks like from outside: the metagraph, epochs, peers, alarms and readiness.

Filled from bus events and from periodic reads of the chain and transport; read by the metrics
collector, ``/readyz`` and the dashboard's ``/api/state``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import anyio
from tnode.events import (
    BlockProduced,
    CollusionSuspected,
    EpochCompleted,
    NeuronRegistered,
    SpamDetected,
    TaskRefused,
)
from tnode.interfaces import Metagraph


class NodeView:
    """The live picture of one node."""

    def __init__(self, node: Any, *, history: int, alarms: int, min_peers: int, chain_stale_seconds: float) -> None:
        self.node = node
        self.min_peers = min_peers
        self.chain_stale_seconds = chain_stale_seconds
        self.metagraph: Metagraph | None = None
        self.difficulty: int | None = None
        self.block = -1
        self.block_time: float | None = None
        self.peers = 0
        self.chain_ok = False
        self.chain_error = ""
        self._chain_seen = 0.0
        self.started = False
        self.epochs: deque[dict[str, Any]] = deque(maxlen=history)
        self.heights: deque[tuple[float, int, int]] = deque(maxlen=600)  # (time, block, peers)
        self.alarms: deque[dict[str, Any]] = deque(maxlen=alarms)

    # ------------------------------------------------------------------ events
    def subscribe(self) -> list[Any]:
        bus = self.node.bus
        kw: dict[str, Any] = {"maxsize": 4096, "when_full": "drop_newest"}
        return [
            bus.subscribe(BlockProduced, self._block, name="view:blocks", **kw),
            bus.subscribe(EpochCompleted, self._epoch, name="view:epochs", **kw),
            bus.subscribe(SpamDetected, self._alarm, name="view:spam", **kw),
            bus.subscribe(CollusionSuspected, self._alarm, name="view:collusion", **kw),
            bus.subscribe(TaskRefused, self._alarm, name="view:refusals", **kw),
            bus.subscribe(NeuronRegistered, self._alarm, name="view:registrations", **kw),
        ]

    async def _block(self, ev: BlockProduced) -> None:
        self.block = max(self.block, ev.number)
        self.block_time = ev.timestamp
        self._chain_alive()

    async def _epoch(self, ev: EpochCompleted) -> None:
        self.epochs.append({"block": ev.block, "incentive": list(ev.incentive), "emission": list(ev.emission),
                            "dividends": list(ev.dividends)})

    async def _alarm(self, ev: Any) -> None:
        entry: dict[str, Any] = {"time": time.time(), "event": type(ev).__name__}
        if isinstance(ev, SpamDetected):
            entry.update(kind=ev.kind, subject=ev.subject, detail=ev.detail)
        elif isinstance(ev, CollusionSuspected):
            entry.update(kind=ev.kind, subject=",".join(m[:12] for m in ev.members), detail=ev.detail,
                         evidence=ev.evidence)
        elif isinstance(ev, TaskRefused):
            entry.update(kind=ev.code, subject=ev.sender or ev.peer_id, detail=ev.reason)
        elif isinstance(ev, NeuronRegistered):
            entry.update(kind="registered", subject=ev.hotkey, detail=f"uid {ev.uid} at block {ev.block}"
                         + (f", replaced {ev.replaced[:12]}" if ev.replaced else ""))
        self.alarms.append(entry)

    def _chain_alive(self) -> None:
        self.chain_ok = True
        self.chain_error = ""
        self._chain_seen = time.monotonic()

    # ------------------------------------------------------------------ polling
    async def poll_forever(self, interval: float) -> None:
        """Read peers, the metagraph (when the block moved) and the difficulty every ``interval`` s."""
        while True:
            await self.poll()
            await anyio.sleep(interval)

    async def poll(self) -> None:
        transport = self.node.transport
        if transport is not None:
            self.peers = sum(1 for p in transport.peers() if p.connected)
        chain = self.node.chain
        if chain is None:
            return
        try:
            with anyio.fail_after(max(self.chain_stale_seconds, 1.0)):
                mg = await chain.metagraph()
                self.difficulty = int(await chain.difficulty())
        except Exception as exc:  # an unreachable chain is a state to report, not a crash
            self.chain_ok = False
            self.chain_error = f"{type(exc).__name__}: {exc}"
            return
        self.metagraph = mg
        self.block = max(self.block, mg.block)
        self._chain_alive()
        self.heights.append((time.time(), self.block, self.peers))

    # ------------------------------------------------------------------ readiness
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, checks): every component started, chain answered recently, enough peers."""
        checks: dict[str, Any] = {"components_started": self.started and self.node.ready.is_set()}
        if self.node.chain is not None:
            fresh = self.chain_ok and time.monotonic() - self._chain_seen <= self.chain_stale_seconds
            checks["chain_reachable"] = fresh
            if not fresh and self.chain_error:
                checks["chain_error"] = self.chain_error
        checks["peers"] = self.peers
        checks["enough_peers"] = self.peers >= self.min_peers
        ready = all(v for k, v in checks.items() if k in ("components_started", "chain_reachable", "enough_peers"))
        return ready, checks

    def snapshot(self) -> dict[str, Any]:
        """The dashboard's data (``/api/state``)."""
        mg = self.metagraph
        neurons = [] if mg is None else [
            {"uid": n.uid, "hotkey": n.hotkey, "stake": n.stake, "incentive": n.incentive, "dividends": n.dividends,
             "emission": n.emission, "validator_trust": n.validator_trust, "trust": n.trust,
             "consensus": n.consensus, "validator_permit": n.validator_permit, "active": n.active,
             "last_update": n.last_update}
            for n in mg.neurons]
        ready, checks = self.readiness()
        return {"node": self.node.name, "peer_id": self.node.peer_id, "netuid": self.node.netuid,
                "ready": ready, "checks": checks, "block": self.block, "difficulty": self.difficulty,
                "peers": self.peers, "neurons": neurons, "epochs": list(self.epochs),
                "heights": [list(h) for h in self.heights], "alarms": list(self.alarms)[::-1],
                "time": time.time()}
