"""Probability a top-k answer gives to the true tokens, shared by the scorers.

A :class:`tnode.contracts.text.TopKPrediction` names at most k tokens per position with their
log-probabilities. The rest of the vocabulary shares whatever mass the k do not claim, spread
uniformly. Claims summing to more than 1 are scaled down to 1 (over-claiming never pays), and
every probability is raised to a floor so one confident miss costs a bounded loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tnode.contracts.text import TopKPrediction
from tnode.interfaces import ValidatorTask


def truth_tokens(task: ValidatorTask) -> np.ndarray:
    """The held-back true next token per scored position, as a 1-D int64 array.

    Accepts ``task.truth`` as an int array/list, a mapping with ``"targets"`` or an object with a
    ``targets`` attribute (the modality decides what else it keeps).
    """
    truth: Any = task.truth
    if isinstance(truth, Mapping):
        truth = truth.get("targets")
    elif hasattr(truth, "targets"):
        truth = truth.targets
    if truth is None:
        raise ValueError(f"task {task.modality}/{task.task} carries no true tokens to score against")
    arr = np.asarray(truth)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"true tokens must be integers, got dtype {arr.dtype}")
    return arr.reshape(-1).astype(np.int64)


def true_token_probs(pred: TopKPrediction, truth: np.ndarray, floor: float) -> np.ndarray | None:
    """Probability ``pred`` gives to each true token (shape ``(positions,)``), or ``None`` when the
    prediction does not fit the task (wrong number of positions, malformed arrays)."""
    ids = np.asarray(pred.ids)
    logprobs = np.asarray(pred.logprobs, dtype=np.float64)
    if ids.ndim != 2 or ids.shape != logprobs.shape or ids.shape[0] != truth.shape[0] or pred.vocab_size < 1:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.exp(logprobs)
    p = np.nan_to_num(p, nan=0.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0)
    total = p.sum(axis=1)
    # Claims over 1 are scaled to 1: a miner cannot buy probability by over-claiming.
    p = p / np.maximum(total, 1.0)[:, None]
    match = ids == truth[:, None]
    in_topk = match.any(axis=1)
    p_in = (p * match).sum(axis=1)
    k_unique = _unique_per_row(ids)
    rest = (1.0 - p.sum(axis=1)).clip(0.0, 1.0)
    outside = np.maximum(pred.vocab_size - k_unique, 1)
    p_true = np.where(in_topk, p_in, rest / outside)
    return np.maximum(p_true, floor)


def _unique_per_row(ids: np.ndarray) -> np.ndarray:
    if ids.shape[1] == 0:
        return np.zeros(ids.shape[0], dtype=np.int64)
    s = np.sort(ids, axis=1)
    return 1 + (np.diff(s, axis=1) != 0).sum(axis=1)


def prob_matrix(
    task: ValidatorTask, answers: Mapping[int, Any], floor: float
) -> tuple[np.ndarray, list[int], int]:
    """Rows of true-token probabilities for every usable answer.

    :returns: ``(probs (players, positions), uids of the rows, vocab size)``; answers that are
        ``None`` or do not fit the task are left out (they score 0).
    """
    truth = truth_tokens(task)
    rows: list[np.ndarray] = []
    uids: list[int] = []
    vocab = 0
    for uid, answer in answers.items():
        if not isinstance(answer, TopKPrediction):
            continue
        p = true_token_probs(answer, truth, floor)
        if p is None:
            continue
        rows.append(p)
        uids.append(uid)
        vocab = max(vocab, answer.vocab_size)
    matrix = np.stack(rows) if rows else np.zeros((0, truth.shape[0]))
    return matrix, uids, vocab
