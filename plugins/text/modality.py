"""The text modality: next-token prediction and completion (miners) and checkable tasks (validators).

Tasks on the wire (byte tokens, see :mod:`tnode.plugins.text.tokenizer`):

``next_token``
    request: payload = token ids, an integer array (T,) with 1 ≤ T ≤ ``max_sequence_length``;
    body ``{"k": int, "positions": "last" | "all"}`` (both optional: ``top_k``, ``"last"``).
    answer: payload = float32 log-probabilities (P, k), most likely first, P = 1 (last) or T (all);
    body ``{"ids": [[int] * k] * P}``, the token ids those log-probabilities belong to. The floats
    travel as a raw tensor; the ids are small integers, cheap in the JSON body.
``complete``
    request: body ``{"prompt": str, "max_new_tokens": int, "temperature": float, "top_k": int,
    "top_p": float, "seed": int}`` (all but the prompt optional), or the prompt as a payload of
    token ids instead of ``prompt``. answer: body ``{"text": str, "ids": [int]}``.

Errors are :class:`tnode.errors.TaskError`: ``invalid_request`` (malformed, out of vocabulary),
``too_large`` (over a configured bound), ``timeout`` (the deadline passed), ``internal`` (the model
failed).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import numpy as np
from tnode import dispatch
from tnode.contracts.text import TopKPrediction
from tnode.errors import ConfigError, TaskError
from tnode.events import EpochCompleted, TaskReceived
from tnode.interfaces import Reply, TaskResult, ValidatorTask

from .batcher import Batcher
from .checks import check_topk
from .config import TextModalityConfig
from .sampling import sample
from .tokenizer import VOCAB_SIZE, decode, encode

TASKS = ("next_token", "complete")
_NEXT_TOKEN_KEYS = frozenset({"k", "positions", "batch"})
_COMPLETE_KEYS = frozenset({"prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed"})


def _int(body: Mapping[str, Any], key: str, default: int, lo: int, hi: int, *, too_large: bool = False) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TaskError("invalid_request", f"{key} must be an integer, got {type(value).__name__}")
    if value > hi and too_large:
        raise TaskError("too_large", f"{key}={value} exceeds the limit of {hi}")
    if not lo <= value <= hi:
        raise TaskError("invalid_request", f"{key}={value} is outside [{lo}, {hi}]")
    return value


def _float(body: Mapping[str, Any], key: str, default: float, lo: float, hi: float, *, open_lo: bool = False) -> float:
    value = body.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TaskError("invalid_request", f"{key} must be a number, got {type(value).__name__}")
    if not (lo < value <= hi if open_lo else lo <= value <= hi):
        raise TaskError("invalid_request", f"{key}={value} is outside {'(' if open_lo else '['}{lo}, {hi}]")
    return float(value)


class TextModality:
    """Component ``[modalities.NAME] type = "text"``: serves ``model`` when one is named and makes
    validation tasks from ``dataset`` when one is named (:class:`tnode.interfaces.ValidatingModality`)."""

    def __init__(self, node: Any, name: str, config: TextModalityConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.wire_name = dispatch.wire_name(config, "text")  # what peers route by, not the table name
        # top_k / sequence_length within their maxima: TextModalityConfig.check().
        self.model: Any = None
        self.dataset: Any = None
        self.standing: Any = None  # this node's Neuron after the last epoch (miners on a chain)
        self.batcher: Batcher | None = None

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        if self.config.model:
            self.model = self._component("model", self.config.model)
        if self.config.dataset:
            self.dataset = self._component("dataset", self.config.dataset)
        async with anyio.create_task_group() as tg:
            undo = None
            standing = None
            if self.model is not None:
                self.attach_model(self.model)
                assert self.batcher is not None
                tg.start_soon(self.batcher.run)
                undo = self.node.bus.serve(TaskReceived, self.handle, key=self.wire_name)
                if self.node.chain is not None:  # a miner follows what the chain pays it
                    standing = self.node.bus.subscribe(EpochCompleted, self._on_epoch, name=f"{self.name}-standing",
                                                       maxsize=4, when_full="drop_newest")
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                if undo is not None:
                    undo()
                if standing is not None:
                    standing.close()

    async def _on_epoch(self, event: EpochCompleted) -> None:
        """Read this miner's own uid, incentive and emission from the metagraph after each epoch."""
        try:
            mg = await self.node.chain.metagraph()
        except Exception as exc:  # the chain may be briefly unreachable; the next epoch tries again
            self.node.log.debug("cannot read the metagraph", modality=self.name, error=str(exc))
            return
        me = mg.by_hotkey(self.node.hotkey.public_hex)
        if me is None:
            self.standing = None
            self.node.log.info("epoch: this miner holds no uid", modality=self.name, block=event.block)
            return
        self.standing = me
        self.node.log.info("epoch: miner standing", modality=self.name, block=event.block, uid=me.uid,
                           incentive=round(me.incentive, 6), emission=round(me.emission, 6),
                           trust=round(me.trust, 6), stake=round(me.stake, 6))

    def _component(self, kind: str, name: str) -> Any:
        return self.node.require(kind, name, key_path=f"modalities.{self.name}.{kind}")

    def attach_model(self, model: Any) -> None:
        """Serve ``model`` (a :class:`tnode.contracts.text.LanguageModel`); :meth:`run` does this from config."""
        if getattr(model, "vocab_size", VOCAB_SIZE) != VOCAB_SIZE:
            raise ConfigError(f"model has a vocabulary of {model.vocab_size}, the network's tokenizer {VOCAB_SIZE}",
                              key_path=f"modalities.{self.name}.model")
        self.model = model
        self.batcher = Batcher(model, max_batch=self.config.max_batch, wait=self.config.batch_wait_ms / 1000)

    # ------------------------------------------------------------------ miner side
    async def handle(self, task: TaskReceived) -> TaskResult:
        """Answer one inbound task (the bus handler)."""
        if task.task == "next_token":
            return await self.next_token(task.body, task.payload, task.deadline)
        if task.task == "complete":
            return await self.complete(task.body, task.payload, task.deadline)
        raise TaskError("invalid_request", f"unknown text task {task.task!r} (expected one of {', '.join(TASKS)})")

    def _token_ids(self, payload: Any) -> np.ndarray:
        if not isinstance(payload, np.ndarray) or payload.dtype.kind not in "iu":
            raise TaskError("invalid_request", "the payload must be an integer array of token ids")
        ids = payload.reshape(-1) if payload.ndim == 2 and payload.shape[0] == 1 else payload
        if ids.ndim != 1 or ids.size == 0:
            raise TaskError("invalid_request", f"token ids must be a non-empty 1-D array, got shape {payload.shape}")
        if ids.size > self.config.max_sequence_length:
            raise TaskError("too_large", f"{ids.size} tokens exceed max_sequence_length "
                                         f"{self.config.max_sequence_length}")
        if int(ids.min()) < 0 or int(ids.max()) >= VOCAB_SIZE:
            raise TaskError("invalid_request", f"token ids must lie in [0, {VOCAB_SIZE})")
        return ids.astype(np.int64)

    @staticmethod
    def _known_keys(body: Any, allowed: frozenset[str], task: str) -> None:
        if not isinstance(body, Mapping):
            raise TaskError("invalid_request", "the body must be an object")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise TaskError("invalid_request", f"unknown {task} field(s) {unknown} (allowed: {sorted(allowed)})")

    def _context(self, ids: np.ndarray) -> np.ndarray:
        """Only the tokens the model can use for the last position (fewer tokens, same answer)."""
        ctx = getattr(self.model, "context", None)
        if isinstance(ctx, int) and 0 <= ctx < len(ids):
            return ids[len(ids) - max(ctx, 1) :]
        return ids

    async def next_token(self, body: Any, payload: Any, deadline: float) -> TaskResult:
        """Top-k next-token log-probabilities for the last or every position of ``payload``; with
        ``batch`` = B in the body, for each of the B rows of a (B, T) payload."""
        self._known_keys(body, _NEXT_TOKEN_KEYS, "next_token")
        k = _int(body, "k", self.config.top_k, 1, self.config.max_top_k, too_large=True)
        positions = body.get("positions", "last")
        if positions not in ("last", "all"):
            raise TaskError("invalid_request", f"positions must be 'last' or 'all', got {positions!r}")
        if "batch" in body:
            return await self._next_token_batch(body["batch"], payload, k, positions, deadline)
        ids = self._token_ids(payload)
        top, values = await self._top_k(ids, k, positions, deadline)
        return TaskResult({"ids": top.tolist()}, values)

    async def _next_token_batch(self, batch: Any, payload: Any, k: int, positions: str,
                                deadline: float) -> TaskResult:
        """B tasks in one request: payload (B, T) token ids; answer ids and values (B, rows, k)."""
        if type(batch) is not int or batch < 1:
            raise TaskError("invalid_request", f"batch must be a positive integer, got {batch!r}")
        if batch > self.config.max_tasks:
            raise TaskError("too_large", f"a batch of {batch} tasks exceeds max_tasks {self.config.max_tasks}")
        if not isinstance(payload, np.ndarray) or payload.ndim != 2 or payload.shape[0] != batch:
            shape = getattr(payload, "shape", None)
            raise TaskError("invalid_request", f"a batch of {batch} needs a ({batch}, T) payload of token ids, "
                                               f"got shape {shape}")
        rows = [self._token_ids(row) for row in payload]  # every row checked before any inference
        answers: list[Any] = [None] * batch

        async def one(i: int) -> None:
            answers[i] = await self._top_k(rows[i], k, positions, deadline)

        async with anyio.create_task_group() as tg:  # the rows share forward passes in the batcher
            for i in range(batch):
                tg.start_soon(one, i)
        return TaskResult({"ids": [a[0].tolist() for a in answers]}, np.stack([a[1] for a in answers]))

    async def _top_k(self, ids: np.ndarray, k: int, positions: str, deadline: float) -> tuple[np.ndarray, np.ndarray]:
        assert self.batcher is not None
        if positions == "last":
            logprobs = (await self.batcher.infer(self._context(ids), deadline))[-1:]
        else:
            logprobs = await self.batcher.infer(ids, deadline)
        # argpartition then a sort of k columns: cheaper than sorting the whole vocabulary per row.
        top = np.argpartition(-logprobs, k - 1, axis=-1)[:, :k]
        values = np.take_along_axis(logprobs, top, axis=-1)
        order = np.argsort(-values, axis=-1, kind="stable")
        top, values = np.take_along_axis(top, order, axis=-1), np.take_along_axis(values, order, axis=-1)
        return top, values.astype(np.float32)

    async def complete(self, body: Any, payload: Any, deadline: float) -> TaskResult:
        """Sample up to ``max_new_tokens`` tokens after the prompt."""
        self._known_keys(body, _COMPLETE_KEYS, "complete")
        prompt = body.get("prompt")
        if prompt is None and payload is not None:
            ids = self._token_ids(payload)
        elif isinstance(prompt, str) and prompt and payload is None:
            ids = encode(prompt).astype(np.int64)
            if ids.size > self.config.max_sequence_length:
                raise TaskError("too_large", f"the prompt's {ids.size} tokens exceed max_sequence_length "
                                             f"{self.config.max_sequence_length}")
        else:
            raise TaskError("invalid_request", "give the prompt as a non-empty string `prompt` or as a payload "
                                               "of token ids, not both")
        n = _int(body, "max_new_tokens", min(32, self.config.max_new_tokens), 1, self.config.max_new_tokens,
                 too_large=True)
        temperature = _float(body, "temperature", 1.0, 0.0, 10.0)
        top_k = _int(body, "top_k", 0, 0, VOCAB_SIZE)
        top_p = _float(body, "top_p", 1.0, 0.0, 1.0, open_lo=True)
        seed = _int(body, "seed", 0, 0, 2**63 - 1)
        rng = np.random.default_rng(seed)
        assert self.batcher is not None
        context = ids
        out: list[int] = []
        for _ in range(n):
            if time.monotonic() >= deadline:
                raise TaskError("timeout", f"the deadline passed after {len(out)} of {n} tokens")
            window = self._context(context[-self.config.max_sequence_length :])
            logprobs = (await self.batcher.infer(window, deadline))[-1]
            token = sample(logprobs, rng, temperature=temperature, top_k=top_k, top_p=top_p)
            out.append(token)
            context = np.append(context, token)
        return TaskResult({"text": decode(out), "ids": out})

    # ------------------------------------------------------------------ validator side
    def make_task(self, rng: np.random.Generator) -> ValidatorTask:
        """A ``next_token`` task over a random held-out window; the true next tokens are the truth."""
        if self.dataset is None:
            raise ConfigError("making validation tasks needs a dataset", key_path=f"modalities.{self.name}.dataset")
        n = self.config.sequence_length
        window = self.dataset.sample_windows("heldout", 1, n + 1, rng)[0]
        positions = self.config.validation_positions
        truth = window[1:] if positions == "all" else window[-1:]
        return ValidatorTask(self.wire_name, "next_token", {"k": self.config.top_k, "positions": positions},
                             np.asarray(window[:n], dtype=np.int32), np.asarray(truth, dtype=np.int64))

    def batch_tasks(self, tasks: Sequence[ValidatorTask]) -> ValidatorTask | None:
        """``next_token`` tasks with the same body and window length as one ``batch`` request."""
        first = tasks[0] if tasks else None
        if (first is None or len(tasks) > self.config.max_tasks
                or any(t.task != "next_token" or t.body != first.body or not isinstance(t.payload, np.ndarray)
                       or not isinstance(first.payload, np.ndarray) or t.payload.shape != first.payload.shape
                       for t in tasks)):
            return None
        payload = np.stack([np.asarray(t.payload) for t in tasks])
        return ValidatorTask(first.modality, "next_token", {**first.body, "batch": len(tasks)}, payload,
                             tuple(t.truth for t in tasks))

    def unbatch_reply(self, batch: ValidatorTask, tasks: Sequence[ValidatorTask], reply: Reply) -> list[Reply]:
        """Row i of a batched answer (body ``ids`` [B][P][k], payload (B, P, k)) as the answer to task i."""
        ids = reply.body.get("ids") if isinstance(reply.body, dict) else None
        values = reply.payload
        if (not isinstance(ids, list) or len(ids) != len(tasks) or not isinstance(values, np.ndarray)
                or values.ndim != 3 or values.shape[0] != len(tasks)):
            raise TaskError("invalid_response", f"a batch of {len(tasks)} needs {len(tasks)} answers "
                                                f"(ids [B][P][k] and a (B, P, k) payload)")
        return [Reply({"ids": ids[i]}, values[i], reply.peer_id, reply.hotkey, reply.latency)
                for i in range(len(tasks))]

    def parse_response(self, task: ValidatorTask, reply: Reply) -> TopKPrediction:
        """Check a miner's answer to ``task``; ``TaskError("invalid_response")`` when it is not sound."""
        return check_topk(reply.body, reply.payload, rows=len(task.truth), k=int(task.body["k"]))
