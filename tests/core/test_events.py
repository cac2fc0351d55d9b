"""Core event classes: frozen, typed, routed by class hierarchy."""

from __future__ import annotations

import dataclasses

import anyio
import pytest
from tnode.bus import EventBus
from tnode.events import CORE_EVENTS, CollusionSuspected, Event

pytestmark = pytest.mark.anyio


def test_core_events_are_frozen_dataclasses_named_in_past_tense():
    for cls in CORE_EVENTS:
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls
        assert cls.__doc__, cls
        assert cls.__name__.endswith(("ed", "ing", "Received")), cls


async def test_collusion_suspected_reaches_a_subscriber_of_the_base_class():
    seen: list[Event] = []

    async def on_any(ev: Event) -> None:
        seen.append(ev)

    async with EventBus() as bus:
        bus.subscribe(Event, on_any)
        ev = CollusionSuspected(members=("a", "b"), kind="weight_copying", evidence=0.97, detail="cosine 0.99")
        await bus.publish(ev)
        with anyio.fail_after(2):
            while not seen:
                await anyio.sleep(0.01)
    assert seen == [ev]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.evidence = 0.1  # type: ignore[misc]
