"""``tnode.dispatch``: the one admission pipeline every entry point hands its requests to.

An entry point (the libp2p transport, the validator's self-queries, an HTTP gateway...) verifies
its own framing and signatures, builds an :class:`tnode.interfaces.InboundRequest` and awaits
:meth:`Dispatcher.handle`. What happens next is the same for all of them::

    InboundRequest ── route "svc:<name>"? ──▶ service: ready rule of the service → filters that
         │                                    judge services → handler → TaskResult
         ▼
    node ready? ─no─▶ starting
         ▼
    spam filters, in node.toml order (each may refuse, wait, or hand back a release)
         ▼
    execution slot (node-wide, bounded by the deadline) ─none─▶ overloaded
         ▼
    TaskReceived on the bus → the modality serving that wire name ─▶ TaskResult
         ▼
    TaskRefused (refused before a handler ran) / TaskCompleted (every admitted-or-refused task)

Refusals are :class:`tnode.errors.TaskError` whose code is one of :data:`REFUSALS`; the same set
names the codes the transports answer with on their own (wire checks, stalled frames) and says
which of them are the sender's fault (:attr:`Refusal.strike`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import anyio

from .errors import NoHandler, RequestTimeout, TaskError
from .events import TaskCompleted, TaskReceived, TaskRefused
from .interfaces import InboundRequest, TaskResult

# =========================================================================== refusal codes


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refusal code: what it means and whether it counts as abuse (a strike) against the sender."""

    code: str
    meaning: str
    strike: bool


_TABLE = (
    # the node's own state: never the sender's fault
    Refusal("starting", "the node has not finished starting; try again shortly", False),
    Refusal("overloaded", "no execution slot (or partial-frame room) before the deadline", False),
    Refusal("timeout", "the deadline passed before the answer was ready", False),
    Refusal("internal", "a bug on this node while handling the request", False),
    Refusal("unknown_modality", "no modality is served under that wire name here", False),
    Refusal("unknown_service", "no service of that name is served here", False),
    Refusal("unsupported", "the modality is served but cannot do this task", False),
    # spam filters and modalities
    Refusal("unregistered", "the sender holds no uid (or too little stake, or no permit)", True),
    Refusal("rate_limited", "the sender's rate limit is spent", True),
    Refusal("too_large", "the request is past a size limit (frame, payload, sequence, batch, k...)", True),
    Refusal("invalid_request", "the body is not what the task expects", True),
    # the wire and the transport, before any of the above
    Refusal("wire_error", "a frame that is not a tnode frame", True),
    Refusal("frame_too_large", "a frame longer than max_frame_bytes (refused unread)", True),
    Refusal("truncated_frame", "the stream ended inside a frame", True),
    Refusal("malformed_frame", "the frame's header or body does not parse", True),
    Refusal("bad_signature", "the signature does not verify", True),
    Refusal("wrong_receiver", "the request is addressed to another node", True),
    Refusal("stale", "the timestamp is outside the freshness window", True),
    Refusal("replayed", "the nonce was already seen", True),
    Refusal("body_hash_mismatch", "the body or payload is not what was signed", True),
    Refusal("wrong_sender", "signed by another key than the connection's peer", True),
    Refusal("read_timeout", "a frame that started did not arrive within frame_read_seconds", True),
)

REFUSALS: Mapping[str, Refusal] = MappingProxyType({r.code: r for r in _TABLE})
"""Every refusal code a node answers with, by code."""

STRIKE_CODES = frozenset(r.code for r in _TABLE if r.strike)
"""Refusal codes that are the sender's fault: transports count them as strikes (tarpit)."""

_BEFORE_HANDLER = frozenset({"starting", "overloaded", "unknown_modality", "unknown_service", "unregistered",
                             "rate_limited", "too_large", "invalid_request"})


def refusal(code: str) -> Refusal:
    """The :class:`Refusal` of ``code``; a code outside the set (a plugin's own) is no strike."""
    return REFUSALS.get(code) or Refusal(code, "", False)


# =========================================================================== services

SERVICE_PREFIX = "svc:"


def service_route(name: str) -> str:
    """The wire route of service ``name`` (what a client puts in the modality field): ``svc:<name>``."""
    return SERVICE_PREFIX + name


@dataclass(frozen=True, slots=True)
class ServiceCall:
    """A verified call to a service (chain RPC, announcements, probes), as its handler sees it."""

    service: str
    task: str  # the call's name, e.g. "metagraph" or "submit_tx"
    body: Mapping[str, Any]
    payload: Any
    sender: str
    peer_id: str
    deadline: float
    entry: str


ServiceHandler = Callable[[ServiceCall], Awaitable[TaskResult]]


@dataclass(frozen=True, slots=True)
class _Service:
    name: str
    handler: ServiceHandler
    before_ready: bool


def wire_name(config: Any, type_name: str) -> str:
    """The name a modality is served and asked under: its config's ``serve_as``, else its ``type``."""
    return str(getattr(config, "serve_as", "") or type_name)


# =========================================================================== the dispatcher

DEFAULT_MAX_CONCURRENT_TASKS = 64
DEFAULT_MAX_TASK_SECONDS = 60.0


class Dispatcher:
    """The admission pipeline of one node (see the module docstring); get it with :func:`of`."""

    def __init__(self, node: Any, *, max_concurrent_tasks: int = DEFAULT_MAX_CONCURRENT_TASKS,
                 max_task_seconds: float = DEFAULT_MAX_TASK_SECONDS) -> None:
        self.node = node
        self.max_task_seconds = max_task_seconds
        self.max_concurrent_tasks = max_concurrent_tasks
        self._slots = anyio.Semaphore(max_concurrent_tasks)
        self._services: dict[str, _Service] = {}
        self._filters: tuple[Any, ...] | None = None  # fixed once the node is ready
        self.stats = {"served": 0, "refused": 0, "errors": 0}

    def configure(self, *, max_concurrent_tasks: int | None = None, max_task_seconds: float | None = None) -> None:
        """Set the node-wide limits (before requests flow: a new slot count replaces the semaphore)."""
        if max_concurrent_tasks is not None and max_concurrent_tasks != self.max_concurrent_tasks:
            self.max_concurrent_tasks = max_concurrent_tasks
            self._slots = anyio.Semaphore(max_concurrent_tasks)
        if max_task_seconds is not None:
            self.max_task_seconds = max_task_seconds

    @property
    def slots_free(self) -> int:
        """Execution slots not taken right now."""
        return self._slots.value

    # ------------------------------------------------------------------ services
    def serve_service(self, name: str, handler: ServiceHandler, *, before_ready: bool = False) -> Callable[[], None]:
        """Serve service ``name`` (reached as ``svc:<name>``); returns an undo callable.

        :param before_ready: answer calls while the node is still starting (the chain authority
            must: other nodes need it to start).

        Services take no execution slot and run no modality spam filter: only the filters whose
        ``judges_services`` is true (rate limits) see them.
        """
        if name in self._services:
            raise ValueError(f"service {name!r} is already served")
        service = _Service(name, handler, before_ready)
        self._services[name] = service

        def undo() -> None:
            if self._services.get(name) is service:
                del self._services[name]

        return undo

    def services(self) -> list[str]:
        """Names of the services served now."""
        return sorted(self._services)

    def modalities(self) -> list[str]:
        """Wire names of the modalities served now."""
        return self.node.bus.served_keys(TaskReceived)

    # ------------------------------------------------------------------ the pipeline
    def _spam_filters(self) -> tuple[Any, ...]:
        filters = self._filters
        if filters is None:
            filters = tuple(self.node.components_of("spam_filter").values())
            if self.node.ready.is_set():
                self._filters = filters
        return filters

    def _refused(self, request: InboundRequest, code: str, reason: str) -> TaskError:
        self.stats["refused"] += 1
        if code in _BEFORE_HANDLER:
            self.node.bus.publish_nowait(TaskRefused(request.peer_id, request.sender, code, reason))
        return TaskError(code, reason)

    async def handle(self, request: InboundRequest) -> TaskResult:
        """Admit and answer one verified request; raises :class:`TaskError` with a refusal code."""
        if request.modality.startswith(SERVICE_PREFIX):
            return await self._call_service(request)
        if not self.node.ready.is_set():
            raise self._refused(request, "starting", "node is starting")
        received = request.received_at or time.monotonic()
        deadline = received + self.max_task_seconds
        if request.deadline is not None and request.deadline < deadline:
            deadline = request.deadline
        releases: list[Callable[[], None]] = []
        ok = False
        code = ""
        try:
            for flt in self._spam_filters():
                release = await flt.admit(request)
                if release is not None:
                    releases.append(release)
            try:
                self._slots.acquire_nowait()  # the common case: a slot is free, no wait and no scope
            except anyio.WouldBlock:
                with anyio.move_on_after(max(deadline - time.monotonic(), 0.0)) as slot_scope:
                    await self._slots.acquire()
                if slot_scope.cancelled_caught:
                    raise TaskError("overloaded", "no execution slot before the deadline") from None
            try:
                result = await self.node.bus.request(
                    TaskReceived(request.modality, request.task, dict(request.body), request.payload,
                                 request.sender, request.peer_id, deadline, received),
                    timeout=max(deadline - time.monotonic(), 0.0))
            finally:
                self._slots.release()
            if not isinstance(result, TaskResult):
                raise TaskError("internal", f"handler returned {type(result).__name__}, not TaskResult")
            ok = True
            self.stats["served"] += 1
            return result
        except TaskError as exc:
            code = exc.code
            raise self._refused(request, code, exc.message) from None
        except NoHandler:
            code = "unknown_modality"
            served = ", ".join(self.modalities()) or "none"
            raise self._refused(request, code, f"modality {request.modality!r} is not served here "
                                               f"(served: {served})") from None
        except RequestTimeout:
            code = "timeout"
            raise self._refused(request, code, "deadline passed before the answer was ready") from None
        except Exception as exc:  # a handler bug: the entry point answers "internal" and keeps serving
            code = "internal"
            self.stats["errors"] += 1
            self.node.log.error("task handler failed", modality=request.modality, task=request.task,
                                error=repr(exc)[:300])
            raise self._refused(request, code, type(exc).__name__) from None
        finally:
            for release in releases:
                try:
                    release()
                except Exception as exc:  # a filter's bookkeeping bug must not hide the answer
                    self.node.log.error("spam filter release failed", error=repr(exc)[:300])
            self.node.bus.publish_nowait(TaskCompleted(request.modality, request.task, request.sender, ok, code,
                                                       time.monotonic() - received))

    async def _call_service(self, request: InboundRequest) -> TaskResult:
        name = request.modality[len(SERVICE_PREFIX):]
        service = self._services.get(name)
        if service is None:
            raise self._refused(request, "unknown_service", f"service {name!r} is not served here "
                                                            f"(served: {', '.join(self.services()) or 'none'})")
        if not service.before_ready and not self.node.ready.is_set():
            raise self._refused(request, "starting", "node is starting")
        received = request.received_at or time.monotonic()
        deadline = received + self.max_task_seconds
        if request.deadline is not None and request.deadline < deadline:
            deadline = request.deadline
        releases: list[Callable[[], None]] = []
        try:
            for flt in self._spam_filters():
                if getattr(flt, "judges_services", False):
                    release = await flt.admit(request)
                    if release is not None:
                        releases.append(release)
            call = ServiceCall(name, request.task, request.body, request.payload, request.sender,
                               request.peer_id, deadline, request.entry)
            with anyio.move_on_after(max(deadline - time.monotonic(), 0.0)) as scope:
                result = await service.handler(call)
            if scope.cancelled_caught:
                raise TaskError("timeout", "deadline passed before the answer was ready")
            if not isinstance(result, TaskResult):
                raise TaskError("internal", f"service returned {type(result).__name__}, not TaskResult")
            self.stats["served"] += 1
            return result
        except TaskError as exc:
            raise self._refused(request, exc.code, exc.message) from None
        except Exception as exc:  # a service bug: refused as internal, the node keeps serving
            self.stats["errors"] += 1
            self.node.log.error("service handler failed", service=name, task=request.task, error=repr(exc)[:300])
            raise self._refused(request, "internal", type(exc).__name__) from None
        finally:
            for release in releases:
                try:
                    release()
                except Exception as exc:
                    self.node.log.error("spam filter release failed", error=repr(exc)[:300])


_DISPATCHERS: weakref.WeakKeyDictionary[Any, Dispatcher] = weakref.WeakKeyDictionary()


def of(node: Any) -> Dispatcher:
    """The node's dispatcher (one per node, made on first use)."""
    dispatcher = _DISPATCHERS.get(node)
    if dispatcher is None:
        dispatcher = _DISPATCHERS[node] = Dispatcher(node)
    return dispatcher


def describe_payload(payload: Any) -> tuple[str, tuple[int, ...] | None, int]:
    """``(dtype, shape, nbytes)`` of a payload: an array's, ``("bytes", None, n)`` for raw bytes."""
    if payload is None:
        return "", None, 0
    if isinstance(payload, bytes | bytearray | memoryview):
        return "bytes", None, len(payload)
    return payload.dtype.name, tuple(int(d) for d in payload.shape), int(payload.nbytes)
