"""A miner that learns while it serves, in the devnet (``tnode devnet --online-learning``).

The option adds one miner, ``online0``, serving a weak byte transformer (``--online-checkpoint``,
e.g. a briefly trained one; by default untrained weights of the builtin checkpoint's shape) with a
``[training.online] type = "text"`` component: it keeps training on python_docs's train split
while the validators score it on held-out windows.
Its baseline is the devnet's first transformer miner: the same architecture, no online learning.

Two figures go into the report (``online_learning``):

- **incentive per epoch** of both miners, from the chain's ``EpochCompleted`` events the devnet's
  observer sees (the run records every counted epoch's incentive vector);
- **p99 serving latency** of both, measured by the same probe from outside: while epochs are
  counted, the devnet sends ``next_token`` tasks (64 held-out bytes, k = 16) to the two miners in
  turn, signed with the devnet client's hotkey (the miners' allow list admits it), and times each
  reply. Both miners see the same probe under the same load, so the ratio compares like with like.

Checks: ``online_incentive_rises`` (the mean incentive of the last third of the counted epochs is
above that of the first third) and ``online_p99_within_2x`` (p99 of the learning miner ≤ 2 × p99
of the baseline).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from tnode.node import Node

ONLINE_NAME = "online0"
ONLINE_MODEL = "online"  # the miner's label in the report (it serves a transformer)
TRAINING = {"type": "text", "model": "main", "dataset": "docs", "batch_size": 8, "lr": 2e-3, "swap_every": 5,
            "checkpoint_every": 50, "busy_fraction": 0.2}
PROBE_K = 16
PROBE_CONTEXT = 64
PROBE_GAP = 0.1  # seconds between probe requests (both miners in turn)
PROBE_TIMEOUT = 10.0


def online_nodes(opts: Any) -> int:
    """Nodes the option adds (one miner)."""
    return 1 if getattr(opts, "online_learning", False) else 0


def place_online(opts: Any, spec: Callable[..., Any]) -> list[Any]:
    """Plan the learning miner (a NodeSpec with ``online`` set), or nothing without the option."""
    if not online_nodes(opts):
        return []
    node = spec(ONLINE_NAME, "miner", ONLINE_MODEL)
    node.online = True
    return [node]


def online_doc(doc: dict[str, Any], checkpoint: str = "") -> dict[str, Any]:
    """Turn a miner's node.toml document into the learning miner's (in place; returns it)."""
    doc["datasets"] = {"docs": {"type": "python_docs"}}
    # In the node's process (workers = 0); no checkpoint: untrained weights of the builtin's shape.
    doc["models"] = {"main": {"type": "transformer", "threads": 1, "workers": 0,
                              **({"checkpoint": checkpoint} if checkpoint else {})}}
    doc["training"] = {"online": dict(TRAINING)}
    return doc


def baseline_miner(miners: Sequence[Any]) -> Any | None:
    """The miner the learning one is compared with: the first transformer miner, else the first miner."""
    honest = [m for m in miners if not getattr(m, "online", False) and not getattr(m, "adversary", "")]
    return next((m for m in honest if m.model == "transformer"), honest[0] if honest else None)


@dataclass
class Probe:
    """Times ``next_token`` requests to the learning miner and its baseline, in turn."""

    client_dir: Path  # the devnet client's directory (its keys are admitted by every miner)
    targets: dict[str, str]  # name → p2p address
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    active: bool = False  # measure only while the devnet counts epochs

    async def run(self, *, max_requests: int = 1_000_000) -> None:
        doc = {"node": {"name": "devnet-probe", "create_keys": False},
               "transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0,
                             "dht": False},
               "datasets": {"docs": {"type": "python_docs"}}}
        node = Node.from_dict(doc, data_dir=self.client_dir / "data", kinds={"transport", "dataset"})
        async with node.running():
            (dataset,) = node.components_of("dataset").values()
            windows = np.asarray(dataset.sample_windows("heldout", 64, PROBE_CONTEXT, np.random.default_rng(7)))
            names = list(self.targets)
            for i in range(max_requests):
                await anyio.sleep(PROBE_GAP)
                if not self.active:
                    continue
                name = names[i % len(names)]
                await self.ask(node, name, windows[i % len(windows)].astype(np.uint8))

    async def ask(self, node: Any, name: str, window: np.ndarray) -> None:
        t0 = time.perf_counter()
        try:
            await node.transport.request(self.targets[name], "text", "next_token", {"k": PROBE_K}, window,
                                         timeout=PROBE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - a refused or failed probe is counted, not fatal
            code = str(getattr(exc, "code", "") or type(exc).__name__)
            counts = self.errors.setdefault(name, {})
            counts[code] = counts.get(code, 0) + 1
            return
        self.latencies.setdefault(name, []).append(time.perf_counter() - t0)


def latency_summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"requests": 0, "p50_ms": None, "p99_ms": None}
    ms = np.asarray(values) * 1000.0
    return {"requests": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def rises(series: Sequence[float]) -> bool:
    """The mean of the last third is above the mean of the first third (at least three values)."""
    if len(series) < 3:
        return False
    third = max(1, len(series) // 3)
    return float(np.mean(series[-third:])) > float(np.mean(series[:third]))


def online_report(plan: Any, mg: Any, incentives: Sequence[tuple[int, Sequence[float]]], probe: Probe
                  ) -> dict[str, Any]:
    """The ``online_learning`` part of the report and its two checks."""
    online = next(m for m in plan.miners if getattr(m, "online", False))
    base = baseline_miner(plan.miners)

    def series(node: Any) -> list[float]:
        neuron = mg.by_hotkey(node.hotkey.public_hex) if node is not None else None
        if neuron is None:
            return []
        return [round(float(inc[neuron.uid]), 6) if neuron.uid < len(inc) else 0.0 for _, inc in incentives]

    on_series, base_series = series(online), series(base)
    on_lat = latency_summary(probe.latencies.get(online.name, []))
    base_lat = latency_summary(probe.latencies.get(base.name, []) if base is not None else [])
    ratio = (on_lat["p99_ms"] / base_lat["p99_ms"]) if on_lat["p99_ms"] and base_lat["p99_ms"] else None
    return {
        "miner": online.name, "baseline": base.name if base is not None else "",
        "epoch_blocks": [b for b, _ in incentives],
        "incentive_per_epoch": {online.name: on_series, **({base.name: base_series} if base is not None else {})},
        "latency": {online.name: on_lat, **({base.name: base_lat} if base is not None else {})},
        "probe_errors": probe.errors,
        "p99_ratio": round(ratio, 3) if ratio is not None else None,
        "latency_source": "the devnet's probe: next_token tasks (64 held-out bytes, k=16) to both miners in turn "
                          "while epochs are counted, timed from request to verified reply",
        "checks": {"online_incentive_rises": rises(on_series),
                   "online_p99_within_2x": ratio is not None and ratio <= 2.0},
    }
