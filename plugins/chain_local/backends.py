"""Where the chain component's calls go: the embedded ledger (authority) or the authority (client).

Both backends offer ``query(name, **params)`` and ``submit(tx)`` with identical results, so the
component above them has one code path for both modes.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import anyio
import anyio.abc
from tnode import dispatch
from tnode.errors import ChainError, TaskError

from .api import QUERIES, SUBMIT, unwrap
from .ledger import Ledger
from .tx import Transaction

MAX_BATCH = 512


class _Slot:
    """One submission waiting for the group commit that includes it."""

    __slots__ = ("done", "result", "tx")

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.done = anyio.Event()
        self.result: dict[str, Any] | ChainError | BaseException | None = None


class LocalBackend:
    """Calls into the :class:`Ledger` in worker threads; submissions are group-committed.

    Concurrent submissions queue up while a commit is in progress and are applied together in the
    next one (one fsync for the whole batch), which keeps throughput high under load without
    delaying a lone submission.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.limiter = anyio.CapacityLimiter(4)
        self._send, self._recv = anyio.create_memory_object_stream[_Slot](math.inf)
        self._closed = False

    async def run_sync(self, fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self.limiter)

    async def query(self, name: str, params: dict[str, Any] | None = None) -> Any:
        query = QUERIES.get(name)
        if query is None:
            raise ChainError("unknown_call", f"unknown chain call {name!r}")
        return await self.run_sync(query.run, self.ledger, dict(params or {}))

    async def submit(self, tx: Transaction) -> dict[str, Any]:
        if self._closed:
            raise ChainError("shutting_down", "the chain is stopping; the transaction was not applied")
        slot = _Slot(tx)
        self._send.send_nowait(slot)
        # Not cancellable past this point: the transaction may be committed, so wait for the answer.
        with anyio.CancelScope(shield=True):
            await slot.done.wait()
        if isinstance(slot.result, BaseException):
            raise slot.result
        assert slot.result is not None
        return slot.result

    async def commit_loop(self) -> None:
        """Run forever: take every queued submission, commit them together, wake their callers."""
        try:
            async for first in self._recv:
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._recv.receive_nowait())
                    except anyio.WouldBlock:
                        break
                try:
                    with anyio.CancelScope(shield=True):
                        results = await self.run_sync(self.ledger.submit_many, [s.tx for s in batch])
                except Exception as exc:  # storage failure: every caller in the batch learns it
                    results = [ChainError("storage", f"{type(exc).__name__}: {exc}")] * len(batch)
                for slot, result in zip(batch, results, strict=True):
                    slot.result = result
                    slot.done.set()
        finally:
            # Stopping: what is still queued was never applied; tell those callers so.
            self._closed = True
            while True:
                try:
                    slot = self._recv.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                slot.result = ChainError("shutting_down", "the chain is stopping; the transaction was not applied")
                slot.done.set()


class RemoteBackend:
    """Calls the authority over the transport's signed request/response."""

    def __init__(self, transport: Any, peer: str, timeout: float) -> None:
        self.transport = transport
        self.peer = peer
        self.timeout = timeout

    async def _request(self, call: str, body: dict[str, Any]) -> Any:
        try:
            reply = await self.transport.request(self.peer, dispatch.service_route("chain"), call, body,
                                                 timeout=self.timeout)
        except TaskError as exc:
            raise ChainError(exc.code if exc.code in ("timeout", "unreachable") else "authority_error",
                             f"chain authority {self.peer}: {exc}") from exc
        return unwrap(reply.body)

    async def query(self, name: str, params: dict[str, Any] | None = None) -> Any:
        query = QUERIES.get(name)
        if query is None:
            raise ChainError("unknown_call", f"unknown chain call {name!r}")
        return query.decode(await self._request(name, dict(params or {})))

    async def submit(self, tx: Transaction) -> dict[str, Any]:
        result = await self._request(SUBMIT, {"tx": tx.to_wire()})
        if not isinstance(result, dict):
            raise ChainError("invalid_response", "submit_tx answered with a non-map result")
        return result
