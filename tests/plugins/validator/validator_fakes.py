"""The validator's tests: a modality double and miners scripted on tnode.testing's loopback network.

The chain is tnode.testing's memory chain (one block per metagraph read, so each validator step is
a block) and miners are loopback responders; the real chain, transport and text modality are
exercised by the integration tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
import tnode
from tnode.config import option
from tnode.contracts.text import TopKPrediction
from tnode.errors import TaskError
from tnode.events import TaskReceived
from tnode.hyperparameters import Hyperparameters
from tnode.interfaces import Reply, TaskResult, ValidatorTask
from tnode.keys import Keypair
from tnode.pluginmanager import PluginManager
from tnode.testing import LoopbackNetwork, MemoryChain, Responder, plugin_manager

VOCAB = 64
POSITIONS = 8


@dataclass(frozen=True)
class Empty:
    """No options."""

    note: str = option("", "Unused.")


# ----------------------------------------------------------------------------- transport
Behaviour = Callable[[Mapping[str, Any]], Any]


def answer_with(p: float) -> Behaviour:
    """A miner that puts probability ``p`` on the true token (the fake task leaks it in the body)."""

    async def behave(body: Mapping[str, Any]) -> dict[str, Any]:
        targets = np.asarray(body["targets"])
        ids = np.stack([targets, (targets + 1) % VOCAB], axis=1)
        lp = np.log(np.tile([p, (1 - p) / 2], (len(targets), 1)))
        return {"ids": ids.tolist(), "logprobs": lp.tolist()}

    return behave


async def dead(body: Mapping[str, Any]) -> Any:
    raise TaskError("unreachable", "connection refused")


async def slow(body: Mapping[str, Any]) -> Any:
    await anyio.sleep(3600)


async def invalid(body: Mapping[str, Any]) -> Any:
    return {"ids": "not a list"}


async def crash(body: Mapping[str, Any]) -> Any:
    raise RuntimeError("transport bug")


def responder(behaviour: Behaviour) -> Responder:
    """A loopback peer that answers with ``behaviour(body)``."""

    async def respond(task: TaskReceived) -> TaskResult:
        return TaskResult(await behaviour(task.body))

    return respond


# ----------------------------------------------------------------------------- modality
class FakeModality:
    """Tasks of random target tokens; answers are top-k lists."""

    def __init__(self, node: Any, name: str, config: Any) -> None:
        self.name = name
        self.node = node

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        unserve = self.node.bus.serve(TaskReceived, self._serve, key=self.name)
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            unserve()

    async def _serve(self, request: TaskReceived) -> TaskResult:
        """The miner side: a perfect answer (the fake task carries its targets)."""
        return TaskResult(await answer_with(0.99)(request.body))

    def make_task(self, rng: np.random.Generator) -> ValidatorTask:
        targets = rng.integers(0, VOCAB, size=POSITIONS)
        return ValidatorTask(self.name, "next_token", {"targets": targets.tolist()}, None, targets)

    def parse_response(self, task: ValidatorTask, reply: Reply) -> TopKPrediction:
        try:
            ids = np.asarray(reply.body["ids"], dtype=np.int64)
            lp = np.asarray(reply.body["logprobs"], dtype=np.float32)
        except (KeyError, ValueError, TypeError) as exc:
            raise TaskError("invalid_response", str(exc)) from None
        if ids.ndim != 2 or ids.shape != lp.shape:
            raise TaskError("invalid_response", "shape")
        return TopKPrediction(ids, lp, VOCAB)


class EchoTaskModality(FakeModality):
    """Tasks whose body is already the perfect answer, for miners running the real echo modality."""

    def make_task(self, rng: np.random.Generator) -> ValidatorTask:
        targets = rng.integers(0, VOCAB, size=POSITIONS)
        body = {"ids": targets[:, None].tolist(), "logprobs": np.full((POSITIONS, 1), np.log(0.9)).tolist()}
        return ValidatorTask(self.name, "next_token", body, None, targets)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # validator side only: the echo plugin serves the miners
        await anyio.sleep_forever()


# ----------------------------------------------------------------------------- plugin
class FakesPlugin:
    @tnode.hookimpl
    def tnode_register_components(self, register: Any) -> None:
        register(kind="modality", type="fake", factory=FakeModality, schema=Empty)
        register(kind="modality", type="echo_tasks", factory=EchoTaskModality, schema=Empty)


def plugins_with_fakes(*keep: str, chain: MemoryChain | None = None,
                       network: LoopbackNetwork | None = None) -> PluginManager:
    """The scoring and validator plugins (plus those in ``keep``), the fake modalities and tnode.testing."""
    chain = chain or MemoryChain(Hyperparameters(weights_rate_limit=0, commit_reveal_period=2,
                                                 commit_reveal_window=5), blocks_per_read=1)
    return plugin_manager("scoring", "validator", *keep, chain=chain, network=network, extra=[FakesPlugin()])


@dataclass
class Net:
    """A validator node on the memory chain and loopback network, plus handles on them."""

    node: Any
    chain: MemoryChain
    network: LoopbackNetwork
    miners: dict[int, Keypair] = field(default_factory=dict)

    @property
    def validator(self) -> Any:
        return self.node.component("validator")

    def add_miner(self, behaviour: Behaviour, key: Keypair | None = None) -> int:
        key = key or Keypair.generate()
        uid = self.chain.add_neuron(key.public_hex, addrs=[self.network.address(key.peer_id)], peer_id=key.peer_id)
        self.network.add_responder(key, responder(behaviour))
        self.miners[uid] = key
        return uid

    def behave(self, key: Keypair, behaviour: Behaviour) -> None:
        """Change how ``key``'s miner answers (or put a new hotkey on the network)."""
        self.network.add_responder(key, responder(behaviour))

    def weight_calls(self, kind: str = "set") -> list[tuple[int, list[int], list[float]]]:
        """(block, uids, u16 weights) of every accepted ``set`` (or ``reveal``) of the validator."""
        return [(block, list(v.uids), [float(w) for w in v.values])
                for block, _, v, k in self.chain.weight_calls if k == kind]

    def commits(self) -> list[tuple[int, str]]:
        return self.chain.commits(self.node.hotkey.public_hex)


def net_of(node: Any, network: LoopbackNetwork) -> Net:
    return Net(node, node.chain, network)
