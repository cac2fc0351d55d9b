"""Batching concurrent image requests into shared forward passes, off the event loop.

Requests that arrive while the model is idle wait up to ``wait`` seconds (or until ``max_batch``
are queued); requests that arrive while a pass runs go into the next one without waiting
(:class:`tnode.batching.DeadlineBatcher`). A taken batch is split by output size
(:func:`answer_batch`). A model that runs in worker processes (its ``pool`` is a
:class:`tnode.workers.WorkerPool`) is handed each request directly: the pool batches across its
workers with this batcher's ``max_batch``, and each worker splits its batch the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
from tnode.batching import DeadlineBatcher
from tnode.contracts.image import Corruption

from .passes import Request, answer_batch, decode_answer, encode_request

__all__ = ["ImageBatcher", "answer_batch"]


class ImageBatcher:
    """Runs ``model`` on queued requests, several at a time; ``check(out, image, corruption)``
    vets each answer before it is handed back (raising :class:`TaskError`)."""

    def __init__(self, model: Any, check: Callable[[Any, np.ndarray | None, Corruption], np.ndarray], *,
                 max_batch: int, wait: float) -> None:
        self.model = model
        self.check = check
        self._batcher: DeadlineBatcher[Request, np.ndarray] = DeadlineBatcher(self._forward, max_batch=max_batch,
                                                                              wait=wait)
        self.batches = 0  # forward passes (or turns of a model without batching) in this process
        self._pooled = 0

    @property
    def max_batch(self) -> int:
        return self._batcher.max_batch

    @property
    def requests(self) -> int:
        """Requests that reached the model (in process or handed to its workers)."""
        return self._batcher.requests + self._pooled

    async def infer(self, image: np.ndarray | None, corruption: Corruption, deadline: float) -> np.ndarray:
        """The checked answer to one request; ``TaskError("timeout")`` when it is not ready before
        ``deadline`` (``time.monotonic()``), the model's own ``TaskError`` as it raised it."""
        pool = getattr(self.model, "pool", None)
        if pool is None:
            return await self._batcher.submit((image, corruption), deadline)
        pool.max_batch = self.max_batch
        self._pooled += 1
        out = decode_answer(await pool.infer(encode_request(image, corruption), deadline=deadline))
        return self.check(out, image, corruption)

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        await self._batcher.run()

    async def _forward(self, batch: list[Request]) -> list[Any]:
        return await anyio.to_thread.run_sync(self._answer, batch)

    def _answer(self, batch: list[Request]) -> list[Any]:
        """Answer ``batch`` (blocking, in a worker thread); failures fail their own requests only."""
        results, passes = answer_batch(self.model, batch)
        self.batches += passes
        for i, (out, (image, c)) in enumerate(zip(results, batch, strict=True)):
            if not isinstance(out, BaseException):
                try:
                    results[i] = self.check(out, image, c)
                except Exception as exc:
                    results[i] = exc
        return results
