"""Registration: proof-of-work and burn, uid assignment with pruning, and difficulty/burn adjustment.

A PoW registration is signed by the hotkey (it consents to being registered) and names its owning
coldkey; a burn registration is signed by the coldkey, which pays. When the subnet is full the new
hotkey takes the uid of the non-immune neuron with the lowest emission (ties: earliest
registration, then lowest uid); if every neuron is still immune the registration is refused.
"""

from __future__ import annotations

from typing import Any

from tnode.errors import ChainError
from tnode.hyperparameters import Hyperparameters

from . import pow as pow_
from .codec import is_public_key_hex, tokens_to_units
from .store import State

MAX_NONCE = 2**64 - 1


def _check_rate(st: State, hp: Hyperparameters) -> None:
    if int(st.get("regs_block", 0)) >= hp.max_registrations_per_block:
        raise ChainError("too_many_registrations",
                         f"this block already has {hp.max_registrations_per_block} registration(s); retry next block")
    interval = int(st.get("pow_regs_interval", 0)) + int(st.get("burn_regs_interval", 0))
    if interval >= hp.max_registrations_per_interval:
        raise ChainError("too_many_registrations",
                         f"this adjustment interval already has {interval} registrations; retry later")


def _check_hotkey(st: State, hotkey: str, coldkey: str) -> None:
    if st.uid_of(hotkey) is not None:
        raise ChainError("already_registered",
                         f"hotkey {hotkey[:16]}… already has uid {st.uid_of(hotkey)} on subnet {st.netuid}")
    owner = st.owner(hotkey)
    if owner is not None and owner != coldkey:
        raise ChainError("hotkey_owned", "this hotkey belongs to another coldkey")


def register_pow(st: State, hp: Hyperparameters, current: int, hotkey: str, args: dict[str, Any]) -> dict[str, Any]:
    """``register``: signer = hotkey; args ``{coldkey, block, nonce}`` — a seal over block ``block``'s hash."""
    coldkey, block, nonce = args.get("coldkey"), args.get("block"), args.get("nonce")
    if not is_public_key_hex(coldkey):
        raise ChainError("invalid_args", "coldkey must be a 64-character lowercase hex public key")
    if not isinstance(block, int) or isinstance(block, bool) or not isinstance(nonce, int) or isinstance(nonce, bool):
        raise ChainError("invalid_args", "block and nonce must be integers")
    if not 0 <= nonce <= MAX_NONCE:
        raise ChainError("invalid_args", "nonce must be a u64")
    # Seals are recorded in SQLite's signed 64-bit INTEGER; store them as the same bits, shifted.
    stored_nonce = nonce - (1 << 63)
    head = current - 1
    if block > head:
        raise ChainError("unknown_block", f"block {block} is not sealed yet (head is {head})")
    if block < 0 or head - block >= hp.pow_block_window:
        raise ChainError("stale_block",
                         f"the seal is over block {block}; only the last {hp.pow_block_window} blocks "
                         f"({max(0, head - hp.pow_block_window + 1)}..{head}) are accepted")
    _check_hotkey(st, hotkey, str(coldkey))
    _check_rate(st, hp)
    row = st.conn.execute("SELECT hash FROM blocks WHERE number = ?", (block,)).fetchone()
    difficulty = int(st.get("difficulty"))
    if not pow_.verify(bytes(row[0]), bytes.fromhex(hotkey), nonce, difficulty):
        raise ChainError("invalid_seal", f"the seal does not meet difficulty {difficulty} for this hotkey and block")
    if st.conn.execute("SELECT 1 FROM used_seals WHERE netuid = ? AND hotkey = ? AND block = ? AND nonce = ?",
                       (st.netuid, hotkey, block, stored_nonce)).fetchone():
        raise ChainError("seal_used", "this seal was already used")
    st.conn.execute("INSERT INTO used_seals (netuid, hotkey, block, nonce) VALUES (?, ?, ?, ?)",
                    (st.netuid, hotkey, block, stored_nonce))
    st.add("pow_regs_interval", 1)
    return place(st, hp, current, hotkey, str(coldkey))


def register_burn(st: State, hp: Hyperparameters, current: int, coldkey: str, args: dict[str, Any]) -> dict[str, Any]:
    """``burned_register``: signer = coldkey, which pays the current burn; args ``{hotkey}``."""
    hotkey = args.get("hotkey")
    if not is_public_key_hex(hotkey):
        raise ChainError("invalid_args", "hotkey must be a 64-character lowercase hex public key")
    _check_hotkey(st, str(hotkey), coldkey)
    _check_rate(st, hp)
    cost = int(st.get("burn"))
    st.debit(coldkey, cost)
    st.add("issuance", -cost)
    st.add("burn_regs_interval", 1)
    result = place(st, hp, current, str(hotkey), coldkey)
    result["burned"] = cost
    return result


def prune_candidate(st: State, hp: Hyperparameters, current: int) -> int | None:
    """The uid a registration replaces in a full subnet, or ``None`` when every uid is immune."""
    row = st.conn.execute(
        "SELECT uid FROM neurons WHERE netuid = ? AND registered_at <= ? "
        "ORDER BY emission ASC, registered_at ASC, uid ASC LIMIT 1",
        (st.netuid, current - hp.immunity_period),
    ).fetchone()
    return None if row is None else int(row[0])


def _strip_column(st: State, table: str, uid: int) -> None:
    """Remove ``uid`` from every row of a sparse (weights or bonds) table."""
    import numpy as np

    rows = st.conn.execute(f"SELECT uid, uids, vals FROM {table} WHERE netuid = ?", (st.netuid,)).fetchall()
    for row_uid, ublob, vblob in rows:
        uids = np.frombuffer(ublob, dtype="<u2")
        keep = uids != uid
        if keep.all():
            continue
        vdtype = "<u2" if table == "weights" else "<f8"
        vals = np.frombuffer(vblob, dtype=vdtype)
        st.conn.execute(f"UPDATE {table} SET uids = ?, vals = ? WHERE netuid = ? AND uid = ?",
                        (uids[keep].tobytes(), vals[keep].tobytes(), st.netuid, row_uid))


def place(st: State, hp: Hyperparameters, current: int, hotkey: str, coldkey: str) -> dict[str, Any]:
    """Give ``hotkey`` a uid: the next free one, or the pruned one when the subnet is full."""
    n = st.n()
    replaced: str | None = None
    if n < hp.max_allowed_uids:
        uid = n
    else:
        found = prune_candidate(st, hp, current)
        if found is None:
            raise ChainError("subnet_full",
                             f"all {n} uids are within their immunity period ({hp.immunity_period} blocks)")
        uid = found
        key = (st.netuid, uid)
        replaced = str(st.conn.execute("SELECT hotkey FROM neurons WHERE netuid = ? AND uid = ?", key).fetchone()[0])
        st.conn.execute("DELETE FROM neurons WHERE netuid = ? AND uid = ?", key)
        st.conn.execute("DELETE FROM weights WHERE netuid = ? AND uid = ?", key)
        st.conn.execute("DELETE FROM bonds WHERE netuid = ? AND uid = ?", key)
        st.conn.execute("DELETE FROM commits WHERE netuid = ? AND hotkey = ?", (st.netuid, replaced))
        _strip_column(st, "weights", uid)
        _strip_column(st, "bonds", uid)
    st.conn.execute(
        "INSERT INTO neurons (netuid, uid, hotkey, registered_at, last_update) VALUES (?, ?, ?, ?, ?)",
        (st.netuid, uid, hotkey, current, current),
    )
    st.set_owner(hotkey, coldkey)
    st.mark_dirty(uid)
    st.add("regs_block", 1)
    return {"uid": uid, "hotkey": hotkey, "coldkey": coldkey, "replaced": replaced}


def adjust(current: int, registrations: int, hp: Hyperparameters, lo: int, hi: int) -> int:
    """Next difficulty (or burn) after an interval with ``registrations`` registrations."""
    return pow_.next_difficulty(
        current,
        registrations,
        target=hp.target_registrations_per_interval,
        alpha=hp.adjustment_alpha,
        minimum=lo,
        maximum=hi,
    )


def on_block(st: State, hp: Hyperparameters, number: int) -> None:
    """Per-block bookkeeping at the end of block ``number``."""
    st.put("regs_block", 0)
    st.conn.execute("DELETE FROM used_seals WHERE netuid = ? AND block < ?", (st.netuid, number - hp.pow_block_window))
    if number % hp.adjustment_interval == 0:
        pow_regs = int(st.get("pow_regs_interval", 0))
        burn_regs = int(st.get("burn_regs_interval", 0))
        st.put("difficulty", adjust(int(st.get("difficulty")), pow_regs, hp, hp.min_difficulty, hp.max_difficulty))
        st.put("burn", adjust(int(st.get("burn")), burn_regs, hp, tokens_to_units(hp.min_burn),
                                  tokens_to_units(hp.max_burn)))
        st.put("pow_regs_interval", 0)
        st.put("burn_regs_interval", 0)
