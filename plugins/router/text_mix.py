"""Text aggregation: top-k next-token answers → dense distributions → one quality-weighted mixture.

A miner's answer to ``next_token`` is, per position, k token ids with their log-probabilities (the
text modality's wire form, :class:`tnode.contracts.text.TopKPrediction` once parsed). The mass the k
do not claim is spread uniformly over the other tokens of the vocabulary, as the scorers do, so
every answer becomes a full distribution and any number of them mix by a weighted sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tnode.contracts.text import TopKPrediction
from tnode.errors import TaskError

VOCAB_SIZE = 256
"""The network's byte-level vocabulary (token = one UTF-8 byte)."""
_MASS_TOLERANCE = 1e-3


def parse_topk(body: Any, payload: Any, *, rows: int, k: int, vocab_size: int = VOCAB_SIZE) -> TopKPrediction:
    """A miner's ``next_token`` answer checked as untrusted input; ``TaskError("invalid_response")``
    names what is wrong."""
    def bad(why: str) -> TaskError:
        return TaskError("invalid_response", why)

    if not isinstance(payload, np.ndarray) or payload.dtype.kind != "f":
        raise bad("payload must be a float array of log-probabilities")
    if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
        raise bad("body.ids must be a list of lists of token ids")
    try:
        ids = np.asarray(body["ids"])
    except (ValueError, TypeError, OverflowError):
        raise bad("body.ids must be a rectangular list of integers") from None
    if ids.size and ids.dtype.kind not in "iu":
        raise bad(f"body.ids must hold integers, got {ids.dtype}")
    lp = payload.astype(np.float64)
    if lp.ndim != 2 or ids.shape != lp.shape or lp.shape[0] != rows or not 1 <= lp.shape[1] <= k:
        raise bad(f"expected ids and log-probabilities of shape ({rows}, 1..{k}), got {ids.shape} and {lp.shape}")
    if not np.all(np.isfinite(lp)) or lp.max() > 1e-4:
        raise bad("log-probabilities must be finite and ≤ 0")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise bad(f"token ids must lie in [0, {vocab_size})")
    if np.any(np.diff(np.sort(ids, axis=1), axis=1) == 0):
        raise bad("a token id repeats within one position")
    if np.any(np.exp(lp).sum(axis=1) > 1.0 + _MASS_TOLERANCE):
        raise bad("the probabilities of one position sum to more than 1")
    return TopKPrediction(ids.astype(np.int64), np.minimum(lp, 0.0).astype(np.float32), vocab_size)


def dense(pred: TopKPrediction, floor: float) -> np.ndarray:
    """(positions, V) probabilities: the k claimed, the rest of the mass spread over the others,
    every token at least ``floor``, rows summing to 1."""
    rows, k = pred.ids.shape
    p = np.exp(pred.logprobs.astype(np.float64))
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1.0)
    rest = np.clip(1.0 - p.sum(axis=1), 0.0, 1.0) / max(pred.vocab_size - k, 1)
    out = np.repeat(rest[:, None], pred.vocab_size, axis=1)
    np.put_along_axis(out, pred.ids, p, axis=1)
    out = np.maximum(out, floor)
    return out / out.sum(axis=1, keepdims=True)


def mix(dists: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Σ wᵢ pᵢ over the answers (weights renormalized), shape (positions, V)."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(dists), 1.0 / len(dists))
    return np.tensordot(w, np.stack(dists), axes=1)


def responsibilities(dists: Sequence[np.ndarray], weights: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Each answer's mean posterior share of the true tokens (the E step of the mixture weights)."""
    stacked = np.stack(dists)  # (m, positions, V)
    picked = np.take_along_axis(stacked, truth[None, :, None].astype(np.int64), axis=2)[..., 0]  # (m, positions)
    joint = np.asarray(weights, dtype=np.float64)[:, None] * picked
    return (joint / joint.sum(axis=0, keepdims=True)).mean(axis=1)


def true_prob(dist: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Probability ``dist`` (positions, V) gives each true token."""
    return np.take_along_axis(dist, truth[:, None].astype(np.int64), axis=1)[:, 0]


def cross_entropy(dist: np.ndarray, truth: np.ndarray) -> float:
    """Mean −log p(true token) in nats."""
    return float(-np.log(true_prob(dist, truth)).mean())


def sample_token(dist: np.ndarray, rng: np.random.Generator, *, temperature: float, top_k: int = 0) -> int:
    """One token from a (V,) distribution: greedy at temperature 0, else p^(1/T) (optionally the top k)."""
    if temperature <= 0:
        return int(np.argmax(dist))
    logits = np.log(dist) / temperature
    if 0 < top_k < len(logits):
        cut = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits >= cut, logits, -np.inf)
    p = np.exp(logits - logits.max())
    return int(rng.choice(len(p), p=p / p.sum()))
