"""Prometheus metrics of one node, built from bus events and from public stats read at scrape time.

Counters and histograms follow bus events (so they do not depend on where an event comes from);
gauges that describe the present (bus queues, peers, difficulty, the metagraph, components'
``stats()``) are read when Prometheus scrapes. Every metric lives in this node's own
:class:`CollectorRegistry`, so several nodes in one process do not mix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from tnode.events import (
    BlockProduced,
    CollusionSuspected,
    EpochCompleted,
    NeuronRegistered,
    ResponseScored,
    SpamDetected,
    TaskCompleted,
    TaskRefused,
    WeightsSubmitted,
)

from .state import NodeView

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
EPOCH_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
# Component kinds whose stats() are exported as tnode_component_stat.
STAT_KINDS = ("spam_filter", "collusion_detector", "modality", "model", "router", "exporter", "validator", "chain",
              "transport")


class NodeMetrics:
    """The metrics of one node; :meth:`subscribe` attaches the event-driven ones to its bus."""

    def __init__(self, node: Any, view: NodeView) -> None:
        self.node = node
        self.view = view
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("tnode_requests", "Inbound tasks answered, by modality and result code "
                                "('ok' when served).", ["modality", "code"], registry=r)
        self.request_seconds = Histogram("tnode_request_seconds", "Time from receiving an inbound task to its "
                                         "reply.", ["modality"], buckets=LATENCY_BUCKETS, registry=r)
        self.refusals = Counter("tnode_refusals", "Inbound requests refused before any handler ran, by code.",
                                ["code"], registry=r)
        self.spam = Counter("tnode_spam_detected", "SpamDetected events, by rule.", ["kind"], registry=r)
        self.collusion = Counter("tnode_collusion_suspected", "CollusionSuspected alarms, by kind of collusion "
                                 "and by the detector that raised them.", ["kind", "detector"], registry=r)
        self.scored = Counter("tnode_responses_scored", "Miner responses this validator scored.", ["scorer"],
                              registry=r)
        self.score = Histogram("tnode_response_score", "Scores given to miner responses.", ["scorer"],
                               buckets=SCORE_BUCKETS, registry=r)
        self.score_latency = Histogram("tnode_response_latency_seconds", "Latency of scored miner responses.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.weights = Counter("tnode_weights_submitted", "Weight vectors (or commits) the chain accepted.",
                               registry=r)
        self.weights_block = Gauge("tnode_weights_last_block", "Block of the last accepted weights.", registry=r)
        self.blocks = Counter("tnode_chain_blocks", "Blocks produced or seen.", registry=r)
        self.height = Gauge("tnode_chain_height", "Latest block number.", registry=r)
        self.epochs = Counter("tnode_chain_epochs", "Epochs (Yuma consensus runs) completed.", registry=r)
        self.epoch_seconds = Histogram("tnode_chain_epoch_seconds", "Wall time between consecutive epochs.",
                                       buckets=EPOCH_BUCKETS, registry=r)
        self.registrations = Counter("tnode_chain_registrations", "Hotkeys that took a uid.", registry=r)
        self.pruned = Counter("tnode_chain_pruned", "Registrations that replaced another hotkey.", registry=r)
        self._last_epoch: float | None = None
        r.register(_PresentCollector(node, view))

    def subscribe(self) -> list[Any]:
        """Attach the event-driven metrics; returns the subscriptions (closed by the caller)."""
        handlers: Mapping[type, Any] = {
            TaskCompleted: self._task, TaskRefused: self._refused, SpamDetected: self._spam,
            CollusionSuspected: self._collusion, ResponseScored: self._scored, WeightsSubmitted: self._weights,
            BlockProduced: self._block, EpochCompleted: self._epoch, NeuronRegistered: self._registered,
        }
        # drop_newest: metrics must never slow the node down; drops show in tnode_bus_dropped.
        return [self.node.bus.subscribe(cls, fn, name=f"metrics:{cls.__name__}", maxsize=65_536,
                                        when_full="drop_newest") for cls, fn in handlers.items()]

    async def _task(self, ev: TaskCompleted) -> None:
        self.requests.labels(ev.modality, "ok" if ev.ok else (ev.code or "error")).inc()
        self.request_seconds.labels(ev.modality).observe(ev.seconds)

    async def _refused(self, ev: TaskRefused) -> None:
        self.refusals.labels(ev.code).inc()

    async def _spam(self, ev: SpamDetected) -> None:
        self.spam.labels(ev.kind).inc()

    async def _collusion(self, ev: CollusionSuspected) -> None:
        self.collusion.labels(ev.kind, ev.detector).inc()

    async def _scored(self, ev: ResponseScored) -> None:
        self.scored.labels(ev.scorer).inc()
        self.score.labels(ev.scorer).observe(ev.score)
        self.score_latency.observe(ev.latency)

    async def _weights(self, ev: WeightsSubmitted) -> None:
        self.weights.inc()
        self.weights_block.set(ev.block)

    async def _block(self, ev: BlockProduced) -> None:
        self.blocks.inc()
        self.height.set(ev.number)

    async def _epoch(self, ev: EpochCompleted) -> None:
        now = time.monotonic()
        if self._last_epoch is not None:
            self.epoch_seconds.observe(now - self._last_epoch)
        self._last_epoch = now
        self.epochs.inc()

    async def _registered(self, ev: NeuronRegistered) -> None:
        self.registrations.inc()
        if ev.replaced:
            self.pruned.inc()


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, float]]:
    if isinstance(value, int | float):  # bool included
        yield prefix, float(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _flatten(f"{prefix}.{k}" if prefix else str(k), v)


def _suspects(node: Any) -> GaugeMetricFamily:
    """Current suspects per collusion detector and kind (each detector's ``current_suspects()``)."""
    family = GaugeMetricFamily("tnode_collusion_suspects", "Hotkey groups a collusion detector suspects now "
                               "(seen within its hold_seconds), by detector and kind.", labels=["detector", "kind"])
    for name, comp in node.components_of("collusion_detector").items():
        fn = getattr(comp, "current_suspects", None)
        if not callable(fn):
            continue
        try:
            counts = fn()
        except Exception:  # a detector must not break the scrape
            continue
        for kind, count in sorted(counts.items()):
            family.add_metric([name, str(kind)], float(count))
    return family


class _PresentCollector(Collector):
    """Gauges read at scrape time: bus queues and drops, peers, chain, metagraph, component stats."""

    def __init__(self, node: Any, view: NodeView) -> None:
        self.node = node
        self.view = view

    def collect(self) -> Iterator[Any]:
        labels = ["subscriber", "event"]
        depth = GaugeMetricFamily("tnode_bus_queue_depth", "Events waiting in a bus subscriber's queue.",
                                  labels=labels)
        dropped = CounterMetricFamily("tnode_bus_dropped", "Events a full bus subscriber dropped.", labels=labels)
        errors = CounterMetricFamily("tnode_bus_subscriber_errors", "Exceptions raised by a bus subscriber.",
                                     labels=labels)
        delivered = CounterMetricFamily("tnode_bus_delivered", "Events delivered to a bus subscriber.",
                                        labels=labels)
        for s in self.node.bus.stats():
            ids = [s.name, s.event_type]
            depth.add_metric(ids, s.queued)
            dropped.add_metric(ids, s.dropped)
            errors.add_metric(ids, s.errors)
            delivered.add_metric(ids, s.delivered)
        yield from (depth, dropped, errors, delivered)

        view = self.view
        yield GaugeMetricFamily("tnode_ready", "1 when /readyz reports ready.", value=float(view.readiness()[0]))
        yield GaugeMetricFamily("tnode_peers", "Peers with an open connection.", value=view.peers)
        if view.difficulty is not None:
            yield GaugeMetricFamily("tnode_chain_difficulty", "Proof-of-work registration difficulty.",
                                    value=view.difficulty)
        yield GaugeMetricFamily("tnode_chain_reachable", "1 when the last chain read succeeded.",
                                value=float(view.chain_ok))
        mg = view.metagraph
        if mg is not None:
            yield GaugeMetricFamily("tnode_neurons", "Uids registered on the subnet.", value=len(mg.neurons))
            families = {f: GaugeMetricFamily(f"tnode_neuron_{f}", f"Metagraph {f.replace('_', ' ')} per uid.",
                                             labels=["uid"])
                        for f in ("stake", "incentive", "dividends", "emission", "validator_trust")}
            for n in mg.neurons:
                for f, fam in families.items():
                    fam.add_metric([str(n.uid)], float(getattr(n, f)))
            yield from families.values()
        yield _suspects(self.node)
        stat = GaugeMetricFamily("tnode_component_stat", "Numeric values from components' stats(), flattened "
                                 "with dots (e.g. refused.rate_limited).", labels=["kind", "component", "key"])
        for kind in STAT_KINDS:
            for name, comp in self.node.components_of(kind).items():
                fn = getattr(comp, "stats", None)
                if not callable(fn):
                    continue
                try:
                    values = fn()
                except Exception:  # a component's stats must not break the scrape
                    continue
                for key, v in _flatten("", values if isinstance(values, Mapping) else {}):
                    stat.add_metric([kind, name, key], v)
        yield stat
