"""The cross-entropy scorer: lower loss on the held-back true tokens → higher score."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import anyio
import numpy as np
from tnode.interfaces import ValidatorTask

from .config import CrossEntropyConfig
from .probs import prob_matrix


def losses(probs: np.ndarray) -> np.ndarray:
    """Mean negative log-likelihood per row (nats per token)."""
    if probs.shape[1] == 0:
        return np.zeros(probs.shape[0])
    return -np.log(probs).mean(axis=1)


def loss_scores(loss: np.ndarray, vocab_size: int, temperature: float) -> np.ndarray:
    """Map losses to (0, 1]: ``exp(−(loss − best) / temperature)``.

    ``best`` is the lowest loss present, capped at the uniform distribution's loss ``log V`` — the
    uniform answer is free to give, so a task whose answers are all worse than it has no answer
    that deserves full marks.
    """
    if loss.size == 0:
        return loss
    best = min(float(loss.min()), math.log(max(vocab_size, 1)))
    return np.exp(-(loss - best) / temperature).clip(0.0, 1.0)


class CrossEntropyScorer:
    """``[scorers.NAME] type = "cross_entropy"``: see :class:`CrossEntropyConfig`."""

    def __init__(self, node: Any, name: str, config: CrossEntropyConfig) -> None:
        self.node = node
        self.name = name
        self.config = config

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    def losses(self, task: ValidatorTask, answers: Mapping[int, Any]) -> dict[int, float]:
        """Loss (nats per token) of every usable answer; unusable answers are absent."""
        probs, uids, _ = prob_matrix(task, answers, self.config.floor)
        return dict(zip(uids, losses(probs).tolist(), strict=True))

    def score(self, task: ValidatorTask, answers: Mapping[int, Any], latencies: Mapping[int, float]) -> dict[int, float]:
        """Scores in [0, 1] for every uid in ``answers``; ``None`` and misfit answers get 0."""
        probs, uids, vocab = prob_matrix(task, answers, self.config.floor)
        out = dict.fromkeys(answers, 0.0)
        if uids:
            scores = loss_scores(losses(probs), vocab, self.config.temperature)
            out.update(zip(uids, scores.tolist(), strict=True))
        return out
