"""The event bus: backpressure, drop policy, error isolation, request/reply and shutdown."""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
import pytest
import structlog
from tnode.bus import EventBus
from tnode.errors import BusClosed, NoHandler, RequestTimeout, TaskError
from tnode.events import Event, NodeStopping, Request, TaskReceived
from tnode.interfaces import TaskResult

pytestmark = pytest.mark.anyio


@dataclass(frozen=True, slots=True)
class Ticked(Event):
    n: int


@dataclass(frozen=True, slots=True)
class Tocked(Ticked):
    """A subclass: subscribers of Ticked receive it too."""


@dataclass(frozen=True, slots=True)
class Ping(Request):
    text: str


def task(modality: str, text: str = "hi") -> TaskReceived:
    return TaskReceived(modality=modality, task="echo", body={"text": text}, payload=None, sender="ab" * 32,
                        peer_id="12D3KooWtest", deadline=time.monotonic() + 5)


# --------------------------------------------------------------------------- pub/sub
async def test_subscriber_receives_events_in_order_including_subclasses() -> None:
    got: list[int] = []

    async def handler(ev: Ticked) -> None:
        got.append(ev.n)

    async with EventBus() as bus:
        bus.subscribe(Ticked, handler, name="orderly")
        for i in range(5):
            await bus.publish(Tocked(i) if i % 2 else Ticked(i))
    assert got == [0, 1, 2, 3, 4]


async def test_block_subscriber_makes_publisher_wait_for_space() -> None:
    gate = anyio.Event()
    published = 0
    seen: list[int] = []

    async def slow(ev: Ticked) -> None:
        await gate.wait()
        seen.append(ev.n)

    async def publisher(bus: EventBus) -> None:
        nonlocal published
        for i in range(6):
            await bus.publish(Ticked(i))
            published += 1

    async with EventBus() as bus:
        bus.subscribe(Ticked, slow, name="slow", maxsize=2, when_full="block")
        async with anyio.create_task_group() as tg:
            tg.start_soon(publisher, bus)
            await anyio.wait_all_tasks_blocked()
            # One event is in the handler, two fill the queue: the fourth publish waits.
            assert published == 3
            gate.set()
    assert published == 6
    assert seen == list(range(6))


async def test_drop_newest_subscriber_drops_and_counts_without_slowing_publisher() -> None:
    gate = anyio.Event()
    seen: list[int] = []

    async def slow(ev: Ticked) -> None:
        await gate.wait()
        seen.append(ev.n)

    async with EventBus() as bus:
        sub = bus.subscribe(Ticked, slow, name="lossy", maxsize=2, when_full="drop_newest")
        with anyio.fail_after(1):
            for i in range(10):
                await bus.publish(Ticked(i))
        # The subscriber never ran: the first two fit, the eight newest were dropped.
        assert sub.stats().dropped == 8
        gate.set()
    assert seen == [0, 1]
    assert sub.stats().delivered == 2


async def test_publish_nowait_never_blocks_and_counts_drops_even_for_block_subscribers() -> None:
    async def handler(ev: Ticked) -> None:
        await anyio.sleep(0)

    async with EventBus() as bus:
        sub = bus.subscribe(Ticked, handler, name="full", maxsize=3, when_full="block")
        delivered = [bus.publish_nowait(Ticked(i)) for i in range(5)]
        assert delivered == [1, 1, 1, 0, 0]
        assert sub.stats().dropped == 2


async def test_failing_subscriber_is_isolated_logged_and_counted() -> None:
    seen: list[int] = []
    healthy: list[int] = []

    async def fragile(ev: Ticked) -> None:
        if ev.n == 1:
            raise ValueError("cannot handle one")
        seen.append(ev.n)

    async def steady(ev: Ticked) -> None:
        healthy.append(ev.n)

    with structlog.testing.capture_logs() as logs:
        async with EventBus() as bus:
            sub = bus.subscribe(Ticked, fragile, name="fragile")
            bus.subscribe(Ticked, steady, name="steady")
            for i in range(4):
                await bus.publish(Ticked(i))  # must not raise
    assert seen == [0, 2, 3]
    assert healthy == [0, 1, 2, 3]
    assert sub.stats().errors == 1
    assert sub.stats().delivered == 4
    failures = [entry for entry in logs if entry["event"] == "subscriber failed"]
    assert len(failures) == 1
    assert failures[0]["subscriber"] == "fragile"
    assert failures[0]["event_type"] == "Ticked"
    assert "cannot handle one" in failures[0]["error"]
    assert failures[0]["log_level"] == "error"


async def test_subscribe_rejects_unknown_policy_and_bad_size() -> None:
    async def handler(ev: Event) -> None: ...

    async with EventBus() as bus:
        with pytest.raises(ValueError, match="when_full"):
            bus.subscribe(Event, handler, when_full="drop_oldest")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="maxsize"):
            bus.subscribe(Event, handler, maxsize=0)


# --------------------------------------------------------------------------- request/reply
async def test_request_is_routed_by_key() -> None:
    async def answer_a(req: TaskReceived) -> TaskResult:
        return TaskResult({"by": "a", "text": req.body["text"]})

    async def answer_b(req: TaskReceived) -> TaskResult:
        return TaskResult({"by": "b"})

    async with EventBus() as bus:
        bus.serve(TaskReceived, answer_a, key="a")
        bus.serve(TaskReceived, answer_b, key="b")
        assert (await bus.request(task("a", "x"), timeout=1)).body == {"by": "a", "text": "x"}
        assert (await bus.request(task("b"), timeout=1)).body == {"by": "b"}
        assert bus.served_keys(TaskReceived) == ["a", "b"]


async def test_request_without_handler_raises_no_handler() -> None:
    async def answer(req: TaskReceived) -> TaskResult:
        return TaskResult({})

    async with EventBus() as bus:
        bus.serve(TaskReceived, answer, key="text")
        with pytest.raises(NoHandler, match="'image'"):
            await bus.request(task("image"), timeout=1)
        with pytest.raises(NoHandler, match="Ping"):
            await bus.request(Ping("x"))


async def test_request_times_out_with_request_timeout() -> None:
    async def stuck(req: TaskReceived) -> TaskResult:
        await anyio.sleep(10)
        return TaskResult({})

    async with EventBus() as bus:
        bus.serve(TaskReceived, stuck, key="text")
        start = time.monotonic()
        with pytest.raises(RequestTimeout, match="TaskReceived"):
            await bus.request(task("text"), timeout=0.05)
        assert time.monotonic() - start < 1.0


async def test_handler_errors_reach_the_requester_unchanged() -> None:
    async def refuse(req: TaskReceived) -> TaskResult:
        raise TaskError("invalid_request", "no text")

    async with EventBus() as bus:
        bus.serve(TaskReceived, refuse, key="text")
        with pytest.raises(TaskError) as info:
            await bus.request(task("text"), timeout=1)
    assert info.value.code == "invalid_request"


async def test_serve_refuses_a_second_handler_and_undo_frees_the_slot() -> None:
    async def one(req: Ping) -> str:
        return "one"

    async def two(req: Ping) -> str:
        return "two"

    async with EventBus() as bus:
        undo = bus.serve(Ping, one)
        with pytest.raises(ValueError, match="already serves Ping"):
            bus.serve(Ping, two)
        undo()
        bus.serve(Ping, two)
        assert await bus.request(Ping("?")) == "two"


# --------------------------------------------------------------------------- shutdown
async def test_aclose_drains_queued_events_within_deadline() -> None:
    seen: list[int] = []

    async def slowish(ev: Ticked) -> None:
        await anyio.sleep(0.001)
        seen.append(ev.n)

    async with EventBus() as bus:
        bus.subscribe(Ticked, slowish, name="slowish", maxsize=100)
        for i in range(20):
            await bus.publish(Ticked(i))
        drained = await bus.aclose(deadline=5.0)
        after_close_ran = True
    assert drained is True
    assert after_close_ran
    assert seen == list(range(20))


async def test_aclose_gives_up_at_deadline_and_cancels_hung_subscriber() -> None:
    cancelled = anyio.Event()

    async def hangs(ev: Ticked) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with EventBus() as bus:
        bus.subscribe(Ticked, hangs, name="hangs")
        await bus.publish(Ticked(1))
        await bus.publish(Ticked(2))
        start = time.monotonic()
        drained = await bus.aclose(deadline=0.1)
        elapsed = time.monotonic() - start
        # aclose must cancel the subscriber, not the code that called it.
        with anyio.fail_after(1):
            await cancelled.wait()
        after_close_ran = True
    assert drained is False
    assert 0.1 <= elapsed < 1.0
    assert cancelled.is_set()
    assert after_close_ran


async def test_closed_bus_refuses_publish_request_and_subscribe() -> None:
    async def handler(ev: Event) -> None: ...

    async with EventBus() as bus:
        await bus.aclose(deadline=0.1)
        with pytest.raises(BusClosed):
            await bus.publish(NodeStopping("exit"))
        with pytest.raises(BusClosed):
            await bus.request(Ping("x"))
        with pytest.raises(BusClosed):
            bus.subscribe(Event, handler)
        assert bus.publish_nowait(NodeStopping("exit")) == 0
