"""tnode plugin: scoring strategies for validators (cross-entropy, Shapley over mixtures, latency)."""

import tnode

from .config import CrossEntropyConfig, LatencyConfig, ShapleyConfig


@tnode.hookimpl
def tnode_register_components(register):  # type: ignore[no-untyped-def]
    from .cross_entropy import CrossEntropyScorer
    from .latency import LatencyScorer
    from .shapley import ShapleyScorer

    register(kind="scorer", type="cross_entropy", factory=CrossEntropyScorer, schema=CrossEntropyConfig,
             description="Scores top-k answers by the loss of the held-back true tokens.")
    register(kind="scorer", type="shapley", factory=ShapleyScorer, schema=ShapleyConfig,
             description="Scores miners by their Monte-Carlo Shapley value in a mixture of all answers.")
    register(kind="scorer", type="latency", factory=LatencyScorer, schema=LatencyConfig,
             description="Discounts another scorer's scores by response time relative to the deadline.")
