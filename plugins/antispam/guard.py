"""``[scorers.NAME] type = "garbage_guard"``: zero and report garbage answers, score the rest.

Wraps another scorer (``inner``). Garbage answers (see :mod:`.garbage`) are handed to the inner
scorer as missing, so they cannot shift the others' relative scores, and score 0. Each finding is
published as SpamDetected (throttled per miner and rule).

Copies: answers within ``duplicate_threshold`` of each other on the same task form a group. A
copier relaying an honest miner's answer is slower than that miner, so the default ``later``
zeroes every member but the fastest; ``lower_stake`` keeps the highest-stake member instead;
``both`` zeroes the whole group. Honest miners running the same deterministic model give
identical answers too: under ``later`` they compete on speed, under ``both`` they all lose, and
``off`` turns the rule off for subnets where serving a shared model is expected.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.from_thread
import structlog
from tnode.contracts.text import TopKPrediction
from tnode.errors import ConfigError
from tnode.interfaces import ValidatorTask

from .common import LOGGER, Reporter, debug_enabled
from .config import GarbageGuardConfig
from .garbage import (
    DUPLICATE,
    NEAR_DUPLICATE,
    REPEATED,
    answer_digest,
    copy_groups,
    degenerate_rule,
    task_fingerprint,
)
from .metaview import MetagraphView


class _LoopPublisher:
    """Publishes on the node's bus from the event loop or from a worker thread (validators score in one)."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.lost = 0

    def publish_nowait(self, event: Any) -> None:
        try:
            anyio.from_thread.run_sync(self.bus.publish_nowait, event)
            return
        except RuntimeError:
            pass  # not in a worker thread
        try:
            anyio.get_current_task()
        except RuntimeError:
            self.lost += 1  # a foreign thread: the bus is not thread-safe, so the event is dropped
            return
        self.bus.publish_nowait(event)


class GarbageGuard:
    """Scorer wrapper; see :class:`GarbageGuardConfig` and the module docstring."""

    def __init__(self, node: Any, name: str, config: GarbageGuardConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        chain = getattr(node, "chain", None)
        if config.duplicates == "lower_stake" and chain is None:
            raise ConfigError("duplicates = 'lower_stake' needs a [chain] to read stakes from",
                              key_path=f"scorers.{name}.duplicates", hint="use 'later' or add a [chain]")
        self.view = MetagraphView.of(node) if chain is not None else None
        self.reporter = Reporter(_LoopPublisher(node.bus), config.report_interval)
        self.log = structlog.get_logger(LOGGER, scorer=name)
        self.flagged: Counter[str] = Counter()
        self.clean = 0  # answers inspected and found to be no garbage
        self.scored = 0
        self._last: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()  # uid → (task, answer) digests
        self._lock = threading.Lock()

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        if self.view is not None:
            await self.view.start()
        task_status.started()
        await anyio.sleep_forever()

    def _inner(self) -> Any:
        return self.node.require("scorer", self.config.inner, key_path=f"scorers.{self.name}.inner")

    # ------------------------------------------------------------------ scoring
    def score(self, task: ValidatorTask, answers: Mapping[int, Any], latencies: Mapping[int, float]) -> dict[int, float]:
        """The inner scorer's scores, with garbage answers scored 0 (and left out of the inner scoring)."""
        with self._lock:
            findings = self.inspect(task, answers, latencies)
        clean = {uid: (None if uid in findings else answer) for uid, answer in answers.items()}
        inner = self._inner().score(task, clean, latencies)
        return {uid: (0.0 if uid in findings else float(inner.get(uid, 0.0))) for uid in answers}

    def inspect(self, task: ValidatorTask, answers: Mapping[int, Any],
                latencies: Mapping[int, float]) -> dict[int, str]:
        """uid → rule broken, for every garbage answer among ``answers``; reports each finding."""
        c = self.config
        self.scored += 1
        findings: dict[int, str] = {}
        preds = {uid: a for uid, a in answers.items() if isinstance(a, TopKPrediction)}
        digests = {uid: answer_digest(p) for uid, p in preds.items()}
        fingerprint = task_fingerprint(task.body, task.payload)
        for uid, pred in preds.items():
            rule = degenerate_rule(pred, uniform_tolerance=c.uniform_tolerance, min_positions=c.min_positions,
                                   check_uniform=c.check_uniform, check_constant=c.check_constant)
            if rule is None and c.check_constant:
                previous = self._last.get(uid)
                if previous is not None and previous[0] != fingerprint and previous[1] == digests[uid]:
                    rule = REPEATED
            if rule is not None:
                findings[uid] = rule
            self._remember(uid, fingerprint, digests[uid])
        if c.duplicates != "off":
            candidates = {uid: p for uid, p in preds.items() if uid not in findings}
            for group in copy_groups(candidates, c.duplicate_threshold, digests=digests):
                keep = self._keeper(group, latencies)
                for uid in group:
                    if uid != keep:
                        same = keep is not None and digests[uid] == digests[keep]
                        findings[uid] = DUPLICATE if same else NEAR_DUPLICATE
        self.clean += len(preds) - len(findings)
        debug = debug_enabled()
        for uid, rule in findings.items():
            self.flagged[rule] += 1
            if debug:
                self.log.debug("answer zeroed", reason=rule, uid=uid, task=task.task)
            self.reporter.report(self._subject(uid), rule, f"{self.name}: uid {uid} on task {task.task!r}")
        return findings

    def _keeper(self, group: list[int], latencies: Mapping[int, float]) -> int | None:
        """The member of a group of copies that keeps its score (None: nobody does)."""
        policy = self.config.duplicates
        if policy == "both":
            return None

        def latency(uid: int) -> float:
            value = latencies.get(uid)
            return float(value) if value is not None else float("inf")

        if policy == "lower_stake" and self.view is not None:
            view = self.view
            return min(group, key=lambda u: (-view.stake_of_uid(u), latency(u), u))
        return min(group, key=lambda u: (latency(u), u))

    def _remember(self, uid: int, fingerprint: bytes, digest: bytes) -> None:
        self._last[uid] = (fingerprint, digest)
        self._last.move_to_end(uid)
        while len(self._last) > self.config.history:
            self._last.popitem(last=False)

    def _subject(self, uid: int) -> str:
        hotkey = self.view.hotkey_of(uid) if self.view is not None else None
        return hotkey or f"uid:{uid}"

    def stats(self) -> dict[str, Any]:
        """Tasks inspected, answers found clean, and findings by rule."""
        return {"type": "garbage_guard", "tasks": self.scored, "clean": self.clean, "flagged": dict(self.flagged),
                "reports": self.reporter.published}
