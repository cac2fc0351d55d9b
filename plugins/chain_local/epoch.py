"""One epoch: dense arrays from the ledger → Yuma consensus → emission paid out → results stored.

Validator permits go to the top ``max_allowed_validators`` hotkeys by total stake (ties: lower uid),
recomputed at the start of every epoch and used by that epoch. The pending emission (accrued
``block_emission`` per block) is split as :func:`yuma.epoch` shares it: half by normalized
incentive, half by normalized dividends (a half with no weight behind it goes to the other; with
neither, emission follows active stake, else stake, as in subtensor). Incentive is added to the stake of the hotkey's
owning coldkey; dividends are added to the stakes of the hotkey's stakers pro rata (the rounding
remainder goes to the owner). Amounts are floored to base units; what rounding leaves stays pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tnode.hyperparameters import Hyperparameters

from .store import State

if TYPE_CHECKING:
    from tnode.yuma import YumaParams


@dataclass(frozen=True, slots=True)
class EpochOutcome:
    """What an epoch produced (per-uid tuples are indexed by uid)."""

    block: int
    incentive: tuple[float, ...]
    dividends: tuple[float, ...]
    emission: tuple[int, ...]  # base units paid to each uid this epoch
    consensus: tuple[float, ...]
    trust: tuple[float, ...]
    validator_trust: tuple[float, ...]
    rank: tuple[float, ...]
    validator_permit: tuple[bool, ...]
    netuid: int = 0


def validator_permits(stake: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` by stake (ties broken by the lower uid)."""
    n = len(stake)
    order = np.lexsort((np.arange(n), -stake))
    permit = np.zeros(n, dtype=bool)
    permit[order[:k]] = True
    return permit


def _load_rows(st: State, table: str, rows: np.ndarray, n: int) -> np.ndarray:
    """Dense (len(rows), n) float32 matrix of a sparse table (weights: stored u16; bonds: as stored)."""
    index = {int(uid): i for i, uid in enumerate(rows)}
    out = np.zeros((len(rows), n), dtype=np.float32)
    vdtype = "<u2" if table == "weights" else "<f8"
    for uid, ublob, vblob in st.conn.execute(f"SELECT uid, uids, vals FROM {table} WHERE netuid = ?", (st.netuid,)):
        i = index.get(int(uid))
        if i is None:
            continue
        cols = np.frombuffer(ublob, dtype="<u2").astype(np.int64)
        vals = np.frombuffer(vblob, dtype=vdtype)
        keep = cols < n
        out[i, cols[keep]] = vals[keep]
    return out


def _params(hp: Hyperparameters) -> YumaParams:
    # torch (behind yuma) is imported on the first epoch, not when plugins load.
    from tnode.yuma import YumaParams

    return YumaParams(kappa=hp.kappa, bonds_penalty=hp.bonds_penalty, bonds_moving_average=hp.bonds_moving_average)


def _pay(st: State, hotkeys: list[str], incentive_amount: np.ndarray, dividend_amount: np.ndarray) -> None:
    """Add each uid's emission to stake: incentive to the owner, dividends pro rata to the stakers."""
    owners = dict(st.conn.execute("SELECT hotkey, coldkey FROM owners").fetchall())
    stakers: dict[str, list[tuple[str, int]]] = {}
    for coldkey, hotkey, amount in st.conn.execute("SELECT coldkey, hotkey, amount FROM stakes ORDER BY coldkey"):
        stakers.setdefault(str(hotkey), []).append((str(coldkey), int(amount)))
    deltas: dict[tuple[str, str], int] = {}
    for uid in np.flatnonzero(incentive_amount + dividend_amount):
        hotkey = hotkeys[uid]
        owner = owners.get(hotkey)
        if owner is None:  # every registered hotkey has an owner; defensive for damaged databases
            continue
        dividend, paid = int(dividend_amount[uid]), 0
        holders = stakers.get(hotkey, [])
        total = sum(a for _, a in holders)
        if dividend > 0 and total > 0:
            for coldkey, amount in holders:
                part = dividend * amount // total
                if part:
                    deltas[(coldkey, hotkey)] = deltas.get((coldkey, hotkey), 0) + part
                    paid += part
        rest = int(incentive_amount[uid]) + dividend - paid
        if rest > 0:
            deltas[(owner, hotkey)] = deltas.get((owner, hotkey), 0) + rest
    st.conn.executemany(
        "INSERT INTO stakes (coldkey, hotkey, amount) VALUES (?, ?, ?) "
        "ON CONFLICT(coldkey, hotkey) DO UPDATE SET amount = amount + excluded.amount",
        [(c, h, d) for (c, h), d in deltas.items()],
    )


def run_epoch(st: State, hp: Hyperparameters, number: int, *,
              stake_factors: Mapping[str, float] | None = None) -> EpochOutcome | None:
    """Run Yuma at the end of block ``number`` and pay out the pending emission.

    With no neurons there is nothing to run: the emission stays pending for the next epoch.
    ``stake_factors`` (hotkey → factor in [0, 1]) scale the stake the named validators' weights carry
    in this epoch (consensus, bonds, hence dividends); permits and payouts still follow real stake.
    """
    neurons = st.neurons()
    n = len(neurons)
    if n == 0:
        return None
    stakes = st.stake_by_hotkey()
    hotkeys = [str(r["hotkey"]) for r in neurons]
    stake = np.array([stakes.get(h, 0) for h in hotkeys], dtype=np.float64)
    last_update = np.array([int(r["last_update"]) for r in neurons], dtype=np.int64)
    registered_at = np.array([int(r["registered_at"]) for r in neurons], dtype=np.int64)
    active = (number - last_update) <= hp.activity_cutoff
    permit = validator_permits(stake, hp.max_allowed_validators)
    rows = np.flatnonzero(permit)
    from tnode.yuma import epoch as yuma_epoch

    weighing = stake.copy()
    for uid, hotkey in enumerate(hotkeys):
        if stake_factors and hotkey in stake_factors:
            weighing[uid] *= min(1.0, max(0.0, float(stake_factors[hotkey])))
    result = yuma_epoch(
        _load_rows(st, "weights", rows, n), weighing, _load_rows(st, "bonds", rows, n), _params(hp),
        active=active, validator_permit=permit, last_update=last_update, registered_at=registered_at,
        row_uids=rows, reset_bonds=registered_at > number - hp.tempo,
    )
    pending = int(st.get("pending_emission", 0))
    inc_amount = np.floor(np.asarray(result.server_emission) * pending).astype(np.int64)
    div_amount = np.floor(np.asarray(result.validator_emission) * pending).astype(np.int64)
    emission = inc_amount + div_amount
    _pay(st, hotkeys, inc_amount, div_amount)
    st.put("pending_emission", pending - int(emission.sum()))
    rank, trust, consensus = (np.asarray(x, dtype=np.float64) for x in (result.rank, result.trust, result.consensus))
    incentive, dividends = np.asarray(result.incentive, np.float64), np.asarray(result.dividends, np.float64)
    vtrust = np.asarray(result.validator_trust, dtype=np.float64)
    st.conn.executemany(
        "UPDATE neurons SET rank = ?, trust = ?, consensus = ?, incentive = ?, dividends = ?, emission = ?, "
        "validator_trust = ?, validator_permit = ? WHERE netuid = ? AND uid = ?",
        [(float(rank[u]), float(trust[u]), float(consensus[u]), float(incentive[u]), float(dividends[u]),
          int(emission[u]), float(vtrust[u]), int(permit[u]), st.netuid, u) for u in range(n)],
    )
    _store_bonds(st, rows, np.asarray(result.bonds, dtype=np.float64))
    st.conn.executemany("INSERT OR IGNORE INTO dirty (netuid, uid) VALUES (?, ?)", [(st.netuid, u) for u in range(n)])
    return EpochOutcome(
        block=number,
        incentive=tuple(float(x) for x in incentive),
        dividends=tuple(float(x) for x in dividends),
        emission=tuple(int(x) for x in emission),
        consensus=tuple(float(x) for x in consensus),
        trust=tuple(float(x) for x in trust),
        validator_trust=tuple(float(x) for x in vtrust),
        rank=tuple(float(x) for x in rank),
        validator_permit=tuple(bool(x) for x in permit),
        netuid=st.netuid,
    )


def _store_bonds(st: State, rows: np.ndarray, bonds: np.ndarray) -> None:
    st.conn.execute("DELETE FROM bonds WHERE netuid = ?", (st.netuid,))
    records = []
    for i, uid in enumerate(rows):
        row = bonds[i]
        cols = np.flatnonzero(row > 0)
        if len(cols):
            records.append((st.netuid, int(uid), cols.astype("<u2").tobytes(), row[cols].astype("<f8").tobytes()))
    st.conn.executemany("INSERT INTO bonds (netuid, uid, uids, vals) VALUES (?, ?, ?, ?)", records)
