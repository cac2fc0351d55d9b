"""Core events carried by the :class:`tnode.bus.EventBus`.

Events are frozen dataclasses named in the past tense. Each docstring says who emits it and
when. A plugin's own events live in that plugin's ``events.py`` and subclass :class:`Event`.
Requests (things that expect exactly one answer) subclass :class:`Request` and are sent with
``await bus.request(req)``; they are routed by type and :attr:`Request.route_key`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, slots=True)
class Request(Event):
    """Base class of bus requests: exactly one handler answers, chosen by type and route key."""

    @property
    def route_key(self) -> str | None:
        """The key that picks the handler among those serving this request type."""
        return None


# --------------------------------------------------------------------------- node lifecycle
@dataclass(frozen=True, slots=True)
class NodeStarted(Event):
    """Emitted by the node once every component has started."""

    peer_id: str
    components: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeStopping(Event):
    """Emitted by the node when shutdown begins (signal or component failure)."""

    reason: str


# --------------------------------------------------------------------------- network
@dataclass(frozen=True, slots=True)
class PeerConnected(Event):
    """Emitted by the transport when a connection to a peer is established."""

    peer_id: str
    addrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PeerDisconnected(Event):
    """Emitted by the transport when the last connection to a peer closes."""

    peer_id: str


@dataclass(frozen=True, slots=True)
class AnnouncementReceived(Event):
    """Emitted by the transport when a peer's gossip announcement arrives.

    :ivar modalities: modalities the peer serves.
    :ivar capacity: concurrent tasks the peer says it accepts.
    """

    peer_id: str
    hotkey: str
    modalities: tuple[str, ...]
    version: str
    capacity: int
    addrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskReceived(Request):
    """A verified inbound task, sent by :mod:`tnode.dispatch` as a bus request to the modality
    whose wire name is ``modality``. The handler returns a :class:`tnode.interfaces.TaskResult` or
    raises :class:`tnode.errors.TaskError`.

    The entry point verified it; spam filters admitted it; it holds an execution slot.
    """

    modality: str
    task: str
    body: dict[str, Any]
    payload: Any  # numpy array, bytes or None
    sender: str  # hotkey (hex public key) of the requester
    peer_id: str
    deadline: float  # time.monotonic() deadline
    received_at: float = field(default_factory=time.monotonic)

    @property
    def route_key(self) -> str | None:
        return self.modality


@dataclass(frozen=True, slots=True)
class TaskRefused(Event):
    """Emitted by the transport (its own refusals) or :mod:`tnode.dispatch` (the pipeline's) when an
    inbound request is refused before any handler runs; ``code`` is one of ``tnode.dispatch.REFUSALS``."""

    peer_id: str
    sender: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class TaskCompleted(Event):
    """Emitted by :mod:`tnode.dispatch` when an inbound task past the ready check ends, answered or refused."""

    modality: str
    task: str
    sender: str
    ok: bool
    code: str
    seconds: float


# --------------------------------------------------------------------------- validation
@dataclass(frozen=True, slots=True)
class ResponseScored(Event):
    """Emitted by a validator after scoring one miner's response to one task."""

    uid: int
    hotkey: str
    modality: str
    score: float
    scorer: str
    latency: float
    error: str = ""


@dataclass(frozen=True, slots=True)
class TaskRoundScored(Event):
    """Emitted by a validator after one task round: one task sent to several miners, every answer
    parsed and scored. Collusion detectors compare the answers of different miners to the same task.

    Per-miner tuples share one order (``uids``). ``answers`` hold the modality's parsed answers
    (for text a :class:`tnode.contracts.text.TopKPrediction`), ``None`` where the miner failed.
    """

    task_id: str
    modality: str
    uids: tuple[int, ...]
    hotkeys: tuple[str, ...]
    answers: tuple[Any, ...]
    latencies: tuple[float, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class WeightsSubmitted(Event):
    """Emitted by a validator after the chain accepted its weights (or weight commit)."""

    block: int
    uids: tuple[int, ...]
    weights: tuple[float, ...]
    committed: bool = False


# --------------------------------------------------------------------------- chain
@dataclass(frozen=True, slots=True)
class BlockProduced(Event):
    """Emitted by the chain backend for every new block (authority) or seen block (client)."""

    number: int
    hash: str
    timestamp: float
    tx_count: int = 0


@dataclass(frozen=True, slots=True)
class EpochCompleted(Event):
    """Emitted by the chain backend after Yuma consensus ran and emission was distributed.

    Per-uid lists are indexed by uid.
    """

    block: int
    netuid: int
    incentive: tuple[float, ...]
    dividends: tuple[float, ...]
    emission: tuple[float, ...]
    consensus: tuple[float, ...]
    trust: tuple[float, ...]
    validator_trust: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class NeuronRegistered(Event):
    """Emitted by the chain backend when a hotkey takes a uid (possibly pruning another)."""

    block: int
    uid: int
    hotkey: str
    replaced: str | None = None


# --------------------------------------------------------------------------- market health
@dataclass(frozen=True, slots=True)
class SpamDetected(Event):
    """Emitted by anti-spam filters (inbound requests) and by validators (garbage responses).

    :ivar subject: hotkey or peer id of the offender.
    :ivar kind: the rule that fired, e.g. ``rate_limit``, ``constant_response``, ``near_duplicate``.
    """

    subject: str
    kind: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CollusionSuspected(Event):
    """Emitted by collusion detectors when a group of hotkeys behaves as one.

    ``action`` says what the detector asks of validators on this node: ``"report"`` (nothing),
    ``"zero"`` or ``"scale"`` (multiply the suspects' weights by ``factor``) for ``hold_seconds``.
    """

    members: tuple[str, ...]
    kind: str
    evidence: float
    detail: str = ""
    detector: str = ""
    action: str = "report"
    factor: float = 1.0
    hold_seconds: float = 0.0


CORE_EVENTS: tuple[type[Event], ...] = (
    NodeStarted,
    NodeStopping,
    PeerConnected,
    PeerDisconnected,
    AnnouncementReceived,
    TaskReceived,
    TaskRefused,
    TaskCompleted,
    ResponseScored,
    TaskRoundScored,
    WeightsSubmitted,
    BlockProduced,
    EpochCompleted,
    NeuronRegistered,
    SpamDetected,
    CollusionSuspected,
)
