"""``[spam.NAME] type = "stake_priority"``: bounded concurrency, waiting requests served by stake.

At most ``max_concurrent`` admitted tasks run at once. A request that finds every slot taken waits
in a bounded queue ordered by its sender's stake (from the cached metagraph); a finished task hands
its slot straight to the highest-stake waiter, so a newcomer can never overtake the queue. When the
queue is full, the lowest-priority request (the newest among equals, possibly the newcomer) is shed
with ``overloaded``; a request also gives up when its wait would pass ``max_wait`` or its deadline.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable
from typing import Any

import anyio
from tnode.interfaces import InboundRequest

from .common import FilterBase
from .config import StakePriorityConfig
from .metaview import MetagraphView

_WAITING, _GRANTED, _SHED = 0, 1, 2


class _Waiter:
    __slots__ = ("event", "state")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.state = _WAITING


class StakePriority(FilterBase):
    """Stake-weighted priority admission; see :class:`StakePriorityConfig`."""

    type_name = "stake_priority"

    def __init__(self, node: Any, name: str, config: StakePriorityConfig) -> None:
        super().__init__(node, name, exempt_modalities=config.exempt_modalities)
        self.config = config
        # Without a chain every sender has stake 0 and the queue is plain FIFO.
        self.view = MetagraphView.of(node) if node.chain is not None else None
        self.running = 0
        # Sorted ascending by (stake, -arrival): the best waiter is last, the one to shed first.
        self._queue: list[tuple[float, int, _Waiter]] = []
        self._arrivals = itertools.count()
        self.peak_queue = 0

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        # The order is decided here; a narrower FIFO gate after this filter would decide it again.
        transport_slots = getattr(getattr(getattr(self.node, "transport", None), "config", None),
                                  "max_concurrent_tasks", None)
        if isinstance(transport_slots, int) and transport_slots < self.config.max_concurrent:
            self.log.warning("the transport runs fewer tasks at once than this filter admits, so its FIFO "
                             "queue, not stake, orders the excess", max_concurrent=self.config.max_concurrent,
                             transport_max_concurrent_tasks=transport_slots)
        if self.view is not None:
            await self.view.start()
        else:
            self.log.info("stake_priority without a [chain]: every sender has the same priority")
        task_status.started()
        await anyio.sleep_forever()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def priority(self, sender: str) -> float:
        """The sender's stake as of the last block seen (0 when unknown)."""
        return self.view.stake(sender) if self.view is not None else 0.0

    async def admit(self, request: InboundRequest) -> Callable[[], None] | None:
        """Take a slot, waiting by stake priority; raise TaskError("overloaded") when shed or out of time."""
        if self.waved_through(request):
            return None
        if self.running < self.config.max_concurrent and not self._queue:
            self.running += 1
            self.admitted(request, "free_slot")
            return self._release_once()
        wait = self.config.max_wait
        deadline = request.deadline  # monotonic; None when the transport gives none
        if isinstance(deadline, int | float):
            wait = min(wait, deadline - time.monotonic())
        if wait <= 0 or self.config.max_queue == 0:
            raise self.refuse(request, "overloaded", "no_slot", f"all {self.config.max_concurrent} slots busy")
        stake = self.priority(request.sender)
        key = (stake, -next(self._arrivals))
        if len(self._queue) >= self.config.max_queue:
            worst_stake, worst_order, worst = self._queue[0]
            if key < (worst_stake, worst_order):
                raise self.refuse(request, "overloaded", "shed",
                                  f"queue full ({self.config.max_queue}) with higher-stake requests")
            del self._queue[0]
            worst.state = _SHED
            worst.event.set()
        waiter = _Waiter()
        entry = (key[0], key[1], waiter)
        bisect.insort(self._queue, entry)
        self.peak_queue = max(self.peak_queue, len(self._queue))
        try:
            with anyio.move_on_after(wait):
                await waiter.event.wait()
        except BaseException:
            # Cancelled by the caller: give back a slot we were just handed, or leave the queue.
            if waiter.state == _GRANTED:
                self._release_slot()
            elif waiter.state == _WAITING:
                self._remove(entry)
            raise
        if waiter.state == _GRANTED:
            self.admitted(request, "granted_by_priority")
            return self._release_once()
        if waiter.state == _SHED:
            raise self.refuse(request, "overloaded", "shed", "shed from a full queue by a higher-stake request")
        self._remove(entry)
        raise self.refuse(request, "overloaded", "deadline", f"no slot free within {wait:.2f} s")

    def _remove(self, entry: tuple[float, int, _Waiter]) -> None:
        i = bisect.bisect_left(self._queue, entry[:2])
        if i < len(self._queue) and self._queue[i][2] is entry[2]:
            del self._queue[i]

    def _release_slot(self) -> None:
        # Hand the slot to the best waiter; only when nobody waits does the slot become free.
        if self._queue:
            _, _, waiter = self._queue.pop()
            waiter.state = _GRANTED
            waiter.event.set()
        else:
            self.running -= 1

    def _release_once(self) -> Callable[[], None]:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release_slot()

        return release

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "running": self.running, "queued": len(self._queue),
                "peak_queue": self.peak_queue}
