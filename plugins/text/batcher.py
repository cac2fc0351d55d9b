"""Batching concurrent inference requests into one forward pass, off the event loop.

Requests that arrive while the model is idle wait up to ``wait`` seconds (or until ``max_batch``
requests are queued) so that they share one forward pass; requests that arrive while a pass runs
go into the next one without waiting. Sequences of different lengths are right-padded: the models
are causal, so padding after a sequence never changes its own positions.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from tnode.errors import TaskError


@dataclass(eq=False)
class _Pending:
    tokens: np.ndarray
    deadline: float
    done: anyio.Event = field(default_factory=anyio.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None
    abandoned: bool = False


def pad_right(seqs: list[np.ndarray]) -> np.ndarray:
    """int64 (len(seqs), longest) with each sequence at the start of its row, zeros after it."""
    stacked = np.zeros((len(seqs), max(len(s) for s in seqs)), dtype=np.int64)
    for i, s in enumerate(seqs):
        stacked[i, : len(s)] = s
    return stacked


class Batcher:
    """Runs ``model.next_token_logprobs`` for queued requests, several at a time.

    A model that runs in worker processes (its ``pool`` is a :class:`tnode.workers.WorkerPool`) is
    handed each request directly: the pool batches across its workers, with this batcher's
    ``max_batch``.
    """

    def __init__(self, model: Any, *, max_batch: int, wait: float) -> None:
        self.model = model
        self.max_batch = max_batch
        self.wait = wait
        self._queue: deque[_Pending] = deque()
        self._arrived = anyio.Event()
        self.batches = 0
        self.requests = 0

    async def infer(self, tokens: np.ndarray, deadline: float) -> np.ndarray:
        """Log-probabilities (len(tokens), vocab) for one sequence; ``TaskError("timeout")`` when the
        pass does not finish before ``deadline`` (``time.monotonic()``)."""
        pool = getattr(self.model, "pool", None)
        if pool is not None:
            pool.max_batch = self.max_batch
            self.requests += 1
            return np.asarray(await pool.infer(tokens, deadline=deadline))
        pending = _Pending(tokens, deadline)
        self._queue.append(pending)
        self._arrived.set()
        with anyio.move_on_after(max(deadline - time.monotonic(), 0.0)):
            await pending.done.wait()
        if pending.error is not None:
            raise TaskError("internal", f"the model failed: {type(pending.error).__name__}: {pending.error}")
        if pending.result is None:  # deadline passed, in this task or already in the batcher
            pending.abandoned = True  # the batcher skips it if it has not started it yet
            raise TaskError("timeout", "the model did not answer before the deadline")
        return pending.result

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        while True:
            if not self._queue:
                self._arrived = anyio.Event()
                await self._arrived.wait()
                if self.wait > 0:
                    with anyio.move_on_after(self.wait):
                        while len(self._queue) < self.max_batch:
                            self._arrived = anyio.Event()
                            await self._arrived.wait()
            batch: list[_Pending] = []
            now = time.monotonic()
            while self._queue and len(batch) < self.max_batch:
                p = self._queue.popleft()
                if p.abandoned or p.deadline <= now:
                    p.done.set()  # its waiter already gave up (or is about to time out)
                    continue
                batch.append(p)
            if batch:
                await self._forward(batch)

    async def _forward(self, batch: list[_Pending]) -> None:
        stacked = pad_right([p.tokens for p in batch])
        try:
            out = await anyio.to_thread.run_sync(self.model.next_token_logprobs, stacked)
            for i, p in enumerate(batch):
                p.result = np.asarray(out[i, : len(p.tokens)], dtype=np.float32)
        except Exception as exc:  # a model failure fails its requests, never the batcher
            for p in batch:
                p.error = exc
        finally:
            for p in batch:
                p.done.set()
        self.batches += 1
        self.requests += len(batch)
