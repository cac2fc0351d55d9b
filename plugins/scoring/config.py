"""Configuration of the scoring strategies: ``[scorers.NAME] type = "cross_entropy" | "shapley" | "latency"``."""

from __future__ import annotations

from dataclasses import dataclass

from tnode.config import option

DEFAULT_FLOOR = 1e-6


@dataclass(frozen=True)
class CrossEntropyConfig:
    """Cross-entropy of the held-back true tokens under each miner's top-k distribution.

    score = exp(−(loss − best) / temperature), where best is the lowest loss among the answers to
    the same task, but never worse than the loss of the uniform distribution (log V), so a lone
    bad answer cannot score 1 by having no competitors.
    """

    temperature: float = option(
        1.0, "Loss gap (nats per token) that divides a score by e; smaller is stricter.", ge=0.001
    )
    floor: float = option(
        DEFAULT_FLOOR, "Smallest probability any token gets, so one confident miss costs at most −log(floor).",
        ge=1e-30, le=0.5,
    )


@dataclass(frozen=True)
class ShapleyConfig:
    """Monte-Carlo Shapley value of each miner in the mixture (average) of all miners' predictions.

    A coalition's value is how much the average of its members' distributions lowers the
    cross-entropy of the true tokens below that of the uniform distribution. Scores are the
    positive part of each miner's Shapley value divided by the largest one.
    """

    permutations: int = option(64, "Permutations sampled per task (Monte-Carlo games only).", ge=1)
    truncation: float = option(
        0.01,
        "Stop a permutation once the prefix coalition is within this fraction of the grand coalition's value.",
        ge=0, le=1,
    )
    exact_up_to: int = option(8, "Compute exact Shapley values (all coalitions) up to this many players.", ge=0,
                              le=16)
    seed: int = option(0, "Seed of the permutation sampler (mixed with a per-call counter).")
    floor: float = option(DEFAULT_FLOOR, "Smallest probability any token gets in a miner's distribution.",
                          ge=1e-30, le=0.5)


@dataclass(frozen=True)
class LatencyConfig:
    """Wraps another scorer and discounts its scores by response time relative to the deadline.

    factor = 1 up to ``grace`` × deadline, then falls linearly to ``min_factor`` at the deadline.
    """

    inner: str = option(doc="Name of the [scorers.NAME] whose scores are discounted.", ref="scorers")
    deadline: float = option(
        0.0, "Deadline in seconds; 0 takes the [validator] timeout (10 s when there is no validator).", ge=0
    )
    grace: float = option(0.25, "Fraction of the deadline answered without discount.", ge=0, le=1)
    min_factor: float = option(0.5, "Discount factor at (and past) the deadline.", ge=0, le=1)
