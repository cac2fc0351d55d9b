"""Held-out quality of the devnet's models: cross-entropy on windows the models never trained on (text),
or the validators' own scores on held-out tasks (modalities scored against a hidden truth, e.g. image).

It is measured outside the network, by loading each miner's model in the devnet process, so the
incentive the chain paid can be compared with an independent measure of quality.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from tnode.errors import TaskError
from tnode.events import TaskReceived
from tnode.interfaces import Reply
from tnode.node import Node

from .plan import DevnetPlan


def eval_doc(plan: DevnetPlan) -> dict[str, Any]:
    """A node.toml document with the miners' dataset and one model table per distinct model kind."""
    models: dict[str, Any] = {}
    for miner in plan.miners:
        if miner.adversary or miner.online:  # attackers and the learning miner: judged by what they are paid
            continue
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


def task_eval_doc(plan: DevnetPlan) -> dict[str, Any]:
    """A node.toml document for modalities scored by a scorer (image): the validators' dataset, modality and
    scorers, plus one serving modality per distinct miner model kind (``serve_<kind>``)."""
    validator = plan.validators[0].doc
    name = validator["validator"]["modality"]
    models: dict[str, Any] = {}
    for miner in plan.miners:
        if miner.adversary or miner.online:  # attackers and the learning miner: judged by what they are paid
            continue
        models.setdefault(miner.model, miner.doc["models"]["main"])
    modalities = {name: validator["modalities"][name]}
    for kind in models:
        # One modality per model in this evaluation node: each needs a wire name of its own.
        modalities[f"serve_{kind}"] = {"type": validator["modalities"][name]["type"], "model": kind,
                                       "serve_as": f"serve_{kind}"}
    # The topology check wants a transport wherever a modality serves; loopback, port 0, never dialled.
    return {"node": {"name": "devnet-eval", "create_keys": True},
            "transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0,
                          "dht": False, "gossip": False},
            "datasets": validator["datasets"],
            "models": models, "modalities": modalities, "scorers": validator["scorers"]}


async def heldout_task_scores(plan: DevnetPlan, *, tasks: int = 48, seed: int = 1234,
                              picture: Path | None = None) -> dict[str, float]:
    """Mean score per model kind on ``tasks`` held-out validation tasks (higher is better), each answer made
    by the kind's model through the modality's own handler and scored by the validators' scorers.

    With ``picture``, a modality that can draw (``write_report_picture``) writes one task per task type
    with every kind's answer there.
    """
    doc = task_eval_doc(plan)
    name = plan.validators[0].doc["validator"]["modality"]
    node = Node.from_dict(doc, data_dir=plan.options.run_dir / "eval",
                          kinds={"transport", "dataset", "model", "modality", "scorer"})
    async with node.running():
        modality = node.component("modality", name)
        scorers = list(node.components_of("scorer").values())
        kinds = [k for k in doc["models"]]
        rng = np.random.default_rng(seed)
        totals = dict.fromkeys(kinds, 0.0)
        shown: dict[str, tuple[Any, dict[str, Any]]] = {}
        for _ in range(tasks):
            task = modality.make_task(rng)
            answers: dict[str, Any] = {}
            for kind in kinds:
                request = TaskReceived(modality=f"serve_{kind}", task=task.task, body=dict(task.body),
                                       payload=task.payload, sender=node.hotkey.public_hex, peer_id=node.peer_id,
                                       deadline=time.monotonic() + 30.0)
                try:
                    result = await node.bus.request(request, timeout=30.0)
                    reply = Reply(result.body, result.payload, node.peer_id, node.hotkey.public_hex, 0.0)
                    answers[kind] = modality.parse_response(task, reply)
                except TaskError:
                    answers[kind] = None
            by_index = {i: answers[k] for i, k in enumerate(kinds)}
            for scorer in scorers:
                for i, value in scorer.score(task, by_index, {}).items():
                    totals[kinds[i]] += value / (tasks * len(scorers))
            shown.setdefault(task.task, (task, answers))
        if picture is not None and hasattr(modality, "write_report_picture"):
            modality.write_report_picture(picture, list(shown.values()))
    return totals
