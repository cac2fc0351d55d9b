"""The two chain backends behind one test interface, so one suite checks both behave alike.

``local``: the embedded chain's ledger, driven synchronously (blocks produced on demand).
``evm``: the subnet contract on a fresh anvil node (automine: one block per transaction; blocks
advanced with ``anvil_mine``), the epoch posted by a keeper with :class:`EpochBook`.
Amounts are base units; every failure is a :class:`tnode.errors.ChainError` with the rule's code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tnode.errors import ChainError
from tnode.interfaces import Metagraph
from tnode.keys import Keypair
from tnode.weights import WeightVector

TOKEN = 10**9
EASY = {"difficulty": 4, "min_difficulty": 1, "max_difficulty": 1 << 40, "max_registrations_per_block": 64,
        "max_registrations_per_interval": 1024, "weights_rate_limit": 0, "immunity_period": 0}


def key(name: str) -> Keypair:
    return Keypair.from_seed(name.encode().ljust(32, b"\0")[:32])


class LocalBackend:
    """The embedded chain's ledger."""

    name = "local"

    def __init__(self, tmp: Path, funded: dict[Keypair, int], hyper: dict[str, Any]) -> None:
        from tnode.config import load_table
        from tnode.plugins.chain_local.config import LocalChainConfig
        from tnode.plugins.chain_local.genesis import genesis_from_config
        from tnode.plugins.chain_local.ledger import Ledger

        accounts = [{"coldkey": k.public_hex, "balance": units / TOKEN} for k, units in funded.items()]
        cfg = load_table(LocalChainConfig, {"genesis": {"accounts": accounts}, "hyperparameters": {**EASY, **hyper}})
        self.ledger = Ledger(tmp / "chain.sqlite", genesis_from_config(cfg, 1))

    async def close(self) -> None:
        self.ledger.close()

    def _submit(self, signer: Keypair, call: str, **args: Any) -> dict[str, Any]:
        from tnode.plugins.chain_local.tx import Transaction

        tx = Transaction.create(signer, chain=self.ledger.genesis_hash, nonce=self.ledger.nonce(signer.public_hex),
                                call=call, args=args)
        result = self.ledger.submit(tx)
        self.ledger.produce_block()
        return result

    async def head(self) -> tuple[int, bytes]:
        h = self.ledger.head()
        return h.number, h.hash

    async def advance(self, blocks: int) -> None:
        for _ in range(blocks):
            self.ledger.produce_block()

    async def difficulty(self) -> int:
        return self.ledger.difficulty()

    def seal_ok(self, block_hash: bytes, hotkey: Keypair, nonce: int, difficulty: int) -> bool:
        from tnode.plugins.chain_local import pow as pow_

        return pow_.verify(block_hash, hotkey.public_bytes, nonce, difficulty)

    async def register(self, hotkey: Keypair, coldkey: Keypair, block: int, nonce: int) -> int:
        return int(self._submit(hotkey, "register", coldkey=coldkey.public_hex, block=block, nonce=nonce)["uid"])

    async def set_weights(self, hotkey: Keypair, vector: WeightVector, version_key: int = 0) -> None:
        self._submit(hotkey, "set_weights", uids=list(vector.uids), weights=list(vector.values), version_key=version_key)

    async def commit_weights(self, hotkey: Keypair, digest: str) -> None:
        self._submit(hotkey, "commit_weights", hash=digest)

    async def reveal_weights(self, hotkey: Keypair, vector: WeightVector, salt: str, version_key: int = 0) -> None:
        self._submit(hotkey, "reveal_weights", uids=list(vector.uids), weights=list(vector.values), salt=salt,
                     version_key=version_key)

    async def add_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        self._submit(coldkey, "add_stake", hotkey=hotkey, amount=amount)

    async def remove_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        self._submit(coldkey, "remove_stake", hotkey=hotkey, amount=amount)

    async def transfer(self, coldkey: Keypair, dest: str, amount: int) -> None:
        self._submit(coldkey, "transfer", dest=dest, amount=amount)

    async def balance(self, account: str) -> int:
        return self.ledger.balance(account)

    async def total_stake(self, hotkey: str) -> int:
        return self.ledger.total_stake(hotkey)

    async def metagraph(self) -> Metagraph:
        return self.ledger.metagraph()

    async def run_epoch(self) -> tuple[int, ...]:
        """Produce blocks until the next epoch ran; the emission it paid per uid (base units)."""
        tempo = self.ledger.hyperparameters().tempo
        for _ in range(tempo + 1):
            outcome = self.ledger.produce_block()
            if outcome.epoch is not None:
                return tuple(outcome.epoch.emission)
        raise AssertionError("no epoch within one tempo")


class EvmBackend:
    """The subnet contract on anvil."""

    name = "evm"

    def __init__(self) -> None:
        self.anvil: Any = None

    @classmethod
    async def create(cls, funded: dict[Keypair, int], hyper: dict[str, Any]) -> EvmBackend:
        from eth_account import Account
        from tnode.hyperparameters import Hyperparameters
        from tnode.plugins.chain_evm.anvil import DEV_KEY, Anvil
        from tnode.plugins.chain_evm.client import EvmSubnets
        from tnode.plugins.chain_evm.epochs import EpochBook
        from tnode.plugins.chain_evm.rpc import Rpc

        self = cls()
        self.anvil = Anvil().start()
        self.rpc = Rpc(self.anvil.url)
        self.dev = Account.from_key(DEV_KEY)
        address = await EvmSubnets.deploy(self.rpc, self.dev)
        self.client = await EvmSubnets.connect(self.rpc, address)
        await self.client.create_subnet(self.dev, 1, "text", Hyperparameters.from_mapping({**EASY, **hyper}))
        await self.client.fund_reserve(self.dev, 10**21)
        for k, units in funded.items():
            await self.client.fund(self.dev, k, units)
        self.book = EpochBook(self.client)
        return self

    async def close(self) -> None:
        await self.rpc.aclose()
        self.anvil.stop()

    async def head(self) -> tuple[int, bytes]:
        n = await self.client.block_number()
        return n, bytes.fromhex(await self.client.block_hash(n))

    async def advance(self, blocks: int) -> None:
        await self.rpc.call("anvil_mine", hex(blocks))

    async def difficulty(self) -> int:
        return await self.client.difficulty()

    def seal_ok(self, block_hash: bytes, hotkey: Keypair, nonce: int, difficulty: int) -> bool:
        from tnode.plugins.chain_evm import pow as pow_

        return pow_.verify(block_hash, hotkey.public_bytes, nonce, difficulty)

    async def register(self, hotkey: Keypair, coldkey: Keypair, block: int, nonce: int) -> int:
        await self.client._as(hotkey)  # the binding is its own transaction, mined before the seal's window counts
        return await self.client.register(hotkey, coldkey.public_hex, block=block, nonce=nonce)

    async def set_weights(self, hotkey: Keypair, vector: WeightVector, version_key: int = 0) -> None:
        await self.client.set_weights(hotkey, vector, version_key)

    async def commit_weights(self, hotkey: Keypair, digest: str) -> None:
        await self.client.commit_weights(hotkey, digest)

    async def reveal_weights(self, hotkey: Keypair, vector: WeightVector, salt: str, version_key: int = 0) -> None:
        await self.client.reveal_weights(hotkey, vector, salt, version_key)

    async def add_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        await self.client.add_stake(coldkey, hotkey, amount)

    async def remove_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        await self.client.remove_stake(coldkey, hotkey, amount)

    async def transfer(self, coldkey: Keypair, dest: str, amount: int) -> None:
        await self.client.transfer(coldkey, dest, amount)

    async def balance(self, account: str) -> int:
        return await self.client.balance(account)

    async def total_stake(self, hotkey: str) -> int:
        return await self.client.total_stake(hotkey)

    async def metagraph(self) -> Metagraph:
        return await self.client.metagraph()

    async def run_epoch(self) -> tuple[int, ...]:
        nxt = await self.book.next_epoch_block(1)
        head = await self.client.block_number()
        if head <= nxt:
            await self.advance(nxt - head + 1)
        view = await self.book.keep(self.dev, 1)
        if view is None:
            raise AssertionError("the keeper posted no epoch")
        return view.emission


async def make_backend(name: str, tmp: Path, funded: dict[Keypair, int] | None = None, **hyper: Any) -> Any:
    funded = funded or {}
    if name == "local":
        return LocalBackend(tmp, funded, hyper)
    return await EvmBackend.create(funded, hyper)


async def register_now(chain: Any, hotkey: Keypair, coldkey: Keypair) -> int:
    """Register with a valid seal over the current head."""
    if isinstance(chain, EvmBackend):
        await chain.client._as(hotkey)
    number, block_hash = await chain.head()
    difficulty = await chain.difficulty()
    nonce = 0
    while not chain.seal_ok(block_hash, hotkey, nonce, difficulty):
        nonce += 1
    return int(await chain.register(hotkey, coldkey, number, nonce))


def code_of(exc: BaseException) -> str:
    assert isinstance(exc, ChainError), exc
    return exc.code
