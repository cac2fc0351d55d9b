"""Miner-side detectors on constructed task rounds: a noisy relay, honest twins, a lazy miner and an
honest network that raises no alarm."""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
import pytest
from collusion_data import VOCAB, bare_node, model_logits, noisy, topk
from tnode.bus import EventBus
from tnode.events import CollusionSuspected, TaskRoundScored
from tnode.plugins.collusion.config import LazyConfig, RelayConfig
from tnode.plugins.collusion.miners import LazyDetector, RelayDetector

pytestmark = pytest.mark.anyio


def rounds(rng: np.random.Generator, count: int, *, relay_of: int | None = None, twin_of: int | None = None,
           lazy: int | None = None, honest: int = 4) -> list[TaskRoundScored]:
    """``count`` rounds of ``honest`` independent miners plus, optionally, one adversary or twin (uid ``honest``)."""
    shifts = [rng.normal(0, 1, VOCAB) for _ in range(honest)]
    quality = np.linspace(0.9, 0.4, honest)
    out = []
    for r in range(count):
        task = rng.normal(0, 1, (8, VOCAB))
        answers: list[Any] = [topk(model_logits(rng, task, s)) for s in shifts]
        latencies = [float(rng.uniform(0.01, 0.05)) for _ in shifts]
        scores = [float(np.clip(q + rng.normal(0, 0.05), 0, 1)) for q in quality]
        if relay_of is not None:
            answers.append(noisy(answers[relay_of], rng, 0.05))
            latencies.append(latencies[relay_of] + float(rng.uniform(0.002, 0.01)))  # one round trip later
            scores.append(scores[relay_of])
        if twin_of is not None:
            answers.append(answers[twin_of])  # same public model, served honestly: identical answers
            latencies.append(float(rng.uniform(0.01, 0.05)))
            scores.append(scores[twin_of])
        if lazy is not None:
            good = r % 2 == 0
            answers.append(answers[lazy] if good else topk(rng.normal(0, 0.01, (8, VOCAB))))
            latencies.append(float(rng.uniform(0.01, 0.05)))
            scores.append(scores[lazy] if good else 0.02)
        n = len(answers)
        out.append(TaskRoundScored(task_id=f"t{r}", modality="text", uids=tuple(range(n)),
                                   hotkeys=tuple(f"{u:064x}" for u in range(n)), answers=tuple(answers),
                                   latencies=tuple(latencies), scores=tuple(scores)))
    return out


async def feed(detector: Any, events: list[TaskRoundScored]) -> list[CollusionSuspected]:
    """Run the rounds through the detector on a real bus; return what it published."""
    seen: list[CollusionSuspected] = []

    async def keep(event: CollusionSuspected) -> None:
        seen.append(event)

    async with detector.node.bus:
        detector.node.bus.subscribe(CollusionSuspected, keep)
        for event in events:
            await detector.on_round(event)
        with anyio.fail_after(5):
            while detector.node.bus.stats() and any(s.queued for s in detector.node.bus.stats()):
                await anyio.sleep(0.01)
    return seen


async def test_a_relay_adding_noise_is_flagged_and_its_source_is_not(tmp_path: Any) -> None:
    rng = np.random.default_rng(10)
    detector = RelayDetector(bare_node(tmp_path, EventBus()), "relay", RelayConfig())
    seen = await feed(detector, rounds(rng, 20, relay_of=1))
    relay = f"{4:064x}"
    assert [s.members for s in detector.history.suspects()] == [(relay,)]
    assert seen and seen[0].members == (relay,) and seen[0].action == "zero" and seen[0].factor == 0.0
    assert seen[0].hold_seconds > 0


async def test_honest_twins_are_left_alone_whoever_wins_the_race(tmp_path: Any) -> None:
    rng = np.random.default_rng(11)
    detector = RelayDetector(bare_node(tmp_path, EventBus()), "relay", RelayConfig())
    seen = await feed(detector, rounds(rng, 40, twin_of=0))
    assert seen == [] and detector.history.suspects() == []
    assert list(detector.twins) == [(f"{0:064x}", f"{4:064x}")]


async def test_a_lazy_miner_is_flagged_and_honest_miners_of_any_quality_are_not(tmp_path: Any) -> None:
    rng = np.random.default_rng(12)
    detector = LazyDetector(bare_node(tmp_path, EventBus()), "lazy", LazyConfig())
    seen = await feed(detector, rounds(rng, 40, lazy=0))
    assert {s.members for s in seen} == {(f"{4:064x}",)}


async def test_an_honest_network_raises_no_alarm_over_many_rounds(tmp_path: Any) -> None:
    rng = np.random.default_rng(13)
    bus = EventBus()
    relay = RelayDetector(bare_node(tmp_path, bus), "relay", RelayConfig())
    lazy = LazyDetector(bare_node(tmp_path, bus), "lazy", LazyConfig())
    events = rounds(rng, 150, honest=6)
    async with bus:
        for event in events:
            await relay.on_round(event)
            await lazy.on_round(event)
    assert relay.history.suspects() == [] and lazy.history.suspects() == []


async def test_the_history_is_bounded_and_saved_for_the_report(tmp_path: Any) -> None:
    detector = RelayDetector(bare_node(tmp_path, EventBus()), "relay", RelayConfig(history=2))
    async with detector.node.bus:
        for i in range(5):
            await detector.found((f"{i:064x}",), "relay", 0.9, "constructed", uids=(i,))
    detector.save()
    assert len(detector.history.suspects()) == 2
    assert (tmp_path / "collusion" / "relay.json").is_file()
