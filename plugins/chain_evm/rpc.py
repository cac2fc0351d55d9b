"""JSON-RPC to an EVM node over HTTP with httpx (anyio-native, so nothing blocks the trio loop).

Every failure becomes a :class:`tnode.errors.ChainError`: ``unreachable`` when the endpoint does not
answer (connection refused, timeout), ``rpc_error`` for a JSON-RPC error, or the contract's own
refusal code when a call reverted with ``ChainError(code)``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import httpx
from tnode.errors import ChainError

from .contract import refusal

# One line per request at INFO would drown a node's log: a node polls the chain every second.
if logging.getLogger("httpx").getEffectiveLevel() < logging.WARNING:
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _revert_data(error: dict[str, Any]) -> Any:
    data = error.get("data")
    if isinstance(data, dict):
        data = data.get("data", data.get("result"))
    return data


def _as_error(error: dict[str, Any], method: str) -> ChainError:
    typed = refusal(_revert_data(error))
    if typed is not None:
        return typed
    return ChainError("rpc_error", f"{method}: {error.get('message', error)}")


class Rpc:
    """An EVM node's JSON-RPC endpoint."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._ids = itertools.count(1)
        self._client = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, payload: Any, what: str) -> Any:
        for attempt in range(2):
            try:
                response = await self._client.post(self.url, json=payload)
                break
            except (httpx.ConnectError, httpx.TimeoutException, OSError) as exc:
                raise ChainError("unreachable", f"the EVM node at {self.url} does not answer ({what}): {exc}") from exc
            except httpx.TransportError as exc:
                # A pooled keep-alive connection the node closed meanwhile: one fresh attempt.
                if attempt:
                    raise ChainError("unreachable", f"the EVM node at {self.url} dropped the request ({what}): "
                                                    f"{exc}") from exc
        if response.status_code != 200:
            raise ChainError("rpc_error", f"{what}: HTTP {response.status_code} from {self.url}")
        try:
            return response.json()
        except ValueError as exc:
            raise ChainError("rpc_error", f"{what}: the answer is not JSON") from exc

    async def call(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call; returns ``result``."""
        doc = await self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)},
                               method)
        if not isinstance(doc, dict):
            raise ChainError("rpc_error", f"{method}: unexpected answer {str(doc)[:80]}")
        if "error" in doc:
            raise _as_error(doc["error"], method)
        return doc.get("result")

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several calls in one HTTP request (results in order; the first error raises)."""
        if not calls:
            return []
        first = next(self._ids)
        payload = [{"jsonrpc": "2.0", "id": first + i, "method": m, "params": list(p)} for i, (m, p) in enumerate(calls)]
        for _ in range(len(calls) - 1):
            next(self._ids)
        docs = await self._post(payload, f"batch of {len(calls)}")
        if not isinstance(docs, list):
            raise ChainError("rpc_error", "batch: the answer is not a list")
        by_id = {d.get("id"): d for d in docs if isinstance(d, dict)}
        out = []
        for i, (method, _) in enumerate(calls):
            d = by_id.get(first + i)
            if d is None:
                raise ChainError("rpc_error", f"batch: no answer for {method}")
            if "error" in d:
                raise _as_error(d["error"], method)
            out.append(d.get("result"))
        return out
