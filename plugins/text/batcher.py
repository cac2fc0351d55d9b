"""Batching concurrent inference requests into one forward pass, off the event loop.

Requests that arrive while the model is idle wait up to ``wait`` seconds (or until ``max_batch``
requests are queued) so that they share one forward pass; requests that arrive while a pass runs
go into the next one without waiting (:class:`tnode.batching.DeadlineBatcher`). Sequences of
different lengths are right-padded: the models are causal, so padding after a sequence never
changes its own positions.
"""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
from tnode.batching import DeadlineBatcher


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
        self._batcher: DeadlineBatcher[np.ndarray, np.ndarray] = DeadlineBatcher(self._forward, max_batch=max_batch,
                                                                                 wait=wait)
        self._pooled = 0

    @property
    def max_batch(self) -> int:
        return self._batcher.max_batch

    @property
    def wait(self) -> float:
        return self._batcher.wait

    @property
    def batches(self) -> int:
        """Forward passes run in this process."""
        return self._batcher.batches

    @property
    def requests(self) -> int:
        """Requests that reached the model (in process or handed to its workers)."""
        return self._batcher.requests + self._pooled

    async def infer(self, tokens: np.ndarray, deadline: float) -> np.ndarray:
        """Log-probabilities (len(tokens), vocab) for one sequence; ``TaskError("timeout")`` when the
        pass does not finish before ``deadline`` (``time.monotonic()``)."""
        pool = getattr(self.model, "pool", None)
        if pool is not None:
            pool.max_batch = self.max_batch
            self._pooled += 1
            return np.asarray(await pool.infer(tokens, deadline=deadline))
        return await self._batcher.submit(tokens, deadline)

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        await self._batcher.run()

    async def _forward(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        out = await anyio.to_thread.run_sync(self.model.next_token_logprobs, pad_right(batch))
        return [np.asarray(out[i, : len(t)], dtype=np.float32) for i, t in enumerate(batch)]
