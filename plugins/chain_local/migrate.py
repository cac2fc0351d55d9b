"""Upgrading a ledger written in an earlier format, in place, after a backup copy.

Format 1 (one subnet, before subnets) → 2: every per-uid table gains a ``netuid`` column holding
the chain's netuid (meta ``netuid``), the subnet's own meta keys become ``key@netuid``, and the
subnet list and chain rules are written the way a single-subnet genesis writes them in format 2.
The genesis document and hash do not change (a single-subnet genesis hashes as it did), so blocks,
transactions and signatures stay valid. The whole upgrade is one SQLite transaction: it happens
completely or not at all, and the backup (``<file>.v1-backup``, made first with SQLite's online
backup) is the chain exactly as format 1 left it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
from tnode.errors import ChainError

# Per-uid tables of format 1 and the column lists they keep (netuid goes in front).
_TABLES = {
    "neurons": ("uid, hotkey, registered_at, last_update, weights_set_at, addrs_set_at, rank, trust, consensus, "
                "incentive, dividends, emission, validator_trust, validator_permit, addrs, peer_id"),
    "weights": "uid, uids, vals",
    "bonds": "uid, uids, vals",
    "commits": "id, hotkey, hash, block",
    "used_seals": "hotkey, block, nonce",
    "dirty": "uid",
    "neuron_history": "uid, block, data",
}


def backup_path(path: Path) -> Path:
    """``<file>.v1-backup``, or ``<file>.v1-backup.N`` when that exists already."""
    candidate = path.with_name(path.name + ".v1-backup")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.v1-backup.{n}")
        n += 1
    return candidate


def migrate_v1(conn: sqlite3.Connection, path: Path, schema: str, subnet_keys: frozenset[str]) -> Path:
    """Upgrade the format-1 ledger open on ``conn`` to format 2 (``schema`` is format 2's DDL);
    returns the backup's path. Raises :class:`ChainError` ``ledger_format`` if the file does not
    look like a format-1 ledger (nothing is changed then)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'netuid'").fetchone()
    if row is None or conn.execute("SELECT value FROM meta WHERE key = 'hyperparameters'").fetchone() is None:
        raise ChainError("ledger_format", f"{path} has a neurons table of format 1 but no netuid or "
                                          f"hyperparameters in its meta table: not a ledger tnode wrote; it was "
                                          f"left unchanged")
    netuid = int(orjson.loads(row[0]))
    backup = backup_path(path)
    target = sqlite3.connect(str(backup))
    try:
        conn.backup(target)
    finally:
        target.close()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in _TABLES:
            conn.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
        # Indexes keep their names when their table is renamed; format 2 makes its own.
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                    "AND tbl_name LIKE '%_v1'").fetchall():
            conn.execute(f"DROP INDEX {name}")
        for statement in _statements(schema):
            conn.execute(statement)
        for table, columns in _TABLES.items():
            conn.execute(f"INSERT INTO {table} (netuid, {columns}) SELECT ?, {columns} FROM {table}_v1", (netuid,))
            conn.execute(f"DROP TABLE {table}_v1")
        for key in subnet_keys:
            conn.execute("UPDATE meta SET key = ? WHERE key = ?", (f"{key}@{netuid}", key))
        rules = conn.execute("SELECT value FROM meta WHERE key = ?", (f"hyperparameters@{netuid}",)).fetchone()[0]
        put = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"
        conn.execute(put, ("chain_hyperparameters", rules))
        conn.execute(put, ("subnets", orjson.dumps([{"netuid": netuid, "modality": "", "emission_share": 1.0}])
                           .decode()))
        conn.execute(put, ("schema_version", "2"))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return backup


def _statements(schema: str) -> list[str]:
    """The DDL split into statements (``executescript`` would commit the open transaction)."""
    return [s.strip() for s in schema.split(";") if s.strip()]
