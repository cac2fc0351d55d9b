"""Metagraph views of the ledger (live and at past blocks) and their wire format.

Stake and emission are reported in tokens (float) in :class:`tnode.interfaces.Neuron`, as ML code
expects; transaction amounts elsewhere are integer base units. Weight matrices hold the stored u16
values divided by 65535 (each row max-upscaled to 1.0); bond matrices hold the stored bonds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from tnode.errors import ChainError, ConfigError, ConfigErrors
from tnode.hyperparameters import Hyperparameters
from tnode.interfaces import Metagraph, Neuron

from .codec import TOKEN
from .store import State

_ROW_FIELDS = ("rank", "trust", "consensus", "incentive", "dividends", "validator_trust")


def history_record(row: dict[str, Any], coldkey: str, stake: int) -> str:
    """The JSON stored in ``neuron_history`` for one uid at one block."""
    doc = dict(row)
    doc["coldkey"] = coldkey
    doc["stake"] = stake
    return orjson.dumps(doc).decode()


def _neuron(doc: dict[str, Any], block: int, activity_cutoff: int) -> Neuron:
    addrs = doc["addrs"]
    if isinstance(addrs, str):
        addrs = orjson.loads(addrs)
    return Neuron(
        uid=int(doc["uid"]),
        hotkey=str(doc["hotkey"]),
        coldkey=str(doc["coldkey"]),
        stake=int(doc["stake"]) / TOKEN,
        emission=int(doc["emission"]) / TOKEN,
        validator_permit=bool(doc["validator_permit"]),
        last_update=int(doc["last_update"]),
        registered_at=int(doc["registered_at"]),
        active=block - int(doc["last_update"]) <= activity_cutoff,
        addrs=tuple(addrs),
        peer_id=str(doc["peer_id"]),
        **{name: float(doc[name]) for name in _ROW_FIELDS},
    )


def live_neurons(st: State, block: int, activity_cutoff: int) -> tuple[Neuron, ...]:
    """Neurons as of now (sealed blocks plus transactions waiting for the next block)."""
    stakes = st.stake_by_hotkey()
    owners = dict(st.conn.execute("SELECT hotkey, coldkey FROM owners").fetchall())
    out = []
    for row in st.neurons():
        doc = dict(row, coldkey=owners.get(row["hotkey"], ""), stake=stakes.get(row["hotkey"], 0))
        out.append(_neuron(doc, block, activity_cutoff))
    return tuple(out)


def past_neurons(st: State, block: int, activity_cutoff: int) -> tuple[Neuron, ...]:
    """Neurons as sealed in block ``block``, from the per-block history of changed uids."""
    rows = st.conn.execute(
        "SELECT h.data FROM neuron_history h WHERE h.netuid = ? AND h.block = "
        "(SELECT MAX(block) FROM neuron_history WHERE netuid = h.netuid AND uid = h.uid AND block <= ?) ORDER BY h.uid",
        (st.netuid, block),
    ).fetchall()
    return tuple(_neuron(orjson.loads(r[0]), block, activity_cutoff) for r in rows)


def dense(st: State, table: str, n: int) -> np.ndarray:
    """Dense (n, n) float32 matrix of the weights or bonds table."""
    out = np.zeros((n, n), dtype=np.float32)
    vdtype = "<u2" if table == "weights" else "<f8"
    for uid, ublob, vblob in st.conn.execute(f"SELECT uid, uids, vals FROM {table} WHERE netuid = ?", (st.netuid,)):
        if uid >= n:
            continue
        cols = np.frombuffer(ublob, dtype="<u2").astype(np.int64)
        vals = np.frombuffer(vblob, dtype=vdtype).astype(np.float32)
        keep = cols < n
        out[uid, cols[keep]] = vals[keep]
    if table == "weights":
        out /= 65535.0
    return out


# --------------------------------------------------------------------------- wire format
_COLUMNS = ("uid", "hotkey", "coldkey", "stake", "rank", "trust", "consensus", "incentive", "dividends",
            "emission", "validator_trust", "validator_permit", "last_update", "registered_at", "active", "addrs",
            "peer_id")


def _sparse(matrix: np.ndarray | None) -> list[list[Any]] | None:
    if matrix is None:
        return None
    rows = []
    for i in np.flatnonzero(matrix.any(axis=1)):
        cols = np.flatnonzero(matrix[i])
        rows.append([int(i), cols.tolist(), matrix[i, cols].astype(float).tolist()])
    return rows


def hyperparameters_from_wire(doc: Any) -> Hyperparameters:
    """Decode the authority's hyperparameters; a key or value this node does not know is refused."""
    try:
        return Hyperparameters.from_mapping(doc, source="hyperparameters")
    except ConfigError as exc:
        problems = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        detail = "; ".join(f"{e.key_path}: {e.message}" + (f" ({e.hint})" if e.hint else "") for e in problems)
        raise ChainError("invalid_response", f"the authority sent hyperparameters this node cannot read: {detail}"
                         ) from None


def to_wire(mg: Metagraph) -> dict[str, Any]:
    """Column-oriented JSON-able form (matrices as sparse rows ``[uid, [cols], [values]]``)."""
    cols: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    for nr in mg.neurons:
        for c in _COLUMNS:
            value = getattr(nr, c)
            cols[c].append(list(value) if isinstance(value, tuple) else value)
    return {"block": mg.block, "netuid": mg.netuid, "hyperparameters": mg.hyperparameters.to_dict(), "neurons": cols,
            "weights": _sparse(mg.weights), "bonds": _sparse(mg.bonds)}


def _unsparse(rows: list[list[Any]] | None, n: int) -> np.ndarray | None:
    if rows is None:
        return None
    out = np.zeros((n, n), dtype=np.float32)
    for uid, cols, vals in rows:
        out[int(uid), np.asarray(cols, dtype=np.int64)] = np.asarray(vals, dtype=np.float32)
    return out


def from_wire(doc: dict[str, Any]) -> Metagraph:
    cols = doc["neurons"]
    n = len(cols["uid"])
    neurons = []
    for i in range(n):
        values = {c: cols[c][i] for c in _COLUMNS}
        values["addrs"] = tuple(values["addrs"])
        neurons.append(Neuron(**values))
    return Metagraph(block=int(doc["block"]), netuid=int(doc["netuid"]), neurons=tuple(neurons),
                     hyperparameters=hyperparameters_from_wire(doc.get("hyperparameters")),
                     weights=_unsparse(doc.get("weights"), n), bonds=_unsparse(doc.get("bonds"), n))
