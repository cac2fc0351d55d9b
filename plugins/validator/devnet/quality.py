"""Held-out quality of the devnet's models: cross-entropy on windows the models never trained on.

It is measured outside the network, by loading each miner's model in the devnet process, so the
incentive the chain paid can be compared with an independent measure of quality.
"""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
from tnode.node import Node

from .plan import DevnetPlan


def eval_doc(plan: DevnetPlan) -> dict[str, Any]:
    """A node.toml document with the miners' dataset and one model table per distinct model kind."""
    models: dict[str, Any] = {}
    for miner in plan.miners:
        models.setdefault(miner.model, miner.doc["models"]["main"])
    return {"node": {"name": "devnet-eval", "create_keys": True},
            "datasets": {"docs": {"type": "python_docs"}}, "models": models}


def cross_entropy(model: Any, windows: np.ndarray) -> float:
    """Mean −log p(next token) over every position of ``windows`` (nats per token)."""
    logprobs = np.asarray(model.next_token_logprobs(windows[:, :-1]), dtype=np.float64)
    targets = windows[:, 1:]
    picked = np.take_along_axis(logprobs, targets[..., None], axis=-1)[..., 0]
    return float(-np.nan_to_num(picked, nan=-1e9, neginf=-1e9).clip(-1e9, 0).mean())


async def heldout_losses(plan: DevnetPlan, *, windows: int = 32, length: int = 129, seed: int = 1234
                         ) -> dict[str, float]:
    """Held-out loss per model kind (lower is better)."""
    node = Node.from_dict(eval_doc(plan), data_dir=plan.options.run_dir / "eval", kinds={"dataset", "model"})
    async with node.running():
        (dataset,) = node.components_of("dataset").values()
        batch = dataset.sample_windows("heldout", windows, length, np.random.default_rng(seed))
        out = {}
        for kind, model in node.components_of("model").items():
            out[kind] = await anyio.to_thread.run_sync(cross_entropy, model, np.asarray(batch))
    return out
