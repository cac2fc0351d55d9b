"""Validator-side detectors on constructed epochs: a lagged copier (what commit-reveal leaves), a
cabal, self-dealing, and honest validators that raise no alarm over many epochs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from collusion_data import bare_node
from tnode.bus import EventBus
from tnode.interfaces import Metagraph, Neuron
from tnode.plugins.collusion.config import CabalConfig, SelfDealingConfig, WeightCopyConfig
from tnode.plugins.collusion.validators import CabalDetector, SelfDealingDetector, WeightCopyDetector

pytestmark = pytest.mark.anyio
VALIDATORS, MINERS = 8, 32


def metagraph(epoch: int, w: np.ndarray, coldkeys: list[str] | None = None) -> Metagraph:
    n = w.shape[0]
    coldkeys = coldkeys or [f"c{u}" for u in range(n)]
    neurons = tuple(Neuron(uid=u, hotkey=f"{u:064x}", coldkey=coldkeys[u], stake=100.0 if u < VALIDATORS else 0.0)
                    for u in range(n))
    return Metagraph(block=epoch * 360, netuid=1, neurons=neurons, weights=w)


def epochs(rng: np.random.Generator, count: int, *, copier: bool = False, lag: int = 1, cabal: int = 0,
           noise: float = 0.15) -> list[np.ndarray]:
    """Weights matrices: honest validators measure drifting miner quality with noise; the last
    validator copies the others' mean ``lag`` epochs late, or the last ``cabal`` push three miners."""
    n = VALIDATORS + MINERS
    quality = rng.uniform(0.2, 1.0, MINERS)
    out: list[np.ndarray] = []
    for _ in range(count):
        quality = np.clip(quality + rng.normal(0, 0.05, MINERS), 0.05, 1.0)
        w = np.zeros((n, n))
        for v in range(VALIDATORS):
            w[v, VALIDATORS:] = np.clip(quality * (1 + rng.normal(0, noise, MINERS)), 0, None)
        w[:VALIDATORS] /= w[:VALIDATORS].sum(axis=1, keepdims=True)
        if copier:
            source = out[-lag] if lag and len(out) >= lag else w
            w[VALIDATORS - 1] = source[: VALIDATORS - 1].mean(axis=0)
        for v in range(VALIDATORS - cabal, VALIDATORS):
            w[v, VALIDATORS:VALIDATORS + 3] += 0.5
            w[v] /= w[v].sum()
        out.append(w)
    return out


async def run(detector: Any, matrices: list[np.ndarray], coldkeys: list[str] | None = None) -> list[Any]:
    async with detector.node.bus:
        for e, w in enumerate(matrices):
            await detector.observe(metagraph(e, w, coldkeys))
    return detector.history.suspects()


@pytest.mark.parametrize("lag", [0, 1])
async def test_a_copier_of_the_others_weights_is_flagged_now_or_one_reveal_late(tmp_path: Any, lag: int) -> None:
    detector = WeightCopyDetector(bare_node(tmp_path, EventBus()), "copy", WeightCopyConfig())
    found = await run(detector, epochs(np.random.default_rng(20 + lag), 12, copier=True, lag=lag))
    assert [s.uids for s in found] == [(VALIDATORS - 1,)]
    assert found[0].action == "report"


async def test_a_cabal_is_one_cluster_and_honest_validators_are_not(tmp_path: Any) -> None:
    detector = CabalDetector(bare_node(tmp_path, EventBus()), "cabal", CabalConfig())
    found = await run(detector, epochs(np.random.default_rng(30), 10, cabal=3))
    assert [s.uids for s in found] == [(5, 6, 7)]


async def test_a_validator_weighting_its_own_coldkeys_miners_is_self_dealing(tmp_path: Any) -> None:
    w = epochs(np.random.default_rng(40), 3)
    for m in w:
        m[0, VALIDATORS:VALIDATORS + 2] += 0.5
        m[0] /= m[0].sum()
    coldkeys = [f"c{u}" for u in range(VALIDATORS + MINERS)]
    coldkeys[VALIDATORS] = coldkeys[VALIDATORS + 1] = "c0"
    detector = SelfDealingDetector(bare_node(tmp_path, EventBus()), "self", SelfDealingConfig())
    found = await run(detector, w, coldkeys)
    assert [s.uids for s in found] == [(0, VALIDATORS, VALIDATORS + 1)]


async def test_honest_validators_raise_no_alarm_over_many_epochs(tmp_path: Any) -> None:
    bus = EventBus()
    detectors = [WeightCopyDetector(bare_node(tmp_path, bus), "copy", WeightCopyConfig()),
                 CabalDetector(bare_node(tmp_path, bus), "cabal", CabalConfig()),
                 SelfDealingDetector(bare_node(tmp_path, bus), "self", SelfDealingConfig())]
    matrices = epochs(np.random.default_rng(50), 100)
    async with bus:
        for e, w in enumerate(matrices):
            for d in detectors:
                await d.observe(metagraph(e, w))
    assert [d.history.suspects() for d in detectors] == [[], [], []]
