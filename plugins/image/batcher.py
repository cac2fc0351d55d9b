"""Batching concurrent image requests into shared forward passes, off the event loop.

Requests that arrive while the model is idle wait up to ``wait`` seconds (or until ``max_batch``
are queued); requests that arrive while a pass runs go into the next one without waiting. A taken
batch is split by output size (a U-Net pass stacks images of one size; tasks may mix, their
conditions are planes of the input); a model without ``restore_batch`` answers each in turn.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from tnode.contracts.image import Corruption
from tnode.errors import TaskError


@dataclass(eq=False)
class _Pending:
    image: np.ndarray | None  # None: generate
    corruption: Corruption
    deadline: float
    done: anyio.Event = field(default_factory=anyio.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None
    abandoned: bool = False

    def out_size(self) -> tuple[int, int]:
        if self.image is None:
            return self.corruption.height, self.corruption.width
        f = self.corruption.factor if self.corruption.task == "upscale" else 1
        return self.image.shape[0] * f, self.image.shape[1] * f


class ImageBatcher:
    """Runs ``model`` on queued requests, several at a time; ``check(out, image, corruption)``
    vets each answer before it is handed back (raising :class:`TaskError`)."""

    def __init__(self, model: Any, check: Callable[[Any, np.ndarray | None, Corruption], np.ndarray], *,
                 max_batch: int, wait: float) -> None:
        self.model = model
        self.check = check
        self.max_batch = max_batch
        self.wait = wait
        self._queue: deque[_Pending] = deque()
        self._arrived = anyio.Event()
        self.batches = 0  # forward passes (or turns of a model without batching)
        self.requests = 0

    async def infer(self, image: np.ndarray | None, corruption: Corruption, deadline: float) -> np.ndarray:
        """The checked answer to one request; ``TaskError("timeout")`` when it is not ready before
        ``deadline`` (``time.monotonic()``), the model's own ``TaskError`` as it raised it."""
        pending = _Pending(image, corruption, deadline)
        self._queue.append(pending)
        self._arrived.set()
        with anyio.move_on_after(max(deadline - time.monotonic(), 0.0)):
            await pending.done.wait()
        if isinstance(pending.error, TaskError):
            raise pending.error
        if pending.error is not None:
            raise TaskError("internal", f"the model failed: {type(pending.error).__name__}: {pending.error}")
        if pending.result is None:
            pending.abandoned = True  # skipped if the batcher has not started it yet
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
                    p.done.set()
                    continue
                batch.append(p)
            if batch:
                try:
                    await anyio.to_thread.run_sync(self._forward, batch)
                finally:
                    for p in batch:
                        p.done.set()
                self.requests += len(batch)

    def _forward(self, batch: list[_Pending]) -> None:
        """Answer ``batch`` (blocking, in a worker thread); failures fail their own requests only."""
        groups: dict[tuple[int, int], list[_Pending]] = {}
        single: list[_Pending] = []
        batched = hasattr(self.model, "restore_batch")
        for p in batch:
            (groups.setdefault(p.out_size(), []) if batched and p.image is not None else single).append(p)
        for group in groups.values():
            self.batches += 1
            try:
                outs = self.model.restore_batch([(p.image, p.corruption) for p in group])
            except Exception as exc:
                for p in group:
                    p.error = exc
                continue
            for p, out in zip(group, outs, strict=True):
                self._finish(p, out)
        for p in single:
            self.batches += 1
            try:
                out = (self.model.generate(p.corruption) if p.image is None
                       else self.model.restore(p.image, p.corruption))
            except Exception as exc:
                p.error = exc
                continue
            self._finish(p, out)

    def _finish(self, p: _Pending, out: Any) -> None:
        try:
            p.result = self.check(out, p.image, p.corruption)
        except Exception as exc:
            p.error = exc
