"""Asking the network's teachers for the windows a trainer trains on: batched, bounded in requests
per second, cached on disk, tolerant of failures and refusals.

A :class:`TeacherClient` wraps a :class:`tnode.contracts.learning.TeacherSource` (e.g. the router
plugin's ``[teachers.NAME] type = "router"``) for a fixed list of teachers. For a batch of windows
it takes what the cache holds, asks each teacher for the rest in requests of at most the source's
``max_tasks`` windows (all teachers at once, every request waiting its turn under ``rps``), stores
the answers, and returns dense distributions with a mask of which teacher answered which window.
A teacher that fails or refuses simply has no answer for those windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from tnode.contracts.learning import Teacher

from .teacher_cache import AnswerCache, window_key
from .tokenizer import VOCAB_SIZE


def dense(ids: np.ndarray, logprobs: np.ndarray, floor: float, vocab_size: int = VOCAB_SIZE) -> np.ndarray:
    """Top-k answers (..., k) as full distributions (..., V): the mass the k do not claim spread
    evenly over the other tokens, every token at least ``floor``, each row summing to 1."""
    k = ids.shape[-1]
    p = np.exp(logprobs.astype(np.float64))
    p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1.0)
    rest = np.clip(1.0 - p.sum(axis=-1, keepdims=True), 0.0, 1.0) / max(vocab_size - k, 1)
    out = np.broadcast_to(rest, (*ids.shape[:-1], vocab_size)).copy()
    np.put_along_axis(out, ids.astype(np.int64), p, axis=-1)
    out = np.maximum(out, floor)
    return (out / out.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class TeacherBatch:
    """The teachers' distributions for one batch of windows."""

    teachers: list[Teacher]
    probs: np.ndarray  # float32 (teachers, windows, positions, V); zeros where not answered
    answered: np.ndarray  # bool (teachers, windows)
    errors: dict[str, str] = field(default_factory=dict)  # hotkey → last error code in this batch


class _Pace:
    """At most ``rps`` request starts per second, shared by all teachers (0: unbounded)."""

    def __init__(self, rps: float) -> None:
        self.interval = 1.0 / rps if rps > 0 else 0.0
        self.next = 0.0
        self.lock = anyio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            if self.next > now:
                await anyio.sleep(self.next - now)
            self.next = max(now, self.next) + self.interval


class TeacherClient:
    """Batched, paced, cached asking of a fixed list of teachers; see the module doc."""

    def __init__(self, source: Any, teachers: list[Teacher], *, cache: AnswerCache | None = None, k: int = 32,
                 rps: float = 20.0, timeout: float = 10.0, floor: float = 1e-4) -> None:
        if not teachers:
            raise ValueError("no teachers to ask")
        self.source = source
        self.teachers = list(teachers)
        self.cache = cache
        self.k = k
        self.timeout = timeout
        self.floor = floor
        self.pace = _Pace(rps)
        self.requests = 0
        self.failures: dict[str, int] = {}  # error code → count
        self.answered: dict[str, int] = {}  # hotkey → windows answered (asked or cached)

    async def distributions(self, windows: np.ndarray) -> TeacherBatch:
        """Every teacher's distribution at every position of ``windows`` (int (B, T)), where it answered."""
        windows = np.asarray(windows, dtype=np.int64)
        if windows.ndim != 2:
            raise ValueError(f"windows must be (windows, positions), got shape {windows.shape}")
        b, t = windows.shape
        n = len(self.teachers)
        ids = np.zeros((n, b, t, self.k), dtype=np.int64)
        lps = np.full((n, b, t, self.k), -np.inf, dtype=np.float32)
        kk = np.zeros((n, b), dtype=np.int64)  # k each answer carries (a miner may cap k lower)
        answered = np.zeros((n, b), dtype=bool)
        errors: dict[str, str] = {}
        keys = [window_key(w, self.k) for w in windows]

        def fill(i: int, row: int, row_ids: np.ndarray, row_lp: np.ndarray) -> None:
            got = row_ids.shape[-1]
            ids[i, row, :, :got] = row_ids
            lps[i, row, :, :got] = row_lp
            kk[i, row] = got
            answered[i, row] = True

        async def one(i: int, teacher: Teacher) -> None:
            missing = []
            for row, key in enumerate(keys):
                hit = self.cache.get(teacher.hotkey, key) if self.cache is not None else None
                if hit is not None and hit[0].shape[0] == t:
                    fill(i, row, *hit)
                else:
                    missing.append(row)
            step = max(1, int(self.source.max_tasks))
            for start in range(0, len(missing), step):
                rows = missing[start : start + step]
                await self.pace.wait()
                self.requests += 1
                reply = await self.source.ask(teacher.hotkey, windows[rows], k=self.k, timeout=self.timeout)
                if not reply.ok:
                    errors[teacher.hotkey] = reply.error
                    self.failures[reply.error] = self.failures.get(reply.error, 0) + 1
                    if reply.error in ("backoff", "unknown"):
                        break  # no use asking again within this batch
                    continue
                assert reply.ids is not None and reply.logprobs is not None
                if reply.ids.shape[:2] != (len(rows), t):
                    errors[teacher.hotkey] = "invalid_response"
                    self.failures["invalid_response"] = self.failures.get("invalid_response", 0) + 1
                    continue
                for j, row in enumerate(rows):
                    fill(i, row, reply.ids[j], reply.logprobs[j])
                if self.cache is not None:
                    self.cache.put_many(teacher.hotkey, [keys[r] for r in rows], reply.ids, reply.logprobs)

        async with anyio.create_task_group() as tg:
            for i, teacher in enumerate(self.teachers):
                tg.start_soon(one, i, teacher)
        probs = np.zeros((n, b, t, VOCAB_SIZE), dtype=np.float32)
        for i in range(n):
            for row in np.flatnonzero(answered[i]):
                got = int(kk[i, row])
                probs[i, row] = dense(ids[i, row, :, :got], lps[i, row, :, :got], self.floor)
            self.answered[self.teachers[i].hotkey] = self.answered.get(self.teachers[i].hotkey, 0) + int(
                answered[i].sum())
        return TeacherBatch(self.teachers, probs, answered, errors)
