"""The chain's remote calls: what a client node may ask the authority, and their wire encodings.

A client sends ``transport.request(authority, "svc:chain", <call>, params)`` (the ``chain`` service
of :mod:`tnode.dispatch`); the authority answers
``{"ok": true, "result": ...}`` or ``{"ok": false, "code": ..., "message": ...}`` (a refusal is a
normal answer, so transport failures and chain refusals stay distinguishable). ``submit_tx``
carries a signed transaction (:meth:`Transaction.to_wire`); every other call is a read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tnode.errors import ChainError
from tnode.hyperparameters import Hyperparameters

from .codec import BlockHeader, public_key_field
from .ledger import Ledger
from .metagraph import from_wire as metagraph_from_wire
from .metagraph import hyperparameters_from_wire
from .metagraph import to_wire as metagraph_to_wire


def _same(value: Any) -> Any:
    return value


def _int(params: dict[str, Any], name: str, *, optional: bool = False) -> int | None:
    value = params.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ChainError("invalid_args", f"{name} must be a non-negative integer")
    return value


def _hash(params: dict[str, Any]) -> bytes:
    value = params.get("hash")
    try:
        digest = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ChainError("invalid_args", "hash must be 64 hex characters")
    return digest


def _header_or_none(h: BlockHeader | None) -> dict[str, Any] | None:
    return None if h is None else h.to_wire()


def _header_from(doc: dict[str, Any] | None) -> BlockHeader | None:
    return None if doc is None else BlockHeader.from_wire(doc)


@dataclass(frozen=True, slots=True)
class Query:
    """A read call: ``run`` executes on the authority (in a worker thread); ``encode``/``decode``
    translate its result to and from the wire."""

    run: Callable[[Ledger, dict[str, Any]], Any]
    encode: Callable[[Any], Any] = _same
    decode: Callable[[Any], Any] = _same


def _netuid(p: dict[str, Any]) -> int | None:
    """The subnet a read names (absent: the chain's first subnet)."""
    return _int(p, "netuid", optional=True)


def _metagraph(ledger: Ledger, p: dict[str, Any]) -> Any:
    return ledger.metagraph(_int(p, "block", optional=True), matrices=bool(p.get("matrices", False)),
                            netuid=_netuid(p))


QUERIES: dict[str, Query] = {
    "info": Query(lambda ledger, p: {"genesis_hash": ledger.genesis_hash, "netuid": ledger.netuid,
                                     "block_time": ledger.block_time, "head": ledger.head().to_wire(),
                                     "subnets": ledger.subnet_list()}),
    "subnets": Query(lambda ledger, p: ledger.subnet_list()),
    "head": Query(lambda ledger, p: ledger.head(), BlockHeader.to_wire, BlockHeader.from_wire),
    "block": Query(lambda ledger, p: ledger.block(_int(p, "number") or 0), _header_or_none, _header_from),
    "hyperparameters": Query(lambda ledger, p: ledger.hyperparameters(_netuid(p)), Hyperparameters.to_dict,
                             hyperparameters_from_wire),
    "metagraph": Query(_metagraph, metagraph_to_wire, metagraph_from_wire),
    "difficulty": Query(lambda ledger, p: ledger.difficulty(_netuid(p))),
    "burn": Query(lambda ledger, p: ledger.burn(_netuid(p))),
    "nonce": Query(lambda ledger, p: ledger.nonce(public_key_field(p, "account"))),
    "balance": Query(lambda ledger, p: ledger.balance(public_key_field(p, "account"))),
    "stake": Query(lambda ledger, p: ledger.stake(public_key_field(p, "coldkey"), public_key_field(p, "hotkey"))),
    "total_stake": Query(lambda ledger, p: ledger.total_stake(public_key_field(p, "hotkey"))),
    "owner": Query(lambda ledger, p: ledger.owner(public_key_field(p, "hotkey"))),
    "commits": Query(lambda ledger, p: ledger.commits(public_key_field(p, "hotkey"), _netuid(p))),
    "totals": Query(lambda ledger, p: ledger.totals()),
    "tx_status": Query(lambda ledger, p: ledger.transaction_status(_hash(p))),
}

SUBMIT = "submit_tx"


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def refused(exc: ChainError) -> dict[str, Any]:
    return {"ok": False, "code": exc.code, "message": exc.message}


def unwrap(body: Any) -> Any:
    """The result of an authority answer, or raise the ChainError it carries."""
    if not isinstance(body, dict) or "ok" not in body:
        raise ChainError("invalid_response", "the authority's answer is not a chain reply")
    if body["ok"]:
        return body.get("result")
    raise ChainError(str(body.get("code", "refused")), str(body.get("message", "")))
