"""Miner-side detectors, run inside a validator on its task rounds (:class:`tnode.events.TaskRoundScored`).

- ``relay``: two miners whose answers to the same tasks stay close on every task answer as one.
  The one that answers later on (almost) every shared task is the relay; a close pair without a
  consistent order are honest twins (one public model served twice) and are left alone: no score
  depends on who won a latency race.
- ``lazy``: a miner whose per-task scores, relative to the round's median, fall in two modes.
- ``operator``: miners sharing a coldkey or a network address (reported, for operators to judge).
"""

from __future__ import annotations

import statistics
from collections import deque
from itertools import combinations
from typing import Any

import anyio
from tnode.events import TaskRoundScored

from .base import Detector, PollingDetector
from .config import LazyConfig, OperatorConfig, RelayConfig
from .signals import answer_distance, later_fraction, lazy_fractions


class RoundDetector(Detector):
    """A detector fed by the validator's task rounds on the bus."""

    async def watch(self, task_status: Any) -> None:
        sub = self.node.bus.subscribe(TaskRoundScored, self.on_round, name=f"collusion:{self.name}", maxsize=256,
                                      when_full="drop_newest")
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            sub.close()

    async def on_round(self, event: TaskRoundScored) -> None:
        raise NotImplementedError


class RelayDetector(RoundDetector):
    """``[collusion.NAME] type = "relay"``: see :class:`RelayConfig`."""

    type_name = "relay"
    config: RelayConfig

    def __init__(self, node: Any, name: str, config: RelayConfig) -> None:
        super().__init__(node, name, config)
        # (hotkey a, hotkey b) with a < b -> recent (distance, latency a, latency b)
        self.pairs: dict[tuple[str, str], deque[tuple[float, float, float]]] = {}
        self.uids: dict[str, int] = {}
        self.twins: dict[tuple[str, str], float] = {}

    async def on_round(self, event: TaskRoundScored) -> None:
        answered = [(h, u, a, lat) for h, u, a, lat in zip(event.hotkeys, event.uids, event.answers, event.latencies,
                                                          strict=True) if a is not None]
        for h, u, _, _ in answered:
            self.uids[h] = u
        judged: list[tuple[str, str]] = []
        for (ha, _, aa, la), (hb, _, ab, lb) in combinations(sorted(answered, key=lambda x: x[0]), 2):
            distance = await anyio.to_thread.run_sync(answer_distance, aa, ab) if _big(aa) else answer_distance(aa, ab)
            if distance is None:
                continue
            window = self.pairs.setdefault((ha, hb), deque(maxlen=self.config.window))
            window.append((distance, la, lb))
            judged.append((ha, hb))
        for pair in judged:
            await self.judge(pair)
        self.maybe_summarize()

    async def judge(self, pair: tuple[str, str]) -> None:
        """Decide one pair: independent, relay (and which one), or twins."""
        window = self.pairs[pair]
        if len(window) < self.config.min_tasks:
            return
        median = statistics.median(d for d, _, _ in window)
        if median > self.config.max_distance:
            self.twins.pop(pair, None)
            return
        lat_a = [a for _, a, _ in window]
        lat_b = [b for _, _, b in window]
        b_later = later_fraction(lat_a, lat_b, self.config.min_lag)
        a_later = later_fraction(lat_b, lat_a, self.config.min_lag)
        a, b = pair
        if max(a_later, b_later) >= self.config.order_fraction:
            relay, source, share = (b, a, b_later) if b_later >= a_later else (a, b, a_later)
            await self.found((relay,), "relay", share,
                             f"median answer distance {median:.3f} to uid {self.uids.get(source)} over "
                             f"{len(window)} shared tasks; answered after it on {share:.0%}",
                             uids=(self.uids.get(relay, -1),))
        elif pair not in self.twins:
            self.twins[pair] = median
            self.log.info("honest twins: same answers, no consistent order (left alone)",
                          uids=[self.uids.get(a), self.uids.get(b)], distance=round(median, 4),
                          later=[round(a_later, 2), round(b_later, 2)])


def _big(answer: Any) -> bool:
    # Long answers are compared off the event loop so a round with many miners does not stall it.
    ids = getattr(answer, "ids", None)
    return ids is not None and ids.size > 4096


class LazyDetector(RoundDetector):
    """``[collusion.NAME] type = "lazy"``: see :class:`LazyConfig`."""

    type_name = "lazy"
    config: LazyConfig

    def __init__(self, node: Any, name: str, config: LazyConfig) -> None:
        super().__init__(node, name, config)
        self.relative: dict[str, deque[float]] = {}
        self.uids: dict[str, int] = {}

    async def on_round(self, event: TaskRoundScored) -> None:
        # Only answers count: a timeout or a refusal is not lazy work (its zero score handles it), and
        # failures must not pull the round's median down either.
        answered = [(h, u, s) for h, u, a, s in zip(event.hotkeys, event.uids, event.answers, event.scores,
                                                    strict=True) if a is not None]
        median = statistics.median(s for _, _, s in answered) if answered else 0.0
        if median <= 0:
            return  # nobody did well: nothing to be lazy relative to
        for hotkey, uid, score in answered:
            self.uids[hotkey] = uid
            window = self.relative.setdefault(hotkey, deque(maxlen=self.config.window))
            window.append(score / median)
            if len(window) < self.config.min_tasks:
                continue
            junk, good = lazy_fractions(list(window), self.config.low, self.config.high)
            if junk >= self.config.min_junk and good >= self.config.min_good:
                await self.found((hotkey,), "lazy", junk,
                                 f"{junk:.0%} of {len(window)} tasks below {self.config.low} of the round's median, "
                                 f"{good:.0%} at or above {self.config.high}", uids=(uid,))
        self.maybe_summarize()


class OperatorDetector(PollingDetector):
    """``[collusion.NAME] type = "operator"``: see :class:`OperatorConfig`."""

    type_name = "operator"
    config: OperatorConfig

    async def observe(self, mg: Any) -> None:
        groups: dict[tuple[str, str], list[Any]] = {}
        for n in mg.neurons:
            groups.setdefault(("shared_coldkey", n.coldkey), []).append(n)
            if self.config.addresses:
                for addr in {_host_port(a) for a in n.addrs} - {""}:
                    groups.setdefault(("shared_address", addr), []).append(n)
        for (kind, key), members in sorted(groups.items()):
            if len(members) > 1:
                await self.found(tuple(n.hotkey for n in members), kind, float(len(members)),
                                 f"{len(members)} uids share {kind.split('_')[1]} {key[:16]}",
                                 uids=tuple(n.uid for n in members))


def _host_port(multiaddr: str) -> str:
    """``ip:port`` of a /ip4|ip6/…/tcp|udp/… multiaddr, "" when it names none."""
    parts = multiaddr.strip("/").split("/")
    try:
        host = parts[parts.index("ip4") + 1] if "ip4" in parts else parts[parts.index("ip6") + 1]
        proto = "tcp" if "tcp" in parts else "udp"
        return f"{host}:{parts[parts.index(proto) + 1]}"
    except (ValueError, IndexError):
        return ""
