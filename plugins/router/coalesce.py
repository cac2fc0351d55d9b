"""Queries to one miner that can share a request travel as one batched request.

The router asks every miner with a request of its own per query; under concurrent load the
per-request cost (signing, framing, the miner's admission) dominates small tasks. The coalescer
keeps one *lane* per miner and compatible task — same modality, task, body and payload shape and
dtype (text ``next_token``: same ``k``, ``positions`` and context length T; image restoration:
same task, body and image shape) — and:

- a query to an idle lane (nothing in flight on it) is sent at once, alone: no added latency;
- a query that arrives while a request of its lane is in flight waits for that request to
  return, for ``window`` seconds at most, or until ``max_batch`` are waiting — then everything
  waiting goes as one request (body ``batch`` = B, payload the B payloads stacked on a new first
  axis), and more than ``max_batch`` waiting go as several;
- each query gets its own row back (row i of every body list and of the payload's first axis),
  checked by its own ``parse`` exactly like a single answer. A reply without one valid row per
  task is the miner's failure for every query of that request (:class:`BatchError` carries the
  request's number, so the board counts one failure, not B);
- a miner that refuses a batch as ``too_large`` (its ``max_tasks`` is below ``max_batch``, or
  the stacked rows pass a size limit) gets half as many per request from then on, and the refused
  queries go again in smaller requests while their deadlines allow; a single query refused as
  ``too_large`` is a failure like any other (and lifts that miner's limit: the batch was not
  the cause);
- the request runs in the coalescer's task group, not in any query's: a query that gives up
  (its deadline, a cancelled fan-out) leaves the request to the others; one still waiting to be
  sent just leaves the queue; a request whose every query gave up is cancelled. It waits for the
  latest deadline among its queries.

Contexts of different lengths never share a request: padding would change what the miner
conditions on, and trimming would change the answer.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from anyio.abc import TaskGroup
from tnode.errors import TaskError, TnodeError
from tnode.interfaces import Reply

from .board import MinerRecord


class BatchError(TaskError):
    """A miner's failure to answer one (batched) request; ``request`` numbers that request."""

    def __init__(self, code: str, message: str, *, request: int) -> None:
        super().__init__(code, message)
        self.request = request


def failure_code(exc: TnodeError) -> str:
    """The code of a local failure the transport did not map to one."""
    return "timeout" if "Timeout" in type(exc).__name__ else "unreachable"


async def ask_direct(transport: Any, miner: MinerRecord, modality: str, task: str, body: Mapping[str, Any],
                     payload: Any, parse: Callable[[Reply], Any], timeout: float) -> tuple[Any, float, int | None]:
    """One request of its own: the checked answer, its latency, and no request number."""
    reply = await transport.request(miner.peer_id or miner.addrs[0], modality, task, body, payload, timeout=timeout)
    return parse(reply), reply.latency, None


@dataclass(eq=False)
class _Pending:
    """One query waiting in a lane."""

    payload: np.ndarray
    parse: Callable[[Reply], Any]
    deadline: float
    start: float
    done: anyio.Event = field(default_factory=anyio.Event)
    value: Any = None
    error: BatchError | None = None
    latency: float = 0.0
    number: int | None = None  # of the request that carried the answer
    abandoned: bool = False
    batch: _Batch | None = None


@dataclass(eq=False)
class _Batch:
    members: list[_Pending]
    number: int
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def abandon(self) -> None:
        if all(m.abandoned or m.done.is_set() for m in self.members):
            self.scope.cancel()  # nobody waits for this request any more


@dataclass(eq=False)
class _Lane:
    peer: str
    modality: str
    task: str
    body: dict[str, Any]
    queue: list[_Pending] = field(default_factory=list)
    in_flight: int = 0
    timer: bool = False


class Coalescer:
    """Per-miner request coalescing for one router (see the module doc)."""

    def __init__(self, transport: Any, tg: TaskGroup, *, window: float, max_batch: int) -> None:
        self.transport = transport
        self.tg = tg
        self.window = window
        self.max_batch = max_batch
        self.lanes: dict[tuple[Any, ...], _Lane] = {}
        self.limits: dict[str, int] = {}  # peer → most tasks per request it accepted, after a too_large
        self._numbers = itertools.count(1)
        self.stats = {"queries": 0, "requests": 0, "batched": 0}  # batched: requests carrying > 1 task

    async def ask(self, miner: MinerRecord, modality: str, task: str, body: Mapping[str, Any], payload: Any,
                  parse: Callable[[Reply], Any], timeout: float) -> tuple[Any, float, int | None]:
        """The checked answer of ``miner`` to one query, the latency this query saw (its wait in the
        lane included) and the number of the request that carried it (numbers grow in sending order).
        Raises :class:`tnode.errors.TaskError` like a single request."""
        if not isinstance(payload, np.ndarray) or "batch" in body:
            return await ask_direct(self.transport, miner, modality, task, body, payload, parse, timeout)
        peer = miner.peer_id or miner.addrs[0]
        try:
            same = json.dumps(body, sort_keys=True)
        except (TypeError, ValueError):  # not plain JSON: the transport says what is wrong with it
            return await ask_direct(self.transport, miner, modality, task, body, payload, parse, timeout)
        key = (peer, modality, task, same, payload.dtype.str, payload.shape)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = _Lane(peer, modality, task, dict(body))
        now = time.monotonic()
        pending = _Pending(payload, parse, now + timeout, now)
        lane.queue.append(pending)
        self.stats["queries"] += 1
        self._schedule(key, lane)
        try:
            await pending.done.wait()
        finally:
            if not pending.done.is_set():  # this query gives up; the others keep their request
                pending.abandoned = True
                if pending in lane.queue:
                    lane.queue.remove(pending)
                    self._drop_if_idle(key, lane)
                elif pending.batch is not None:
                    pending.batch.abandon()
        if pending.error is not None:  # a fresh exception per query: they are raised in different tasks
            raise BatchError(pending.error.code, pending.error.message, request=pending.error.request)
        return pending.value, pending.latency, pending.number

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, key: tuple[Any, ...], lane: _Lane) -> None:
        """Send what may go now; arm the window for what waits behind a request in flight."""
        while lane.queue and (lane.in_flight == 0 or len(lane.queue) >= self._most(lane)):
            self._send(key, lane)
        if lane.queue and not lane.timer:
            lane.timer = True
            self.tg.start_soon(self._window, key, lane)

    async def _window(self, key: tuple[Any, ...], lane: _Lane) -> None:
        try:
            await anyio.sleep(self.window)
        finally:
            lane.timer = False
        while lane.queue:
            self._send(key, lane)
        self._drop_if_idle(key, lane)

    def _most(self, lane: _Lane) -> int:
        return min(self.max_batch, self.limits.get(lane.peer, self.max_batch))

    def _send(self, key: tuple[Any, ...], lane: _Lane) -> None:
        most = self._most(lane)
        members, lane.queue = lane.queue[:most], lane.queue[most:]
        batch = _Batch(members, next(self._numbers))
        for m in members:
            m.batch = batch
        lane.in_flight += 1
        self.tg.start_soon(self._request, key, lane, batch)

    def _drop_if_idle(self, key: tuple[Any, ...], lane: _Lane) -> None:
        if not lane.queue and not lane.in_flight and not lane.timer and self.lanes.get(key) is lane:
            del self.lanes[key]

    # ------------------------------------------------------------------ one request
    async def _request(self, key: tuple[Any, ...], lane: _Lane, batch: _Batch) -> None:
        live = [m for m in batch.members if not m.abandoned]
        try:
            with batch.scope:
                if live and not await self._answer(lane, batch.number, live):
                    again = [m for m in live if not m.abandoned and m.deadline > time.monotonic()]
                    for m in again:
                        m.batch = None
                    lane.queue[:0] = again  # ahead of later queries, in smaller requests
        finally:
            for m in live:
                if not m.done.is_set() and m.batch is batch:  # cancelled (every query gave up, or shutdown)
                    m.error = BatchError("timeout", "the request was cancelled", request=batch.number)
                    m.done.set()
            lane.in_flight -= 1
            if lane.queue:  # what piled up behind this request goes now
                while lane.queue:
                    self._send(key, lane)
            self._drop_if_idle(key, lane)

    async def _answer(self, lane: _Lane, number: int, live: list[_Pending]) -> bool:
        """Ask and hand each query its row or the error; False: refused as too large, try smaller."""
        n = len(live)
        if n == 1:
            body, payload = lane.body, live[0].payload
        else:
            body, payload = {**lane.body, "batch": n}, np.stack([m.payload for m in live])
        timeout = max(max(m.deadline for m in live) - time.monotonic(), 0.0)
        self.stats["requests"] += 1
        self.stats["batched"] += n > 1
        try:
            reply = await self.transport.request(lane.peer, lane.modality, lane.task, body, payload, timeout=timeout)
            rows = [reply] if n == 1 else split_rows(reply, n)
            values = []
            for i, (m, row) in enumerate(zip(live, rows, strict=True)):
                try:
                    values.append(m.parse(row))
                except TaskError as exc:
                    if n == 1:
                        raise
                    raise TaskError(exc.code, f"row {i} of a batch of {n}: {exc.message}") from None
        except TaskError as exc:
            if exc.code == "too_large":
                if n > 1:  # the miner's max_tasks, or a frame or payload size limit the rows add up to
                    self.limits[lane.peer] = max(n // 2, 1)
                    return False
                self.limits.pop(lane.peer, None)  # one task too large: its size, not the batch's
            error: BatchError = BatchError(exc.code, exc.message, request=number)
        except TnodeError as exc:
            error = BatchError(failure_code(exc), str(exc), request=number)
        else:
            now = time.monotonic()
            for m, value in zip(live, values, strict=True):
                m.value, m.latency, m.number = value, now - m.start, number
                m.done.set()
            return True
        for m in live:
            m.error = error
            m.done.set()
        return True


def split_rows(reply: Reply, n: int) -> list[Reply]:
    """Row i of a batched answer as the answer to task i: entry i of every body value (each a list of
    ``n``) and of the payload's first axis. Anything else is ``invalid_response``."""
    payload = reply.payload
    if not isinstance(payload, np.ndarray) or payload.ndim < 1 or payload.shape[0] != n:
        raise TaskError("invalid_response", f"a batch of {n} needs a payload of {n} rows, got shape "
                                            f"{getattr(payload, 'shape', None)}")
    body = reply.body if isinstance(reply.body, dict) else None
    if body is None or any(not isinstance(v, list) or len(v) != n for v in body.values()):
        raise TaskError("invalid_response", f"a batch of {n} needs every body field as a list of {n} rows")
    return [Reply({k: v[i] for k, v in body.items()}, payload[i], reply.peer_id, reply.hotkey, reply.latency)
            for i in range(n)]
