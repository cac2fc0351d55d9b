"""Validator-side checks of a miner's ``next_token`` answer.

Everything a miner sends is untrusted: a malformed, non-finite or impossible answer becomes
``TaskError("invalid_response")`` (scored as no answer), never an exception elsewhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tnode.contracts.text import TopKPrediction
from tnode.errors import TaskError

from .tokenizer import VOCAB_SIZE

MASS_TOLERANCE = 1e-3  # float32 rounding of k log-probabilities stays far below this
LOGPROB_TOLERANCE = 1e-4


def _bad(why: str) -> TaskError:
    return TaskError("invalid_response", why)


def check_topk(body: Any, payload: Any, *, rows: int, k: int, vocab_size: int = VOCAB_SIZE) -> TopKPrediction:
    """Validate an answer (payload float log-probabilities (P, k'), body ``{"ids": [[int] * k'] * P}``)
    with P = ``rows`` and 1 ≤ k' ≤ ``k``; returns it as a :class:`TopKPrediction`."""
    if not isinstance(payload, np.ndarray) or payload.dtype.kind != "f":
        raise _bad("payload must be a float array of log-probabilities")
    if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
        raise _bad("body.ids must be a list of lists of token ids")
    try:
        ids = np.asarray(body["ids"])
    except (ValueError, TypeError, OverflowError):
        raise _bad("body.ids must be a rectangular list of integers") from None
    if ids.size and ids.dtype.kind not in "iu":  # floats or bools would be silently truncated otherwise
        raise _bad(f"body.ids must hold integers, got {ids.dtype}")
    logprobs = payload.astype(np.float32)
    if logprobs.ndim != 2 or ids.shape != logprobs.shape:
        raise _bad(f"ids {ids.shape} and log-probabilities {logprobs.shape} must have the same 2-D shape")
    if logprobs.shape[0] != rows or not 1 <= logprobs.shape[1] <= k:
        raise _bad(f"expected ({rows}, 1..{k}) entries, got {logprobs.shape}")
    if not np.all(np.isfinite(logprobs)):
        raise _bad("log-probabilities must be finite")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise _bad(f"token ids must lie in [0, {vocab_size})")
    if np.any(np.diff(np.sort(ids, axis=1), axis=1) == 0):
        raise _bad("a token id repeats within one position")
    if logprobs.max() > LOGPROB_TOLERANCE:
        raise _bad("log-probabilities must be ≤ 0")
    mass = np.exp(logprobs.astype(np.float64)).sum(axis=1)
    if np.any(mass > 1.0 + MASS_TOLERANCE):
        raise _bad(f"probabilities of one position sum to {mass.max():.4f} > 1")
    return TopKPrediction(ids.astype(np.int64), np.minimum(logprobs, 0.0), vocab_size)
