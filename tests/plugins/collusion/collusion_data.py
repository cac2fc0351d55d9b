"""Constructed answers and weights for the collusion tests: models, relays with noise, twins,
lazy miners, copier and cabal validators."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import structlog
from tnode.bus import EventBus
from tnode.contracts.text import TopKPrediction

VOCAB = 256
K = 16
POSITIONS = 8


def topk(logits: np.ndarray, k: int = K) -> TopKPrediction:
    """The top-k answer of a model with these logits (positions × vocab)."""
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    ids = np.argsort(-logp, axis=1)[:, :k]
    return TopKPrediction(ids.astype(np.int64), np.take_along_axis(logp, ids, axis=1).astype(np.float32), VOCAB)


def noisy(answer: TopKPrediction, rng: np.random.Generator, nats: float) -> TopKPrediction:
    """A relay's copy: the source's log-probs with Gaussian noise of ``nats`` added."""
    logp = np.minimum(answer.logprobs + rng.normal(0, nats, answer.logprobs.shape), 0.0)
    return TopKPrediction(answer.ids.copy(), logp.astype(np.float32), VOCAB)


def model_logits(rng: np.random.Generator, task: np.ndarray, seed_shift: np.ndarray, sharp: float = 3.0) -> np.ndarray:
    """One model's logits on one task: a shared task signal plus the model's own view of it."""
    return sharp * (0.5 * task + seed_shift[None, :] + rng.normal(0, 1.0, task.shape))


def bare_node(tmp_path: Any, bus: EventBus, chain: Any = None) -> Any:
    """What a detector uses of a node: the bus, a logger, the data directory, readiness and the chain."""
    import anyio

    ready = anyio.Event()
    ready.set()
    return SimpleNamespace(bus=bus, log=structlog.get_logger(), data_dir=tmp_path, ready=ready, chain=chain)
