"""The epoch on an EVM chain: computed off-chain from the contract's state, posted, verified.

Yuma over 4096 × 128 cannot run in a transaction. Every node runs the same deterministic
:func:`tnode.yuma.epoch` on the contract's state at the end of the epoch block (read by ``eth_call``
at that block number), with its own previous bonds (from the previous epoch it computed), and gets
the emission per uid in base units (``floor(share · pending)``, as the embedded chain pays it). The
keeper account posts that vector with ``postEpochChunk`` (512 uids per transaction, so 4096 uids fit
under a 30M block gas limit); the contract credits each chunk to the owners' stake and commits to
the whole vector with a chained hash.
Every other node decodes the posted vector from the transaction and compares it with its own: a
difference of more than one base unit per uid is an alarm (logged, counted, kept in
:attr:`EpochBook.alarms`, optionally disputed on-chain with ``disputeEpoch``), and
``tnode evm verify`` exits non-zero.

Permits, activity and bond resets follow the embedded chain: validator permits go to the top
``max_allowed_validators`` hotkeys by stake (ties: lower uid); a validator is active when its last
weights are at most ``activity_cutoff`` blocks old; uids registered within the last ``tempo`` blocks
start without previous bonds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from eth_abi import decode
from tnode.errors import ChainError

from .client import EvmSubnets
from .contract import WEI_PER_UNIT, decode_log, events, functions


@dataclass(frozen=True)
class EpochView:
    """What one epoch computed, per uid (the metagraph's consensus columns)."""

    block: int
    emission: tuple[int, ...]
    incentive: tuple[float, ...]
    dividends: tuple[float, ...]
    consensus: tuple[float, ...]
    trust: tuple[float, ...]
    rank: tuple[float, ...]
    validator_trust: tuple[float, ...]
    validator_permit: tuple[bool, ...]
    bonds: dict[int, np.ndarray] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class Alarm:
    """A posted epoch that differs from this node's computation."""

    netuid: int
    block: int
    tx_hash: str
    max_difference: int
    posted: tuple[int, ...]
    computed: tuple[int, ...]
    starts: tuple[int, ...] = (0,)  # first uid of each posted chunk


def _permits(stake: np.ndarray, k: int) -> np.ndarray:
    n = len(stake)
    order = np.lexsort((np.arange(n), -stake))
    permit = np.zeros(n, dtype=bool)
    permit[order[:k]] = True
    return permit


def _within(emission: np.ndarray, pending: int) -> np.ndarray:
    """``emission`` with any excess over ``pending`` taken from the largest entries (ties: the lower
    uid first): float shares that sum to a hair over 1 must not pay more than accrued."""
    out = emission.copy()
    excess = int(out.sum()) - int(pending)
    for u in np.lexsort((np.arange(len(out)), -out)):
        if excess <= 0:
            break
        take = min(excess, int(out[u]))
        out[u] -= take
        excess -= take
    return out


async def compute_epoch(client: EvmSubnets, netuid: int, block: int, previous: EpochView | None,
                        pending_wei: int | None = None) -> EpochView:
    """Run Yuma on the contract's state at the end of ``block``; ``previous`` gives the previous bonds.

    ``pending_wei`` is the emission to split: the contract's (``EpochPosted``'s ``pending``, fixed
    when the posting began); ``None`` reads what the contract would fix now (all earlier epochs
    posted), as the keeper does before posting.
    """
    from tnode.yuma import YumaParams
    from tnode.yuma import epoch as yuma_epoch

    hp = await client.hyperparameters(netuid=netuid, block=block)
    rows = await client.neuron_rows(netuid, block)
    if pending_wei is None:
        open_block, _next, _n, open_pending = (await client.call("epochPosting", netuid))[:4]
        pending_wei = int(open_pending) if int(open_block) == block else int(
            (await client.call("pendingEmission", netuid, block))[0])
    n = len(rows)
    if n == 0:
        return EpochView(block, (), (), (), (), (), (), (), ())
    stake = np.array([r["stake_wei"] for r in rows], dtype=np.float64) / 1e18
    last_update = np.array([r["last_update"] for r in rows], dtype=np.int64)
    registered_at = np.array([r["registered_at"] for r in rows], dtype=np.int64)
    active = (block - last_update) <= hp.activity_cutoff
    forged = sorted(await client.forged_uids(rows, block=block))
    stake[forged] = 0.0  # a uid whose key binding does not verify counts for nothing
    active[forged] = False
    permit = _permits(stake, hp.max_allowed_validators)
    permit[forged] = False
    vrows = np.flatnonzero(permit)
    stored = await client.weights_rows([int(u) for u in vrows], netuid=netuid, block=block)
    weights = np.zeros((len(vrows), n), dtype=np.float32)
    bonds = np.zeros((len(vrows), n), dtype=np.float32)
    for i, u in enumerate(vrows):
        cols, vals = stored[int(u)]
        for c, v in zip(cols, vals, strict=True):
            if c < n:
                weights[i, c] = v
        if previous is not None and int(u) in previous.bonds:
            prev = previous.bonds[int(u)]
            m = min(n, len(prev))
            bonds[i, :m] = prev[:m]
    result = yuma_epoch(
        weights, stake, bonds, YumaParams(kappa=hp.kappa, bonds_penalty=hp.bonds_penalty,
                                          bonds_moving_average=hp.bonds_moving_average),
        active=active, validator_permit=permit, last_update=last_update, registered_at=registered_at,
        row_uids=vrows, reset_bonds=registered_at > block - hp.tempo,
    )
    pending = pending_wei // WEI_PER_UNIT
    inc = np.floor(np.asarray(result.server_emission) * pending).astype(np.int64)
    div = np.floor(np.asarray(result.validator_emission) * pending).astype(np.int64)
    emission = _within(inc + div, pending)
    new_bonds = np.asarray(result.bonds, dtype=np.float32)

    def t(x: Any) -> tuple[float, ...]:
        return tuple(float(v) for v in np.asarray(x, dtype=np.float64))

    return EpochView(
        block=block, emission=tuple(int(e) for e in emission), incentive=t(result.incentive),
        dividends=t(result.dividends), consensus=t(result.consensus), trust=t(result.trust), rank=t(result.rank),
        validator_trust=t(result.validator_trust), validator_permit=tuple(bool(p) for p in permit),
        bonds={int(u): new_bonds[i].copy() for i, u in enumerate(vrows)},
    )


class EpochBook:
    """Follows the posted epochs of a subnet in order, recomputing and checking each one.

    ``client.epoch_view`` is set to this book, so the client's metagraph carries the consensus
    columns of the last epoch.
    """

    def __init__(self, client: EvmSubnets, *, log: Any = None) -> None:
        self.client = client
        self.log = log
        self.views: dict[int, EpochView] = {}  # netuid → last verified (or computed) epoch
        self.alarms: list[Alarm] = []
        self.checked = 0
        self._scanned: dict[int, int] = {}  # netuid → next block to scan for EpochPosted
        self._chunks: dict[int, dict[int, list[tuple[int, list[int]]]]] = {}  # netuid → epoch → (start, values)
        client.epoch_view = self

    def get(self, netuid: int) -> EpochView | None:
        return self.views.get(netuid)

    async def next_epoch_block(self, netuid: int) -> int:
        """The next epoch block the keeper has to post."""
        hp = await self.client.hyperparameters(netuid=netuid)
        last = (await self.client.state(netuid=netuid))["last_epoch_block"]
        return (last // hp.tempo + 1) * hp.tempo

    async def keep(self, keeper: Any, netuid: int) -> EpochView | None:
        """Keeper: post every epoch that is due (its block is sealed); returns the last one posted."""
        await self.verify(netuid)  # catch up on what others posted, so the bonds chain is complete
        posted = None
        while True:
            block = await self.next_epoch_block(netuid)
            if block >= await self.client.block_number():
                return posted
            view = await compute_epoch(self.client, netuid, block, self.views.get(netuid))
            await self.client.post_epoch(keeper, netuid, block, view.emission)
            self.views[netuid] = view
            self._scanned[netuid] = max(self._scanned.get(netuid, 0), await self.client.block_number() + 1)
            posted = view

    async def verify(self, netuid: int) -> list[Alarm]:
        """Check every epoch closed since the last call; returns the new alarms.

        The posted vector is read back from the ``postEpochChunk`` transactions of the epoch (their
        ``EpochChunkPosted`` logs); its chained hash must be the commitment of ``EpochPosted``.
        """
        posted_topic, _ = events()["EpochPosted"]
        chunk_topic, _ = events()["EpochChunkPosted"]
        start = self._scanned.get(netuid, 0)
        head = await self.client.block_number()
        if start > head:
            return []
        logs = await self.client.rpc.call("eth_getLogs", {
            "address": self.client.address, "fromBlock": hex(start), "toBlock": hex(head),
            "topics": [["0x" + posted_topic.hex(), "0x" + chunk_topic.hex()], "0x" + netuid.to_bytes(32, "big").hex()],
        })
        new: list[Alarm] = []
        chunks = self._chunks.setdefault(netuid, {})
        for log in logs:
            if bytes.fromhex(log["topics"][0][2:]) == chunk_topic:
                fields = decode_log("EpochChunkPosted", log)
                chunks.setdefault(int(fields["epochBlock"]), []).append(
                    (int(fields["start"]), await self._chunk_values(log["transactionHash"])))
                continue
            fields = decode_log("EpochPosted", log)
            block = int(fields["epochBlock"])
            parts = sorted(chunks.pop(block, []))
            starts = tuple(p[0] for p in parts)
            posted = [v for _, values in parts for v in values]
            if epoch_digest(posted, starts) != bytes(fields["emissionHash"]):
                raise ChainError("rpc_error", f"the chunks of epoch {block} do not hash to its commitment "
                                              f"(tx {log['transactionHash']}): the node's logs are incomplete")
            view = await compute_epoch(self.client, netuid, block, self.views.get(netuid), int(fields["pending"]))
            self.views[netuid] = view  # our own computation (and bonds) continue the chain, not the keeper's
            self.checked += 1
            mine = list(view.emission) + [0] * max(0, len(posted) - len(view.emission))
            theirs = list(posted) + [0] * max(0, len(mine) - len(posted))
            diff = max((abs(int(a) - int(b)) for a, b in zip(mine, theirs, strict=True)), default=0)
            if diff > 1:
                alarm = Alarm(netuid, block, log["transactionHash"], diff, tuple(int(x) for x in posted), view.emission,
                              starts)
                self.alarms.append(alarm)
                new.append(alarm)
                if self.log is not None:
                    self.log.error("the keeper's epoch differs from this node's computation", netuid=netuid,
                                   block=block, tx=log["transactionHash"], max_difference=diff)
        self._scanned[netuid] = head + 1
        return new

    async def _chunk_values(self, tx_hash: str) -> list[int]:
        fn = functions()["postEpochChunk"]
        tx = await self.client.rpc.call("eth_getTransactionByHash", tx_hash)
        data = bytes.fromhex(tx["input"][2:])
        if data[:4] != fn.selector:
            raise ChainError("rpc_error", f"epoch chunk {tx_hash} is not a postEpochChunk call")
        _, _, _, values, _ = decode(list(fn.inputs), data[4:])
        return [int(v) for v in values]


def epoch_digest(emission: Sequence[int], starts: Sequence[int]) -> bytes:
    """The contract's commitment of an epoch posted in chunks beginning at ``starts``:
    h = keccak256(h ‖ abi.encodePacked(uint64[] chunk)) from h = 32 zero bytes."""
    from eth_abi import encode
    from eth_utils import keccak

    h = bytes(32)
    bounds = [*starts[1:], len(emission)] if starts else []
    for a, b in zip(starts, bounds, strict=True):
        h = keccak(h + b"".join(encode(["uint64"], [int(e)]) for e in emission[a:b]))
    return h
