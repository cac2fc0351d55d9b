"""Baseline language models without torch (n-gram, uniform, garbage), and serving any text model from
``tnode.workers`` processes (``[models.NAME] workers = N``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from tnode.errors import ConfigError
from tnode.workers import WorkerPool, WorkerSpec, model_stats, serve_model

from .batcher import pad_right
from .config import GarbageConfig, NgramConfig, TransformerConfig, UniformConfig
from .tokenizer import VOCAB_SIZE

V = VOCAB_SIZE


def log_softmax(x: np.ndarray) -> np.ndarray:
    """float32 log-softmax over the last axis."""
    z = x - x.max(axis=-1, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)


def _context_keys(tokens: np.ndarray, n: int) -> np.ndarray:
    """Key of the ``n`` tokens ending at each position ≥ n-1 (base-256 number), int64 (len - n + 1,)."""
    keys = np.zeros(len(tokens) - n + 1, dtype=np.int64)
    for j in range(n):
        keys = keys * V + tokens[j : len(tokens) - n + 1 + j]
    return keys


@dataclass(frozen=True)
class _Level:
    """Counts of one order, sparse: contexts seen (sorted keys) and their continuations (CSR)."""

    contexts: np.ndarray  # int64 (C,) sorted context keys
    indptr: np.ndarray  # int64 (C + 1,)
    next_ids: np.ndarray  # int64 (E,)
    counts: np.ndarray  # float64 (E,)
    totals: np.ndarray  # float64 (C,) c(ctx)
    types: np.ndarray  # float64 (C,) distinct continuations of ctx


class NgramModel:
    """Component ``[models.NAME] type = "ngram"``: interpolated byte n-gram with Witten-Bell smoothing.

    P_n(w | h) = (c(h, w) + t(h) · P_{n-1}(w | h')) / (c(h) + t(h)), where h' drops the oldest byte
    of h and t(h) counts the distinct bytes seen after h; contexts never seen fall back to
    P_{n-1}. The base case is add-one unigrams, so every byte keeps some probability. Counts are
    stored sparsely, so memory grows with the data, not with 256^n.
    """

    vocab_size = V

    def __init__(self, node: Any, name: str, config: NgramConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.order = config.order
        self.unigram: np.ndarray | None = None
        self.levels: list[_Level] = []

    @property
    def context(self) -> int:
        return self.order - 1

    def fit(self, tokens: np.ndarray) -> None:
        """Count the n-grams of ``tokens`` (int array) for every order up to ``order``."""
        t = np.asarray(tokens, dtype=np.int64)
        uni = np.bincount(t, minlength=V).astype(np.float64) + 1.0
        self.unigram = uni / uni.sum()
        self.levels = []
        for n in range(2, self.order + 1):
            if len(t) < n:
                break
            grams, counts = np.unique(_context_keys(t, n), return_counts=True)
            ctx = grams // V
            contexts, first, types = np.unique(ctx, return_index=True, return_counts=True)
            indptr = np.append(first, len(grams)).astype(np.int64)
            totals = np.add.reduceat(counts, first).astype(np.float64)
            self.levels.append(_Level(contexts, indptr, grams % V, counts.astype(np.float64), totals,
                                      types.astype(np.float64)))

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        """float32 (batch, seq, 256) log-probabilities; see :class:`tnode.contracts.text.LanguageModel`."""
        if self.unigram is None:
            raise RuntimeError(f"n-gram model {self.name!r} is not fit yet")
        toks = np.asarray(tokens, dtype=np.int64)
        b, t = toks.shape
        probs = np.broadcast_to(self.unigram, (b, t, V)).copy()
        for h, level in enumerate(self.levels, start=1):  # h: context length of this level
            if t < h:
                break
            keys = np.stack([_context_keys(row, h) for row in toks])  # (b, t - h + 1): context ending at pos
            sub = probs[:, h - 1 :].reshape(-1, V)
            self._interpolate(level, keys.reshape(-1), sub)
            probs[:, h - 1 :] = sub.reshape(b, t - h + 1, V)
        return np.log(probs).astype(np.float32)

    @staticmethod
    def _interpolate(level: _Level, keys: np.ndarray, lower: np.ndarray) -> None:
        """Replace rows of ``lower`` (queries, V) whose context was seen with the smoothed estimate."""
        idx = np.searchsorted(level.contexts, keys).clip(0, max(len(level.contexts) - 1, 0))
        found = np.flatnonzero(level.contexts[idx] == keys) if len(level.contexts) else np.empty(0, np.int64)
        if not len(found):
            return
        rows = idx[found]
        total, types = level.totals[rows, None], level.types[rows, None]
        smoothed = types * lower[found]
        starts, lengths = level.indptr[rows], level.indptr[rows + 1] - level.indptr[rows]
        owner = np.repeat(np.arange(len(found)), lengths)
        entry = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        np.add.at(smoothed, (owner, level.next_ids[entry]), level.counts[entry])
        lower[found] = smoothed / (total + types)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        dataset = self.node.component("dataset", self.config.dataset)
        if dataset is None:
            raise ConfigError(f"dataset {self.config.dataset!r} is not running in this node",
                              key_path=f"models.{self.name}.dataset")
        await anyio.to_thread.run_sync(lambda: self.fit(dataset.tokens("train")))
        self.node.log.info("model ready", model=self.name, type="ngram", order=self.order,
                           contexts=sum(len(level.contexts) for level in self.levels))
        task_status.started()
        await anyio.sleep_forever()


class UniformModel:
    """Component ``[models.NAME] type = "uniform"``: every byte equally likely."""

    vocab_size = V
    context = 0

    def __init__(self, node: Any, name: str, config: UniformConfig) -> None:
        self.node = node
        self.name = name
        self.pool = worker_pool(node, name, "uniform", config)

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        b, t = np.asarray(tokens).shape
        return np.full((b, t, V), -np.log(V), dtype=np.float32)

    def stats(self) -> dict[str, Any]:
        """Workers (pid, state, RSS) or the node's RSS when it runs in process."""
        return model_stats(self.pool)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        if self.pool is not None:
            await serve_in_workers(self.node, self.name, self.pool, task_status)
        task_status.started()
        await anyio.sleep_forever()


class GarbageModel:
    """Component ``[models.NAME] type = "garbage"``: confident distributions that ignore the input.

    A spam miner for devnet experiments: well-formed answers a validator must score low.
    """

    vocab_size = V
    context = 0

    def __init__(self, node: Any, name: str, config: GarbageConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self._constant = log_softmax(np.random.default_rng(config.seed).normal(0.0, 3.0, V))
        self.pool = worker_pool(node, name, "garbage", config)

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        b, t = np.asarray(tokens).shape
        if self.config.mode == "constant":
            return np.broadcast_to(self._constant, (b, t, V)).copy()
        return log_softmax(self.rng.normal(0.0, 3.0, (b, t, V)))

    def stats(self) -> dict[str, Any]:
        """Workers (pid, state, RSS) or the node's RSS when it runs in process."""
        return model_stats(self.pool)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        if self.pool is not None:
            await serve_in_workers(self.node, self.name, self.pool, task_status)
        task_status.started()
        await anyio.sleep_forever()


# --------------------------------------------------------------------------- worker processes
def worker_pool(node: Any, name: str, model_type: str, config: Any, **overrides: Any) -> WorkerPool | None:
    """A pool serving the model ``[models.NAME]`` in ``config.workers`` processes; None when it is 0.

    ``overrides`` replace config fields for the workers (e.g. a checkpoint path made absolute here,
    where node.toml's directory is known).
    """
    if not getattr(config, "workers", 0):
        return None
    fields = {**dataclasses.asdict(config), **overrides, "workers": 0}
    spec = WorkerSpec(f"{__name__}:worker_model", {"type": model_type, "config": fields})
    directory = Path(node.data_dir) / "workers" if node is not None else Path(".")
    return WorkerPool(spec, workers=config.workers, name=name, directory=directory,
                      log=node.log if node is not None else None)


async def serve_in_workers(node: Any, name: str, pool: WorkerPool, task_status: Any) -> None:
    """Body of a model component's ``run`` when it has workers: start them, report, serve until cancelled."""
    await serve_model(pool, name=name, log=node.log, task_status=task_status)


class PaddedBatches:
    """A text model as a :class:`tnode.workers.BatchModel`: sequences of any lengths in, one pass,
    each sequence's (len, vocab) log-probabilities out."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def info(self) -> dict[str, Any]:
        inner = getattr(self.model, "model", None)  # the torch module of a transformer
        out: dict[str, Any] = {"context": int(self.model.context)}
        if inner is not None:
            out.update(parameters=inner.parameter_count(), d_model=inner.shape.d_model,
                       n_layers=inner.shape.n_layers)
        return out

    def infer(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        out = self.model.next_token_logprobs(pad_right(inputs))
        return [np.asarray(out[i, : len(x)], dtype=np.float32) for i, x in enumerate(inputs)]


def worker_model(spec: Mapping[str, Any]) -> PaddedBatches:
    """``WorkerSpec.factory`` of text models: build the model ``spec["type"]`` from ``spec["config"]``
    and load its weights (once, in the worker process)."""
    kind, fields = spec["type"], dict(spec["config"])
    model: Any
    if kind == "transformer":
        from .transformer import TransformerModel  # torch only in workers that serve a transformer

        model = TransformerModel(None, "worker", TransformerConfig(**fields))
        model.load()
    elif kind == "uniform":
        model = UniformModel(None, "worker", UniformConfig(**fields))
    elif kind == "garbage":
        model = GarbageModel(None, "worker", GarbageConfig(**fields))
    else:
        raise ValueError(f"model type {kind!r} cannot run in workers (transformer, uniform, garbage can)")
    return PaddedBatches(model)
