"""Configuration of ``[routers.NAME] type = "moe"``: whom to ask, how many, how long to wait."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tnode.config import option


@dataclass(frozen=True)
class MoeRouterConfig:
    """A quality-routed mixture of experts over the subnet's miners."""

    modality: str = option("text", "Wire name of the modality queried (the subnet serving it is looked up on the chain).")
    k: int = option(3, "Miners each query is sent to at once.", ge=1, le=64)
    k_min: int = option(2, "Answers that end the wait early (then `timeout_after_k_min` more for the rest).",
                        ge=1, le=64)
    timeout: float = option(5.0, "Seconds a query waits at most for any answer.", ge=0.05)
    timeout_after_k_min: float = option(0.1, "Seconds waited for the other miners once `k_min` answered.", ge=0.0)
    exploration: str = option("thompson", "How miners are picked: Thompson sampling or UCB1 over quality.",
                              choices=("thompson", "ucb"))
    ucb_c: float = option(0.5, "UCB1 exploration constant (with exploration = \"ucb\").", ge=0.0)
    prior_strength: float = option(4.0, "Pseudo-observations the chain's prior is worth against the router's own "
                                        "measurements.", ge=0.0)
    chain_weights: list[float] = option([0.5, 0.2, 0.3], "How incentive, trust and the validators' stake-weighted "
                                                         "weights combine into the chain's prior.")
    mixture_rate: float = option(0.05, "Step of the online EM update of the mixture weights (0: keep the prior).",
                                 ge=0.0, le=1.0)
    quality_decay: float = option(0.98, "Per-answer decay of the router's quality measurements (1: never forget).",
                                  ge=0.5, le=1.0)
    backoff_base: float = option(0.5, "Seconds a miner is skipped after its first failure; doubles per failure.",
                                 ge=0.0)
    backoff_max: float = option(60.0, "Longest a failing miner is skipped, in seconds.", ge=0.0)
    refresh_interval: float = option(12.0, "Seconds between reads of the metagraph.", ge=0.1)
    outlier_factor: float = option(3.0, "Image answers farther from the per-pixel median than this many times the "
                                        "median distance are dropped.", ge=1.0)
    floor: float = option(1e-4, "Smallest probability the text mixture gives any token.", ge=1e-12, le=0.01)
    max_top_k: int = option(64, "k asked of text miners per position (they may cap it lower).", ge=1, le=256)
    seed: int = option(0, "Seed of the exploration (0: from the system's entropy).", ge=0)
    include_self: bool = option(False, "Also route to this node's own hotkey when it holds a uid.")
    gating: str = option("", "A checkpoint written by `tnode train --teachers network` (relative to node.toml's "
                             "directory): its learned gate's weight per teacher blends into that miner's prior "
                             "and starting mixture weight. Empty: the chain's prior alone.")
    gating_share: float = option(0.5, "Share of a gated miner's prior that comes from the gate (the rest from the "
                                      "chain).", ge=0.0, le=1.0)
    batch: bool = option(True, "Queries to one miner with compatible tasks (text: same k, positions and context "
                               "length; image: same task, body and size) that pile up while a request to it is in "
                               "flight go as one batched request (docs/query.md#batching).")
    batch_window_ms: float = option(2.0, "Longest a query waits behind a request in flight to its miner to share the "
                                         "next one, in ms; a query to an idle miner goes at once. 0: no batching.",
                                    ge=0.0, le=1000.0)
    max_batch: int = option(16, "Most queries one batched request carries (at most the miners' max_tasks, which "
                                "refuse larger batches as too_large).", ge=1, le=1024)

    def check(self) -> Iterator[tuple[str, str, str]]:
        if self.k_min > self.k:
            yield "k_min", f"k_min = {self.k_min} exceeds k = {self.k}", "k_min answers are awaited out of k asked"
        if len(self.chain_weights) != 3 or any(w < 0 for w in self.chain_weights) or sum(self.chain_weights) <= 0:
            yield ("chain_weights", f"expected three non-negative numbers with a positive sum, got "
                                    f"{self.chain_weights!r}", "order: incentive, trust, validators' weights")
        if self.backoff_max < self.backoff_base:
            yield "backoff_max", f"backoff_max = {self.backoff_max} is below backoff_base = {self.backoff_base}", ""


@dataclass(frozen=True)
class RouterTeachersConfig:
    """The subnet's miners as teachers for distillation, found and asked through a router."""

    router: str = option("", "The [routers.NAME] whose board of miners is used (empty: the node's only router).")
    modality: str = option("", "Wire name the teachers are asked under (empty: the router's modality).")
    max_tasks: int = option(16, "Most windows one request carries (miners refuse more than their max_tasks).",
                            ge=1, le=1024)
    respect_backoff: bool = option(True, "Skip a teacher while the router backs off from it after a failure.")
