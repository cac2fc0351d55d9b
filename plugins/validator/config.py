"""Configuration of the validator role: ``[validator] type = "default"``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from tnode.config import option


@dataclass(frozen=True)
class ValidatorConfig:
    """Queries miners with checkable tasks, scores the answers and sets weights on the chain."""

    modality: str = option(doc="The [modalities.NAME] that makes tasks and parses answers.", ref="modalities")
    scorers: list[str] = option([], "The [scorers.NAME] to combine; empty takes every configured scorer.",
                                ref="scorers")
    scorer_weights: list[float] = option(
        [], "Weight of each scorer in `scorers` (same length); empty weighs them equally."
    )
    timeout: float = option(10.0, "Seconds a miner has to answer a task.", ge=0.01)
    step_interval: float = option(2.0, "Seconds between the starts of two query steps (> 0).", ge=0.01)
    tasks_per_step: int = option(1, "Tasks sent in one step (each to every chosen miner).", ge=1)
    batch_tasks: bool = option(
        True, "With tasks_per_step > 1, send a miner the step's tasks in one batched request where the modality "
              "supports it (text: up to the miners' max_tasks); each task is still scored on its own."
    )
    sample_size: int = option(
        0, "Miners queried per step, favouring those least recently and least often measured; 0 queries all.", ge=0
    )
    ema_alpha: float = option(0.1, "Weight of a new score in each uid's moving average.", ge=0.0001, le=1)
    weights_interval: int = option(
        0, "Fewest blocks between two weight submissions, on top of the chain's weights_rate_limit.", ge=0
    )
    version_key: int = option(0, "version_key sent with weights (raised to the subnet's weights_version).", ge=0)
    query_self: bool = option(
        False, "Also send tasks to this node's own modality (a single node that serves and validates); "
               "its own uid still gets no weight."
    )
    max_concurrency: int = option(64, "Most requests in flight at once.", ge=1)
    seed: int = option(-1, "Seed for task and miner sampling; -1 draws one from the OS.")
    state_file: str = option("validator_state.json", "Score averages and pending commits, relative to data_dir.")

    def check(self) -> Iterator[tuple[str, str] | tuple[str, str, str]]:
        """One finite, non-negative weight per named scorer, with a positive sum."""
        weights = self.scorer_weights
        if weights and len(weights) != len(self.scorers):
            yield ("scorer_weights", f"{len(weights)} scorer_weights for {len(self.scorers)} scorers",
                   "give one weight per entry of `scorers`, or none")
        elif any(w < 0 or not math.isfinite(w) for w in weights) or (weights and sum(weights) <= 0):
            yield "scorer_weights", "scorer_weights must be non-negative with a positive sum"
