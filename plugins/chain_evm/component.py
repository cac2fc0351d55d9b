"""The ``chain/evm`` component: the subnet contract as the node's chain.

On start it reaches the RPC endpoint (retrying with backoff for ``start_timeout``), deploys the
contract and creates the node's subnet when ``contract = "deploy"``, then polls the head every
``poll_interval``: each new block is published as ``BlockProduced``; as keeper it posts due epochs;
as verifier it recomputes posted epochs (alarms in :attr:`EvmChain.alarms`) and publishes
``EpochCompleted``. When the endpoint goes away the component logs that the chain is unreachable,
keeps the node running (calls raise ``ChainError("unreachable")``), retries with exponential
backoff up to ``max_backoff`` and logs when it is back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from eth_account import Account
from eth_account.signers.local import LocalAccount
from tnode.errors import ChainError, ConfigError
from tnode.events import BlockProduced, EpochCompleted
from tnode.hyperparameters import Hyperparameters
from tnode.interfaces import Metagraph
from tnode.keys import Keypair
from tnode.weights import WeightVector

from .anvil import DEV_KEY
from .client import EvmSubnets
from .config import EvmChainConfig
from .contract import WEI_PER_TOKEN
from .epochs import Alarm, EpochBook
from .rpc import Rpc


class EvmChain:
    """EVM chain backend."""

    def __init__(self, node: Any, name: str, config: EvmChainConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.netuid = int(node.netuid)
        self.operator = _operator(config, Path(node.data_dir))
        self.client: EvmSubnets | None = None
        self.book: EpochBook | None = None
        self.reachable = False
        self.head = -1
        self.unreachable_count = 0

    @property
    def alarms(self) -> list[Alarm]:
        return self.book.alarms if self.book is not None else []

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        rpc = Rpc(self.config.rpc_url, timeout=self.config.request_timeout)
        try:
            await self._start(rpc)
            task_status.started()
            await self._follow()
        finally:
            with anyio.CancelScope(shield=True):
                await rpc.aclose()

    async def _start(self, rpc: Rpc) -> None:
        deadline = anyio.current_time() + self.config.start_timeout
        delay = 0.1
        while True:
            try:
                address = self.config.contract
                if address == "deploy":
                    address = await EvmSubnets.deploy(rpc, self.operator, timeout=self.config.tx_timeout)
                client = await EvmSubnets.connect(rpc, address, netuid=self.netuid,
                                                  confirmations=self.config.confirmations,
                                                  tx_timeout=self.config.tx_timeout)
                if self.config.contract == "deploy":
                    await client.create_subnet(self.operator, self.netuid, self.config.modality,
                                               self.config.hyperparameters)
                    if self.config.reserve > 0:
                        await client.fund_reserve(self.operator, int(self.config.reserve * WEI_PER_TOKEN))
                break
            except ChainError as exc:
                if exc.code != "unreachable" or anyio.current_time() + delay > deadline:
                    raise
                await anyio.sleep(delay)
                delay = min(delay * 2, self.config.max_backoff)
        self.client = client
        self.book = EpochBook(client, log=self.node.log)
        self.head = await client.block_number()
        self.reachable = True
        self.node.log.info("evm chain ready", contract=client.address, chain_id=client.chain_id, head=self.head)

    async def _follow(self) -> None:
        delay = self.config.poll_interval
        while True:
            await anyio.sleep(delay)
            try:
                await self._step()
            except ChainError as exc:
                if exc.code != "unreachable":
                    self.node.log.warning("evm chain step failed", error=str(exc))
                    continue
                if self.reachable:
                    self.node.log.warning("evm chain unreachable", url=self.config.rpc_url, error=str(exc))
                self.reachable = False
                self.unreachable_count += 1
                delay = min(max(delay, self.config.poll_interval) * 2, self.config.max_backoff)
                continue
            if not self.reachable:
                self.node.log.info("evm chain reachable again", head=self.head)
            self.reachable = True
            delay = self.config.poll_interval

    async def _step(self) -> None:
        client, book = self._require(), self.book
        assert book is not None
        head = await client.block_number()
        if head <= self.head:
            return
        block = await client.rpc.call("eth_getBlockByNumber", hex(head), False)
        self.head = head
        await self.node.bus.publish(BlockProduced(head, str(block["hash"])[2:], int(block["timestamp"], 16),
                                                  len(block.get("transactions", []))))
        before = book.get(self.netuid)
        if self.config.keeper:
            await book.keep(self.operator, self.netuid)
        elif self.config.verify:
            for alarm in await book.verify(self.netuid):
                if self.config.dispute:
                    await self._dispute(alarm)
        view = book.get(self.netuid)
        if view is not None and view is not before:
            await self.node.bus.publish(EpochCompleted(
                block=view.block, netuid=self.netuid, incentive=view.incentive, dividends=view.dividends,
                emission=tuple(e / 1e9 for e in view.emission), consensus=view.consensus, trust=view.trust,
                validator_trust=view.validator_trust))

    async def _dispute(self, alarm: Alarm) -> None:
        from .epochs import epoch_digest

        expected = epoch_digest(alarm.computed, alarm.starts)
        try:
            await self._require().dispute_epoch(self.node.hotkey, alarm.netuid, alarm.block, expected)
        except ChainError as exc:
            self.node.log.warning("cannot dispute the epoch on-chain", block=alarm.block, error=str(exc))

    async def verify_history(self) -> tuple[int, list[str]]:
        """Recompute every epoch posted on this node's subnet from the start (``tnode chain verify``):
        (epochs checked, one line per mismatch)."""
        book = EpochBook(self._require())
        self._require().epoch_view = self.book  # the fresh book must not replace the followed one
        alarms = await book.verify(self.netuid)
        lines = [f"epoch {a.block} (tx {a.tx_hash}): posted emission differs by up to {a.max_difference} base units"
                 for a in alarms]
        return book.checked, lines

    def _require(self) -> EvmSubnets:
        if self.client is None:
            raise ChainError("not_started", "the chain component has not started yet")
        return self.client

    # ------------------------------------------------------------------ ChainBackend
    async def block_number(self) -> int:
        return await self._require().block_number()

    async def block_hash(self, number: int | None = None) -> str:
        return await self._require().block_hash(number)

    async def subnets(self) -> dict[int, str]:
        return await self._require().subnets()

    async def hyperparameters(self, *, netuid: int | None = None) -> Hyperparameters:
        return await self._require().hyperparameters(netuid=netuid)

    async def metagraph(self, block: int | None = None, *, netuid: int | None = None,
                        matrices: bool = False) -> Metagraph:
        return await self._require().metagraph(block, netuid=netuid, matrices=matrices)

    async def difficulty(self, *, netuid: int | None = None) -> int:
        return await self._require().difficulty(netuid=netuid)

    async def register(self, hotkey: Keypair, coldkey: str, *, block: int, nonce: int, netuid: int | None = None) -> int:
        return await self._require().register(hotkey, coldkey, block=block, nonce=nonce, netuid=netuid)

    async def burned_register(self, hotkey: Keypair | str, coldkey: Keypair, *, netuid: int | None = None) -> int:
        return await self._require().burned_register(hotkey, coldkey, netuid=netuid)

    async def balance(self, coldkey: str) -> int:
        return await self._require().balance(coldkey)

    async def transfer(self, coldkey: Keypair, dest: str, amount: int) -> None:
        await self._require().transfer(coldkey, dest, amount)

    async def add_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        await self._require().add_stake(coldkey, hotkey, amount)

    async def remove_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        await self._require().remove_stake(coldkey, hotkey, amount)

    async def set_weights(self, hotkey: Keypair, weights: WeightVector, version_key: int = 0, *,
                          netuid: int | None = None) -> None:
        await self._require().set_weights(hotkey, weights, version_key, netuid=netuid)

    async def commit_weights(self, hotkey: Keypair, commit_hash: str, *, netuid: int | None = None) -> None:
        await self._require().commit_weights(hotkey, commit_hash, netuid=netuid)

    async def reveal_weights(self, hotkey: Keypair, weights: WeightVector, salt: str, version_key: int = 0, *,
                             netuid: int | None = None) -> None:
        await self._require().reveal_weights(hotkey, weights, salt, version_key, netuid=netuid)

    async def publish_addrs(self, hotkey: Keypair, addrs: Sequence[str], peer_id: str, *,
                            netuid: int | None = None) -> None:
        await self._require().publish_addrs(hotkey, addrs, peer_id, netuid=netuid)


def _operator(config: EvmChainConfig, data_dir: Path) -> LocalAccount:
    if not config.account_key_file:
        account: LocalAccount = Account.from_key(DEV_KEY)
        return account
    path = Path(config.account_key_file)
    if not path.is_absolute():
        path = data_dir / path
    try:
        text = path.read_text().strip()
        account = Account.from_key(text)
    except OSError as exc:
        raise ConfigError(f"cannot read the account key file {path}: {exc.strerror}",
                          key_path="chain.account_key_file") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} does not hold a hex secp256k1 private key", key_path="chain.account_key_file") from exc
    return account
