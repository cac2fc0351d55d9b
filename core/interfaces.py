"""The generic contracts components fulfil, so plugins can use each other without importing each other.

A plugin gets another component from the :class:`tnode.node.Node` (``node.transport``,
``node.chain``, ``node.component("models", "small")``) and talks to it through these
protocols and plain data classes only. Nothing here knows a modality: the types one modality's
plugins share (text answers, image truths...) live in :mod:`tnode.contracts`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .hyperparameters import Hyperparameters
from .keys import Keypair
from .weights import WeightVector

# =========================================================================== components


@runtime_checkable
class Component(Protocol):
    """What every component instance is.

    ``run`` is started in the node's task group with ``await task_group.start(component.run)``;
    it must call ``task_status.started()`` once the component is ready to be used by others and
    then keep running until cancelled (cleanup in ``finally``). Raising before ``started()``
    aborts node start-up with a clear error.
    """

    name: str

    async def run(self, *, task_status: Any) -> None: ...


# =========================================================================== transport


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What a modality handler returns for an inbound task."""

    body: dict[str, Any]
    payload: np.ndarray | bytes | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A verified, successful answer from a remote peer."""

    body: dict[str, Any]
    payload: np.ndarray | bytes | None
    peer_id: str
    hotkey: str
    latency: float


@dataclass(frozen=True, slots=True)
class PeerInfo:
    peer_id: str
    addrs: tuple[str, ...]
    connected: bool
    hotkey: str = ""
    modalities: tuple[str, ...] = ()
    version: str = ""
    capacity: int = 0


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """A verified request, as an entry point hands it to :mod:`tnode.dispatch` and spam filters see it.

    Its signature, freshness and nonce were checked by the entry point. ``modality`` is the wire
    route: a modality's wire name, or ``svc:<name>`` for a service call (:attr:`service`).
    ``dtype`` and ``shape`` describe ``payload`` (``""``/``None`` without one, ``"bytes"`` for raw
    bytes), so filters can judge token and tensor payloads without decoding them.
    """

    sender: str  # hotkey, hex public key
    peer_id: str
    modality: str
    task: str
    body: Mapping[str, Any]
    payload_bytes: int
    frame_bytes: int
    deadline: float | None = None  # time.monotonic() after which the caller no longer waits for the answer
    payload: Any = None  # numpy array, bytes or None
    dtype: str = ""
    shape: tuple[int, ...] | None = None
    entry: str = ""  # the entry point that received it: "libp2p", "self", ...
    received_at: float = 0.0  # time.monotonic() when it arrived (0: when dispatch sees it)

    @property
    def service(self) -> str:
        """The service called (``svc:<name>`` routes), ``""`` for a modality task."""
        return self.modality[4:] if self.modality.startswith("svc:") else ""

    @property
    def tasks(self) -> int:
        """Tasks the request carries: its body's ``batch`` (a positive integer), else 1. Rate limits
        count this; the modality refuses a payload whose rows do not match it, before any inference."""
        batch = self.body.get("batch") if isinstance(self.body, Mapping) else None
        return batch if type(batch) is int and batch > 0 else 1


class Transport(Protocol):
    """The network: signed request/response between peers identified by hotkey/peer id."""

    peer_id: str
    hotkey: str

    def listen_addrs(self) -> list[str]:
        """Multiaddrs (with ``/p2p/<peer id>``) other nodes can dial."""
        ...

    async def connect(self, addr: str) -> str:
        """Dial a multiaddr; returns the peer id."""
        ...

    def add_peer_addrs(self, peer_id: str, addrs: Sequence[str]) -> None:
        """Teach the transport addresses of a peer (from the chain, config or announcements)."""
        ...

    def peers(self) -> list[PeerInfo]:
        """Known peers with connection state and last announcement."""
        ...

    async def request(
        self,
        peer: str,
        modality: str,
        task: str,
        body: Mapping[str, Any],
        payload: np.ndarray | bytes | None = None,
        *,
        timeout: float = 10.0,
    ) -> Reply:
        """Send a signed task to ``peer`` (peer id or multiaddr) and return its verified reply.

        Raises :class:`tnode.errors.TaskError` with the remote's code, or ``timeout`` /
        ``unreachable`` / ``invalid_response`` for local failures.
        """
        ...


class SpamFilter(Protocol):
    """Admission control run in configured order on every verified inbound request."""

    name: str

    async def admit(self, request: InboundRequest) -> Callable[[], None] | None:
        """Admit or refuse ``request``.

        Raise :class:`tnode.errors.TaskError` (``rate_limited``, ``unregistered``,
        ``overloaded``, ``too_large``...) to refuse. May wait (e.g. a priority queue). May return a
        release callback that the transport calls when the task finished.
        """
        ...


# =========================================================================== chain


@dataclass(frozen=True, slots=True)
class Neuron:
    """One uid on the subnet, as of some block."""

    uid: int
    hotkey: str
    coldkey: str
    stake: float
    rank: float = 0.0
    trust: float = 0.0
    consensus: float = 0.0
    incentive: float = 0.0
    dividends: float = 0.0
    emission: float = 0.0
    validator_trust: float = 0.0
    validator_permit: bool = False
    last_update: int = 0
    registered_at: int = 0
    active: bool = True
    addrs: tuple[str, ...] = ()
    peer_id: str = ""


@dataclass(frozen=True, slots=True)
class Metagraph:
    """The subnet's state at ``block``: neurons indexed by uid plus the subnet's rules."""

    block: int
    netuid: int
    neurons: tuple[Neuron, ...]
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    # Optional dense matrices (validators' rows by uid), present when asked for.
    weights: np.ndarray | None = None
    bonds: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.neurons)

    def by_hotkey(self, hotkey: str) -> Neuron | None:
        for neuron in self.neurons:
            if neuron.hotkey == hotkey:
                return neuron
        return None


class ChainBackend(Protocol):
    """What a node needs from any chain. Amounts are integer base units (1 token = 10^9).

    A chain holds one or more subnets, each identified by its ``netuid`` and serving one modality
    (:meth:`subnets`), with its own hyperparameters, uids, weights, bonds and epoch; every
    subnet-scoped method takes a keyword ``netuid`` (``None``: the node's ``[node] netuid``).
    Balances and stake belong to keys, not subnets: a hotkey's stake counts in every subnet it is
    registered in.

    Weights travel as :class:`tnode.weights.WeightVector` (u16, max-upscaled). A subnet takes them
    either with :meth:`set_weights` or, when ``Hyperparameters.commit_reveal_weights_enabled``, as
    :meth:`commit_weights` of ``vector.commit_hash(hotkey, salt, version_key)`` followed, from
    ``commit_reveal_period`` blocks later and for ``commit_reveal_window`` blocks, by
    :meth:`reveal_weights` of the same vector, salt and version key. Refusals raise
    :class:`tnode.errors.ChainError` with the rule's code (see :mod:`tnode.weights`); a netuid the
    chain does not have is refused with ``unknown_subnet``.
    """

    async def block_number(self) -> int: ...

    async def block_hash(self, number: int | None = None) -> str:
        """Hex hash of block ``number`` (latest when ``None``)."""
        ...

    async def subnets(self) -> dict[int, str]:
        """Every subnet of the chain: netuid → the wire name of the modality it serves ("" for any)."""
        ...

    async def hyperparameters(self, *, netuid: int | None = None) -> Hyperparameters:
        """The subnet's rules now (current difficulty and burn)."""
        ...

    async def metagraph(self, block: int | None = None, *, netuid: int | None = None) -> Metagraph: ...

    async def difficulty(self, *, netuid: int | None = None) -> int:
        """Current proof-of-work registration difficulty of the subnet."""
        ...

    async def register(self, hotkey: Keypair, coldkey: str, *, block: int, nonce: int,
                       netuid: int | None = None) -> int:
        """Register ``hotkey`` (owned by ``coldkey`` public key hex) in the subnet with a PoW seal over
        the hash of block ``block``; returns the uid. One hotkey may hold a uid in several subnets."""
        ...

    async def burned_register(self, hotkey: Keypair, coldkey: Keypair, *, netuid: int | None = None) -> int:
        """Register in the subnet by burning its current burn cost from ``coldkey``'s balance; returns the uid."""
        ...

    async def balance(self, coldkey: str) -> int: ...

    async def transfer(self, coldkey: Keypair, dest: str, amount: int) -> None: ...

    async def add_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        """Stake on ``hotkey`` (counted in every subnet the hotkey is registered in)."""
        ...

    async def remove_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None: ...

    async def set_weights(self, hotkey: Keypair, weights: WeightVector, version_key: int = 0, *,
                          netuid: int | None = None) -> None:
        """Set ``hotkey``'s weights in the subnet (subnets without commit-reveal)."""
        ...

    async def commit_weights(self, hotkey: Keypair, commit_hash: str, *, netuid: int | None = None) -> None:
        """Commit to weights revealed later: ``commit_hash`` is :meth:`WeightVector.commit_hash`."""
        ...

    async def reveal_weights(self, hotkey: Keypair, weights: WeightVector, salt: str, version_key: int = 0, *,
                             netuid: int | None = None) -> None:
        """Reveal a committed vector; the chain recomputes its commit hash and must find the commit."""
        ...

    async def publish_addrs(self, hotkey: Keypair, addrs: Sequence[str], peer_id: str, *,
                            netuid: int | None = None) -> None:
        """Publish the node's transport addresses in the subnet so peers can find it by uid."""
        ...


def subnet_for_modality(subnets: Mapping[int, str], modality: str, default: int) -> int:
    """The netuid serving ``modality``: the subnet named for it; else ``default`` when that subnet
    takes any modality (""), so single-subnet chains keep working.

    Raises :class:`tnode.errors.ChainError` (``unknown_subnet``) when no subnet fits.
    """
    from .errors import ChainError

    for netuid, name in subnets.items():
        if name == modality:
            return netuid
    if not subnets or subnets.get(default) == "":
        return default
    listed = ", ".join(f"{n} ({m or 'any'})" for n, m in subnets.items())
    raise ChainError("unknown_subnet", f"no subnet serves modality {modality!r} (subnets: {listed})")


# =========================================================================== validation


@dataclass(frozen=True, slots=True)
class ValidatorTask:
    """A task a validator sends, with the hidden truth it keeps back to score answers."""

    modality: str
    task: str
    body: dict[str, Any]
    payload: np.ndarray | bytes | None
    truth: Any


class ValidatingModality(Protocol):
    """The validator side of a modality: makes checkable tasks and parses answers."""

    name: str

    def make_task(self, rng: np.random.Generator) -> ValidatorTask: ...

    def parse_response(self, task: ValidatorTask, reply: Reply) -> Any:
        """Validate a reply; raise :class:`tnode.errors.TaskError` ("invalid_response") if bad."""
        ...


@runtime_checkable
class BatchingModality(Protocol):
    """Optional for a validating modality: several tasks for one miner travel as one request.

    A validator with ``tasks_per_step`` > 1 that finds these methods sends a miner its tasks of one
    step in one frame (text: body ``batch`` = B and a (B, T) payload), then scores each task as if
    it had been sent alone.
    """

    def batch_tasks(self, tasks: Sequence[ValidatorTask]) -> ValidatorTask | None:
        """One request carrying ``tasks`` (same task kind), or None when they cannot share one."""
        ...

    def unbatch_reply(self, batch: ValidatorTask, tasks: Sequence[ValidatorTask], reply: Reply) -> list[Reply]:
        """The answer to each of ``tasks`` from the answer to ``batch``, in order; raise
        :class:`tnode.errors.TaskError` ("invalid_response") when the reply does not hold one per task."""
        ...


class Scorer(Protocol):
    """Turns the parsed answers of all queried miners to one task into scores in [0, 1]."""

    name: str

    def score(self, task: ValidatorTask, answers: Mapping[int, Any], latencies: Mapping[int, float]) -> dict[int, float]:
        """:param answers: uid → parsed answer, or ``None`` for no/invalid answer (scores 0)."""
        ...


AsyncHandler = Callable[..., Awaitable[Any]]
