"""Adversarial text miners, as ordinary ``[models.NAME]`` types a devnet (or anyone) can serve, to
test the detectors against what an attacker would run.

- ``relay``: answers every task by forwarding it to another miner (its ``source``) over this node's
  own transport and returning that answer, optionally with noise added to the distribution
  (``noise`` nats; ``noisy-relay`` defaults to 0.05).
- ``lazy``: answers with another configured model on a ``fraction`` of tasks and with confident
  junk (the garbage miner's answers) on the rest.

Both keep the text modality's model contract (``next_token_logprobs``), so the text modality serves
them like any model. The relay runs in the modality's inference thread and hops back to the event
loop (``anyio.from_thread``) for the network call.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.from_thread
import numpy as np
from tnode.errors import ConfigError, TaskError
from tnode.keys import peer_id_from_public_key

from .adversary_config import LazyMinerConfig, RelayMinerConfig

VOCAB = 256  # the network's byte tokenizer


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return (x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))).astype(np.float32)


def full_distribution(ids: np.ndarray, logprobs: np.ndarray, vocab: int = VOCAB) -> np.ndarray:
    """(positions, vocab) log-probabilities from a top-k answer: the named ids keep their values,
    the mass they leave is spread evenly over the rest (as the cross-entropy scorer reads it)."""
    probs = np.exp(logprobs.astype(np.float64))
    rest = np.clip(1.0 - probs.sum(axis=-1, keepdims=True), 1e-12, None) / max(1, vocab - ids.shape[-1])
    out = np.repeat(np.log(rest), vocab, axis=-1)
    np.put_along_axis(out, ids.astype(np.int64), logprobs.astype(np.float64), axis=-1)
    return out.astype(np.float32)


class RelayModel:
    """``[models.NAME] type = "relay"`` (or ``"noisy-relay"``): see :class:`RelayMinerConfig`."""

    vocab_size = VOCAB
    context = None  # the whole window is forwarded: the source decides what it reads

    def __init__(self, node: Any, name: str, config: RelayMinerConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.rng = np.random.default_rng(None if config.seed < 0 else config.seed)
        self._peer: tuple[str, float] | None = None  # (peer id, monotonic time resolved)
        self.forwarded = 0
        self.failed = 0

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    def stats(self) -> dict[str, Any]:
        """Tasks forwarded and failed, and the source."""
        return {"source": self.config.source, "forwarded": self.forwarded, "failed": self.failed}

    # ------------------------------------------------------------------ the model contract
    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        """Ask the source for every position of every row, in the event loop (this runs in a thread)."""
        out = anyio.from_thread.run(self.forward, np.asarray(tokens))
        if self.config.noise > 0:
            out = log_softmax(out + self.rng.normal(0.0, self.config.noise, out.shape))
        return out

    async def forward(self, tokens: np.ndarray) -> np.ndarray:
        """(batch, seq, vocab) log-probabilities: one request per row to the source, concurrently."""
        peer = await self.source_peer()
        out = np.empty((tokens.shape[0], tokens.shape[1], VOCAB), dtype=np.float32)

        async def one(i: int) -> None:
            out[i] = await self._ask(peer, tokens[i])

        async with anyio.create_task_group() as tg:
            for i in range(tokens.shape[0]):
                tg.start_soon(one, i)
        return out

    async def _ask(self, peer: str, row: np.ndarray) -> np.ndarray:
        body = {"k": self.config.k, "positions": "all"}
        try:
            reply = await self.node.transport.request(peer, self.config.modality, "next_token", body,
                                                      row.astype(np.int32), timeout=self.config.timeout)
            ids = np.asarray(reply.body["ids"], dtype=np.int64)
            values = np.asarray(reply.payload, dtype=np.float32)
            if ids.shape != values.shape or ids.shape[0] != row.shape[0]:
                raise TaskError("invalid_response", f"the source answered shape {ids.shape} for {row.shape[0]} tokens")
        except TaskError:
            self.failed += 1
            self._peer = None  # resolve again: the source may have moved
            raise
        self.forwarded += 1
        return full_distribution(ids, values)

    async def source_peer(self) -> str:
        """The source's peer id, its addresses taught to the transport (re-read every 30 s)."""
        if self._peer is not None and time.monotonic() - self._peer[1] < 30.0:
            return self._peer[0]
        source = self.config.source.strip()
        transport = self.node.transport
        if source.startswith("/"):
            if "/p2p/" not in source:
                raise ConfigError(f"source {source!r}: a multiaddr needs a /p2p/<peer id> part",
                                  key_path=f"models.{self.name}.source")
            peer = source.rsplit("/p2p/", 1)[1]
            transport.add_peer_addrs(peer, [source])
        else:
            mg = await self.node.chain.metagraph()
            neuron = next((n for n in mg.neurons if str(n.uid) == source or n.hotkey == source), None)
            if neuron is None:
                raise TaskError("unreachable", f"source {source!r} is no uid or hotkey of the subnet")
            peer = neuron.peer_id or peer_id_from_public_key(bytes.fromhex(neuron.hotkey))
            if neuron.addrs:
                transport.add_peer_addrs(peer, list(neuron.addrs))
        self._peer = (peer, time.monotonic())
        return peer


class LazyModel:
    """``[models.NAME] type = "lazy"``: see :class:`LazyMinerConfig`."""

    vocab_size = VOCAB
    context = None

    def __init__(self, node: Any, name: str, config: LazyMinerConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.rng = np.random.default_rng(None if config.seed < 0 else config.seed)
        self.inner: Any = None
        self.good = 0
        self.junk = 0

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        self.inner = self.node.require("model", self.config.model, key_path=f"models.{self.name}.model")
        if self.inner is self:
            raise ConfigError("a lazy model cannot wrap itself", key_path=f"models.{self.name}.model")
        task_status.started()
        await anyio.sleep_forever()

    def stats(self) -> dict[str, Any]:
        """Rows answered well and with junk."""
        return {"model": self.config.model, "good": self.good, "junk": self.junk}

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        """Per row (one task): the inner model's answer with probability ``fraction``, junk otherwise."""
        tokens = np.asarray(tokens)
        good = self.rng.random(tokens.shape[0]) < self.config.fraction
        out = log_softmax(self.rng.normal(0.0, 3.0, (tokens.shape[0], tokens.shape[1], VOCAB)))
        if good.any():
            if self.inner is None:
                raise TaskError("overloaded", "the lazy model's inner model is not started yet")
            out[good] = np.asarray(self.inner.next_token_logprobs(tokens[good]), dtype=np.float32)
        self.good += int(good.sum())
        self.junk += int((~good).sum())
        return out
