"""Constructed answers with known losses for the scorer tests."""

from __future__ import annotations

import numpy as np
from tnode.contracts.text import TopKPrediction
from tnode.interfaces import ValidatorTask
from tnode.pluginmanager import PluginManager, load_plugins

V = 256


def task(targets: list[int] | np.ndarray) -> ValidatorTask:
    return ValidatorTask(modality="text", task="next_token", body={}, payload=None,
                         truth=np.asarray(targets, dtype=np.int64))


def confident(tokens: list[int] | np.ndarray, p: float, k: int = 4, vocab: int = V) -> TopKPrediction:
    """Top-k answer putting ``p`` on ``tokens[t]`` at position t and (1 − p)/(2k) on k − 1 other tokens."""
    tokens = np.asarray(tokens, dtype=np.int64)
    ids = np.stack([(tokens + j) % vocab for j in range(k)], axis=1)
    probs = np.full(ids.shape, (1 - p) / (2 * k))
    probs[:, 0] = p
    return TopKPrediction(ids=ids, logprobs=np.log(probs).astype(np.float32), vocab_size=vocab)


def uniform(positions: int, k: int = 4, vocab: int = V) -> TopKPrediction:
    ids = np.tile(np.arange(k), (positions, 1))
    return TopKPrediction(ids=ids, logprobs=np.full((positions, k), -np.log(vocab), dtype=np.float32),
                          vocab_size=vocab)


def only_scoring_plugins() -> PluginManager:
    """Load just this plugin (and the validator, which latency reads its deadline from)."""
    others = ["echo", "libp2p", "chain_local", "text", "antispam"]
    return load_plugins(block=others, autoload_external=False)
