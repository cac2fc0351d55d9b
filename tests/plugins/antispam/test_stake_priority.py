"""stake_priority: bounded concurrency; waiting requests run by stake; the lowest is shed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from antispam_fakes import hotkey, make_node, request
from tnode.errors import TaskError
from tnode.node import Node

pytestmark = pytest.mark.anyio

LOW, MID, HIGH, OWNER = hotkey("low"), hotkey("mid"), hotkey("high"), hotkey("owner")


def staked_node(tmp_path, **options: Any) -> Node:
    node = make_node(tmp_path, {"prio": {"type": "stake_priority", **options}})
    for name, stake in ((LOW, 1.0), (MID, 50.0), (HIGH, 1000.0), (OWNER, 5.0)):
        node.chain.add_neuron(name, stake=stake)
    return node


async def wait_queued(flt: Any, count: int) -> None:
    with anyio.fail_after(2):
        while flt.queued < count:
            await anyio.sleep(0.001)


async def test_waiting_requests_run_highest_stake_first(tmp_path) -> None:
    node = staked_node(tmp_path, max_concurrent=1, max_queue=8)
    order: list[str] = []
    async with node.running():
        flt = node.component("spam_filter", "prio")
        blocker = await flt.admit(request(OWNER))  # holds the only slot

        async def task(sender: str) -> None:
            release = await flt.admit(request(sender))
            order.append(sender)
            await anyio.sleep(0.001)  # "work"
            release()

        async with anyio.create_task_group() as tg:
            for i, sender in enumerate((LOW, MID, HIGH)):
                tg.start_soon(task, sender)
                await wait_queued(flt, i + 1)  # enqueue strictly in this order
            assert order == []
            blocker()
    assert order == [HIGH, MID, LOW]
    assert flt.stats()["running"] == 0 and flt.stats()["queued"] == 0


async def test_free_slots_admit_at_once_up_to_max_concurrent(tmp_path) -> None:
    node = staked_node(tmp_path, max_concurrent=3, max_queue=0)
    async with node.running():
        flt = node.component("spam_filter", "prio")
        releases = [await flt.admit(request(LOW)) for _ in range(3)]
        assert flt.running == 3
        with pytest.raises(TaskError) as err:
            await flt.admit(request(HIGH))
        assert err.value.code == "overloaded"
        releases[0]()
        releases[0]()  # a second call of the same release is ignored
        assert flt.running == 2
        await flt.admit(request(HIGH))


async def test_full_queue_sheds_the_lowest_priority(tmp_path) -> None:
    node = staked_node(tmp_path, max_concurrent=1, max_queue=2)
    outcomes: dict[str, str] = {}
    async with node.running():
        flt = node.component("spam_filter", "prio")
        blocker = await flt.admit(request(OWNER))

        async def task(label: str, sender: str) -> None:
            try:
                release = await flt.admit(request(sender))
            except TaskError as exc:
                outcomes[label] = exc.code
                return
            outcomes[label] = "ran"
            release()

        async with anyio.create_task_group() as tg:
            tg.start_soon(task, "low-1", LOW)
            await wait_queued(flt, 1)
            tg.start_soon(task, "low-2", LOW)
            await wait_queued(flt, 2)
            # Queue full of low stake: a newcomer of equal stake is the lowest priority itself.
            await task("low-3", LOW)
            assert outcomes == {"low-3": "overloaded"}
            # A higher-stake newcomer sheds the newest of the lowest.
            tg.start_soon(task, "high", HIGH)
            with anyio.fail_after(2):
                while "low-2" not in outcomes:
                    await anyio.sleep(0.001)
            blocker()
    assert outcomes == {"low-3": "overloaded", "low-2": "overloaded", "high": "ran", "low-1": "ran"}
    assert flt.stats()["refused"] == {"shed": 2}


async def test_waiting_is_bounded_by_max_wait_and_deadline(tmp_path) -> None:
    node = staked_node(tmp_path, max_concurrent=1, max_queue=4, max_wait=0.05)
    async with node.running():
        flt = node.component("spam_filter", "prio")
        await flt.admit(request(OWNER))
        began = anyio.current_time()
        with pytest.raises(TaskError) as err:
            await flt.admit(request(HIGH))
        assert err.value.code == "overloaded"
        assert 0.04 < anyio.current_time() - began < 1.0
        assert flt.queued == 0
    assert flt.stats()["refused"] == {"deadline": 1}


async def test_a_request_waits_no_longer_than_its_own_deadline(tmp_path) -> None:
    import dataclasses
    import time

    node = staked_node(tmp_path, max_concurrent=1, max_queue=4, max_wait=5.0)
    async with node.running():
        flt = node.component("spam_filter", "prio")
        await flt.admit(request(OWNER))
        began = anyio.current_time()
        with pytest.raises(TaskError) as err:
            await flt.admit(dataclasses.replace(request(HIGH), deadline=time.monotonic() + 0.05))
        assert err.value.code == "overloaded"
        assert anyio.current_time() - began < 1.0  # not max_wait's 5 s
        assert flt.queued == 0


async def test_cancelled_waiter_leaves_the_queue_and_a_granted_slot_is_passed_on(tmp_path) -> None:
    node = staked_node(tmp_path, max_concurrent=1, max_queue=4)
    async with node.running():
        flt = node.component("spam_filter", "prio")
        blocker = await flt.admit(request(OWNER))
        with anyio.move_on_after(0.02):
            await flt.admit(request(HIGH))
        assert flt.queued == 0
        got: list[Callable[[], None]] = []

        async def later() -> None:
            got.append(await flt.admit(request(LOW)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            await wait_queued(flt, 1)
            blocker()
        assert flt.running == 1
        got[0]()
        assert flt.running == 0


async def test_exempt_modality_takes_no_slot(tmp_path) -> None:
    node = staked_node(tmp_path, max_concurrent=1, max_queue=0, exempt_modalities=["echo"])
    async with node.running():
        flt = node.component("spam_filter", "prio")
        await flt.admit(request(OWNER))
        assert await flt.admit(request(LOW, modality="echo")) is None


async def test_without_a_chain_the_queue_is_fifo(tmp_path) -> None:
    node = make_node(tmp_path, {"prio": {"type": "stake_priority", "max_concurrent": 1}}, chain=False)
    order: list[str] = []
    async with node.running():
        flt = node.component("spam_filter", "prio")
        blocker = await flt.admit(request(OWNER))

        async def task(sender: str) -> None:
            release = await flt.admit(request(sender))
            order.append(sender)
            release()

        async with anyio.create_task_group() as tg:
            for i, sender in enumerate((LOW, HIGH, MID)):
                tg.start_soon(task, sender)
                await wait_queued(flt, i + 1)
            blocker()
    assert order == [LOW, HIGH, MID]
