"""The ``chain/local`` component: the :class:`tnode.interfaces.ChainBackend` of the embedded chain.

Authority mode keeps the ledger, produces a block every ``block_time`` seconds, publishes
BlockProduced / NeuronRegistered / EpochCompleted and answers client nodes (the ``chain`` service
of :mod:`tnode.dispatch`, route ``svc:chain``). Client mode sends the same calls to the authority over the
transport and polls its head, publishing BlockProduced for every block it sees (and EpochCompleted
when it sees an epoch block). Keys never leave the node: transactions are signed locally.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
from tnode import dispatch
from tnode.errors import ChainError, ConfigError
from tnode.events import BlockProduced, CollusionSuspected, EpochCompleted, NeuronRegistered
from tnode.hyperparameters import Hyperparameters
from tnode.interfaces import Metagraph, TaskResult
from tnode.keys import Keypair
from tnode.weights import WeightVector

from . import api
from .backends import LocalBackend, RemoteBackend
from .codec import TOKEN, BlockHeader
from .config import LocalChainConfig
from .genesis import Genesis, genesis_from_config
from .ledger import BlockOutcome, Ledger
from .tx import Transaction

_NONCE_CODES = ("stale_nonce", "future_nonce")


class LocalChain:
    """Embedded chain backend (authority or client of one)."""

    def __init__(self, node: Any, name: str, config: LocalChainConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.genesis: Genesis | None = None
        if config.mode == "authority":  # a client's authority address: LocalChainConfig.check()
            self.genesis = genesis_from_config(_with_own_keys(config, node), node.netuid)
        self.ledger: Ledger | None = None
        self.genesis_hash = ""
        self.netuid = node.netuid
        self._backend: LocalBackend | RemoteBackend | None = None
        self._head: BlockHeader | None = None
        self._head_changed = anyio.Event()
        self._nonces: dict[str, int] = {}
        self._signer_locks: dict[str, anyio.Lock] = {}
        self._tempos: dict[int, int] = {}  # netuid → tempo, to see epochs go by (client mode)
        # hotkey → (stake factor, monotonic expiry): zero/scale verdicts of this node's collusion detectors.
        self._verdicts: dict[str, tuple[float, float]] = {}

    # ================================================================== lifecycle
    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        if self.config.mode == "authority":
            await self._run_authority(task_status)
        else:
            await self._run_client(task_status)

    async def _run_authority(self, task_status: Any) -> None:
        assert self.genesis is not None
        path = Path(self.node.data_dir) / self.config.db
        lock_fd = _lock_ledger(path)
        try:
            genesis = self.genesis
            self.ledger = await anyio.to_thread.run_sync(
                lambda: Ledger(path, genesis, history_blocks=self.config.history_blocks,
                               block_time=self.config.block_time)
            )
            if self.ledger.upgrade_backup is not None:
                self.node.log.warning("ledger upgraded from format 1 (one subnet) to format 2",
                                      db=str(path), backup=str(self.ledger.upgrade_backup))
            backend = LocalBackend(self.ledger)
            self._backend = backend
            self.genesis_hash = self.ledger.genesis_hash
            self._tempos = {n: sub.hp.tempo for n, sub in self.ledger.subnets.items()}
            self._set_head(self.ledger.head())
            async with anyio.create_task_group() as tg:
                tg.start_soon(backend.commit_loop)
                # A service, not a modality: answered before the node is ready (other nodes need the
                # authority to start) and judged only by the spam filters that judge services.
                unserve = dispatch.of(self.node).serve_service("chain", self._serve, before_ready=True)
                verdicts = self.node.bus.subscribe(CollusionSuspected, self._on_verdict, name="chain:verdicts")
                try:
                    tg.start_soon(self._produce_loop)
                    self.node.log.info("chain authority started", genesis=self.genesis_hash[:16],
                                       head=self._head.number if self._head else 0, db=str(path))
                    task_status.started()
                    await anyio.sleep_forever()
                finally:
                    verdicts.close()
                    unserve()
        finally:
            with anyio.CancelScope(shield=True):
                if self.ledger is not None:
                    await anyio.to_thread.run_sync(self.ledger.close)
            os.close(lock_fd)

    async def _run_client(self, task_status: Any) -> None:
        transport = self.node.transport
        if transport is None:
            raise ChainError("no_transport", "[chain] mode = \"client\" needs a [transport] to reach the authority")
        peer = await self._connect(transport)
        backend = RemoteBackend(transport, peer, self.config.request_timeout)
        self._backend = backend
        info = await backend.query("info")
        self.genesis_hash = str(info["genesis_hash"])
        netuids = [int(sub["netuid"]) for sub in info.get("subnets") or [{"netuid": info["netuid"]}]]
        if self.netuid not in netuids:
            raise ChainError("unknown_subnet", f"[node] netuid {self.netuid} is not a subnet of the chain at "
                                               f"{self.config.authority} (subnets: {', '.join(map(str, netuids))})")
        for number in netuids:
            hp: Hyperparameters = await backend.query("hyperparameters", {"netuid": number})
            self._tempos[number] = hp.tempo
        block_time = float(info.get("block_time") or 1.0)
        self._set_head(BlockHeader.from_wire(info["head"]))
        self.node.log.info("chain client connected", authority=peer, genesis=self.genesis_hash[:16])
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._poll_loop, block_time)
            task_status.started()

    async def _connect(self, transport: Any) -> str:
        # The authority may still be starting (devnets start nodes together): retry for a while.
        deadline = anyio.current_time() + max(30.0, self.config.request_timeout)
        delay = 0.2
        while True:
            try:
                return str(await transport.connect(self.config.authority))
            except Exception as exc:
                if anyio.current_time() + delay > deadline:
                    raise ChainError("unreachable",
                                     f"cannot reach the chain authority {self.config.authority}: {exc}") from exc
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # ================================================================== blocks
    def _set_head(self, header: BlockHeader) -> None:
        self._head = header
        changed, self._head_changed = self._head_changed, anyio.Event()
        changed.set()

    async def _on_verdict(self, event: CollusionSuspected) -> None:
        """Hold a zero/scale verdict of a detector on this authority (e.g. ``weight_copy``): the
        suspects' stake counts times ``factor`` in epochs for ``hold_seconds`` (docs/collusion.md)."""
        if event.action == "report" or event.hold_seconds <= 0:
            return
        until = anyio.current_time() + event.hold_seconds
        for hotkey in event.members:
            if hotkey not in self._verdicts:
                self.node.log.info("epoch stake scaled for a collusion suspect", hotkey=hotkey[:12],
                                   kind=event.kind, factor=event.factor, detector=event.detector)
            self._verdicts[hotkey] = (min(1.0, max(0.0, event.factor)), until)

    def _current_stake_factors(self) -> dict[str, float]:
        now = anyio.current_time()
        self._verdicts = {h: v for h, v in self._verdicts.items() if v[1] > now}
        return {h: f for h, (f, _) in self._verdicts.items()}

    async def _produce_loop(self) -> None:
        assert self.ledger is not None and isinstance(self._backend, LocalBackend)
        interval = self.config.block_time
        next_at = anyio.current_time() + interval
        while True:
            await anyio.sleep_until(next_at)
            self.ledger.stake_factors = self._current_stake_factors()
            with anyio.CancelScope(shield=True):  # never abandon a half-written block
                outcome: BlockOutcome = await self._backend.run_sync(self.ledger.produce_block)
            now = anyio.current_time()
            next_at = max(next_at + interval, now)  # after a stall, do not burst to catch up
            self._set_head(outcome.header)
            await self._publish(outcome)

    async def _publish(self, outcome: BlockOutcome) -> None:
        h = outcome.header
        bus = self.node.bus
        await bus.publish(BlockProduced(h.number, h.hash.hex(), h.timestamp_ms / 1000.0, h.tx_count))
        for reg in outcome.registered:
            await bus.publish(NeuronRegistered(h.number, reg.uid, reg.hotkey, reg.replaced))
        for e in outcome.epochs:
            await bus.publish(EpochCompleted(
                block=e.block, netuid=e.netuid, incentive=e.incentive, dividends=e.dividends,
                emission=tuple(x / TOKEN for x in e.emission), consensus=e.consensus, trust=e.trust,
                validator_trust=e.validator_trust,
            ))

    async def _poll_loop(self, interval: float) -> None:
        if self.config.poll_interval > 0:
            interval = self.config.poll_interval
        while True:
            await anyio.sleep(interval)
            try:
                head = await self._query("head")
            except ChainError as exc:
                self.node.log.warning("chain head poll failed", error=str(exc))
                continue
            last = self._head
            if last is not None and head.number <= last.number:
                continue
            self._set_head(head)
            await self.node.bus.publish(BlockProduced(head.number, head.hash.hex(), head.timestamp_ms / 1000.0,
                                                      head.tx_count))
            if last is None:
                continue
            for netuid, tempo in self._tempos.items():
                if tempo and head.number // tempo > last.number // tempo:
                    await self._publish_client_epoch(netuid, tempo)

    async def _publish_client_epoch(self, netuid: int, tempo: int) -> None:
        try:
            mg = await self.metagraph(netuid=netuid)
        except ChainError as exc:
            self.node.log.warning("cannot read the metagraph after an epoch", netuid=netuid, error=str(exc))
            return
        epoch_block = mg.block - mg.block % tempo
        ns = mg.neurons
        await self.node.bus.publish(EpochCompleted(
            block=epoch_block, netuid=mg.netuid, incentive=tuple(n.incentive for n in ns),
            dividends=tuple(n.dividends for n in ns), emission=tuple(n.emission for n in ns),
            consensus=tuple(n.consensus for n in ns), trust=tuple(n.trust for n in ns),
            validator_trust=tuple(n.validator_trust for n in ns),
        ))

    async def wait_for_block(self, number: int, *, timeout: float | None = None) -> BlockHeader:
        """Wait until block ``number`` (or a later one) is the head; returns the head."""
        with anyio.fail_after(timeout):
            while self._head is None or self._head.number < number:
                await self._head_changed.wait()
        return self._head

    async def blocks(self) -> AsyncIterator[BlockHeader]:
        """New heads as they are produced (authority) or seen (client); a slow reader skips blocks."""
        last = self._head.number if self._head else -1
        while True:
            if self._head is None or self._head.number <= last:
                await self._head_changed.wait()
                continue
            last = self._head.number
            yield self._head

    # ================================================================== authority service
    async def _serve(self, req: dispatch.ServiceCall) -> TaskResult:
        """Answer a client node's chain call (reads, and signed transactions)."""
        try:
            if req.task == api.SUBMIT:
                tx = Transaction.from_wire(req.body.get("tx"))
                return TaskResult(api.ok(await self.submit(tx)))
            query = api.QUERIES.get(req.task)
            if query is None:
                raise ChainError("unknown_call", f"unknown chain call {req.task!r}")
            result = await self._require().query(req.task, dict(req.body))
            return TaskResult(api.ok(query.encode(result)))
        except ChainError as exc:
            return TaskResult(api.refused(exc))

    # ================================================================== plumbing
    def _require(self) -> LocalBackend | RemoteBackend:
        if self._backend is None:
            raise ChainError("not_started", "the chain component has not started yet")
        return self._backend

    async def _query(self, name: str, **params: Any) -> Any:
        return await self._require().query(name, params)

    async def submit(self, tx: Transaction) -> dict[str, Any]:
        """Submit an already signed transaction; returns the call's result once it is durable."""
        return await self._require().submit(tx)

    async def _sign_and_submit(self, key: Keypair, call: str, args: dict[str, Any]) -> dict[str, Any]:
        signer = key.public_hex
        lock = self._signer_locks.setdefault(signer, anyio.Lock())
        async with lock:  # one in-flight transaction per signer keeps nonces in order
            for _attempt in range(3):
                nonce = self._nonces.get(signer)
                if nonce is None:
                    nonce = int(await self._query("nonce", account=signer))
                tx = Transaction.create(key, chain=self.genesis_hash, nonce=nonce, call=call, args=args)
                try:
                    result = await self.submit(tx)
                except ChainError as exc:
                    self._nonces.pop(signer, None)  # unknown outcome or stale cache: ask the chain next time
                    if exc.code in _NONCE_CODES:
                        continue
                    raise
                self._nonces[signer] = nonce + 1
                return result
        raise ChainError("stale_nonce", "the signer's nonce kept changing (is the key used elsewhere?)")

    # ================================================================== ChainBackend: reads
    async def block_number(self) -> int:
        """The latest sealed block."""
        if isinstance(self._backend, RemoteBackend):
            head = await self._query("head")
            if self._head is None or head.number > self._head.number:
                self._set_head(head)
            return int(head.number)
        return self.head().number

    def head(self) -> BlockHeader:
        """The latest block this node knows (authority: exact; client: as of the last poll)."""
        if self._head is None:
            raise ChainError("not_started", "the chain component has not started yet")
        return self._head

    async def block(self, number: int) -> BlockHeader | None:
        return await self._query("block", number=number)

    async def block_hash(self, number: int | None = None) -> str:
        if number is None:
            if isinstance(self._backend, RemoteBackend):
                return (await self._query("head")).hash.hex()
            return self.head().hash.hex()
        header = await self.block(number)
        if header is None:
            raise ChainError("unknown_block", f"block {number} does not exist")
        return header.hash.hex()

    def _netuid(self, netuid: int | None) -> int:
        return self.netuid if netuid is None else int(netuid)

    async def subnets(self) -> dict[int, str]:
        """Every subnet of the chain: netuid → the modality it serves ("" for any)."""
        return {int(s["netuid"]): str(s["modality"]) for s in await self._query("subnets")}

    async def subnet_info(self) -> list[dict[str, Any]]:
        """Every subnet with its modality, emission share and uid count."""
        return list(await self._query("subnets"))

    async def hyperparameters(self, *, netuid: int | None = None) -> Hyperparameters:
        """Subnet rules with the current difficulty and burn (in tokens)."""
        hp: Hyperparameters = await self._query("hyperparameters", netuid=self._netuid(netuid))
        return hp

    async def metagraph(self, block: int | None = None, *, matrices: bool = False,
                        netuid: int | None = None) -> Metagraph:
        """The subnet now (``block=None``) or as sealed in ``block``; ``matrices`` adds weights and bonds."""
        params: dict[str, Any] = {"matrices": matrices, "netuid": self._netuid(netuid)}
        if block is not None:
            params["block"] = block
        return await self._query("metagraph", **params)

    async def difficulty(self, *, netuid: int | None = None) -> int:
        return int(await self._query("difficulty", netuid=self._netuid(netuid)))

    async def burn_cost(self, *, netuid: int | None = None) -> int:
        """Current burn-registration cost in base units."""
        return int(await self._query("burn", netuid=self._netuid(netuid)))

    async def balance(self, coldkey: str) -> int:
        return int(await self._query("balance", account=coldkey))

    async def nonce(self, account: str) -> int:
        return int(await self._query("nonce", account=account))

    async def stake(self, coldkey: str, hotkey: str) -> int:
        """Stake of ``coldkey`` on ``hotkey`` in base units."""
        return int(await self._query("stake", coldkey=coldkey, hotkey=hotkey))

    async def total_stake(self, hotkey: str) -> int:
        return int(await self._query("total_stake", hotkey=hotkey))

    async def owner(self, hotkey: str) -> str | None:
        return await self._query("owner", hotkey=hotkey)

    async def commits(self, hotkey: str, *, netuid: int | None = None) -> list[dict[str, Any]]:
        """Unrevealed weight commits of ``hotkey``: hash, block, reveal_from, reveal_until, status."""
        return list(await self._query("commits", hotkey=hotkey, netuid=self._netuid(netuid)))

    async def totals(self) -> dict[str, int]:
        """Issuance, pending emission, total balances and total stake in base units."""
        return dict(await self._query("totals"))

    async def pending_emission(self) -> int:
        """Emission accrued since the last epoch, in base units."""
        return int((await self.totals())["pending_emission"])

    async def transaction_status(self, tx_hash: str) -> dict[str, Any] | None:
        """``{"block": n or None (pending), "result": ...}`` of an accepted transaction."""
        return await self._query("tx_status", hash=tx_hash)

    # ================================================================== ChainBackend: writes
    async def register(self, hotkey: Keypair, coldkey: str, *, block: int, nonce: int,
                       netuid: int | None = None) -> int:
        args = {"coldkey": coldkey, "block": block, "nonce": nonce, "netuid": self._netuid(netuid)}
        result = await self._sign_and_submit(hotkey, "register", args)
        return int(result["uid"])

    async def burned_register(self, hotkey: Keypair | str, coldkey: Keypair, *, netuid: int | None = None) -> int:
        hot = hotkey if isinstance(hotkey, str) else hotkey.public_hex
        result = await self._sign_and_submit(coldkey, "burned_register", {"hotkey": hot,
                                                                          "netuid": self._netuid(netuid)})
        return int(result["uid"])

    async def transfer(self, coldkey: Keypair, dest: str, amount: int) -> None:
        await self._sign_and_submit(coldkey, "transfer", {"dest": dest, "amount": amount})

    async def add_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        await self._sign_and_submit(coldkey, "add_stake", {"hotkey": hotkey, "amount": amount})

    async def remove_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        await self._sign_and_submit(coldkey, "remove_stake", {"hotkey": hotkey, "amount": amount})

    async def set_weights(self, hotkey: Keypair, weights: WeightVector, version_key: int = 0, *,
                          netuid: int | None = None) -> None:
        args = {**_weights_args(weights), "version_key": int(version_key), "netuid": self._netuid(netuid)}
        await self._sign_and_submit(hotkey, "set_weights", args)

    async def commit_weights(self, hotkey: Keypair, commit_hash: str, *, netuid: int | None = None) -> None:
        await self._sign_and_submit(hotkey, "commit_weights", {"hash": commit_hash, "netuid": self._netuid(netuid)})

    async def reveal_weights(self, hotkey: Keypair, weights: WeightVector, salt: str, version_key: int = 0, *,
                             netuid: int | None = None) -> None:
        args = {**_weights_args(weights), "salt": salt, "version_key": int(version_key),
                "netuid": self._netuid(netuid)}
        await self._sign_and_submit(hotkey, "reveal_weights", args)

    async def publish_addrs(self, hotkey: Keypair, addrs: Sequence[str], peer_id: str, *,
                            netuid: int | None = None) -> None:
        await self._sign_and_submit(hotkey, "publish_addrs", {"addrs": list(addrs), "peer_id": peer_id,
                                                              "netuid": self._netuid(netuid)})


def _weights_args(weights: WeightVector) -> dict[str, Any]:
    """A vector as transaction arguments: the u16 integers exactly as the chain hashes and stores them."""
    if not isinstance(weights, WeightVector):
        raise ChainError("invalid_weights", f"weights must be a tnode.weights.WeightVector, got {type(weights).__name__}")
    return {"uids": list(weights.uids), "weights": list(weights.values)}


def _lock_ledger(path: Path) -> int:
    """Hold an exclusive lock next to the ledger so two processes never write one chain."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ChainError("ledger_in_use", f"{path} is in use by another node (is an authority already "
                                          f"running with this data dir?)") from None
    return fd


def _with_own_keys(config: LocalChainConfig, node: Any) -> LocalChainConfig:
    """Genesis accounts may say ``"self"`` for this node's own coldkey/hotkey (single-node setups)."""
    import dataclasses

    own = {"coldkey": node.coldkey_public, "hotkey": node.hotkey.public_hex}
    accounts = []
    for raw in config.genesis.accounts:
        acc = dict(raw)
        for key in ("coldkey", "hotkey"):
            if acc.get(key) == "self":
                if not own[key]:
                    raise ConfigError(f"genesis uses {key} = \"self\" but this node has no {key} file",
                                      key_path="chain.genesis.accounts")
                acc[key] = own[key]
        accounts.append(acc)
    genesis = dataclasses.replace(config.genesis, accounts=accounts)
    return dataclasses.replace(config, genesis=genesis)
