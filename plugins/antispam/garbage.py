"""Recognising garbage top-k answers: degenerate, constant, and copies of another miner's answer.

All functions work on :class:`tnode.contracts.text.TopKPrediction` (ids and log-probs per position)
and are pure, so the scorer wrapper in :mod:`.guard` only has to apply a policy.

Distances between two answers are the L1 distance between their next-token distributions,
averaged over positions (0 = identical, 2 = disjoint). Each distribution is the listed top-k
probabilities plus the unlisted remainder (1 − Σ top-k), which is compared as one lump: two
answers that list the same tokens with the same probabilities have distance 0 whatever they
leave unsaid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from tnode.contracts.text import TopKPrediction

# Rule names, used as SpamDetected.kind and as counter keys.
NON_FINITE = "non_finite"
EMPTY = "empty_distribution"
UNIFORM = "uniform_top_k"
CONSTANT = "constant_response"
REPEATED = "repeated_response"
DUPLICATE = "duplicate_response"
NEAR_DUPLICATE = "near_duplicate"

_SAME_ROW_TOLERANCE = 1e-6


def answer_digest(pred: TopKPrediction) -> bytes:
    """A digest of the answer's exact content (shape, ids, float32 log-probs)."""
    ids = np.ascontiguousarray(np.asarray(pred.ids, dtype=np.int64))
    lp = np.ascontiguousarray(np.asarray(pred.logprobs, dtype=np.float32))
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((ids.shape, lp.shape, int(pred.vocab_size))).encode())
    h.update(ids.tobytes())
    h.update(lp.tobytes())
    return h.digest()


def probabilities(pred: TopKPrediction) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ids int64 (T, k), p float64 (T, k))`` with claims over 1 scaled down; ``None`` if malformed."""
    ids = np.asarray(pred.ids)
    lp = np.asarray(pred.logprobs, dtype=np.float64)
    if ids.ndim != 2 or ids.shape != lp.shape or ids.dtype.kind not in "iu":
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.exp(lp)
    p = np.nan_to_num(p, nan=0.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0)
    p = p / np.maximum(p.sum(axis=1), 1.0)[:, None]
    return ids.astype(np.int64), p


def degenerate_rule(pred: TopKPrediction, *, uniform_tolerance: float, min_positions: int,
                    check_uniform: bool = True, check_constant: bool = True) -> str | None:
    """The first rule ``pred`` breaks on its own, or ``None``.

    - ``non_finite``: a NaN or +inf log-prob (−inf is a legitimate zero probability);
    - ``empty_distribution``: no positions, no candidates, or no probability mass at some position;
    - ``uniform_top_k``: every position spreads equal probability over its k ≥ 2 candidates (and
      positions × (k − 1) ≥ ``min_positions``, so one near-tie of an honest model is not enough);
    - ``constant_response``: the same candidates and log-probs at every one of ≥ ``min_positions``
      positions (the input was ignored).
    """
    lp = np.asarray(pred.logprobs, dtype=np.float64)
    ids = np.asarray(pred.ids)
    if np.isnan(lp).any() or np.isposinf(lp).any():
        return NON_FINITE
    if lp.ndim != 2 or ids.shape != lp.shape or lp.shape[0] == 0 or lp.shape[1] == 0:
        return EMPTY
    if (np.isneginf(lp).all(axis=1)).any():
        return EMPTY
    if (check_uniform and lp.shape[1] >= 2 and lp.shape[0] * (lp.shape[1] - 1) >= min_positions
            and np.isfinite(lp).all()):
        spread = lp.max(axis=1) - lp.min(axis=1)
        if (spread <= uniform_tolerance).all():
            return UNIFORM
    if check_constant and lp.shape[0] >= min_positions:
        same_ids = (ids == ids[0]).all()
        finite = np.where(np.isfinite(lp), lp, -1e30)
        if same_ids and (np.abs(finite - finite[0]) <= _SAME_ROW_TOLERANCE).all():
            return CONSTANT
    return None


def l1_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Mean L1 distance per position between two answers from :func:`probabilities` (same positions)."""
    a_ids, a_p = a
    b_ids, b_p = b
    positions = a_ids.shape[0]
    if positions != b_ids.shape[0]:
        return 2.0
    if positions == 0:
        return 0.0
    span = int(max(a_ids.max(initial=0), b_ids.max(initial=0))) + 1
    row = np.arange(positions, dtype=np.int64)[:, None] * span
    keys = np.concatenate([(a_ids + row).ravel(), (b_ids + row).ravel()])
    values = np.concatenate([a_p.ravel(), -b_p.ravel()])
    _, inverse = np.unique(keys, return_inverse=True)
    listed = np.abs(np.bincount(inverse, weights=values)).sum()
    rest = np.abs((1.0 - a_p.sum(axis=1)).clip(0.0) - (1.0 - b_p.sum(axis=1)).clip(0.0)).sum()
    return float((listed + rest) / positions)


def copy_groups(answers: Mapping[int, TopKPrediction], threshold: float, *,
                digests: Mapping[int, bytes] | None = None, prefilter: float = 0.5) -> list[list[int]]:
    """Groups (of ≥ 2 uids) whose answers are identical or within ``threshold`` of each other.

    Byte-identical answers are grouped by digest; other pairs are compared only when their top-1
    tokens agree at ≥ ``prefilter`` of the positions (near-identical distributions almost always do),
    which keeps the all-pairs comparison cheap. Groups are closed transitively.
    """
    digests = digests or {uid: answer_digest(pred) for uid, pred in answers.items()}
    parent = {uid: uid for uid in answers}

    def find(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    def union(u: int, v: int) -> None:
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[max(ru, rv)] = min(ru, rv)

    first_of: dict[bytes, int] = {}
    for uid in sorted(answers):
        d = digests[uid]
        if d in first_of:
            union(first_of[d], uid)
        else:
            first_of[d] = uid
    if threshold > 0:
        # One representative per digest is enough; its duplicates are already joined.
        reps = sorted(first_of.values())
        dists = {u: probabilities(answers[u]) for u in reps}
        usable = [u for u in reps if dists[u] is not None]
        by_len: dict[int, list[int]] = {}
        for u in usable:
            by_len.setdefault(dists[u][0].shape[0], []).append(u)  # type: ignore[index]
        for group in by_len.values():
            if len(group) < 2:
                continue
            top1 = np.stack([_top1(dists[u]) for u in group])  # type: ignore[arg-type]
            agree = (top1[:, None, :] == top1[None, :, :]).mean(axis=2)
            for i, j in zip(*np.nonzero(np.triu(agree >= prefilter, k=1)), strict=True):
                u, v = group[int(i)], group[int(j)]
                if find(u) != find(v) and l1_distance(dists[u], dists[v]) <= threshold:  # type: ignore[arg-type]
                    union(u, v)
    groups: dict[int, list[int]] = {}
    for uid in answers:
        groups.setdefault(find(uid), []).append(uid)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def _top1(dist: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    ids, p = dist
    if ids.shape[1] == 0:
        return np.full(ids.shape[0], -1, dtype=np.int64)
    return ids[np.arange(ids.shape[0]), p.argmax(axis=1)]


def task_fingerprint(body: Mapping[str, Any], payload: Any) -> bytes:
    """A digest that tells two tasks apart (body and payload)."""
    import orjson

    h = hashlib.blake2b(digest_size=16)
    h.update(orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY, default=repr))
    if isinstance(payload, np.ndarray):
        h.update(repr((payload.dtype.str, payload.shape)).encode())
        h.update(np.ascontiguousarray(payload).tobytes())
    elif isinstance(payload, bytes | bytearray):
        h.update(bytes(payload))
    return h.digest()
