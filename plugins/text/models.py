"""Baseline language models: n-gram (Witten-Bell), uniform and garbage. All numpy, no torch."""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
from tnode.errors import ConfigError

from .config import GarbageConfig, NgramConfig, UniformConfig
from .tokenizer import VOCAB_SIZE

V = VOCAB_SIZE


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)


class NgramModel:
    """Interpolated byte n-gram model (order ≤ 3) with Witten-Bell smoothing.

    P_n(w | ctx) = (c(ctx, w) + t(ctx) · P_{n-1}(w | shorter ctx)) / (c(ctx) + t(ctx)), where t is
    the number of distinct continuations seen after ctx; the base case is add-one unigrams.
    """

    vocab_size = V

    def __init__(self, node: Any, name: str, config: NgramConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.order = config.order
        self.tables: list[np.ndarray] = []

    def fit(self, tokens: np.ndarray) -> None:
        t = np.asarray(tokens, dtype=np.int64)
        uni = np.bincount(t, minlength=V).astype(np.float64) + 1.0
        tables = [uni / uni.sum()]  # P1 (V,)
        if self.order >= 2:
            c2 = np.bincount(t[:-1] * V + t[1:], minlength=V * V).reshape(V, V).astype(np.float64)
            tables.append(self._smooth(c2, tables[0][None, :]))  # P2 (V, V)
        if self.order >= 3:
            c3 = np.bincount((t[:-2] * V + t[1:-1]) * V + t[2:], minlength=V**3).reshape(V * V, V)
            lower = np.tile(tables[1], (V, 1))  # P2 row for context (a, b) is row b
            tables.append(self._smooth(c3.astype(np.float32), lower.astype(np.float32)).astype(np.float32))
        self.tables = [np.log(tab).astype(np.float32) for tab in tables]

    @staticmethod
    def _smooth(counts: np.ndarray, lower: np.ndarray) -> np.ndarray:
        n = counts.sum(axis=1, keepdims=True)
        types = (counts > 0).sum(axis=1, keepdims=True)
        denom = n + types
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(denom > 0, (counts + types * lower) / np.maximum(denom, 1), lower)
        return p

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        toks = np.asarray(tokens, dtype=np.int64)
        b, t = toks.shape
        if self.order == 1 or not self.tables:
            return np.broadcast_to(self.tables[0], (b, t, V)).copy()
        out = self.tables[1][toks]  # bigram from the last byte, (B, T, V)
        if self.order >= 3 and t >= 2:
            ctx = toks[:, :-1] * V + toks[:, 1:]
            out[:, 1:] = self.tables[2][ctx]
        return out

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        dataset = self.node.component("dataset", self.config.dataset)
        if dataset is None:
            raise ConfigError(f"dataset {self.config.dataset!r} is not running", key_path=f"models.{self.name}.dataset")
        await anyio.to_thread.run_sync(lambda: self.fit(dataset.tokens("train")))
        task_status.started()
        await anyio.sleep_forever()


class UniformModel:
    """Every byte equally likely."""

    vocab_size = V

    def __init__(self, node: Any, name: str, config: UniformConfig) -> None:
        self.node = node
        self.name = name

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        b, t = np.asarray(tokens).shape
        return np.full((b, t, V), -np.log(V), dtype=np.float32)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()


class GarbageModel:
    """Random (or constant) distributions that ignore the input: a spam miner for experiments."""

    vocab_size = V

    def __init__(self, node: Any, name: str, config: GarbageConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self._constant = log_softmax(np.random.default_rng(config.seed).normal(0, 3, V))

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        b, t = np.asarray(tokens).shape
        if self.config.mode == "constant":
            return np.broadcast_to(self._constant, (b, t, V)).copy()
        return log_softmax(self.rng.normal(0, 3, (b, t, V)))

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()
