"""Teachers' answers kept on disk, keyed by teacher hotkey and window hash, so a resumed run does not re-ask.

One SQLite file (WAL): per (hotkey, blake2b of the window's token bytes and k) the top-k ids
(uint8) and log-probabilities (float16) of every position. About 3·positions·k bytes a window.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import numpy as np


def window_key(window: np.ndarray, k: int) -> bytes:
    """The cache key of one window of token ids asked with ``k``."""
    data = np.ascontiguousarray(window, dtype=np.uint8).tobytes()
    return hashlib.blake2b(data + k.to_bytes(2, "little"), digest_size=16).digest()


class AnswerCache:
    """Teachers' top-k answers per window; thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (hotkey TEXT NOT NULL, window BLOB NOT NULL, "
                         "positions INTEGER NOT NULL, k INTEGER NOT NULL, ids BLOB NOT NULL, "
                         "logprobs BLOB NOT NULL, PRIMARY KEY (hotkey, window))")
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, hotkey: str, key: bytes) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids int64 (positions, k'), logprobs float32 (positions, k')) or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT positions, k, ids, logprobs FROM answers WHERE hotkey = ? AND window = ?",
                                   (hotkey, key)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        positions, k, ids, lp = row
        return (np.frombuffer(ids, dtype=np.uint8).reshape(positions, k).astype(np.int64),
                np.frombuffer(lp, dtype=np.float16).reshape(positions, k).astype(np.float32))

    def put_many(self, hotkey: str, keys: list[bytes], ids: np.ndarray, logprobs: np.ndarray) -> None:
        """Store one answer per key: ``ids``/``logprobs`` (len(keys), positions, k)."""
        _, positions, k = ids.shape
        rows = [(hotkey, key, positions, k, np.ascontiguousarray(ids[i], dtype=np.uint8).tobytes(),
                 np.ascontiguousarray(logprobs[i], dtype=np.float16).tobytes()) for i, key in enumerate(keys)]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
