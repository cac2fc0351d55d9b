"""The plugin authors' testing kit (``tnode.testing``): an in-memory chain and a loopback network.

Unit tests of a plugin need a chain and a transport, but not a SQLite ledger and libp2p sockets.
:class:`MemoryChain` implements :class:`tnode.interfaces.ChainBackend` on a metagraph held in
memory, with the subnet's rules (:class:`tnode.hyperparameters.Hyperparameters`) and the weight
format of :mod:`tnode.weights` enforced as a real chain enforces them. :class:`LoopbackNetwork`
connects the :class:`LoopbackTransport` of every node built on it: a request to another node (or to
the node itself) goes through the receiver's :mod:`tnode.dispatch` pipeline, as a libp2p request does; :meth:`LoopbackNetwork.add_responder`
adds scripted peers (a dead miner, a slow one) without a node. :func:`plugin_manager` loads the
plugins under test plus the kit's components, ``[chain] type = "memory"`` and
``[transport] type = "loopback"``.

The real chain and transport are exercised by integration tests; nothing here touches a socket
or a file, and plugins must never import this module outside their tests.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any

import anyio
import numpy as np
import orjson

from . import hookimpl
from .config import option
from .errors import ChainError, TaskError
from .events import TaskReceived
from .hyperparameters import Hyperparameters
from .interfaces import InboundRequest, Metagraph, Neuron, PeerInfo, Reply, TaskResult
from .keys import Keypair
from .pluginmanager import PluginManager, load_plugins
from .weights import WeightVector

TOKEN = 10**9
"""Base units per token (balances and amounts are integers of these, like every chain backend)."""

__all__ = ["LoopbackNetwork", "LoopbackTransport", "MemoryChain", "Responder", "TOKEN", "plugin_manager"]


@dataclass(frozen=True)
class NoOptions:
    """The kit's components take no options: tests configure them through their Python objects."""

    note: str = option("", "Ignored.")


# ============================================================================ chain


@dataclass
class _Commit:
    block: int
    digest: str


class MemoryChain:
    """A one-subnet chain held in memory; every node of a test may share one instance.

    Blocks advance when a test calls :meth:`advance`, and by ``blocks_per_read`` on each
    :meth:`metagraph` read (so a loop that reads the metagraph each step sees time pass).
    Registration takes any proof-of-work nonce (the seal is the real chain's business); weights
    are validated with :meth:`WeightVector.validate` against the hyperparameters, rate-limited by
    ``weights_rate_limit`` and, when commit-reveal is on, must be committed then revealed within
    the window.

    Test controls: ``fail_reads`` (this many reads raise ``ChainError("unreachable")``),
    ``refuse_weights`` (a code every weight call is refused with), and the records ``weights``
    (hotkey → stored vector), ``weight_calls`` (block, hotkey, vector, kind) and ``reads``.
    """

    def __init__(self, hyperparameters: Hyperparameters | None = None, *, netuid: int = 1,
                 blocks_per_read: int = 0) -> None:
        self.name = "chain"
        self.netuid = netuid
        self.hp = hyperparameters or Hyperparameters()
        self.blocks_per_read = blocks_per_read
        self.block = 0
        self.neurons: list[Neuron] = []
        self.balances: dict[str, int] = {}
        self.weights: dict[str, WeightVector] = {}
        self.weight_calls: list[tuple[int, str, WeightVector, str]] = []
        self.reads = 0
        self.fail_reads = 0
        self.refuse_weights = ""
        self._commits: dict[str, list[_Commit]] = {}
        self.last_weights: dict[str, int] = {}  # hotkey → block of its last weights or commit

    # ------------------------------------------------------------------ component
    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Nothing to start: the ledger is ready as soon as it exists."""
        task_status.started()
        await anyio.sleep_forever()

    # ------------------------------------------------------------------ test helpers
    def advance(self, blocks: int = 1) -> int:
        """Produce ``blocks`` blocks; returns the new block number."""
        self.block += blocks
        return self.block

    def add_neuron(self, hotkey: str, *, coldkey: str = "00" * 32, stake: float = 0.0, permit: bool = False,
                   addrs: Sequence[str] = (), peer_id: str = "") -> int:
        """Give ``hotkey`` (hex) the next uid at the current block; returns the uid."""
        uid = len(self.neurons)
        self.neurons.append(Neuron(uid=uid, hotkey=hotkey, coldkey=coldkey, stake=stake, validator_permit=permit,
                                   registered_at=self.block, addrs=tuple(addrs), peer_id=peer_id))
        return uid

    def replace_hotkey(self, uid: int, hotkey: str) -> None:
        """Give ``uid`` to a new hotkey (what pruning and re-registration do)."""
        self.neurons[uid] = replace(self.neurons[uid], hotkey=hotkey, registered_at=self.block)

    def update_neuron(self, uid: int, **fields: Any) -> None:
        """Set fields of ``uid``'s :class:`Neuron` (stake, validator_permit, incentive...)."""
        self.neurons[uid] = replace(self.neurons[uid], **fields)

    def credit(self, coldkey: str, amount: int) -> None:
        """Add ``amount`` base units to ``coldkey``'s balance."""
        self.balances[coldkey] = self.balances.get(coldkey, 0) + amount

    # ------------------------------------------------------------------ reads
    async def block_number(self) -> int:
        return self.block

    async def block_hash(self, number: int | None = None) -> str:
        n = self.block if number is None else number
        if not 0 <= n <= self.block:
            raise ChainError("unknown_block", f"block {n} is not in 0..{self.block}")
        return _hash(b"memory-block", n.to_bytes(8, "big"))

    def _subnet(self, netuid: int | None) -> None:
        if netuid is not None and netuid != self.netuid:
            raise ChainError("unknown_subnet", f"netuid {netuid} is not a subnet of this chain (subnets: {self.netuid})")

    async def subnets(self) -> dict[int, str]:
        """The one subnet, taking any modality."""
        return {self.netuid: ""}

    async def hyperparameters(self, *, netuid: int | None = None) -> Hyperparameters:
        self._subnet(netuid)
        return self.hp

    async def difficulty(self, *, netuid: int | None = None) -> int:
        self._subnet(netuid)
        return self.hp.difficulty

    async def metagraph(self, block: int | None = None, *, netuid: int | None = None) -> Metagraph:
        self._subnet(netuid)
        self.reads += 1
        if self.fail_reads:
            self.fail_reads -= 1
            raise ChainError("unreachable", "the in-memory chain was told to fail this read")
        self.block += self.blocks_per_read
        n = len(self.neurons)
        matrix = np.zeros((n, n), dtype=np.float32)
        for hotkey, vector in self.weights.items():
            row = self._uid(hotkey)
            if row is not None:
                for uid, share in zip(vector.uids, vector.shares, strict=True):
                    if uid < n:
                        matrix[row, uid] = share
        return Metagraph(self.block, self.netuid, tuple(self.neurons), self.hp, weights=matrix)

    async def balance(self, coldkey: str) -> int:
        return self.balances.get(coldkey, 0)

    # ------------------------------------------------------------------ registration and funds
    async def register(self, hotkey: Keypair, coldkey: str, *, block: int, nonce: int,
                       netuid: int | None = None) -> int:
        self._subnet(netuid)
        if not 0 <= self.block - block < self.hp.pow_block_window:
            raise ChainError("stale_block", f"block {block} is not among the last {self.hp.pow_block_window}")
        return self._register(hotkey.public_hex, coldkey)

    async def burned_register(self, hotkey: Keypair, coldkey: Keypair, *, netuid: int | None = None) -> int:
        self._subnet(netuid)
        cost = int(round(self.hp.burn * TOKEN))
        self._debit(coldkey.public_hex, cost)
        return self._register(hotkey.public_hex, coldkey.public_hex)

    async def transfer(self, coldkey: Keypair, dest: str, amount: int) -> None:
        self._debit(coldkey.public_hex, amount)
        self.credit(dest, amount)

    async def add_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        uid = self._owned(coldkey, hotkey)
        self._debit(coldkey.public_hex, amount)
        self.update_neuron(uid, stake=self.neurons[uid].stake + amount / TOKEN)

    async def remove_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        uid = self._owned(coldkey, hotkey)
        if amount > round(self.neurons[uid].stake * TOKEN):
            raise ChainError("insufficient_stake", f"{hotkey[:16]}… has {self.neurons[uid].stake} staked")
        self.update_neuron(uid, stake=self.neurons[uid].stake - amount / TOKEN)
        self.credit(coldkey.public_hex, amount)

    async def publish_addrs(self, hotkey: Keypair, addrs: Sequence[str], peer_id: str, *,
                            netuid: int | None = None) -> None:
        self._subnet(netuid)
        uid = self._uid(hotkey.public_hex)
        if uid is None:
            raise ChainError("unregistered", "only a registered hotkey may publish addresses")
        self.update_neuron(uid, addrs=tuple(addrs), peer_id=peer_id)

    # ------------------------------------------------------------------ weights
    async def set_weights(self, hotkey: Keypair, weights: WeightVector, version_key: int = 0, *,
                          netuid: int | None = None) -> None:
        self._subnet(netuid)
        if self.hp.commit_reveal_weights_enabled:
            raise ChainError("commit_reveal_enabled", "this subnet takes weights by commit and reveal")
        self._weights_allowed(hotkey.public_hex)
        self._store(hotkey.public_hex, weights, version_key, "set")

    async def commit_weights(self, hotkey: Keypair, commit_hash: str, *, netuid: int | None = None) -> None:
        self._subnet(netuid)
        if not self.hp.commit_reveal_weights_enabled:
            raise ChainError("commit_reveal_disabled", "this subnet takes weights with set_weights")
        self._weights_allowed(hotkey.public_hex)
        self._commits.setdefault(hotkey.public_hex, []).append(_Commit(self.block, commit_hash))
        self.last_weights[hotkey.public_hex] = self.block

    async def reveal_weights(self, hotkey: Keypair, weights: WeightVector, salt: str, version_key: int = 0, *,
                             netuid: int | None = None) -> None:
        self._subnet(netuid)
        if self.refuse_weights:
            raise ChainError(self.refuse_weights, "the in-memory chain was told to refuse weights")
        digest = weights.commit_hash(hotkey.public_hex, salt, version_key)
        commits = self._commits.get(hotkey.public_hex, [])
        for commit in commits:
            if commit.digest != digest:
                continue
            opens = commit.block + self.hp.commit_reveal_period
            if self.block < opens:
                raise ChainError("reveal_too_early", f"committed at {commit.block}; reveals open at block {opens}")
            if self.block >= opens + self.hp.commit_reveal_window:
                commits.remove(commit)
                raise ChainError("commit_expired", f"the reveal window closed at block {opens + self.hp.commit_reveal_window}")
            commits.remove(commit)
            self._store(hotkey.public_hex, weights, version_key, "reveal")
            return
        raise ChainError("no_commit", "no commit of this hotkey matches the revealed weights")

    def commits(self, hotkey: str) -> list[tuple[int, str]]:
        """(block, commit hash) of ``hotkey``'s unrevealed commits."""
        return [(c.block, c.digest) for c in self._commits.get(hotkey, [])]

    # ------------------------------------------------------------------ internals
    def _uid(self, hotkey: str) -> int | None:
        return next((n.uid for n in self.neurons if n.hotkey == hotkey), None)

    def _register(self, hotkey: str, coldkey: str) -> int:
        existing = self._uid(hotkey)
        if existing is not None:
            raise ChainError("already_registered", f"hotkey already has uid {existing}")
        if len(self.neurons) >= self.hp.max_allowed_uids:
            raise ChainError("subnet_full", f"the subnet holds {self.hp.max_allowed_uids} uids")
        return self.add_neuron(hotkey, coldkey=coldkey)

    def _owned(self, coldkey: Keypair, hotkey: str) -> int:
        uid = self._uid(hotkey)
        if uid is None:
            raise ChainError("unregistered", f"hotkey {hotkey[:16]}… has no uid")
        if self.neurons[uid].coldkey != coldkey.public_hex:
            raise ChainError("not_owner", "the coldkey does not own this hotkey")
        return uid

    def _debit(self, coldkey: str, amount: int) -> None:
        if amount < 0:
            raise ChainError("invalid_args", "amounts are non-negative")
        if self.balances.get(coldkey, 0) < amount:
            raise ChainError("insufficient_balance", f"{coldkey[:16]}… has {self.balances.get(coldkey, 0)} base units")
        self.balances[coldkey] -= amount

    def _weights_allowed(self, hotkey: str) -> None:
        if self.refuse_weights:
            raise ChainError(self.refuse_weights, "the in-memory chain was told to refuse weights")
        if self._uid(hotkey) is None:
            raise ChainError("unregistered", "only a registered hotkey may set weights")
        last = self.last_weights.get(hotkey)
        if last is not None and self.block - last < self.hp.weights_rate_limit:
            raise ChainError("rate_limited", f"last weights at block {last}; the limit is "
                                             f"{self.hp.weights_rate_limit} blocks")

    def _store(self, hotkey: str, weights: WeightVector, version_key: int, kind: str) -> None:
        stored = weights.validate(n=len(self.neurons), min_allowed_weights=self.hp.min_allowed_weights,
                                  max_weight_limit=self.hp.max_weight_limit, version_key=version_key,
                                  weights_version=self.hp.weights_version)
        self.weights[hotkey] = stored
        self.weight_calls.append((self.block, hotkey, stored, kind))
        self.last_weights[hotkey] = self.block
        uid = self._uid(hotkey)
        if uid is not None:
            self.update_neuron(uid, last_update=self.block)


def _hash(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        h.update(part)
    return h.hexdigest()


# ============================================================================ network

Responder = Callable[[TaskReceived], Awaitable[TaskResult]]
"""A scripted peer: answers a task (or raises :class:`tnode.errors.TaskError`) without a node."""

_MEMORY_PREFIX = "/memory/"


class LoopbackNetwork:
    """The peers of one test: every :class:`LoopbackTransport` built on it and scripted responders.

    Addresses are ``/memory/<peer id>/p2p/<peer id>``; a peer is reachable by peer id or address
    once its node runs (or once added with :meth:`add_responder`). ``requests`` records
    (from peer id, to peer id, modality, task) of every request, answered or not.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, LoopbackTransport] = {}
        self._responders: dict[str, tuple[str, Responder]] = {}
        self.requests: list[tuple[str, str, str, str]] = []

    @staticmethod
    def address(peer_id: str) -> str:
        """The loopback multiaddr of ``peer_id``."""
        return f"{_MEMORY_PREFIX}{peer_id}/p2p/{peer_id}"

    def add_responder(self, key: Keypair, respond: Responder) -> str:
        """Make ``key``'s peer answer every task with ``respond``; returns its address."""
        self._responders[key.peer_id] = (key.public_hex, respond)
        return self.address(key.peer_id)

    def remove(self, peer_id: str) -> None:
        """Take a peer off the network (its requests then fail as ``unreachable``)."""
        self._responders.pop(peer_id, None)
        self._nodes.pop(peer_id, None)

    def _attach(self, transport: LoopbackTransport) -> None:
        if transport.peer_id in self._nodes:
            raise ValueError(f"peer {transport.peer_id} is already on this loopback network")
        self._nodes[transport.peer_id] = transport

    def _detach(self, transport: LoopbackTransport) -> None:
        if self._nodes.get(transport.peer_id) is transport:
            del self._nodes[transport.peer_id]

    def _known(self, peer_id: str) -> bool:
        return peer_id in self._nodes or peer_id in self._responders


def _peer_of(peer: str) -> str:
    """The peer id in a peer id or a multiaddr ending in ``/p2p/<id>``."""
    return peer.rsplit("/p2p/", 1)[1] if "/p2p/" in peer else peer


def _payload_copy(payload: np.ndarray | bytes | None) -> tuple[np.ndarray | bytes | None, int]:
    """What the receiver gets (its own copy, as after a wire round trip) and its size in bytes."""
    if payload is None:
        return None, 0
    if isinstance(payload, np.ndarray):
        copy = np.array(payload, copy=True, order="C")
        return copy, copy.nbytes
    data = bytes(payload)
    return data, len(data)


class LoopbackTransport:
    """Implements :class:`tnode.interfaces.Transport` inside one process, on a :class:`LoopbackNetwork`.

    An inbound task goes through the receiving node's :mod:`tnode.dispatch` pipeline, as a libp2p
    request does: spam filters in order, an execution slot, :class:`tnode.events.TaskReceived` on the
    bus, ``TaskRefused``/``TaskCompleted`` published there. Signatures are not made: both ends are
    in the test's own process.
    """

    def __init__(self, node: Any, name: str, network: LoopbackNetwork) -> None:
        self.name = name
        self.node = node
        self.network = network
        self.peer_id: str = node.peer_id
        self.hotkey: str = node.hotkey.public_hex
        self._addrs: dict[str, list[str]] = {}

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Join the network until cancelled."""
        self.network._attach(self)
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            self.network._detach(self)

    def listen_addrs(self) -> list[str]:
        return [self.network.address(self.peer_id)]

    async def connect(self, addr: str) -> str:
        peer_id = _peer_of(addr)
        if not self.network._known(peer_id):
            raise TaskError("unreachable", f"no loopback peer at {addr}")
        self._addrs.setdefault(peer_id, [addr])
        return peer_id

    def add_peer_addrs(self, peer_id: str, addrs: Sequence[str]) -> None:
        self._addrs[peer_id] = list(addrs)

    def peers(self) -> list[PeerInfo]:
        return [PeerInfo(peer_id, tuple(addrs), self.network._known(peer_id)) for peer_id, addrs in self._addrs.items()]

    async def request(self, peer: str, modality: str, task: str, body: Mapping[str, Any],
                      payload: np.ndarray | bytes | None = None, *, timeout: float = 10.0) -> Reply:
        peer_id = _peer_of(peer)
        self.network.requests.append((self.peer_id, peer_id, modality, task))
        # The body crosses as JSON would: a test cannot pass what the wire cannot carry.
        try:
            raw = orjson.dumps(dict(body), option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as exc:
            raise TaskError("invalid_request", f"body is not JSON: {exc}") from None
        sent, payload_bytes = _payload_copy(payload)
        began = time.monotonic()
        deadline = began + max(timeout, 0.0)
        with anyio.move_on_after(timeout):
            if peer_id in self.network._nodes:
                target = self.network._nodes[peer_id]
                result = await target.handle(self.hotkey, self.peer_id, modality, task, orjson.loads(raw), sent,
                                             payload_bytes, len(raw) + payload_bytes, deadline)
                hotkey = target.hotkey
            elif peer_id in self.network._responders:
                hotkey, respond = self.network._responders[peer_id]
                result = await respond(TaskReceived(modality, task, orjson.loads(raw), sent, self.hotkey,
                                                    self.peer_id, deadline, began))
            else:
                raise TaskError("unreachable", f"no loopback peer {peer_id}")
            if not isinstance(result, TaskResult):
                raise TaskError("invalid_response", f"peer returned {type(result).__name__}, not TaskResult")
            answer, _ = _payload_copy(result.payload)
            return Reply(orjson.loads(orjson.dumps(result.body, option=orjson.OPT_SERIALIZE_NUMPY)), answer,
                         peer_id, hotkey, time.monotonic() - began)
        raise TaskError("timeout", f"no answer from {peer_id} in {timeout} s")

    async def handle(self, sender: str, peer_id: str, modality: str, task: str, body: dict[str, Any],
                     payload: np.ndarray | bytes | None, payload_bytes: int, frame_bytes: int,
                     deadline: float) -> TaskResult:
        """Admit and answer one inbound task through this node's :mod:`tnode.dispatch` pipeline;
        raises :class:`TaskError` with the refusal code."""
        from . import dispatch  # imported when used, so the memory chain works on its own

        dtype, shape, _ = dispatch.describe_payload(payload)
        request = InboundRequest(sender, peer_id, modality, task, body, payload_bytes, frame_bytes, deadline,
                                 payload=payload, dtype=dtype, shape=shape, entry="loopback",
                                 received_at=time.monotonic())
        return await dispatch.of(self.node).handle(request)


# ============================================================================ plugins


class _KitPlugin:
    """Registers ``chain/memory`` and ``transport/loopback`` bound to one chain and one network."""

    def __init__(self, chain: MemoryChain, network: LoopbackNetwork) -> None:
        self.chain = chain
        self.network = network

    @hookimpl
    def tnode_register_components(self, register: Any) -> None:
        register(kind="chain", type="memory", factory=lambda node, name, config: self.chain, schema=NoOptions,
                 description="tnode.testing's in-memory chain (tests only).")
        register(kind="transport", type="loopback",
                 factory=lambda node, name, config: LoopbackTransport(node, name, self.network), schema=NoOptions,
                 description="tnode.testing's loopback transport (tests only).")


def builtin_plugins() -> list[str]:
    """Names of the built-in plugins (entry points of group ``tnode`` under ``tnode.plugins``)."""
    return sorted(ep.name for ep in metadata.entry_points(group="tnode") if ep.value.startswith("tnode.plugins."))


def plugin_manager(*keep: str, chain: MemoryChain, network: LoopbackNetwork | None = None,
                   extra: Iterable[object] = ()) -> PluginManager:
    """A validated plugin manager with the built-in plugins named in ``keep`` (none when none is named),
    ``extra`` plugins (modules or objects with hookimpls: the plugin under test) and the kit's
    ``memory`` chain and ``loopback`` transport bound to ``chain`` and ``network``. External plugins
    are not loaded."""
    unknown = sorted(set(keep) - set(builtin_plugins()))
    if unknown:
        raise ValueError(f"unknown built-in plugin(s) {', '.join(unknown)}; built-in: {', '.join(builtin_plugins())}")
    block = [name for name in builtin_plugins() if name not in keep]
    manager = load_plugins(block=block, autoload_external=False)
    manager.register(_KitPlugin(chain, network or LoopbackNetwork()), name="tnode_testing")
    for index, plugin in enumerate(extra):
        manager.register(plugin, name=getattr(plugin, "__name__", f"tnode_testing_extra_{index}"))
    manager.validate()
    return manager
