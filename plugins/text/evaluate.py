"""Held-out cross-entropy of any :class:`tnode.contracts.text.LanguageModel` (numpy only)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Loss:
    """Mean next-token cross-entropy over some windows."""

    nats: float
    tokens: int

    @property
    def bits(self) -> float:
        """Bits per token (= bits per byte with the byte tokenizer)."""
        return self.nats / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats)


def eval_windows(tokens: np.ndarray, *, windows: int = 256, length: int = 128, seed: int = 0) -> np.ndarray:
    """Fixed random windows of ``length + 1`` tokens (int64) for a comparable evaluation."""
    length = min(length, len(tokens) - 1)
    if length < 1:
        raise ValueError(f"{len(tokens)} tokens are too few to evaluate on")
    starts = np.random.default_rng(seed).integers(0, len(tokens) - length, size=windows)
    return np.asarray(tokens)[starts[:, None] + np.arange(length + 1)].astype(np.int64)


def cross_entropy(model: Any, batch: np.ndarray, *, chunk: int = 32) -> Loss:
    """Mean −log p(next token) of ``model`` over every position of ``batch`` (windows, length + 1)."""
    total = 0.0
    for i in range(0, len(batch), chunk):
        part = batch[i : i + chunk]
        logprobs = np.asarray(model.next_token_logprobs(part[:, :-1]), dtype=np.float64)
        total -= float(np.take_along_axis(logprobs, part[:, 1:, None], axis=-1).sum())
    count = batch.shape[0] * (batch.shape[1] - 1)
    return Loss(total / count, count)
