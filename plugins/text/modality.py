"""The text modality: next-token prediction and completion (miner) and checkable tasks (validator).

Wire format of the tasks (byte tokens, see :mod:`tokenizer`):

``next_token``
    request: payload = token ids, int array (T,) with T ≤ max_sequence_length; body
    ``{"k": int, "positions": "last" | "all"}``.
    answer: payload = float32 log-probabilities (P, k) (P = 1 or T), best first; body
    ``{"ids": [[int] * k] * P}`` — the token ids of those log-probabilities.
``complete``
    request: body ``{"prompt": str, "max_new_tokens": int, "temperature": float, "top_k": int,
    "top_p": float, "seed": int}``. answer: body ``{"text": str, "ids": [int]}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from tnode.errors import ConfigError, TaskError
from tnode.events import TaskReceived
from tnode.interfaces import Reply, TaskResult, TopKPrediction, ValidatorTask

from .config import TextModalityConfig
from .tokenizer import VOCAB_SIZE, decode, encode


@dataclass
class _Pending:
    tokens: np.ndarray
    done: anyio.Event = field(default_factory=anyio.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class TextModality:
    """Serves a language model and makes validation tasks from a dataset's held-out split."""

    name: str

    def __init__(self, node: Any, name: str, config: TextModalityConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        if config.top_k > config.max_top_k:
            raise ConfigError("top_k exceeds max_top_k", key_path=f"modalities.{name}.top_k")
        self.model: Any = None
        self.dataset: Any = None
        self._queue: list[_Pending] = []
        self._wake = anyio.Event()
        self.batches = 0

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        if self.config.model:
            self.model = self.node.component("model", self.config.model)
        if self.config.dataset:
            self.dataset = self.node.component("dataset", self.config.dataset)
        async with anyio.create_task_group() as tg:
            undo = None
            if self.model is not None:
                tg.start_soon(self._batcher)
                undo = self.node.bus.serve(TaskReceived, self.handle, key=self.name)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                if undo:
                    undo()

    # ------------------------------------------------------------------ miner side
    async def handle(self, task: TaskReceived) -> TaskResult:
        if task.task == "next_token":
            return await self._next_token(task)
        if task.task == "complete":
            return await self._complete(task)
        raise TaskError("invalid_request", f"unknown text task {task.task!r} (next_token, complete)")

    def _ids(self, payload: Any) -> np.ndarray:
        if not isinstance(payload, np.ndarray) or payload.dtype.kind not in "iu":
            raise TaskError("invalid_request", "payload must be an integer array of token ids")
        ids = payload.reshape(-1) if payload.ndim == 2 and payload.shape[0] == 1 else payload
        if ids.ndim != 1 or ids.size == 0:
            raise TaskError("invalid_request", f"token ids must be a non-empty 1-D array, got shape {payload.shape}")
        if ids.size > self.config.max_sequence_length:
            raise TaskError("too_large", f"{ids.size} tokens exceed max_sequence_length "
                                         f"{self.config.max_sequence_length}")
        if int(ids.min()) < 0 or int(ids.max()) >= VOCAB_SIZE:
            raise TaskError("invalid_request", f"token ids must lie in [0, {VOCAB_SIZE})")
        return ids.astype(np.int64)

    async def _next_token(self, task: TaskReceived) -> TaskResult:
        ids = self._ids(task.payload)
        k = task.body.get("k", self.config.top_k)
        positions = task.body.get("positions", "last")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise TaskError("invalid_request", "k must be a positive integer")
        if k > self.config.max_top_k:
            raise TaskError("too_large", f"k={k} exceeds max_top_k {self.config.max_top_k}")
        if positions not in ("last", "all"):
            raise TaskError("invalid_request", "positions must be 'last' or 'all'")
        logprobs = await self._infer(ids, task.deadline)
        if positions == "last":
            logprobs = logprobs[-1:]
        top = np.argsort(-logprobs, axis=-1, kind="stable")[:, :k]
        values = np.take_along_axis(logprobs, top, axis=-1).astype(np.float32)
        return TaskResult({"ids": top.tolist()}, values)

    async def _infer(self, ids: np.ndarray, deadline: float) -> np.ndarray:
        pending = _Pending(ids)
        self._queue.append(pending)
        self._wake.set()
        with anyio.move_on_after(max(deadline - time.monotonic(), 0.0)) as scope:
            await pending.done.wait()
        if scope.cancelled_caught:
            raise TaskError("timeout", "the model did not answer before the deadline")
        if pending.error is not None:
            raise TaskError("internal", f"model failed: {type(pending.error).__name__}")
        assert pending.result is not None
        return pending.result

    async def _batcher(self) -> None:
        """Stacks requests that arrive together into one forward pass per sequence length."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self.config.batch_wait_ms and len(self._queue) < self.config.max_batch:
                await anyio.sleep(self.config.batch_wait_ms / 1000)
            while self._queue:
                batch, self._queue = self._queue[: self.config.max_batch], self._queue[self.config.max_batch :]
                groups: dict[int, list[_Pending]] = {}
                for p in batch:
                    groups.setdefault(len(p.tokens), []).append(p)
                for items in groups.values():
                    stacked = np.stack([p.tokens for p in items])
                    try:
                        out = await anyio.to_thread.run_sync(self.model.next_token_logprobs, stacked)
                        for i, p in enumerate(items):
                            p.result = np.asarray(out[i], dtype=np.float32)
                    except Exception as exc:  # a model failure answers its requests, never kills the loop
                        for p in items:
                            p.error = exc
                    finally:
                        for p in items:
                            p.done.set()
                    self.batches += 1

    async def _complete(self, task: TaskReceived) -> TaskResult:
        body = task.body
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str) or not prompt:
            raise TaskError("invalid_request", "prompt must be a non-empty string")
        ids = encode(prompt)
        if ids.size > self.config.max_sequence_length:
            raise TaskError("too_large", f"prompt of {ids.size} tokens exceeds {self.config.max_sequence_length}")
        n = body.get("max_new_tokens", 32)
        temperature = body.get("temperature", 1.0)
        top_k = body.get("top_k", 0)
        top_p = body.get("top_p", 1.0)
        seed = body.get("seed", 0)
        if not isinstance(n, int) or not 1 <= n <= self.config.max_new_tokens:
            raise TaskError("too_large" if isinstance(n, int) and n > 0 else "invalid_request",
                            f"max_new_tokens must be in [1, {self.config.max_new_tokens}]")
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 10:
            raise TaskError("invalid_request", "temperature must be in [0, 10]")
        if not isinstance(top_k, int) or not 0 <= top_k <= VOCAB_SIZE:
            raise TaskError("invalid_request", f"top_k must be in [0, {VOCAB_SIZE}]")
        if not isinstance(top_p, int | float) or not 0 < top_p <= 1:
            raise TaskError("invalid_request", "top_p must be in (0, 1]")
        if not isinstance(seed, int):
            raise TaskError("invalid_request", "seed must be an integer")
        rng = np.random.default_rng(seed)
        out: list[int] = []
        context = list(ids.tolist())
        for _ in range(n):
            window = np.asarray(context[-self.config.max_sequence_length:], dtype=np.int64)
            logprobs = (await self._infer(window, task.deadline))[-1]
            out.append(sample(logprobs, float(temperature), top_k, float(top_p), rng))
            context.append(out[-1])
        return TaskResult({"text": decode(out), "ids": out})

    # ------------------------------------------------------------------ validator side
    def make_task(self, rng: np.random.Generator) -> ValidatorTask:
        if self.dataset is None:
            raise ConfigError("validating needs a dataset", key_path=f"modalities.{self.name}.dataset")
        n = self.config.sequence_length
        window = self.dataset.sample_windows("heldout", 1, n + 1, rng)[0]
        prefix, following = window[:n], window[1:]
        positions = self.config.validation_positions
        truth = following if positions == "all" else following[-1:]
        return ValidatorTask(self.name, "next_token", {"k": self.config.top_k, "positions": positions},
                             prefix.astype(np.int32), np.asarray(truth, dtype=np.int64))

    def parse_response(self, task: ValidatorTask, reply: Reply) -> TopKPrediction:
        return check_topk(reply.body, reply.payload, expected_rows=len(task.truth), k=int(task.body["k"]))


def check_topk(body: dict[str, Any], payload: Any, *, expected_rows: int, k: int) -> TopKPrediction:
    """Validate a ``next_token`` answer; raises ``TaskError("invalid_response")`` when it is not sound."""
    def bad(why: str) -> TaskError:
        return TaskError("invalid_response", why)

    if not isinstance(payload, np.ndarray) or payload.dtype.kind != "f":
        raise bad("payload must be a float array of log-probabilities")
    ids_raw = body.get("ids")
    if not isinstance(ids_raw, list):
        raise bad("body.ids must be a list of lists")
    try:
        ids = np.asarray(ids_raw, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise bad("body.ids must be a rectangular list of integers") from None
    logprobs = payload.astype(np.float32)
    if logprobs.ndim != 2 or ids.shape != logprobs.shape:
        raise bad(f"ids {ids.shape} and log-probabilities {logprobs.shape} must have the same 2-D shape")
    if logprobs.shape[0] != expected_rows or not 1 <= logprobs.shape[1] <= k:
        raise bad(f"expected ({expected_rows}, ≤{k}) entries, got {logprobs.shape}")
    if not np.all(np.isfinite(logprobs)):
        raise bad("log-probabilities must be finite")
    if ids.min() < 0 or ids.max() >= VOCAB_SIZE:
        raise bad(f"token ids must lie in [0, {VOCAB_SIZE})")
    if np.any(np.diff(np.sort(ids, axis=1), axis=1) == 0):
        raise bad("token ids repeat within a position")
    if logprobs.max() > 1e-4:
        raise bad("log-probabilities must be ≤ 0")
    mass = np.exp(logprobs.astype(np.float64)).sum(axis=1)
    if np.any(mass > 1.0 + 1e-3):
        raise bad(f"probabilities sum to {mass.max():.4f} > 1")
    return TopKPrediction(ids, logprobs, VOCAB_SIZE)


def sample(logprobs: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> int:
    """Draw one token with temperature, top-k and nucleus (top-p) truncation; temperature 0 is greedy."""
    if temperature == 0:
        return int(np.argmax(logprobs))
    logits = logprobs.astype(np.float64) / temperature
    order = np.argsort(-logits)
    if top_k:
        order = order[:top_k]
    probs = np.exp(logits[order] - logits[order].max())
    probs /= probs.sum()
    if top_p < 1:
        keep = np.searchsorted(np.cumsum(probs), top_p) + 1
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(rng.choice(order, p=probs))
