"""What every anti-spam filter shares: decision counters, debug logging and throttled reports."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from typing import Any

import structlog
from tnode.errors import TaskError
from tnode.events import SpamDetected

_REPORTED_SUBJECTS = 4096


class Decisions:
    """Counts of a filter's decisions: admitted, and refused by reason."""

    __slots__ = ("admitted", "refused")

    def __init__(self) -> None:
        self.admitted = 0
        self.refused: Counter[str] = Counter()

    def as_dict(self) -> dict[str, Any]:
        return {"admitted": self.admitted, "refused": dict(self.refused)}


class Reporter:
    """Publishes SpamDetected at most once per (subject, rule) per ``interval`` seconds.

    A flood refused a million times must not put a million events on the bus; the counters keep the
    totals. Remembered subjects are bounded (least recently reported are forgotten).
    """

    def __init__(self, bus: Any, interval: float, *, clock: Any = time.monotonic) -> None:
        self.bus = bus
        self.interval = interval
        self.clock = clock
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.published = 0

    def report(self, subject: str, kind: str, detail: str = "") -> bool:
        """Publish (without waiting) unless this subject was reported for ``kind`` recently."""
        if self.bus is None:
            return False
        now = self.clock()
        key = (subject, kind)
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > _REPORTED_SUBJECTS:
            self._last.popitem(last=False)
        self.published += 1
        self.bus.publish_nowait(SpamDetected(subject=subject, kind=kind, detail=detail))
        return True


class FilterBase:
    """Counters, logging and reporting for one ``[spam.NAME]`` filter."""

    type_name = "filter"
    report_interval = 60.0

    def __init__(self, node: Any, name: str) -> None:
        self.node = node
        self.name = name
        self.decisions = Decisions()
        log = getattr(node, "log", None) or structlog.get_logger("tnode")
        self.log = log.bind(spam_filter=name)
        self.reporter = Reporter(getattr(node, "bus", None), self.report_interval)

    def admitted(self) -> None:
        self.decisions.admitted += 1

    def refuse(self, request: Any, code: str, reason: str, message: str) -> TaskError:
        """Count and log one refusal; returns the error for the caller to raise.

        :param reason: the counter key and the SpamDetected rule, e.g. ``not_registered``.
        :param code: the wire error code, e.g. ``unregistered``.
        """
        self.decisions.refused[reason] += 1
        self.log.debug("request refused", reason=reason, code=code, sender=request.sender[:16],
                       modality=request.modality)
        self.reporter.report(request.sender, reason, f"{self.name}: {message}")
        return TaskError(code, message)

    def stats(self) -> dict[str, Any]:
        """``{"type", "admitted", "refused": {reason: count}}`` plus filter-specific figures."""
        return {"type": self.type_name, **self.decisions.as_dict()}
