"""The detectors' measurements, as pure functions of arrays (no bus, no chain): tests and
``bench/collusion.py`` call them directly.

Miner side: :func:`answer_distance` between two answers to the same task (for text the mean L1
distance between the next-token distributions, 0 … 2). Validator side: :func:`copy_ratio` (how much
closer a validator's weights sit to the others' earlier weights than fresh measurement puts honest
validators) and :func:`deviation_cosines` (FoolsGold-style cosine similarity of accumulated
deviations from consensus).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- miner answers
def topk_distance(ids_a: np.ndarray, logp_a: np.ndarray, ids_b: np.ndarray, logp_b: np.ndarray,
                  vocab_size: int) -> float:
    """Mean over positions of the L1 distance between two top-k next-token distributions.

    Each answer names k ids with log-probabilities; the mass it leaves out is spread evenly over the
    ids it does not name (what the cross-entropy scorer assumes too). The result is in [0, 2]:
    0 for identical answers, 2 for distributions with disjoint support.
    """
    if ids_a.shape[0] != ids_b.shape[0] or ids_a.shape[0] == 0:
        raise ValueError(f"answers cover {ids_a.shape[0]} and {ids_b.shape[0]} positions")
    total = 0.0
    for row in range(ids_a.shape[0]):
        total += _row_l1(ids_a[row], np.exp(logp_a[row].astype(np.float64)),
                         ids_b[row], np.exp(logp_b[row].astype(np.float64)), vocab_size)
    return total / ids_a.shape[0]


def _row_l1(ia: np.ndarray, pa: np.ndarray, ib: np.ndarray, pb: np.ndarray, vocab: int) -> float:
    ra = max(0.0, 1.0 - float(pa.sum())) / max(1, vocab - len(ia))
    rb = max(0.0, 1.0 - float(pb.sum())) / max(1, vocab - len(ib))
    da = dict(zip(ia.tolist(), pa.tolist(), strict=True))
    db = dict(zip(ib.tolist(), pb.tolist(), strict=True))
    union = da.keys() | db.keys()
    named = sum(abs(da.get(i, ra) - db.get(i, rb)) for i in union)
    return named + abs(ra - rb) * max(0, vocab - len(union))


def answer_distance(a: Any, b: Any) -> float | None:
    """Distance between two parsed answers to the same task, or None when they cannot be compared.

    Top-k predictions (anything with ``ids``, ``logprobs`` and ``vocab_size``) use
    :func:`topk_distance`; numpy arrays (e.g. images) the mean absolute difference over the mean
    magnitude of the two (0 … 2, like L1 between distributions).
    """
    if a is None or b is None:
        return None
    if all(hasattr(x, "logprobs") and hasattr(x, "ids") for x in (a, b)):
        if a.ids.shape[0] != b.ids.shape[0]:
            return None
        return topk_distance(a.ids, a.logprobs, b.ids, b.logprobs, int(a.vocab_size))
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and a.size:
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        scale = (np.abs(fa).mean() + np.abs(fb).mean()) / 2
        return float(np.abs(fa - fb).mean() / scale) if scale > 0 else 0.0
    return None


def later_fraction(lat_a: Sequence[float], lat_b: Sequence[float], min_lag: float) -> float:
    """Fraction of rounds in which b answered at least ``min_lag`` seconds after a."""
    if not lat_a:
        return 0.0
    return sum(1 for x, y in zip(lat_a, lat_b, strict=True) if y - x >= min_lag) / len(lat_a)


def lazy_fractions(relative: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """(share of tasks scored below ``low``, share at or above ``high``) of relative scores.

    A relative score is a miner's score over the round's median score. An honest miner's relative
    scores sit in one mode; a lazy one's in two: good answers on some tasks, junk on the rest.
    """
    if not relative:
        return 0.0, 0.0
    n = len(relative)
    return sum(1 for r in relative if r < low) / n, sum(1 for r in relative if r >= high) / n


# --------------------------------------------------------------------------- validator weights
def normalize_rows(weights: npt.ArrayLike) -> FloatArray:
    """Rows scaled to sum 1 (all-zero rows stay zero)."""
    w = np.asarray(weights, dtype=np.float64)
    sums = w.sum(axis=1, keepdims=True)
    return np.divide(w, sums, out=np.zeros_like(w), where=sums > 0)


def others_mean(w: FloatArray, stake: FloatArray, row: int) -> FloatArray:
    """Stake-weighted mean of every row but ``row`` (what the others reported)."""
    s = stake.astype(np.float64).copy()
    s[row] = 0.0
    s[w.sum(axis=1) <= 0] = 0.0
    if s.sum() <= 0:
        return np.zeros(w.shape[1])
    return (s[:, None] * w).sum(axis=0) / s.sum()


def copy_distances(current: FloatArray, earlier: FloatArray, stake: FloatArray) -> FloatArray:
    """Per row, the L1 distance of this epoch's row to the others' stake-weighted mean ``earlier``.

    ``earlier`` is the same epoch (lag 0, what a copier sees without commit-reveal) or the previous
    one (lag 1, the revealed weights a copier sees with it).
    """
    out = np.full(current.shape[0], np.nan)
    for v in range(current.shape[0]):
        if current[v].sum() > 0:
            out[v] = float(np.abs(current[v] - others_mean(earlier, stake, v)).sum())
    return out


def copy_ratio(distances: FloatArray) -> FloatArray:
    """Each row's distance over the median distance of the other rows (NaN for rows without weights).

    Honest validators measure independently, so their distances to the others' mean are alike and
    ratios sit near 1; a copier's distance is what it adds on top of the copy, far below 1.
    """
    out = np.full(distances.shape[0], np.nan)
    for v in range(distances.shape[0]):
        others = np.delete(distances, v)
        others = others[np.isfinite(others)]
        if np.isfinite(distances[v]) and others.size:
            median = float(np.median(others))
            out[v] = distances[v] / median if median > 0 else (0.0 if distances[v] == 0 else math.inf)
    return out


def deviation_cosines(deviations: FloatArray) -> FloatArray:
    """Pairwise cosine similarity of rows (accumulated deviations from consensus); 0 on the diagonal."""
    norms = np.linalg.norm(deviations, axis=1)
    unit = np.divide(deviations, norms[:, None], out=np.zeros_like(deviations), where=norms[:, None] > 0)
    cos = unit @ unit.T
    np.fill_diagonal(cos, 0.0)
    return cos


def clusters(similar: npt.NDArray[np.bool_]) -> list[list[int]]:
    """Connected components (size ≥ 2) of a symmetric boolean adjacency matrix."""
    n = similar.shape[0]
    seen: set[int] = set()
    groups: list[list[int]] = []
    for start in range(n):
        if start in seen:
            continue
        stack, group = [start], []
        seen.add(start)
        while stack:
            i = stack.pop()
            group.append(i)
            for j in np.flatnonzero(similar[i]).tolist():
                if j not in seen:
                    seen.add(j)
                    stack.append(j)
        if len(group) > 1:
            groups.append(sorted(group))
    return groups
