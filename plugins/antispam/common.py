"""What every anti-spam filter shares: decision counters, debug logging and throttled reports."""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any

import structlog
from tnode.errors import TaskError
from tnode.events import SpamDetected

_REPORTED_SUBJECTS = 4096
LOGGER = "tnode.antispam"
# The standard-library logger tnode's logging configuration sets the level on; asking it whether
# debug is on costs ~0.1 µs, building a debug line that is then dropped ~3 µs — per request.
_stdlib_log = logging.getLogger(LOGGER)


def debug_enabled() -> bool:
    """Whether debug lines of the anti-spam components are emitted under the current configuration."""
    return _stdlib_log.isEnabledFor(logging.DEBUG)


class Decisions:
    """Counts of a filter's decisions: admitted and refused, each by reason."""

    __slots__ = ("admitted", "admitted_by", "refused")

    def __init__(self) -> None:
        self.admitted = 0
        self.admitted_by: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def as_dict(self) -> dict[str, Any]:
        return {"admitted": self.admitted, "admitted_by": dict(self.admitted_by), "refused": dict(self.refused)}


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
    """Counters, logging and reporting for one ``[spam.NAME]`` filter.

    Every decision goes through :meth:`admitted` or :meth:`refuse`: it is counted by reason (see
    :meth:`stats`) and logged at debug with that reason.
    """

    type_name = "filter"
    report_interval = 60.0
    judges_services = False
    """Whether :mod:`tnode.dispatch` hands this filter service calls (``svc:<name>`` routes) too.

    Modality filters (registration, stake priority) must not see them: an unregistered node calls
    the chain service to register. Rate and size limits apply to everyone.
    """

    def __init__(self, node: Any, name: str, *, exempt_modalities: Iterable[str] = (),
                 allow: Iterable[str] = ()) -> None:
        self.node = node
        self.name = name
        self.exempt = frozenset(exempt_modalities)  # modalities this filter does not judge
        self.allow = frozenset(allow)  # sender hotkeys this filter does not judge
        self.decisions = Decisions()
        # A lazy logger: it follows logging configured after the node was built (as `tnode run` does).
        self.log = structlog.get_logger(LOGGER, spam_filter=name, node=getattr(node, "name", None))
        self.reporter = Reporter(getattr(node, "bus", None), self.report_interval)

    def admitted(self, request: Any, reason: str) -> None:
        """Count and log one admission; ``reason`` says why, e.g. ``registered`` or ``exempt_modality``."""
        self.decisions.admitted += 1
        self.decisions.admitted_by[reason] += 1
        if debug_enabled():
            self.log.debug("request admitted", reason=reason, sender=request.sender[:16], modality=request.modality)

    def waved_through(self, request: Any) -> bool:
        """Admit (and count) a request this filter does not judge: an exempt modality or an allowed sender."""
        if request.modality in self.exempt:
            self.admitted(request, "exempt_modality")
            return True
        if request.sender in self.allow:
            self.admitted(request, "allowlisted")
            return True
        return False

    def refuse(self, request: Any, code: str, reason: str, message: str) -> TaskError:
        """Count and log one refusal; returns the error for the caller to raise.

        :param reason: the counter key and the SpamDetected rule, e.g. ``not_registered``.
        :param code: the wire error code, e.g. ``unregistered``.
        """
        self.decisions.refused[reason] += 1
        if debug_enabled():
            self.log.debug("request refused", reason=reason, code=code, sender=request.sender[:16],
                           modality=request.modality, detail=message)
        self.reporter.report(request.sender, reason, f"{self.name}: {message}")
        return TaskError(code, message)

    def stats(self) -> dict[str, Any]:
        """``{"type", "admitted", "admitted_by": {reason: count}, "refused": {reason: count}}`` and more."""
        return {"type": self.type_name, **self.decisions.as_dict()}
