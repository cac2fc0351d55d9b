"""Adversarial validators, as ordinary ``[validator]`` types: ``copier`` and ``cabal``.

A copier measures nothing: every ``step_interval`` it reads the metagraph and sets the stake-weighted
mean of the other validators' weights the chain holds (under commit-reveal these are the revealed
ones, one reveal late). A cabal member does the same and moves ``boost`` of its weight onto one
miner, the one its fellow members push. Both submit through the chain backend like any validator
(commit, then reveal after ``commit_reveal_period`` when the subnet asks for it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
from tnode.errors import ChainError, TnodeError
from tnode.events import WeightsSubmitted
from tnode.interfaces import Metagraph
from tnode.weights import WeightVector

from .adversary_config import CopierConfig
from .base import metagraph_with_weights


@dataclass
class _Commit:
    block: int
    vector: WeightVector
    salt: str
    version: int


def copied_weights(mg: Metagraph, own_uid: int, *, boost_uid: int | None = None, boost: float = 0.0
                   ) -> np.ndarray | None:
    """Per uid, the stake-weighted mean of the other validators' weight rows (own uid zeroed),
    with ``boost`` of the total moved onto ``boost_uid``; None while no other validator has weights."""
    if mg.weights is None:
        return None
    w = np.asarray(mg.weights, dtype=np.float64)
    stake = np.array([n.stake for n in mg.neurons], dtype=np.float64)
    sums = w.sum(axis=1)
    rows = [u for u in range(min(w.shape[0], len(stake))) if u != own_uid and sums[u] > 0 and stake[u] > 0]
    if not rows:
        return None
    mean = ((w[rows] / sums[rows, None]) * (stake[rows, None] / stake[rows].sum())).sum(axis=0)
    mean[own_uid] = 0.0
    for u in rows:  # weights go to miners: other validators' columns are theirs to give, not copied
        mean[u] = 0.0
    total = mean.sum()
    if total <= 0:
        return None
    mean /= total
    if boost_uid is not None and boost > 0 and boost_uid != own_uid:
        mean *= 1.0 - boost
        mean[boost_uid] += boost
    return mean


class CopierValidator:
    """``[validator] type = "copier"`` / ``"cabal"``: see :class:`CopierConfig`."""

    def __init__(self, node: Any, name: str, config: CopierConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.log = node.log.bind(component=f"validator:{name}")
        self.pending: list[_Commit] = []
        self.last_block: int | None = None
        self.submitted = 0

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.node.ready.wait()
        self.log.info("copying the other validators' weights",
                      boost_target=self.config.boost_target or None, boost=self.config.boost)
        while True:
            try:
                await self.step()
            except TnodeError as exc:  # chain trouble: try again next step
                self.log.warning("copier step failed", error=f"{type(exc).__name__}: {exc}")
            await anyio.sleep(self.config.step_interval)

    def _boost_uid(self, mg: Metagraph) -> int | None:
        target = self.config.boost_target.strip()
        if not target:
            return None
        neuron = next((n for n in mg.neurons if str(n.uid) == target or n.hotkey == target), None)
        return neuron.uid if neuron is not None else None

    async def step(self) -> bool:
        """Reveal what is due; submit a copy when the rate limit allows. True when weights went out."""
        chain = self.node.chain
        mg: Metagraph = await metagraph_with_weights(chain)
        me = mg.by_hotkey(self.node.hotkey.public_hex)
        if me is None:
            return False
        hp = mg.hyperparameters
        if hp.commit_reveal_weights_enabled:
            await self._reveal_due(mg, hp)
        interval = max(hp.weights_rate_limit, self.config.weights_interval)
        if self.last_block is not None and mg.block - self.last_block < interval:
            return False
        weights = copied_weights(mg, me.uid, boost_uid=self._boost_uid(mg), boost=self.config.boost)
        if weights is None:
            return False
        uids = [u for u in range(len(weights)) if weights[u] > 0]
        vector = WeightVector.from_floats(uids, [float(weights[u]) for u in uids])
        version = max(self.config.version_key, hp.weights_version)
        try:
            if hp.commit_reveal_weights_enabled:
                salt = secrets.token_hex(16)
                await chain.commit_weights(self.node.hotkey, vector.commit_hash(self.node.hotkey.public_hex, salt,
                                                                                version), netuid=mg.netuid)
                self.pending.append(_Commit(mg.block, vector, salt, version))
            else:
                await chain.set_weights(self.node.hotkey, vector, version, netuid=mg.netuid)
        except ChainError as exc:
            self.last_block = mg.block - interval + max(1, interval // 4)
            self.log.warning("weights refused", code=exc.code, reason=exc.message)
            return False
        self.last_block = mg.block + 1  # the submission lands in the next block: the rate limit counts from there
        self.submitted += 1
        await self.node.bus.publish(WeightsSubmitted(mg.block, vector.uids, vector.shares,
                                                     committed=hp.commit_reveal_weights_enabled))
        return True

    async def _reveal_due(self, mg: Metagraph, hp: Any) -> None:
        for commit in list(self.pending):
            if mg.block < commit.block + hp.commit_reveal_period:
                continue
            self.pending.remove(commit)
            if mg.block > commit.block + hp.commit_reveal_period + hp.commit_reveal_window + 1:
                continue  # expired
            try:
                await self.node.chain.reveal_weights(self.node.hotkey, commit.vector, commit.salt, commit.version,
                                                     netuid=mg.netuid)
            except ChainError as exc:
                if exc.code == "reveal_too_early":
                    self.pending.append(commit)
                    continue
                self.log.warning("weight reveal refused", code=exc.code, reason=exc.message)
                continue
            await self.node.bus.publish(WeightsSubmitted(mg.block, commit.vector.uids, commit.vector.shares,
                                                         committed=False))
