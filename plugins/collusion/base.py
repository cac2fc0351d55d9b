"""What every detector component shares: publishing findings, the bounded history, the file
``tnode collusion report`` reads and the info-level summary."""

from __future__ import annotations

import time
from typing import Any

import anyio
from tnode.errors import TnodeError
from tnode.events import CollusionSuspected

from .config import DetectorConfig
from .history import Suspect, SuspectHistory


async def metagraph_with_weights(chain: Any) -> Any:
    """The metagraph with its weights matrix, from backends that leave matrices out unless asked."""
    try:
        return await chain.metagraph(matrices=True)
    except TypeError:  # a backend whose metagraph always carries (or never has) the matrices
        return await chain.metagraph()


class Detector:
    """Base of the ``[collusion.NAME]`` components; subclasses call :meth:`found` for each finding."""

    type_name = ""

    def __init__(self, node: Any, name: str, config: DetectorConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.history = SuspectHistory(config.history)
        self.log = node.log.bind(component=f"collusion:{name}")
        self._published: dict[tuple[str, tuple[str, ...]], float] = {}
        self._last_summary = time.monotonic()
        self._dirty = False

    @property
    def state_path(self) -> Any:
        return self.node.data_dir / "collusion" / f"{self.name}.json"

    @property
    def factor(self) -> float:
        return {"report": 1.0, "zero": 0.0}.get(self.config.action, self.config.factor)

    async def found(self, members: tuple[str, ...], kind: str, score: float, evidence: str, *,
                    uids: tuple[int, ...] = (), act: bool = True) -> Suspect:
        """Record a finding and publish it; repeats are published at most every hold_seconds / 4.

        :param act: False for findings that only inform (validator-side ones: a validator's weights
            do not weigh other validators).
        """
        action = self.config.action if act else "report"
        record = self.history.add(members, kind, score, evidence, uids=uids, action=action)
        self._dirty = True
        key = (kind, record.members)
        now = time.monotonic()
        if now - self._published.get(key, -float("inf")) >= self.config.hold_seconds / 4:
            self._published[key] = now
            if record.count == 1:
                self.log.warning("collusion suspected", kind=kind, members=[m[:12] for m in record.members],
                                 uids=list(uids), score=round(score, 4), evidence=evidence, action=action)
            await self.node.bus.publish(CollusionSuspected(
                members=record.members, kind=kind, evidence=float(score), detail=evidence, detector=self.name,
                action=action, factor=self.factor if action != "report" else 1.0,
                hold_seconds=self.config.hold_seconds if action != "report" else 0.0))
        self.maybe_summarize()
        return record

    def current_suspects(self) -> dict[str, int]:
        """Kind → suspects seen within the last ``hold_seconds`` (the exporter's gauge)."""
        since = time.time() - self.config.hold_seconds
        counts: dict[str, int] = {}
        for s in self.history.suspects():
            if s.last_seen >= since:
                counts[s.kind] = counts.get(s.kind, 0) + 1
        return counts

    def stats(self) -> dict[str, int]:
        """Suspects recorded (all, and current)."""
        return {"suspects": len(self.history.records), "current": sum(self.current_suspects().values())}

    def maybe_summarize(self) -> None:
        """An info line with the suspects at most every summary_seconds; the history file with it."""
        now = time.monotonic()
        if now - self._last_summary < self.config.summary_seconds:
            return
        self._last_summary = now
        self.summarize()

    def summarize(self) -> None:
        """Log the current suspects and save the history (when it changed)."""
        suspects = self.history.suspects()
        self.log.info("collusion suspects", detector=self.name, count=len(suspects),
                      top=[f"{s.kind}:{','.join(str(u) for u in s.uids) or s.members[0][:8]}:{s.score:.3f}"
                           for s in suspects[:5]])
        self.save()

    def save(self) -> None:
        """Write the history file ``tnode collusion report`` reads (kept in memory only without a data_dir)."""
        if not self._dirty or self.node.data_dir is None:
            return
        try:
            self.history.save(self.state_path, self.name, self.type_name)
            self._dirty = False
        except OSError as exc:
            self.log.warning("cannot save collusion history", path=str(self.state_path), error=str(exc))

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe or poll (:meth:`watch`) until cancelled; the history is saved on the way out."""
        try:
            await self.watch(task_status)
        finally:
            self._dirty = True
            self.save()

    async def watch(self, task_status: Any) -> None:
        raise NotImplementedError


class PollingDetector(Detector):
    """A detector that reads the metagraph every ``poll_interval`` seconds."""

    async def watch(self, task_status: Any) -> None:
        task_status.started()
        await self.node.ready.wait()
        while True:
            try:
                mg = await metagraph_with_weights(self.node.chain)
            except TnodeError as exc:  # chain trouble: try again next poll
                self.log.debug("metagraph unavailable", error=f"{type(exc).__name__}: {exc}")
            else:
                await self.observe(mg)
            self.maybe_summarize()
            await anyio.sleep(self.config.poll_interval)  # type: ignore[attr-defined]

    async def observe(self, mg: Any) -> None:
        raise NotImplementedError
