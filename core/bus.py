"""The event bus: typed publish/subscribe with backpressure, plus typed request/reply.

Each subscriber owns a bounded deque and one task. Publishing appends to the deque and wakes the
subscriber only when it was idle, so a busy subscriber takes events in batches and the cost per
event is a deque append, not a channel operation. When a subscriber's deque is full, its
``when_full`` policy decides: ``"block"`` makes the publisher wait for space (backpressure),
``"drop_newest"`` drops the new event and counts it. A subscriber that raises is logged with its
name and the event type, counted, and keeps receiving; the publisher never sees the error.

Requests (:class:`tnode.events.Request`) go to exactly one handler, chosen by request type and
``route_key``, and run in the requester's task under its deadline.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import structlog

from .errors import BusClosed, NoHandler, RequestTimeout
from .events import Event, Request

E = TypeVar("E", bound=Event)
Handler = Callable[[Any], Awaitable[Any]]
WhenFull = Literal["block", "drop_newest"]
log = structlog.get_logger("tnode.bus")

_BATCH = 256
_PUBLISH_YIELD_EVERY = 128


@dataclass
class SubscriberStats:
    name: str
    event_type: str
    delivered: int
    dropped: int
    errors: int
    queued: int


class Subscription:
    """One subscriber: its queue, its policy, its counters."""

    __slots__ = (
        "bus", "event_type", "handler", "name", "maxsize", "when_full", "queue",
        "delivered", "dropped", "errors", "_waiter", "_space", "_closed", "_idle", "_scope", "_cancelled",
    )

    def __init__(self, bus: EventBus, event_type: type[Event], handler: Handler, name: str, maxsize: int,
                 when_full: WhenFull) -> None:
        self.bus = bus
        self.event_type = event_type
        self.handler = handler
        self.name = name
        self.maxsize = maxsize
        self.when_full = when_full
        self.queue: deque[Event] = deque()
        self.delivered = 0
        self.dropped = 0
        self.errors = 0
        self._waiter: anyio.Event | None = None
        self._space: anyio.Event | None = None
        self._closed = False
        self._idle = True
        self._scope: anyio.CancelScope | None = None
        self._cancelled = False

    # ---------------------------------------------------------------- publisher side
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def put(self, event: Event) -> None:
        queue = self.queue
        while len(queue) >= self.maxsize:
            if self.when_full == "drop_newest" or self._closed:
                self.dropped += 1
                return
            if self._space is None:
                self._space = anyio.Event()
            await self._space.wait()
        queue.append(event)
        if self._waiter is not None:
            self._wake()

    def put_nowait(self, event: Event) -> bool:
        if len(self.queue) >= self.maxsize or self._closed:
            self.dropped += 1
            return False
        self.queue.append(event)
        if self._waiter is not None:
            self._wake()
        return True

    # ---------------------------------------------------------------- consumer side
    async def run(self) -> None:
        # Own cancel scope: the bus cancels a hung subscriber without cancelling whoever called aclose().
        try:
            with anyio.CancelScope() as self._scope:
                if self._cancelled:
                    self._scope.cancel()
                await self._consume()
        finally:
            if self in self.bus._all:
                self.bus._all.remove(self)

    async def _consume(self) -> None:
        queue = self.queue
        handler = self.handler
        popleft = queue.popleft
        try:
            while True:
                if not queue:
                    if self._closed:
                        return
                    self._idle = True
                    self._waiter = anyio.Event()
                    await self._waiter.wait()
                    continue
                self._idle = False
                n = min(len(queue), _BATCH)
                space = self._space
                for _ in range(n):
                    event = popleft()
                    if space is not None:
                        self._space = None
                        space.set()
                        space = None
                    try:
                        await handler(event)
                    except Exception as exc:  # the subscriber guard: isolate, log, count
                        self.errors += 1
                        log.error(
                            "subscriber failed",
                            subscriber=self.name,
                            event_type=type(event).__name__,
                            error=f"{type(exc).__name__}: {exc}",
                            exc_info=exc,
                        )
                    self.delivered += 1
                if queue:
                    # Still busy: let publishers and other tasks run between batches.
                    await anyio.lowlevel.checkpoint()
        finally:
            self._idle = True
            if self._space is not None:
                self._space.set()

    def close(self) -> None:
        """Stop receiving new events; already queued ones are still delivered."""
        self._closed = True
        self.bus._unsubscribe(self)
        self._wake()
        if self._space is not None:
            self._space.set()

    def cancel(self) -> None:
        """Abandon undelivered events and stop the subscriber's task at its next checkpoint."""
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    def stats(self) -> SubscriberStats:
        return SubscriberStats(self.name, self.event_type.__name__, self.delivered, self.dropped, self.errors,
                               len(self.queue))


class EventBus:
    """Publish/subscribe by event class and request/reply by request class.

    Use as ``async with EventBus() as bus:``; leaving the block drains subscribers (see
    :meth:`aclose`).
    """

    def __init__(self, *, drain_seconds: float = 5.0) -> None:
        self._subs: dict[type[Event], list[Subscription]] = {}
        self._route_cache: dict[type[Event], tuple[Subscription, ...]] = {}
        self._handlers: dict[tuple[type[Request], str | None], Handler] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._pending: list[Subscription] = []
        self._all: list[Subscription] = []
        self._closed = False
        self._publishes = 0
        self.drain_seconds = drain_seconds

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> EventBus:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for sub in self._pending:
            self._tg.start_soon(sub.run, name=f"bus-subscriber:{sub.name}")
        self._pending.clear()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        if exc_info[0] is None:
            await self.aclose(self.drain_seconds)
        else:
            self._closed = True
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
        assert self._tg is not None
        return await self._tg.__aexit__(*exc_info)

    async def aclose(self, deadline: float = 5.0) -> bool:
        """Stop accepting events, let subscribers drain their queues for up to ``deadline``
        seconds, then cancel whatever is left. Returns True when everything drained in time."""
        self._closed = True
        subs = list(self._all)
        for sub in subs:
            sub.close()
        drained = True
        with anyio.move_on_after(deadline) as scope:
            while any(s.queue or not s._idle for s in subs):
                await anyio.sleep(0.001)
        if scope.cancelled_caught:
            drained = False
            log.warning("bus drain deadline passed", undelivered=sum(len(s.queue) for s in subs))
        for sub in subs:
            sub.cancel()
        return drained

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ pub/sub
    def subscribe(
        self,
        event_type: type[E],
        handler: Callable[[E], Awaitable[Any]],
        *,
        name: str | None = None,
        maxsize: int = 1024,
        when_full: WhenFull = "block",
    ) -> Subscription:
        """Deliver every event of ``event_type`` (and its subclasses) to ``handler`` in order.

        :param maxsize: events buffered for this subscriber before ``when_full`` applies.
        :param when_full: ``"block"`` (publisher waits) or ``"drop_newest"`` (event dropped, counted).
        """
        if self._closed:
            raise BusClosed("cannot subscribe to a closed bus")
        if when_full not in ("block", "drop_newest"):
            raise ValueError(f"when_full must be 'block' or 'drop_newest', not {when_full!r}")
        if maxsize < 1:
            raise ValueError("maxsize must be ≥ 1")
        sub = Subscription(self, event_type, handler, name or str(getattr(handler, "__qualname__", "subscriber")),
                           maxsize, when_full)
        self._subs.setdefault(event_type, []).append(sub)
        self._all.append(sub)
        self._route_cache.clear()
        if self._tg is None:
            self._pending.append(sub)
        else:
            self._tg.start_soon(sub.run, name=f"bus-subscriber:{sub.name}")
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        lst = self._subs.get(sub.event_type)
        if lst and sub in lst:
            lst.remove(sub)
            self._route_cache.clear()

    def _targets(self, event_type: type[Event]) -> tuple[Subscription, ...]:
        try:
            return self._route_cache[event_type]
        except KeyError:
            targets: list[Subscription] = []
            for cls in event_type.__mro__:
                targets.extend(self._subs.get(cls, ()))  # type: ignore[arg-type]
            result = tuple(targets)
            self._route_cache[event_type] = result
            return result

    async def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber of its class; waits only for full ``block`` subscribers."""
        if self._closed:
            raise BusClosed(f"bus is closed; {type(event).__name__} not published")
        for sub in self._targets(type(event)):
            if len(sub.queue) < sub.maxsize:
                sub.queue.append(event)
                if sub._waiter is not None:
                    sub._wake()
            else:
                await sub.put(event)
        self._publishes += 1
        if self._publishes % _PUBLISH_YIELD_EVERY == 0:
            await anyio.lowlevel.checkpoint()

    def publish_nowait(self, event: Event) -> int:
        """Publish without waiting: full subscribers drop the event (counted). Returns deliveries."""
        if self._closed:
            return 0
        return sum(1 for sub in self._targets(type(event)) if sub.put_nowait(event))

    def stats(self) -> list[SubscriberStats]:
        return [s.stats() for lst in self._subs.values() for s in lst]

    # ------------------------------------------------------------------ request/reply
    def serve(self, request_type: type[Request], handler: Handler, *, key: str | None = None) -> Callable[[], None]:
        """Answer requests of ``request_type`` whose ``route_key`` is ``key``. Returns an undo callable."""
        slot = (request_type, key)
        if slot in self._handlers:
            raise ValueError(f"a handler already serves {request_type.__name__} with key {key!r}")
        self._handlers[slot] = handler

        def undo() -> None:
            if self._handlers.get(slot) is handler:
                del self._handlers[slot]

        return undo

    def handles(self, request_type: type[Request], key: str | None = None) -> bool:
        return (request_type, key) in self._handlers

    def served_keys(self, request_type: type[Request]) -> list[str]:
        return sorted(k for t, k in self._handlers if t is request_type and k is not None)

    async def request(self, req: Request, *, timeout: float | None = None) -> Any:
        """Send ``req`` to its handler and return the answer.

        Raises :class:`NoHandler` when nobody serves it, :class:`RequestTimeout` when the answer
        takes longer than ``timeout`` seconds, or whatever typed error the handler raises.
        """
        if self._closed:
            raise BusClosed(f"bus is closed; {type(req).__name__} not sent")
        key = req.route_key
        handler = self._handlers.get((type(req), key)) or (
            self._handlers.get((type(req), None)) if key is not None else None
        )
        if handler is None:
            raise NoHandler(f"no handler for {type(req).__name__}" + (f" with key {key!r}" if key else ""))
        if timeout is None or math.isinf(timeout):
            return await handler(req)
        try:
            with anyio.fail_after(max(timeout, 0.0)):
                return await handler(req)
        except TimeoutError:
            raise RequestTimeout(f"{type(req).__name__} got no answer within {timeout:.3f} s") from None
