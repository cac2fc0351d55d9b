"""The ledger's SQLite schema and a typed view of its state tables.

One database file, WAL journal, ``synchronous=FULL``: a COMMIT returns only once the WAL is on
disk, so an acknowledged transaction survives kill -9 and power loss of the process. All access
goes through one connection guarded by the :class:`~.ledger.Ledger`'s lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
from tnode.errors import ChainError

SCHEMA_VERSION = 2
"""1: one subnet (no ``netuid`` columns); 2: subnets — every per-uid table is keyed by ``netuid``."""

SUBNET_KEYS = frozenset({"hyperparameters", "difficulty", "burn", "pending_emission", "regs_block",
                         "pow_regs_interval", "burn_regs_interval"})
"""Meta keys that every subnet keeps for itself (stored as ``key@netuid``)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, prev_hash BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL, tx_root BLOB NOT NULL, tx_count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS txs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, hash BLOB NOT NULL UNIQUE, signer TEXT NOT NULL,
    nonce INTEGER NOT NULL, call TEXT NOT NULL, args TEXT NOT NULL, signature BLOB NOT NULL,
    block INTEGER, result TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS txs_block ON txs (block);
CREATE TABLE IF NOT EXISTS accounts (
    key TEXT PRIMARY KEY, balance INTEGER NOT NULL DEFAULT 0, nonce INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS owners (hotkey TEXT PRIMARY KEY, coldkey TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stakes (
    coldkey TEXT NOT NULL, hotkey TEXT NOT NULL, amount INTEGER NOT NULL, PRIMARY KEY (coldkey, hotkey));
CREATE INDEX IF NOT EXISTS stakes_hotkey ON stakes (hotkey);
CREATE TABLE IF NOT EXISTS neurons (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL, registered_at INTEGER NOT NULL,
    last_update INTEGER NOT NULL, weights_set_at INTEGER, addrs_set_at INTEGER,
    rank REAL NOT NULL DEFAULT 0, trust REAL NOT NULL DEFAULT 0, consensus REAL NOT NULL DEFAULT 0,
    incentive REAL NOT NULL DEFAULT 0, dividends REAL NOT NULL DEFAULT 0, emission INTEGER NOT NULL DEFAULT 0,
    validator_trust REAL NOT NULL DEFAULT 0, validator_permit INTEGER NOT NULL DEFAULT 0,
    addrs TEXT NOT NULL DEFAULT '[]', peer_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (netuid, uid), UNIQUE (netuid, hotkey));
CREATE INDEX IF NOT EXISTS neurons_hotkey ON neurons (hotkey);
CREATE TABLE IF NOT EXISTS weights (netuid INTEGER NOT NULL, uid INTEGER NOT NULL, uids BLOB NOT NULL,
    vals BLOB NOT NULL, PRIMARY KEY (netuid, uid));
CREATE TABLE IF NOT EXISTS bonds (netuid INTEGER NOT NULL, uid INTEGER NOT NULL, uids BLOB NOT NULL,
    vals BLOB NOT NULL, PRIMARY KEY (netuid, uid));
CREATE TABLE IF NOT EXISTS commits (
    id INTEGER PRIMARY KEY AUTOINCREMENT, netuid INTEGER NOT NULL, hotkey TEXT NOT NULL, hash TEXT NOT NULL,
    block INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS commits_hotkey ON commits (netuid, hotkey);
CREATE TABLE IF NOT EXISTS used_seals (netuid INTEGER NOT NULL, hotkey TEXT NOT NULL, block INTEGER NOT NULL,
    nonce INTEGER NOT NULL, PRIMARY KEY (netuid, hotkey, block, nonce));
CREATE TABLE IF NOT EXISTS dirty (netuid INTEGER NOT NULL, uid INTEGER NOT NULL, PRIMARY KEY (netuid, uid));
CREATE TABLE IF NOT EXISTS neuron_history (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, block INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (netuid, uid, block));
"""

NEURON_COLUMNS = (
    "uid", "hotkey", "registered_at", "last_update", "weights_set_at", "addrs_set_at", "rank", "trust",
    "consensus", "incentive", "dividends", "emission", "validator_trust", "validator_permit", "addrs", "peer_id",
)


def connect(path: Path) -> tuple[sqlite3.Connection, Path | None]:
    """Open (creating) the ledger file with the durability settings the ledger relies on.

    A ledger of format 1 is upgraded in place first (see :mod:`.migrate`); the second value is
    then the backup it left, else ``None``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the ledger issues BEGIN IMMEDIATE / COMMIT itself.
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise ChainError("storage", f"{path}: cannot switch the ledger to WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=OFF")
    backup = None
    if _check_format(conn, path) == 1:
        from .migrate import migrate_v1

        try:
            backup = migrate_v1(conn, path, SCHEMA, SUBNET_KEYS)
        except BaseException:
            conn.close()
            raise
    conn.executescript(SCHEMA)
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    return conn, backup


def _check_format(conn: sqlite3.Connection, path: Path) -> int:
    """The format of the ledger in ``conn`` (a new file: this one); refuses formats it cannot read."""
    columns = [r[1] for r in conn.execute("PRAGMA table_info(neurons)").fetchall()]
    if columns and "netuid" not in columns:
        return 1  # one subnet, before subnets: upgraded in place
    if not columns:
        return SCHEMA_VERSION
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(orjson.loads(row[0])) if row else SCHEMA_VERSION
    if version != SCHEMA_VERSION:
        conn.close()
        raise ChainError("ledger_format", f"{path} is a ledger of format {version}; this tnode reads format "
                                          f"{SCHEMA_VERSION} (use the tnode that wrote it, or start a new chain)")
    return version


class State:
    """Reads and writes of the state tables (no transaction control: the caller holds one)."""

    def __init__(self, conn: sqlite3.Connection, netuid: int = 0) -> None:
        self.conn = conn
        self.netuid = netuid  # the subnet this view's neuron tables and subnet keys refer to

    def subnet(self, netuid: int) -> State:
        """The same state seen from subnet ``netuid``."""
        return State(self.conn, netuid)

    # ------------------------------------------------------------------ meta
    def _key(self, key: str) -> str:
        return f"{key}@{self.netuid}" if key in SUBNET_KEYS else key

    def get(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (self._key(key),)).fetchone()
        return default if row is None else orjson.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (self._key(key), orjson.dumps(value).decode()),
        )

    def add(self, key: str, delta: int) -> int:
        value = int(self.get(key, 0)) + delta
        self.put(key, value)
        return value

    # ------------------------------------------------------------------ accounts
    def balance(self, key: str) -> int:
        row = self.conn.execute("SELECT balance FROM accounts WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def nonce(self, key: str) -> int:
        row = self.conn.execute("SELECT nonce FROM accounts WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def credit(self, key: str, amount: int) -> None:
        self.conn.execute(
            "INSERT INTO accounts (key, balance) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET balance = balance + excluded.balance",
            (key, amount),
        )

    def debit(self, key: str, amount: int) -> None:
        have = self.balance(key)
        if have < amount:
            raise ChainError("insufficient_balance", f"balance {have} is less than {amount} base units")
        self.conn.execute("UPDATE accounts SET balance = balance - ? WHERE key = ?", (amount, key))

    def bump_nonce(self, key: str) -> None:
        self.conn.execute(
            "INSERT INTO accounts (key, nonce) VALUES (?, 1) ON CONFLICT(key) DO UPDATE SET nonce = nonce + 1", (key,)
        )

    # ------------------------------------------------------------------ stake
    def owner(self, hotkey: str) -> str | None:
        row = self.conn.execute("SELECT coldkey FROM owners WHERE hotkey = ?", (hotkey,)).fetchone()
        return None if row is None else str(row[0])

    def set_owner(self, hotkey: str, coldkey: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO owners (hotkey, coldkey) VALUES (?, ?)", (hotkey, coldkey))

    def stake(self, coldkey: str, hotkey: str) -> int:
        row = self.conn.execute(
            "SELECT amount FROM stakes WHERE coldkey = ? AND hotkey = ?", (coldkey, hotkey)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def change_stake(self, coldkey: str, hotkey: str, delta: int) -> None:
        new = self.stake(coldkey, hotkey) + delta
        if new < 0:
            raise ChainError("insufficient_stake", f"stake would become {new}")
        if new == 0:
            self.conn.execute("DELETE FROM stakes WHERE coldkey = ? AND hotkey = ?", (coldkey, hotkey))
        else:
            self.conn.execute(
                "INSERT INTO stakes (coldkey, hotkey, amount) VALUES (?, ?, ?) "
                "ON CONFLICT(coldkey, hotkey) DO UPDATE SET amount = excluded.amount",
                (coldkey, hotkey, new),
            )
        # Stake is per hotkey, shared by every subnet the hotkey is registered in.
        self.conn.execute("INSERT OR IGNORE INTO dirty (netuid, uid) SELECT netuid, uid FROM neurons WHERE hotkey = ?",
                          (hotkey,))

    def total_stake(self, hotkey: str) -> int:
        row = self.conn.execute("SELECT COALESCE(SUM(amount), 0) FROM stakes WHERE hotkey = ?", (hotkey,)).fetchone()
        return int(row[0])

    def stakers(self, hotkey: str) -> list[tuple[str, int]]:
        rows = self.conn.execute(
            "SELECT coldkey, amount FROM stakes WHERE hotkey = ? ORDER BY coldkey", (hotkey,)
        ).fetchall()
        return [(str(c), int(a)) for c, a in rows]

    def stake_by_hotkey(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT hotkey, SUM(amount) FROM stakes GROUP BY hotkey").fetchall()
        return {str(h): int(a) for h, a in rows}

    # ------------------------------------------------------------------ neurons
    def n(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM neurons WHERE netuid = ?", (self.netuid,)).fetchone()[0])

    def uid_of(self, hotkey: str) -> int | None:
        row = self.conn.execute("SELECT uid FROM neurons WHERE netuid = ? AND hotkey = ?",
                                (self.netuid, hotkey)).fetchone()
        return None if row is None else int(row[0])

    def neuron(self, uid: int) -> dict[str, Any] | None:
        row = self.conn.execute(f"SELECT {', '.join(NEURON_COLUMNS)} FROM neurons WHERE netuid = ? AND uid = ?",
                                (self.netuid, uid)).fetchone()
        return None if row is None else dict(zip(NEURON_COLUMNS, row, strict=True))

    def neurons(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(f"SELECT {', '.join(NEURON_COLUMNS)} FROM neurons WHERE netuid = ? ORDER BY uid",
                                 (self.netuid,)).fetchall()
        return [dict(zip(NEURON_COLUMNS, row, strict=True)) for row in rows]

    def mark_dirty(self, uid: int) -> None:
        self.conn.execute("INSERT OR IGNORE INTO dirty (netuid, uid) VALUES (?, ?)", (self.netuid, uid))
