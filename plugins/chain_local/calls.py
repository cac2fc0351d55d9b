"""The transaction calls: checks and state changes, run inside the ledger's SQLite transaction.

Each handler takes the state, the hyperparameters, ``current`` (the number of the block the
transaction will be sealed in), the signer and the call's arguments; it raises
:class:`tnode.errors.ChainError` to refuse (nothing is written then) or returns a JSON-able result.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import orjson
from tnode.errors import ChainError
from tnode.hyperparameters import Hyperparameters
from tnode.weights import WeightVector

from .codec import public_key_field
from .registration import register_burn, register_pow
from .store import State

MAX_COMMITS = 10
MAX_ADDRS = 8
MAX_ADDR_LEN = 256

Handler = Callable[[State, Hyperparameters, int, str, dict[str, Any]], dict[str, Any]]


def _amount(args: dict[str, Any]) -> int:
    amount = args.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ChainError("invalid_amount", "amount must be a positive integer number of base units")
    return amount


def _uid(st: State, hotkey: str) -> int:
    uid = st.uid_of(hotkey)
    if uid is None:
        raise ChainError("not_registered", f"hotkey {hotkey[:16]}… has no uid on subnet {st.netuid}")
    return uid


def _int_list(args: dict[str, Any], name: str) -> list[int]:
    value = args.get(name)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ChainError("invalid_args", f"{name} must be a list of integers")
    return list(value)


def _rate_limit(st: State, uid: int, column: str, limit: int, current: int, what: str) -> None:
    last = st.conn.execute(f"SELECT {column} FROM neurons WHERE netuid = ? AND uid = ?", (st.netuid, uid)).fetchone()[0]
    if last is not None and current - int(last) < limit:
        raise ChainError("rate_limited",
                         f"{what} at most every {limit} blocks; last at block {last}, next allowed at {int(last) + limit}")


# --------------------------------------------------------------------------- balances and stake
def transfer(st: State, hp: Hyperparameters, current: int, signer: str, args: dict[str, Any]) -> dict[str, Any]:
    dest, amount = public_key_field(args, "dest"), _amount(args)
    st.debit(signer, amount)
    st.credit(dest, amount)
    return {"balance": st.balance(signer)}


def add_stake(st: State, hp: Hyperparameters, current: int, signer: str, args: dict[str, Any]) -> dict[str, Any]:
    hotkey, amount = public_key_field(args, "hotkey"), _amount(args)
    if st.owner(hotkey) is None:
        raise ChainError("unknown_hotkey", "stake can only be added to a hotkey that was registered")
    st.debit(signer, amount)
    st.change_stake(signer, hotkey, amount)
    return {"stake": st.stake(signer, hotkey)}


def remove_stake(st: State, hp: Hyperparameters, current: int, signer: str, args: dict[str, Any]) -> dict[str, Any]:
    hotkey, amount = public_key_field(args, "hotkey"), _amount(args)
    have = st.stake(signer, hotkey)
    if have < amount:
        raise ChainError("insufficient_stake", f"stake on this hotkey is {have}, less than {amount} base units")
    st.change_stake(signer, hotkey, -amount)
    st.credit(signer, amount)
    return {"stake": have - amount}


# --------------------------------------------------------------------------- weights
def _pack_u16(values: tuple[int, ...]) -> bytes:
    return struct.pack(f"<{len(values)}H", *values)


def _store_weights(st: State, uid: int, stored: WeightVector, current: int) -> None:
    st.conn.execute(
        "INSERT INTO weights (netuid, uid, uids, vals) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(netuid, uid) DO UPDATE SET uids = excluded.uids, vals = excluded.vals",
        (st.netuid, uid, _pack_u16(stored.uids), _pack_u16(stored.values)),
    )
    st.conn.execute("UPDATE neurons SET last_update = ? WHERE netuid = ? AND uid = ?", (current, st.netuid, uid))
    st.mark_dirty(uid)


def _vector(args: dict[str, Any]) -> tuple[WeightVector, int]:
    """The transaction's weight vector (shape checked by :class:`WeightVector`) and version key."""
    vector = WeightVector(tuple(_int_list(args, "uids")), tuple(_int_list(args, "weights")))
    version_key = args.get("version_key", 0)
    if not isinstance(version_key, int) or isinstance(version_key, bool) or not 0 <= version_key < 2**64:
        raise ChainError("invalid_args", "version_key must be an integer in 0..2^64-1")
    return vector, version_key


def _checked(st: State, hp: Hyperparameters, vector: WeightVector, version_key: int) -> WeightVector:
    return vector.validate(n=st.n(), min_allowed_weights=hp.min_allowed_weights,
                           max_weight_limit=hp.max_weight_limit, version_key=version_key,
                           weights_version=hp.weights_version)


def set_weights(st: State, hp: Hyperparameters, current: int, signer: str, args: dict[str, Any]) -> dict[str, Any]:
    if hp.commit_reveal_weights_enabled:
        raise ChainError("commit_reveal_enabled", "this subnet takes weights by commit_weights + reveal_weights")
    uid = _uid(st, signer)
    vector, version_key = _vector(args)
    _rate_limit(st, uid, "weights_set_at", hp.weights_rate_limit, current, "weights may be set")
    stored = _checked(st, hp, vector, version_key)
    _store_weights(st, uid, stored, current)
    st.conn.execute("UPDATE neurons SET weights_set_at = ? WHERE netuid = ? AND uid = ?", (current, st.netuid, uid))
    return {"uid": uid, "count": len(stored.uids)}


def commit_weights(st: State, hp: Hyperparameters, current: int, signer: str, args: dict[str, Any]) -> dict[str, Any]:
    if not hp.commit_reveal_weights_enabled:
        raise ChainError("commit_reveal_disabled", "this subnet takes weights with set_weights")
    uid = _uid(st, signer)
    digest = args.get("hash")
    if not isinstance(digest, str) or len(digest) != 64 or digest != digest.lower():
        raise ChainError("invalid_args", "hash must be 64 lowercase hex characters")
    try:
        bytes.fromhex(digest)
    except ValueError:
        raise ChainError("invalid_args", "hash must be 64 lowercase hex characters") from None
    _rate_limit(st, uid, "weights_set_at", hp.weights_rate_limit, current, "weights may be committed")
    live = st.conn.execute("SELECT COUNT(*) FROM commits WHERE netuid = ? AND hotkey = ? AND block + ? > ?",
                           (st.netuid, signer, hp.commit_reveal_period + hp.commit_reveal_window, current)).fetchone()[0]
    if live >= MAX_COMMITS:
        raise ChainError("too_many_commits", f"at most {MAX_COMMITS} unrevealed commits per hotkey")
    st.conn.execute("INSERT INTO commits (netuid, hotkey, hash, block) VALUES (?, ?, ?, ?)",
                    (st.netuid, signer, digest, current))
    st.conn.execute("UPDATE neurons SET weights_set_at = ? WHERE netuid = ? AND uid = ?", (current, st.netuid, uid))
    return {"uid": uid, "reveal_from": current + hp.commit_reveal_period,
            "reveal_until": current + hp.commit_reveal_period + hp.commit_reveal_window - 1}


def reveal_weights(st: State, hp: Hyperparameters, current: int, signer: str, args: dict[str, Any]) -> dict[str, Any]:
    if not hp.commit_reveal_weights_enabled:
        raise ChainError("commit_reveal_disabled", "this subnet takes weights with set_weights")
    uid = _uid(st, signer)
    vector, version_key = _vector(args)
    salt = args.get("salt")
    if not isinstance(salt, str):
        raise ChainError("invalid_args", "salt must be a string")
    digest = vector.commit_hash(signer, salt, version_key)
    rows = st.conn.execute("SELECT id, block FROM commits WHERE netuid = ? AND hotkey = ? AND hash = ? ORDER BY block",
                           (st.netuid, signer, digest)).fetchall()
    if not rows:
        has_any = st.conn.execute("SELECT 1 FROM commits WHERE netuid = ? AND hotkey = ?",
                                  (st.netuid, signer)).fetchone()
        if has_any:
            raise ChainError("commit_mismatch",
                             "no commit of this hotkey matches these uids, weights, salt and version_key")
        raise ChainError("no_commit", "this hotkey has no weight commit to reveal")
    for commit_id, block in rows:
        opens, closes = block + hp.commit_reveal_period, block + hp.commit_reveal_period + hp.commit_reveal_window
        if current < opens:
            raise ChainError("reveal_too_early", f"the commit of block {block} can be revealed from block {opens}")
        if current < closes:
            stored = _checked(st, hp, vector, version_key)
            st.conn.execute("DELETE FROM commits WHERE id = ?", (commit_id,))
            _store_weights(st, uid, stored, current)
            return {"uid": uid, "count": len(stored.uids), "commit_block": block}
    raise ChainError("commit_expired", f"the matching commit expired at block {closes - 1}")


# --------------------------------------------------------------------------- serving
def publish_addrs(st: State, hp: Hyperparameters, current: int, signer: str, args: dict[str, Any]) -> dict[str, Any]:
    uid = _uid(st, signer)
    addrs, peer_id = args.get("addrs"), args.get("peer_id", "")
    if (not isinstance(addrs, list) or len(addrs) > MAX_ADDRS
            or not all(isinstance(a, str) and a.startswith("/") and len(a) <= MAX_ADDR_LEN for a in addrs)):
        raise ChainError("invalid_args", f"addrs must be at most {MAX_ADDRS} multiaddrs of ≤ {MAX_ADDR_LEN} characters")
    if not isinstance(peer_id, str) or len(peer_id) > 128:
        raise ChainError("invalid_args", "peer_id must be a string of at most 128 characters")
    _rate_limit(st, uid, "addrs_set_at", hp.serving_rate_limit, current, "addresses may be published")
    st.conn.execute("UPDATE neurons SET addrs = ?, peer_id = ?, addrs_set_at = ? WHERE netuid = ? AND uid = ?",
                    (orjson.dumps(addrs).decode(), peer_id, current, st.netuid, uid))
    st.mark_dirty(uid)
    return {"uid": uid}


SUBNET_CALLS = frozenset({"register", "burned_register", "set_weights", "commit_weights", "reveal_weights",
                          "publish_addrs"})
"""Calls that act on one subnet: they take an optional ``netuid`` argument (absent: the chain's first
subnet, so transactions written before subnets keep their meaning). Balances and stake are per key,
shared by every subnet."""

ARGS: dict[str, frozenset[str]] = {
    "register": frozenset({"coldkey", "block", "nonce", "netuid"}),
    "burned_register": frozenset({"hotkey", "netuid"}),
    "transfer": frozenset({"dest", "amount"}),
    "add_stake": frozenset({"hotkey", "amount"}),
    "remove_stake": frozenset({"hotkey", "amount"}),
    "set_weights": frozenset({"uids", "weights", "version_key", "netuid"}),
    "commit_weights": frozenset({"hash", "netuid"}),
    "reveal_weights": frozenset({"uids", "weights", "salt", "version_key", "netuid"}),
    "publish_addrs": frozenset({"addrs", "peer_id", "netuid"}),
}
"""The arguments each call accepts; anything else is refused (``invalid_args``)."""

HANDLERS: dict[str, Handler] = {
    "register": register_pow,
    "burned_register": register_burn,
    "transfer": transfer,
    "add_stake": add_stake,
    "remove_stake": remove_stake,
    "set_weights": set_weights,
    "commit_weights": commit_weights,
    "reveal_weights": reveal_weights,
    "publish_addrs": publish_addrs,
}
