"""Helpers of the anti-spam tests, on tnode.testing's in-memory chain and loopback transport.

The filters only need ``node.chain.metagraph()`` and the bus; the real chain is exercised in
test_registered_only.py and the real transport by test_transport_priority.py and bench/spam_flood.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tnode.contracts.text import TopKPrediction
from tnode.interfaces import InboundRequest, ValidatorTask
from tnode.keys import Keypair
from tnode.node import Node
from tnode.pluginmanager import PluginManager
from tnode.testing import MemoryChain, plugin_manager

UNDER_TEST = ("antispam", "scoring")


def plugins(*keep: str, chain: MemoryChain | None = None) -> PluginManager:
    """The antispam and scoring plugins (plus those in ``keep``) and the kit's memory chain and loopback."""
    chain = chain or MemoryChain()
    chain.advance(1)  # the filters' tests start at block 1
    return plugin_manager(*UNDER_TEST, *keep, chain=chain)


def make_node(tmp_path: Path, spam: dict[str, Any] | None = None, *, chain: bool = True,
              scorers: dict[str, Any] | None = None) -> Node:
    doc: dict[str, Any] = {"transport": {"type": "loopback"}}
    if chain:
        doc["chain"] = {"type": "memory"}
    if spam:
        doc["spam"] = spam
    if scorers:
        doc["scorers"] = scorers
    return Node.from_dict(doc, data_dir=tmp_path, plugins=plugins())


def key(name: str) -> Keypair:
    return Keypair.from_seed(name.encode().ljust(32, b"\0")[:32])


def hotkey(name: str) -> str:
    return key(name).public_hex


def request(sender: str, modality: str = "text", body: dict[str, Any] | None = None, *,
            payload_bytes: int = 0, frame_bytes: int = 200) -> InboundRequest:
    return InboundRequest(sender=sender, peer_id="peer-" + sender[:8], modality=modality, task="next_token",
                          body=body or {}, payload_bytes=payload_bytes, frame_bytes=frame_bytes)


# ----------------------------------------------------------------------------- answers
VOCAB = 256


def text_task(seed: int = 0, positions: int = 8) -> ValidatorTask:
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, VOCAB, size=positions)
    return ValidatorTask("text", "next_token", {"tokens": rng.integers(0, VOCAB, 32).tolist()}, None, targets)


def model_answer(task: ValidatorTask, seed: int, *, k: int = 8, skill: float = 0.6) -> TopKPrediction:
    """An answer of a plausible model: the true token often in the top-k, a peaked distribution."""
    rng = np.random.default_rng(seed)
    targets = np.asarray(task.truth)
    positions = len(targets)
    ids = np.empty((positions, k), dtype=np.int64)
    logits = np.sort(rng.normal(0, 2, size=(positions, k)), axis=1)[:, ::-1]
    for t in range(positions):
        others = rng.choice(np.setdiff1d(np.arange(VOCAB), [targets[t]]), size=k, replace=False)
        ids[t] = others
        if rng.random() < skill:
            ids[t, rng.integers(0, 3)] = targets[t]
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)) + np.log(0.9)
    return TopKPrediction(ids, logp.astype(np.float32), VOCAB)
