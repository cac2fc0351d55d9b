"""The latency wrapper: another scorer's scores, discounted by response time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from tnode.interfaces import ValidatorTask

from .config import LatencyConfig

DEFAULT_DEADLINE = 10.0


def latency_factor(latency: float, deadline: float, grace: float, min_factor: float) -> float:
    """1 up to ``grace`` × ``deadline``, then linear down to ``min_factor`` at ``deadline`` and after."""
    start = grace * deadline
    if latency <= start:
        return 1.0
    if latency >= deadline or deadline <= start:
        return min_factor
    return 1.0 - (1.0 - min_factor) * (latency - start) / (deadline - start)


class LatencyScorer:
    """``[scorers.NAME] type = "latency"``: see :class:`LatencyConfig`.

    An answer without a measured latency is not discounted.
    """

    def __init__(self, node: Any, name: str, config: LatencyConfig) -> None:
        self.node = node
        self.name = name
        self.config = config

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    def _inner(self) -> Any:
        return self.node.require("scorer", self.config.inner, key_path=f"scorers.{self.name}.inner")

    @property
    def deadline(self) -> float:
        """The configured deadline, else the validator's request timeout."""
        if self.config.deadline > 0:
            return self.config.deadline
        validator = self.node.component("validator")
        return float(getattr(validator, "timeout", DEFAULT_DEADLINE) or DEFAULT_DEADLINE)

    def score(self, task: ValidatorTask, answers: Mapping[int, Any], latencies: Mapping[int, float]) -> dict[int, float]:
        """The inner scores times each answer's latency factor."""
        inner = self._inner().score(task, answers, latencies)
        deadline = self.deadline
        out: dict[int, float] = {}
        for uid, value in inner.items():
            latency = latencies.get(uid)
            factor = 1.0 if latency is None else latency_factor(latency, deadline, self.config.grace,
                                                                 self.config.min_factor)
            out[uid] = value * factor
        return out
