"""A deadline batcher: concurrent requests queue up and share one pass of a model, one pass at a time.

A request that finds the model idle waits for company until the oldest queued request has waited
``wait`` seconds, or until ``max_batch`` requests are queued, whichever comes first; it never waits
for company longer than half the time left before its own deadline. Requests that arrive while a
pass runs go into the next pass without waiting (they have waited already). A request whose
deadline passes, or whose caller is cancelled, is dropped from the queue before it reaches the
model; if it was already in a pass, its answer is discarded.

The pass itself is the caller's ``forward(items)``: it returns one result per item, in order, where
an exception instance fails only its own request; an exception raised by ``forward`` fails every
request of the pass. :class:`tnode.errors.TaskError` reaches the request as it was raised; any other
exception becomes ``TaskError("internal", "the model failed: ...")``. Nothing waits forever: each
request waits at most until its deadline.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
from tnode.errors import TaskError

__all__ = ["DeadlineBatcher"]

T = TypeVar("T")
R = TypeVar("R")

@dataclass(eq=False)
class _Pending(Generic[T, R]):
    item: T
    arrived: float
    deadline: float
    done: anyio.Event = field(default_factory=anyio.Event)
    result: R | None = None
    error: BaseException | None = None
    answered: bool = False
    abandoned: bool = False

    def flush_at(self, wait: float) -> float:
        """When this request stops waiting for company."""
        return self.arrived + min(wait, max(self.deadline - self.arrived, 0.0) / 2)


class DeadlineBatcher(Generic[T, R]):
    """Queues :meth:`submit` calls and runs them through ``forward`` in batches of up to ``max_batch``.

    :param forward: the pass (see the module's docstring); run by :meth:`run`, one at a time.
    :param max_batch: most requests in one pass.
    :param wait: seconds an idle model waits for more requests after the first (0: none).
    """

    def __init__(self, forward: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]], *, max_batch: int,
                 wait: float) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if wait < 0:
            raise ValueError(f"wait must not be negative, got {wait}")
        self.forward = forward
        self.max_batch = max_batch
        self.wait = wait
        self.batches = 0  # passes run
        self.requests = 0  # requests that reached a pass
        self.dropped = 0  # requests taken off the queue unanswered (deadline passed or caller gone)
        self._queue: deque[_Pending[T, R]] = deque()
        self._arrived = anyio.Event()
        self._idle_since = float("-inf")  # when the last pass ended

    @property
    def queued(self) -> int:
        """Requests waiting for a pass."""
        return len(self._queue)

    async def submit(self, item: T, deadline: float) -> R:
        """The result of ``item``'s pass; ``TaskError("timeout")`` when it is not ready before ``deadline``
        (``time.monotonic()``). Cancelling the caller withdraws the request."""
        now = time.monotonic()
        pending: _Pending[T, R] = _Pending(item, now, deadline)
        self._queue.append(pending)
        self._arrived.set()
        try:
            with anyio.move_on_after(max(deadline - now, 0.0)):
                await pending.done.wait()
        finally:
            if not pending.answered:
                pending.abandoned = True  # skipped if still queued; its answer is dropped if not
        if pending.error is not None:
            if isinstance(pending.error, TaskError):
                raise pending.error
            raise TaskError("internal", f"the model failed: {type(pending.error).__name__}: {pending.error}")
        if not pending.answered:
            raise TaskError("timeout", "the model did not answer before the deadline")
        return pending.result  # type: ignore[return-value]  # R may itself admit None

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        while True:
            if not self._queue:
                self._arrived = anyio.Event()
                await self._arrived.wait()
            await self._gather()
            batch = self._take()
            if batch:
                await self._pass(batch)
                self._idle_since = time.monotonic()

    async def _gather(self) -> None:
        """Wait until ``max_batch`` live requests are queued or the first flush time; not at all when a
        request arrived while the last pass ran."""
        if self.wait <= 0:
            return
        while True:
            live = [p for p in self._queue if not p.abandoned]
            if not live or len(live) >= self.max_batch or live[0].arrived <= self._idle_since:
                return
            remaining = min(p.flush_at(self.wait) for p in live) - time.monotonic()
            if remaining <= 0:
                return
            self._arrived = anyio.Event()
            with anyio.move_on_after(remaining):
                await self._arrived.wait()

    def _take(self) -> list[_Pending[T, R]]:
        batch: list[_Pending[T, R]] = []
        now = time.monotonic()
        while self._queue and len(batch) < self.max_batch:
            p = self._queue.popleft()
            if p.abandoned or p.deadline <= now:
                self.dropped += 1
                p.done.set()  # its caller has given up (or is about to time out)
                continue
            batch.append(p)
        return batch

    async def _pass(self, batch: list[_Pending[T, R]]) -> None:
        self.batches += 1
        self.requests += len(batch)
        try:
            results = await self.forward([p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} requests")
            for p, r in zip(batch, results, strict=True):
                if isinstance(r, BaseException):
                    p.error = r
                else:
                    p.result = r
        except Exception as exc:  # a failed pass fails its requests, never the batcher
            for p in batch:
                p.error = exc
        finally:
            for p in batch:
                p.answered = not p.abandoned
                p.done.set()
