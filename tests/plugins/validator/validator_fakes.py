"""Small in-memory stand-ins for the chain, the transport and a modality (tests only).

They let the validator's loop be tested step by step; the real chain, transport and text modality
are exercised by the integration tests.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import numpy as np
import tnode
from tnode.config import option
from tnode.contracts.text import TopKPrediction
from tnode.errors import ChainError, TaskError
from tnode.events import TaskReceived
from tnode.hyperparameters import Hyperparameters
from tnode.interfaces import Metagraph, Neuron, PeerInfo, Reply, TaskResult, ValidatorTask
from tnode.keys import Keypair
from tnode.pluginmanager import PluginManager, load_plugins
from tnode.weights import WeightVector

VOCAB = 64
POSITIONS = 8


@dataclass(frozen=True)
class Empty:
    """No options."""

    note: str = option("", "Unused.")


# ----------------------------------------------------------------------------- chain
class FakeChain:
    """A metagraph held in memory; each metagraph read advances one block."""

    def __init__(self, node: Any, name: str, config: Any) -> None:
        self.name = name
        self.block = 0
        self.neurons: list[Neuron] = []
        self.hp = Hyperparameters(weights_rate_limit=0, commit_reveal_period=2, commit_reveal_window=5)
        self.set_calls: list[tuple[int, list[int], list[float]]] = []
        self.commits: list[tuple[int, str]] = []
        self.reveals: list[tuple[int, list[int], list[float]]] = []
        self.last_set: dict[str, int] = {}
        self.refuse: str = ""  # a ChainError code to refuse every weight call with
        self.fail_reads = 0  # this many metagraph reads raise ChainError("unreachable")

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    async def metagraph(self, block: int | None = None) -> Metagraph:
        if self.fail_reads:
            self.fail_reads -= 1
            raise ChainError("unreachable", "authority down (test)")
        self.block += 1
        return Metagraph(self.block, 1, tuple(self.neurons), self.hp)

    async def hyperparameters(self) -> Hyperparameters:
        return self.hp

    def _rate(self, hotkey: str) -> None:
        if self.refuse:
            raise ChainError(self.refuse, "refused by the test")
        last = self.last_set.get(hotkey)
        if last is not None and self.block - last < self.hp.weights_rate_limit:
            raise ChainError("rate_limited", f"last at {last}")
        self.last_set[hotkey] = self.block

    async def set_weights(self, hotkey: Keypair, weights: WeightVector, version_key: int = 0) -> None:
        if self.hp.commit_reveal_weights_enabled:
            raise ChainError("commit_reveal_enabled")
        self._rate(hotkey.public_hex)
        self.set_calls.append((self.block, list(weights.uids), [float(v) for v in weights.values]))

    async def commit_weights(self, hotkey: Keypair, commit_hash: str) -> None:
        self._rate(hotkey.public_hex)
        self.commits.append((self.block, commit_hash))

    async def reveal_weights(self, hotkey: Keypair, weights: WeightVector, salt: str, version_key: int = 0) -> None:
        uids, values = list(weights.uids), list(weights.values)
        digest = reference_commit_hash(hotkey.public_hex, uids, values, salt, version_key)
        for block, h in self.commits:
            if h == digest:
                if self.block < block + self.hp.commit_reveal_period:
                    raise ChainError("reveal_too_early")
                self.commits.remove((block, h))
                self.reveals.append((self.block, uids, [float(v) for v in values]))
                return
        raise ChainError("no_commit")

    # test helpers
    def add_neuron(self, hotkey: str, *, addrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/1",)) -> int:
        uid = len(self.neurons)
        self.neurons.append(Neuron(uid=uid, hotkey=hotkey, coldkey="00" * 32, stake=0.0, addrs=addrs))
        return uid

    def replace_hotkey(self, uid: int, hotkey: str) -> None:
        self.neurons[uid] = replace(self.neurons[uid], hotkey=hotkey)


def reference_commit_hash(hotkey: str, uids: list[int], values: list[int], salt: str, version_key: int) -> str:
    """The commit format the chain documents, written out independently of the validator's code."""
    body = (bytes.fromhex(hotkey) + struct.pack(">I", len(uids)) + b"".join(struct.pack(">H", u) for u in uids)
            + b"".join(struct.pack(">H", v) for v in values) + struct.pack(">I", len(salt.encode()))
            + salt.encode() + struct.pack(">Q", version_key))
    return hashlib.blake2b(b"tnode-commit-v1\n" + body, digest_size=32).hexdigest()


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


class FakeTransport:
    """Routes requests to per-peer behaviour functions."""

    def __init__(self, node: Any, name: str, config: Any) -> None:
        self.name = name
        self.node = node
        self.behaviours: dict[str, Behaviour] = {}
        self.hotkeys: dict[str, str] = {}
        self.requests: list[str] = []
        self.addrs: dict[str, list[str]] = {}

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        self.peer_id = self.node.peer_id
        self.hotkey = self.node.hotkey.public_hex
        task_status.started()
        await anyio.sleep_forever()

    def listen_addrs(self) -> list[str]:
        return []

    def add_peer_addrs(self, peer_id: str, addrs: Sequence[str]) -> None:
        self.addrs[peer_id] = list(addrs)

    def peers(self) -> list[PeerInfo]:
        return []

    def add_miner(self, key: Keypair, behaviour: Behaviour) -> None:
        self.behaviours[key.peer_id] = behaviour
        self.hotkeys[key.peer_id] = key.public_hex

    async def request(self, peer: str, modality: str, task: str, body: Mapping[str, Any],
                      payload: Any = None, *, timeout: float = 10.0) -> Reply:
        self.requests.append(peer)
        if peer not in self.addrs:
            raise TaskError("unreachable", "no address")
        began = anyio.current_time()
        with anyio.move_on_after(timeout):
            out = await self.behaviours[peer](body)
            return Reply(body=out, payload=None, peer_id=peer, hotkey=self.hotkeys[peer],
                         latency=anyio.current_time() - began)
        raise TaskError("timeout", f"no answer in {timeout} s")


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
        register(kind="chain", type="fake", factory=FakeChain, schema=Empty)
        register(kind="transport", type="fake", factory=FakeTransport, schema=Empty)
        register(kind="modality", type="fake", factory=FakeModality, schema=Empty)
        register(kind="modality", type="echo_tasks", factory=EchoTaskModality, schema=Empty)


def plugins_with_fakes(*keep: str) -> PluginManager:
    """Only the scoring and validator plugins (plus those in ``keep``) and the fakes."""
    others = [p for p in ("echo", "libp2p", "chain_local", "text", "antispam") if p not in keep]
    manager = load_plugins(block=others, autoload_external=False)
    manager.register(FakesPlugin(), name="validator_test_fakes")
    manager.validate()
    return manager


@dataclass
class Net:
    """A validator node over the fakes, plus handles on them."""

    node: Any
    chain: FakeChain
    transport: FakeTransport
    miners: dict[int, Keypair] = field(default_factory=dict)

    @property
    def validator(self) -> Any:
        return self.node.component("validator")

    def add_miner(self, behaviour: Behaviour, key: Keypair | None = None) -> int:
        key = key or Keypair.generate()
        uid = self.chain.add_neuron(key.public_hex)
        self.transport.add_miner(key, behaviour)
        self.miners[uid] = key
        return uid
