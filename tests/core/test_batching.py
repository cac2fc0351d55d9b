"""The deadline batcher: flushes at max_batch or when the oldest request's wait is up, requests queued
during a pass go into the next without waiting, expired and cancelled requests never reach the model,
and a failure fails only the requests it belongs to."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import pytest
from tnode.batching import DeadlineBatcher
from tnode.errors import TaskError

pytestmark = pytest.mark.anyio


class Model:
    """Doubles numbers; records every pass; ``gate`` (when set) holds each pass until it is set."""

    def __init__(self) -> None:
        self.passes: list[list[int]] = []
        self.gate: anyio.Event | None = None
        self.started = anyio.Event()

    async def forward(self, items: list[int]) -> Sequence[int | BaseException]:
        self.passes.append(list(items))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        out: list[int | BaseException] = []
        for i in items:
            if i < 0:
                out.append(TaskError("unsupported", f"{i} is negative") if i == -1 else ValueError(f"bad {i}"))
            else:
                out.append(2 * i)
        return out


async def submit_all(batcher: DeadlineBatcher[int, int], items: list[int], timeout: float = 10.0) -> list[object]:
    out: list[object] = [None] * len(items)

    async def one(i: int) -> None:
        try:
            out[i] = await batcher.submit(items[i], time.monotonic() + timeout)
        except TaskError as exc:
            out[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(items)):
            tg.start_soon(one, i)
    return out


async def test_a_full_batch_flushes_at_once_and_a_partial_one_when_the_oldest_has_waited() -> None:
    model = Model()
    full = DeadlineBatcher(model.forward, max_batch=4, wait=30.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(full.run)
        with anyio.fail_after(5):  # far less than the 30 s wait: max_batch flushed it
            assert await submit_all(full, [1, 2, 3, 4]) == [2, 4, 6, 8]
        assert [sorted(p) for p in model.passes] == [[1, 2, 3, 4]]
        partial = DeadlineBatcher(model.forward, max_batch=8, wait=0.3)
        tg.start_soon(partial.run)
        start = time.monotonic()
        assert await submit_all(partial, [5, 6]) == [10, 12]
        assert 0.25 <= time.monotonic() - start < 5 and sorted(model.passes[-1]) == [5, 6]
        tg.cancel_scope.cancel()


async def test_requests_queued_during_a_pass_join_the_next_one_without_waiting() -> None:
    model = Model()
    model.gate = anyio.Event()
    batcher = DeadlineBatcher(model.forward, max_batch=8, wait=0.2)
    results: list[object] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.run)

        async def first() -> None:
            results.append(await batcher.submit(1, time.monotonic() + 10))

        tg.start_soon(first)
        with anyio.fail_after(5):
            await model.started.wait()
        gate, model.gate = model.gate, None
        later = anyio.Event()

        async def rest() -> None:
            results.append(await submit_all(batcher, [2, 3, 4]))
            later.set()

        tg.start_soon(rest)
        await anyio.sleep(0.05)
        released = time.monotonic()
        gate.set()
        with anyio.fail_after(5):
            await later.wait()
        assert time.monotonic() - released < 0.15  # no second 0.2 s wait
        tg.cancel_scope.cancel()
    assert [sorted(p) for p in model.passes] == [[1], [2, 3, 4]] and results == [2, [4, 6, 8]]
    assert batcher.batches == 2 and batcher.requests == 4


async def test_expired_and_cancelled_requests_never_reach_the_model() -> None:
    model = Model()
    model.gate = anyio.Event()
    batcher = DeadlineBatcher(model.forward, max_batch=8, wait=0.0)
    outcome: dict[str, object] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.run)

        async def ask(name: str, item: int, timeout: float) -> None:
            try:
                outcome[name] = await batcher.submit(item, time.monotonic() + timeout)
            except TaskError as exc:
                outcome[name] = exc.code

        tg.start_soon(ask, "held", 1, 0.3)  # in the pass when its deadline passes
        with anyio.fail_after(5):
            await model.started.wait()
        tg.start_soon(ask, "expires", 2, 0.1)  # queued behind the held pass
        tg.start_soon(ask, "kept", 4, 10.0)
        withdrawn = anyio.CancelScope()

        async def cancelled() -> None:
            with withdrawn:
                await batcher.submit(3, time.monotonic() + 10)

        tg.start_soon(cancelled)
        await anyio.sleep(0.05)
        withdrawn.cancel()
        await anyio.sleep(0.4)
        model.gate.set()
        with anyio.fail_after(5):
            while "kept" not in outcome:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert outcome == {"held": "timeout", "expires": "timeout", "kept": 8}
    assert model.passes == [[1], [4]] and batcher.dropped == 2


async def test_a_failure_fails_only_its_own_requests_and_the_batcher_keeps_serving() -> None:
    model = Model()
    batcher = DeadlineBatcher(model.forward, max_batch=8, wait=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.run)
        out = await submit_all(batcher, [1, -1, -2, 3])
        assert out[0] == 2 and out[3] == 6
        assert isinstance(out[1], TaskError) and out[1].code == "unsupported"  # a TaskError passes through
        assert isinstance(out[2], TaskError) and out[2].code == "internal" and "ValueError: bad -2" in str(out[2])

        async def broken(items: list[int]) -> Sequence[int]:
            raise RuntimeError("the pass broke")

        batcher.forward = broken
        failed = await submit_all(batcher, [5, 6])
        assert all(isinstance(f, TaskError) and "RuntimeError: the pass broke" in str(f) for f in failed)
        batcher.forward = model.forward
        assert await submit_all(batcher, [7]) == [14]
        tg.cancel_scope.cancel()


async def test_a_request_waits_for_company_at_most_half_its_remaining_time() -> None:
    model = Model()
    batcher = DeadlineBatcher(model.forward, max_batch=8, wait=30.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.run)
        start = time.monotonic()
        with anyio.fail_after(5):
            assert await submit_all(batcher, [1], timeout=0.6) == [2]
        assert 0.25 <= time.monotonic() - start < 0.6
        tg.cancel_scope.cancel()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        DeadlineBatcher(Model().forward, max_batch=0, wait=0.0)
    with pytest.raises(ValueError, match="wait"):
        DeadlineBatcher(Model().forward, max_batch=1, wait=-1.0)
