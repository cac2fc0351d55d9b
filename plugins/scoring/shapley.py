"""Shapley values of miners in a mixture of their predicted distributions.

The game: players are the miners that gave a usable answer to one task. A coalition S predicts
with the average of its members' distributions; its value is how far that mixture lowers the
cross-entropy of the true tokens below the uniform distribution's::

    v(S) = log V − mean_t −log( (1/|S|) Σ_{i∈S} p_i(x_t) ),    v(∅) = 0

Only the probability each miner gives to the true token matters, because the mixture's
probability of a token is the average of the members' probabilities of it.

A redundant copy of a miner adds nothing to any coalition that already has the original, so the
two share one value; a miner that is right where others are wrong raises every coalition's value
and earns much; a miner worse than the uniform distribution drags mixtures down and gets a
negative value (scored 0).

Small games are solved exactly over all coalitions; larger ones by Monte-Carlo permutation
sampling (rotations of random permutations, so each player is seen at each position) with truncation: a permutation stops once its prefix coalition is
within ``truncation`` × |v(grand)| of the grand coalition's value, and the remaining players get a
zero marginal — they could only add negligible value. (A permutation stops only when, in addition,
the last player added brought a negligible gain, which guards against a prefix that matches the
grand value by coincidence while a harmful player is still to come.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import anyio
import numpy as np
from tnode.interfaces import ValidatorTask

from .config import ShapleyConfig
from .probs import prob_matrix


def coalition_value(probs: np.ndarray, members: np.ndarray | list[int], vocab_size: int) -> float:
    """v(S) for the rows ``members`` of ``probs`` (players × positions)."""
    members = list(members)
    if not members:
        return 0.0
    mix = probs[members].mean(axis=0)
    return math.log(vocab_size) + float(np.log(mix).mean())


def exact_shapley(probs: np.ndarray, vocab_size: int) -> np.ndarray:
    """Exact Shapley values by enumerating all 2^n coalitions (use for n ≲ 16)."""
    n, positions = probs.shape
    if n == 0:
        return np.zeros(0)
    size = 1 << n
    sums = np.zeros((size, positions))
    for mask in range(1, size):
        low = mask & -mask
        sums[mask] = sums[mask ^ low] + probs[low.bit_length() - 1]
    counts = np.array([bin(m).count("1") for m in range(size)])
    values = np.zeros(size)
    nz = counts > 0
    values[nz] = math.log(vocab_size) + np.log(sums[nz] / counts[nz, None]).mean(axis=1)
    # weight of a coalition of size k that a player joins: k! (n − k − 1)! / n!
    weight = np.array([math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)])
    phi = np.zeros(n)
    masks = np.arange(size)
    for i in range(n):
        without = masks[(masks >> i) & 1 == 0]
        phi[i] = float((weight[counts[without]] * (values[without | (1 << i)] - values[without])).sum())
    return phi


def rotated_permutations(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` permutations of ``range(n)``: all n rotations of random base permutations.

    Every rotation of a uniformly random permutation is itself uniformly random, so the estimate
    stays unbiased; and over the n rotations of one base each player sits at each position exactly
    once, which removes the largest source of variance (whether a player came early, when its
    marginal is large, or late).
    """
    bases = -(-count // n)
    rows = [np.roll(base, -r) for base in (rng.permutation(n) for _ in range(bases)) for r in range(n)]
    return np.stack(rows[:count])


def monte_carlo_shapley(
    probs: np.ndarray, vocab_size: int, permutations: int, truncation: float, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Truncated Monte-Carlo Shapley values over rotated permutations.

    :returns: ``(values, marginal evaluations done)``; the count shows what truncation saved
        against ``permutations × n``.
    """
    n, positions = probs.shape
    if n == 0:
        return np.zeros(0), 0
    perms = rotated_permutations(n, permutations, rng)
    m = perms.shape[0]
    log_v = math.log(vocab_size)
    grand = coalition_value(probs, range(n), vocab_size)
    tolerance = truncation * max(abs(grand), 1e-12)
    running = np.zeros((m, positions))
    previous = np.zeros(m)
    totals = np.zeros(n)
    last_gain = np.full(m, np.inf)
    active = np.ones(m, dtype=bool)
    evaluations = 0
    for j in range(n):
        if truncation > 0:
            # Converged: the last player added almost nothing and the prefix is worth about what
            # everyone is. Either test alone is fooled, e.g. by a prefix that happens to match the
            # grand value while a harmful player is still to come.
            active &= (np.abs(grand - previous) > tolerance) | (np.abs(last_gain) > tolerance)
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        players = perms[rows, j]
        running[rows] += probs[players]
        value = log_v + np.log(running[rows] / (j + 1)).mean(axis=1)
        gain = value - previous[rows]
        np.add.at(totals, players, gain)
        previous[rows] = value
        last_gain[rows] = gain
        evaluations += rows.size
    return totals / m, evaluations


def scores_from_values(values: np.ndarray) -> np.ndarray:
    """Positive part of each value divided by the largest (all 0 when none is positive)."""
    positive = np.maximum(values, 0.0)
    top = positive.max() if positive.size else 0.0
    return positive / top if top > 0 else positive


class ShapleyScorer:
    """``[scorers.NAME] type = "shapley"``: see :class:`ShapleyConfig`."""

    def __init__(self, node: Any, name: str, config: ShapleyConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self._calls = 0
        self.last_evaluations = 0

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    def values(self, task: ValidatorTask, answers: Mapping[int, Any]) -> dict[int, float]:
        """Shapley value (nats per token) of every usable answer; unusable answers are absent."""
        probs, uids, vocab = prob_matrix(task, answers, self.config.floor)
        if not uids:
            return {}
        if len(uids) <= self.config.exact_up_to:
            phi = exact_shapley(probs, vocab)
            self.last_evaluations = (1 << len(uids)) - 1
        else:
            rng = np.random.default_rng([self.config.seed, self._calls])
            self._calls += 1
            phi, self.last_evaluations = monte_carlo_shapley(
                probs, vocab, self.config.permutations, self.config.truncation, rng
            )
        return dict(zip(uids, phi.tolist(), strict=True))

    def score(self, task: ValidatorTask, answers: Mapping[int, Any], latencies: Mapping[int, float]) -> dict[int, float]:
        """Scores in [0, 1] for every uid in ``answers``; ``None`` and misfit answers get 0."""
        values = self.values(task, answers)
        out = dict.fromkeys(answers, 0.0)
        if values:
            scores = scores_from_values(np.array(list(values.values())))
            out.update(zip(values, scores.tolist(), strict=True))
        return out
