"""``[spam.NAME] type = "token_bucket"``: per-sender rate limits with bounded memory."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import anyio
from tnode.config import load_table
from tnode.errors import ConfigError, ConfigErrors
from tnode.interfaces import InboundRequest

from .common import FilterBase
from .config import BucketRate, TokenBucketConfig

_SHARED = "*"  # bucket of the modalities without an override


class Buckets:
    """Token buckets keyed by (sender, modality group), least recently used forgotten beyond ``capacity``.

    A bucket holds up to ``burst`` tokens, gains ``rate`` per second and pays one per task (a batched
    request of B tasks pays B).
    Forgetting a bucket resets it to full, which can only help its sender; it bounds memory under
    a flood of fresh hotkeys (those are what ``registered_only`` is for).
    """

    def __init__(self, capacity: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, sender: str, group: str, rate: float, burst: float, cost: float = 1.0) -> float:
        """Pay ``cost`` tokens; returns 0.0 on success, else the seconds until they are available
        (infinite when ``cost`` exceeds ``burst``: the bucket never holds that many)."""
        now = self.clock()
        key = (sender, group)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [burst, now]
            self._buckets[key] = bucket
            if len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
                self.evicted += 1
        else:
            self._buckets.move_to_end(key)
            tokens, last = bucket
            bucket[0] = min(burst, tokens + (now - last) * rate)
            bucket[1] = now
        if bucket[0] >= cost:
            bucket[0] -= cost
            return 0.0
        if cost > burst:
            return float("inf")
        return (cost - bucket[0]) / rate if rate > 0 else float("inf")


class TokenBucket(FilterBase):
    """Refuses (``rate_limited``) a sender that exceeds its rate; see :class:`TokenBucketConfig`."""

    type_name = "token_bucket"
    judges_services = True  # service calls (svc:chain...) spend tokens too; exempt them by route if wanted

    def __init__(self, node: Any, name: str, config: TokenBucketConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(node, name, exempt_modalities=config.exempt_modalities, allow=config.allow)
        self.config = config
        self.overrides: dict[str, BucketRate] = {}
        for modality, table in config.modalities.items():
            path = f"spam.{name}.modalities.{modality}"
            if not isinstance(table, dict):
                raise ConfigError(f"expected a table {{rate = ..., burst = ...}}, got {table!r}", key_path=path)
            try:
                self.overrides[modality] = load_table(BucketRate, table, path=path)
            except ConfigErrors as exc:
                raise exc.errors[0] from None  # the node adds the file name to a single error
        self.buckets = Buckets(config.max_peers, clock=clock)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    async def admit(self, request: InboundRequest) -> Callable[[], None] | None:
        """Take one token per task (``request.tasks``) from the sender's bucket or raise
        TaskError("rate_limited")."""
        if self.waved_through(request):
            return None
        override = self.overrides.get(request.modality)
        if override is None:
            group, rate, burst = _SHARED, self.config.rate, self.config.burst
        else:
            group, rate, burst = request.modality, override.rate, override.burst
        tasks = request.tasks
        wait = self.buckets.take(request.sender, group, rate, burst, float(tasks))
        if wait == float("inf") and tasks > burst:
            raise self.refuse(request, "rate_limited", "rate_limited",
                              f"a batch of {tasks} tasks exceeds the burst of {burst:g} tasks")
        if wait > 0.0:
            raise self.refuse(request, "rate_limited", "rate_limited",
                              f"more than {rate:g} tasks/s (burst {burst:g}); retry in {min(wait, 3600.0):.2f} s")
        self.admitted(request, "within_rate")
        return None

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "buckets": len(self.buckets), "evicted": self.buckets.evicted}
