"""Drawing the next token from log-probabilities: temperature, top-k and nucleus (top-p)."""

from __future__ import annotations

import numpy as np


def sample(logprobs: np.ndarray, rng: np.random.Generator, *, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0) -> int:
    """One token id drawn from ``logprobs`` (vocab,).

    ``temperature`` 0 is greedy; ``top_k`` 0 keeps every token; ``top_p`` keeps the smallest set of
    most likely tokens whose probability reaches ``top_p`` (always at least one).
    """
    if temperature == 0:
        return int(np.argmax(logprobs))
    logits = np.asarray(logprobs, dtype=np.float64) / temperature
    order = np.argsort(-logits, kind="stable")
    if top_k:
        order = order[:top_k]
    probs = np.exp(logits[order] - logits[order[0]])
    probs /= probs.sum()
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), top_p)) + 1
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(order[rng.choice(len(order), p=probs)])
