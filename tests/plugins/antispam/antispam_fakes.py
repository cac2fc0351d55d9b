"""Small stand-ins for the anti-spam tests: an in-memory metagraph source and a do-nothing transport.

The filters only need ``node.chain.metagraph()`` and the bus; the real chain is exercised in
test_registered_only.py and the real transport by bench/spam_flood.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import tnode
from tnode.config import option
from tnode.contracts.text import TopKPrediction
from tnode.errors import ChainError
from tnode.interfaces import InboundRequest, Metagraph, Neuron, PeerInfo, ValidatorTask
from tnode.keys import Keypair
from tnode.node import Node
from tnode.pluginmanager import PluginManager, load_plugins


@dataclass(frozen=True)
class Empty:
    """No options."""

    note: str = option("", "Unused.")


class FakeChain:
    """A metagraph held in memory; counts reads so tests can check the cache."""

    def __init__(self, node: Any, name: str, config: Any) -> None:
        self.name = name
        self.block = 1
        self.neurons: list[Neuron] = []
        self.reads = 0
        self.fail = False

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    async def metagraph(self, block: int | None = None) -> Metagraph:
        self.reads += 1
        if self.fail:
            raise ChainError("unreachable", "authority down (test)")
        return Metagraph(self.block, 1, tuple(self.neurons))

    def add(self, hotkey: str, stake: float = 0.0, *, permit: bool = False) -> int:
        uid = len(self.neurons)
        self.neurons.append(Neuron(uid=uid, hotkey=hotkey, coldkey="00" * 32, stake=stake,
                                   validator_permit=permit))
        return uid


class NullTransport:
    """Satisfies the topology check (spam filters need a transport); sends nothing."""

    def __init__(self, node: Any, name: str, config: Any) -> None:
        self.name = name

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    def peers(self) -> list[PeerInfo]:
        return []


class FakesPlugin:
    @tnode.hookimpl
    def tnode_register_components(self, register: Any) -> None:
        register(kind="chain", type="fake", factory=FakeChain, schema=Empty)
        register(kind="transport", type="null", factory=NullTransport, schema=Empty)


def plugins(*keep: str) -> PluginManager:
    """The antispam and scoring plugins (plus those in ``keep``) and the fakes."""
    others = [p for p in ("echo", "libp2p", "chain_local", "text", "validator") if p not in keep]
    manager = load_plugins(block=others, autoload_external=False)
    manager.register(FakesPlugin(), name="antispam_test_fakes")
    manager.validate()
    return manager


def make_node(tmp_path: Path, spam: dict[str, Any] | None = None, *, chain: bool = True,
              scorers: dict[str, Any] | None = None) -> Node:
    doc: dict[str, Any] = {"transport": {"type": "null"}}
    if chain:
        doc["chain"] = {"type": "fake"}
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
