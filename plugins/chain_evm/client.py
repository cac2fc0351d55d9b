"""The subnet contract as a :class:`tnode.interfaces.ChainBackend`: reads by ``eth_call``, writes as
signed transactions from each tnode key's derived account (:mod:`.accounts`).

Amounts at this interface are tnode base units (10⁻⁹ token = 10⁹ wei); stake and emission in a
:class:`tnode.interfaces.Metagraph` are tokens. Every subnet-scoped method takes ``netuid``
(``None`` = this client's default subnet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from tnode.errors import ChainError
from tnode.hyperparameters import Hyperparameters
from tnode.interfaces import Metagraph, Neuron
from tnode.keys import Keypair
from tnode.weights import WeightVector

from . import accounts
from .contract import WEI_PER_TOKEN, WEI_PER_UNIT, artifact, functions, hp_from_contract, hp_to_contract
from .rpc import Rpc

PAGE = 512
EPOCH_CHUNK = 256
"""uids per postEpochChunk transaction: about 14 M gas when every uid is paid (bench/chain.py), half
of a 30 M block gas limit."""
RECEIPT_POLL = 0.02


def _hex32(value: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except (TypeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ChainError("invalid_args", f"{what} must be a 64-character hex public key")
    return raw


class EvmSubnets:
    """Client of one deployed subnet contract."""

    def __init__(self, rpc: Rpc, address: str, *, chain_id: int, netuid: int = 1, confirmations: int = 1,
                 tx_timeout: float = 30.0) -> None:
        self.rpc = rpc
        self.address = address
        self.chain_id = chain_id
        self.netuid = netuid
        self.confirmations = max(1, confirmations)
        self.tx_timeout = tx_timeout
        self.epoch_view: Any = None  # set by the epoch book: computed per-uid vectors of the last epoch
        self._locks: dict[str, anyio.Lock] = {}
        self._bound: set[str] = set()
        self._known: dict[str, str] = {}  # public key hex → derived account, for keys this client has held
        self._binding_ok: dict[bytes, bool] = {}  # bound key → whether its binding signature verifies
        self.gas_used: dict[str, int] = {}

    # ------------------------------------------------------------------ setup
    @staticmethod
    async def deploy(rpc: Rpc, deployer: LocalAccount, *, keeper: str | None = None,
                     timeout: float = 30.0) -> str:
        """Deploy the contract from ``deployer``; returns its address."""
        from eth_abi import encode

        data = bytes.fromhex(artifact()["bytecode"][2:]) + encode(["address"], [keeper or deployer.address])
        receipt = await _send_raw(rpc, deployer, None, data, 0, timeout=timeout, locks={})
        address = receipt.get("contractAddress")
        if not address:
            raise ChainError("deploy_failed", "the deployment receipt has no contract address")
        return str(address)

    @classmethod
    async def connect(cls, rpc: Rpc, address: str, **kwargs: Any) -> EvmSubnets:
        chain_id = int(await rpc.call("eth_chainId"), 16)
        code = await rpc.call("eth_getCode", address, "latest")
        if not code or code == "0x":
            raise ChainError("no_contract", f"no contract at {address} on chain {chain_id}")
        return cls(rpc, address, chain_id=chain_id, **kwargs)

    async def create_subnet(self, owner: LocalAccount, netuid: int, modality: str, hp: Hyperparameters) -> None:
        await self._send(owner, "createSubnet", netuid, modality, hp_to_contract(hp))

    async def fund_reserve(self, funder: LocalAccount, wei: int) -> None:
        await self._send(funder, "fundReserve", value=wei)

    async def fund(self, funder: LocalAccount, key: Keypair | str, amount: int) -> None:
        """Send ``amount`` base units of native currency to a key's derived account (or an address)."""
        dest = key if isinstance(key, str) else self._remember(key)
        await _send_raw(self.rpc, funder, dest, b"", amount * WEI_PER_UNIT, timeout=self.tx_timeout,
                        locks=self._locks, confirmations=self.confirmations)

    # ------------------------------------------------------------------ plumbing
    def _net(self, netuid: int | None) -> int:
        return self.netuid if netuid is None else int(netuid)

    async def call(self, name: str, *args: Any, block: int | str = "latest") -> tuple[Any, ...]:
        fn = functions()[name]
        tag = hex(block) if isinstance(block, int) else block
        out = await self.rpc.call("eth_call", {"to": self.address, "data": "0x" + fn.encode(*args).hex()}, tag)
        return fn.decode(bytes.fromhex(out[2:]))

    async def _send(self, account: LocalAccount, name: str, *args: Any, value: int = 0) -> dict[str, Any]:
        data = functions()[name].encode(*args)
        receipt = await _send_raw(self.rpc, account, self.address, data, value, timeout=self.tx_timeout,
                                  locks=self._locks, confirmations=self.confirmations)
        self.gas_used[name] = int(receipt["gasUsed"], 16)
        return receipt

    def _remember(self, key: Keypair) -> str:
        address = accounts.account_of(key).address
        self._known[key.public_hex] = address
        return str(address)

    async def _as(self, key: Keypair) -> LocalAccount:
        """The key's account, bound to the key on the contract (binding once)."""
        account = accounts.account_of(key)
        self._known[key.public_hex] = account.address
        if key.public_hex in self._bound:
            return account
        (bound,) = await self.call("accountOf", key.public_bytes)
        if bound.lower() != account.address.lower():
            sig = accounts.bind_signature(key, self.chain_id, self.address)
            await self._send(account, "bindKey", key.public_bytes, sig)
        self._bound.add(key.public_hex)
        return account

    async def _account_of(self, public_hex_or_address: str) -> str | None:
        if public_hex_or_address.startswith("0x") and len(public_hex_or_address) == 42:
            return public_hex_or_address
        (bound,) = await self.call("accountOf", _hex32(public_hex_or_address, "key"))
        if int(bound, 16) == 0:
            return self._known.get(public_hex_or_address)
        return str(bound)

    # ------------------------------------------------------------------ reads
    async def block_number(self) -> int:
        return int(await self.rpc.call("eth_blockNumber"), 16)

    async def block_hash(self, number: int | None = None) -> str:
        block = await self.rpc.call("eth_getBlockByNumber", "latest" if number is None else hex(number), False)
        if block is None:
            raise ChainError("unknown_block", f"block {number} does not exist")
        return str(block["hash"])[2:]

    async def subnets(self) -> dict[int, str]:
        ids, modalities = await self.call("subnets")
        return {int(i): str(m) for i, m in zip(ids, modalities, strict=True)}

    async def hyperparameters(self, *, netuid: int | None = None, block: int | str = "latest") -> Hyperparameters:
        net = self._net(netuid)
        (values,), state = await _gather(self.call("hyperparameters", net, block=block),
                                         self.call("subnetState", net, block=block))
        return hp_from_contract(values, difficulty=int(state[1]), burn_wei=int(state[2]))

    async def difficulty(self, *, netuid: int | None = None) -> int:
        return int((await self.call("difficulty", self._net(netuid)))[0])

    async def burn_cost(self, *, netuid: int | None = None) -> int:
        """Current burn-registration cost in base units."""
        return int((await self.call("burnCost", self._net(netuid)))[0]) // WEI_PER_UNIT

    async def state(self, *, netuid: int | None = None, block: int | str = "latest") -> dict[str, int]:
        n, diff, burn, last_epoch, pending = await self.call("subnetState", self._net(netuid), block=block)
        return {"n": n, "difficulty": diff, "burn_wei": burn, "last_epoch_block": last_epoch, "pending_wei": pending}

    async def neuron_rows(self, netuid: int | None = None, block: int | str = "latest") -> list[dict[str, Any]]:
        """Raw per-uid state: hotkey, coldkey (hex), stake (wei), registered_at, last_update, emission (units)."""
        net = self._net(netuid)
        n = (await self.state(netuid=net, block=block))["n"]
        rows: list[dict[str, Any]] = []
        for start in range(0, n, PAGE):
            hks, cks, stakes, info = await self.call("neuronsPage", net, start, PAGE, block=block)
            for i in range(len(hks)):
                rows.append({"uid": start + i, "hotkey": hks[i].hex(), "coldkey": cks[i].hex(), "stake_wei": stakes[i],
                             "registered_at": info[i][0], "last_update": info[i][1], "emission": info[i][2]})
        return rows

    async def forged_uids(self, rows: Sequence[dict[str, Any]], *, block: int | str = "latest") -> set[int]:
        """uids whose hotkey or coldkey is bound to an EVM account by a signature that does not verify.

        The contract cannot check Ed25519 (no precompile), so every node checks each binding here
        (:func:`.accounts.binding_valid`); such a uid is ignored: no stake, address, permit or
        weights of it count. A key bound to no account is fine (it has sent nothing itself). A
        binding never changes once made, so each verdict is kept.
        """
        keys = {bytes.fromhex(r[k]) for r in rows for k in ("hotkey", "coldkey")} - {bytes(32)}
        todo = sorted(k for k in keys if k not in self._binding_ok)
        if todo:
            tag = hex(block) if isinstance(block, int) else block
            acc_fn, sig_fn = functions()["accountOf"], functions()["bindingSignature"]
            calls = [("eth_call", [{"to": self.address, "data": "0x" + fn.encode(k).hex()}, tag])
                     for k in todo for fn in (acc_fn, sig_fn)]
            results = await self.rpc.batch(calls)
            for i, k in enumerate(todo):
                (account,) = acc_fn.decode(bytes.fromhex(results[2 * i][2:]))
                if int(account, 16) == 0:
                    continue
                (sig,) = sig_fn.decode(bytes.fromhex(results[2 * i + 1][2:]))
                self._binding_ok[k] = accounts.binding_valid(k, bytes(sig), self.chain_id, self.address, str(account))
        bad = {k for k in keys if not self._binding_ok.get(k, True)}
        return {int(r["uid"]) for r in rows if bytes.fromhex(r["hotkey"]) in bad or bytes.fromhex(r["coldkey"]) in bad}

    async def weights_rows(self, uids: Sequence[int], *, netuid: int | None = None,
                           block: int | str = "latest") -> dict[int, tuple[list[int], list[int]]]:
        """Stored weights (uids, max-upscaled u16 values) of validators ``uids``, in one batch."""
        net = self._net(netuid)
        fn = functions()["weightsOf"]
        tag = hex(block) if isinstance(block, int) else block
        calls = [("eth_call", [{"to": self.address, "data": "0x" + fn.encode(net, u).hex()}, tag]) for u in uids]
        results = await self.rpc.batch(calls)
        out: dict[int, tuple[list[int], list[int]]] = {}
        for u, r in zip(uids, results, strict=True):
            cols, vals = fn.decode(bytes.fromhex(r[2:]))
            out[u] = ([int(c) for c in cols], [int(v) for v in vals])
        return out

    async def metagraph(self, block: int | None = None, *, netuid: int | None = None,
                        matrices: bool = False) -> Metagraph:
        net = self._net(netuid)
        tag: int | str = block if block is not None else await self.block_number()
        hp = await self.hyperparameters(netuid=net, block=tag)
        rows = await self.neuron_rows(net, tag)
        fn = functions()["addrsOf"]
        hextag = hex(tag) if isinstance(tag, int) else tag
        addr_results = await self.rpc.batch(
            [("eth_call", [{"to": self.address, "data": "0x" + fn.encode(net, r["uid"]).hex()}, hextag]) for r in rows])
        view = self.epoch_view.get(net) if self.epoch_view is not None else None
        forged = await self.forged_uids(rows, block=tag)
        neurons = []
        for r, raw in zip(rows, addr_results, strict=True):
            addrs, peer_id = fn.decode(bytes.fromhex(raw[2:]))
            u = r["uid"]
            extra: dict[str, Any] = {}
            if view is not None and u < len(view.incentive):
                extra = {"rank": view.rank[u], "trust": view.trust[u], "consensus": view.consensus[u],
                         "incentive": view.incentive[u], "dividends": view.dividends[u],
                         "validator_trust": view.validator_trust[u], "validator_permit": view.validator_permit[u]}
            neurons.append(Neuron(
                uid=u, hotkey=r["hotkey"], coldkey=r["coldkey"], stake=r["stake_wei"] / WEI_PER_TOKEN,
                emission=r["emission"] * WEI_PER_UNIT / WEI_PER_TOKEN, last_update=r["last_update"],
                registered_at=r["registered_at"], active=(int(tag) - r["last_update"]) <= hp.activity_cutoff,
                addrs=tuple(a for a in str(addrs).split("\n") if a), peer_id=str(peer_id), **extra,
            ) if u not in forged else Neuron(  # the uid's slot stays (uids are positions), its claims do not
                uid=u, hotkey=r["hotkey"], coldkey=r["coldkey"], stake=0.0,
                emission=r["emission"] * WEI_PER_UNIT / WEI_PER_TOKEN, last_update=r["last_update"],
                registered_at=r["registered_at"], active=False, **{**extra, "validator_permit": False},
            ))
        weights = None
        if matrices and rows:
            import numpy as np

            weights = np.zeros((len(rows), len(rows)), dtype=np.float32)
            counted = [r["uid"] for r in rows if r["uid"] not in forged]
            for u, (cols, vals) in (await self.weights_rows(counted, netuid=net, block=tag)).items():
                for c, v in zip(cols, vals, strict=True):
                    if c < len(rows):
                        weights[u, c] = v
        return Metagraph(block=int(tag), netuid=net, neurons=tuple(neurons), hyperparameters=hp, weights=weights)

    async def balance(self, coldkey: str) -> int:
        account = await self._account_of(coldkey)
        if account is None:
            return 0
        return int(await self.rpc.call("eth_getBalance", account, "latest"), 16) // WEI_PER_UNIT

    async def stake(self, coldkey: str, hotkey: str) -> int:
        """Stake of ``coldkey`` on ``hotkey`` in base units."""
        return int((await self.call("stakeOf", _hex32(coldkey, "coldkey"), _hex32(hotkey, "hotkey")))[0]) // WEI_PER_UNIT

    async def total_stake(self, hotkey: str) -> int:
        return int((await self.call("totalStake", _hex32(hotkey, "hotkey")))[0]) // WEI_PER_UNIT

    async def commits(self, hotkey: str, *, netuid: int | None = None) -> list[dict[str, Any]]:
        (items,) = await self.call("commitsOf", self._net(netuid), _hex32(hotkey, "hotkey"))
        return [{"hash": h.hex(), "block": int(b)} for h, b in items]

    # ------------------------------------------------------------------ writes
    async def register(self, hotkey: Keypair, coldkey: str, *, block: int, nonce: int, netuid: int | None = None) -> int:
        account = await self._as(hotkey)
        net = self._net(netuid)
        await self._send(account, "register", net, block, nonce, _hex32(coldkey, "coldkey"))
        return await self._uid_of(net, hotkey.public_hex)

    async def burned_register(self, hotkey: Keypair | str, coldkey: Keypair, *, netuid: int | None = None) -> int:
        hot = hotkey if isinstance(hotkey, str) else hotkey.public_hex
        account = await self._as(coldkey)
        net = self._net(netuid)
        cost = int((await self.call("burnCost", net))[0])
        await self._send(account, "burnedRegister", net, _hex32(hot, "hotkey"), value=cost)
        return await self._uid_of(net, hot)

    async def _uid_of(self, netuid: int, hotkey_hex: str) -> int:
        rows = await self.neuron_rows(netuid)
        for r in rows:
            if r["hotkey"] == hotkey_hex:
                return int(r["uid"])
        raise ChainError("not_registered", "the registration was mined but the hotkey has no uid")

    async def transfer(self, coldkey: Keypair, dest: str, amount: int) -> None:
        if not isinstance(amount, int) or amount <= 0:
            raise ChainError("invalid_amount", "amount must be a positive integer number of base units")
        to = await self._account_of(dest)
        if to is None:
            raise ChainError("unknown_account", "the destination key has no bound EVM account; pass a 0x address")
        self._remember(coldkey)
        have = await self.balance(coldkey.public_hex)
        if have < amount:
            raise ChainError("insufficient_balance", f"balance {have} is below {amount} base units")
        await _send_raw(self.rpc, accounts.account_of(coldkey), to, b"", amount * WEI_PER_UNIT,
                        timeout=self.tx_timeout, locks=self._locks, confirmations=self.confirmations)

    async def add_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        if not isinstance(amount, int) or amount <= 0:
            raise ChainError("invalid_amount", "amount must be a positive integer number of base units")
        account = await self._as(coldkey)
        await self._send(account, "addStake", _hex32(hotkey, "hotkey"), value=amount * WEI_PER_UNIT)

    async def remove_stake(self, coldkey: Keypair, hotkey: str, amount: int) -> None:
        account = await self._as(coldkey)
        await self._send(account, "removeStake", _hex32(hotkey, "hotkey"), amount * WEI_PER_UNIT)

    async def set_weights(self, hotkey: Keypair, weights: WeightVector, version_key: int = 0, *,
                          netuid: int | None = None) -> None:
        _check_vector(weights)
        account = await self._as(hotkey)
        await self._send(account, "setWeights", self._net(netuid), list(weights.uids), list(weights.values), version_key)

    async def commit_weights(self, hotkey: Keypair, commit_hash: str, *, netuid: int | None = None) -> None:
        account = await self._as(hotkey)
        await self._send(account, "commitWeights", self._net(netuid), _hex32(commit_hash, "commit_hash"))

    async def reveal_weights(self, hotkey: Keypair, weights: WeightVector, salt: str, version_key: int = 0, *,
                             netuid: int | None = None) -> None:
        _check_vector(weights)
        account = await self._as(hotkey)
        await self._send(account, "revealWeights", self._net(netuid), list(weights.uids), list(weights.values),
                         salt.encode(), version_key)

    async def publish_addrs(self, hotkey: Keypair, addrs: Sequence[str], peer_id: str, *,
                            netuid: int | None = None) -> None:
        if any("\n" in a for a in addrs):
            raise ChainError("invalid_args", "an address may not contain a newline")
        account = await self._as(hotkey)
        await self._send(account, "publishAddrs", self._net(netuid), "\n".join(addrs), peer_id)

    async def post_epoch(self, keeper: LocalAccount, netuid: int, epoch_block: int, emission: Sequence[int], *,
                         chunk: int = EPOCH_CHUNK) -> list[int]:
        """Keeper only: post the emission (base units per uid) of ``epoch_block``, ``chunk`` uids per
        transaction (resuming a posting of the same epoch left open); returns the gas of each chunk."""
        if chunk < 1:
            raise ChainError("invalid_args", "chunk must be at least 1 uid")
        values = [int(e) for e in emission]
        open_block, start = (await self.call("epochPosting", netuid))[:2]
        start = int(start) if int(open_block) == epoch_block else 0
        gas: list[int] = []
        while True:
            part = values[start:start + chunk]
            last = start + len(part) >= len(values)
            receipt = await self._send(keeper, "postEpochChunk", netuid, epoch_block, start, part, last)
            gas.append(int(receipt["gasUsed"], 16))
            start += len(part)
            if last:
                return gas

    async def dispute_epoch(self, hotkey: Keypair, netuid: int, epoch_block: int, expected_hash: bytes) -> None:
        account = await self._as(hotkey)
        await self._send(account, "disputeEpoch", netuid, epoch_block, expected_hash)


def _check_vector(weights: WeightVector) -> None:
    if not isinstance(weights, WeightVector):
        raise ChainError("invalid_weights", f"weights must be a tnode.weights.WeightVector, got {type(weights).__name__}")


async def _gather(*aws: Any) -> list[Any]:
    results: list[Any] = [None] * len(aws)

    async def one(i: int, aw: Any) -> None:
        results[i] = await aw

    async with anyio.create_task_group() as tg:
        for i, aw in enumerate(aws):
            tg.start_soon(one, i, aw)
    return results


async def _send_raw(rpc: Rpc, account: LocalAccount, to: str | None, data: bytes, value: int, *, timeout: float,
                    locks: dict[str, anyio.Lock], confirmations: int = 1) -> dict[str, Any]:
    """Sign and send a transaction, wait until it is mined with ``confirmations`` blocks; returns the receipt.

    Refusals surface before sending: ``eth_estimateGas`` runs the call and returns the contract's
    ``ChainError(code)``, mapped to a typed :class:`ChainError`.
    """
    lock = locks.setdefault(account.address, anyio.Lock())
    async with lock:  # one nonce at a time per account
        tx: dict[str, Any] = {"from": account.address, "value": hex(value), "data": "0x" + data.hex()}
        if to is not None:
            tx["to"] = to
        nonce_hex, gas_price_hex, chain_hex = await rpc.batch(
            [("eth_getTransactionCount", [account.address, "pending"]), ("eth_gasPrice", []), ("eth_chainId", [])])
        gas = int(await rpc.call("eth_estimateGas", tx), 16)
        signed = account.sign_transaction({
            "nonce": int(nonce_hex, 16), "gasPrice": int(gas_price_hex, 16), "gas": gas + gas // 5 + 10_000,
            "to": to_checksum_address(to) if to else b"", "value": value, "data": data, "chainId": int(chain_hex, 16),
        })
        tx_hash = "0x" + bytes(signed.hash).hex()
        try:
            await rpc.call("eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())
        except ChainError as exc:
            # A resent request whose first copy arrived: the node knows the transaction already.
            if "already known" not in str(exc) and "nonce too low" not in str(exc):
                raise
    with anyio.move_on_after(timeout) as scope:
        while True:
            receipt = await rpc.call("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                if int(receipt["status"], 16) != 1:
                    raise ChainError("reverted", f"transaction {tx_hash} reverted (the state changed after it was checked)")
                mined = int(receipt["blockNumber"], 16)
                if confirmations <= 1 or int(await rpc.call("eth_blockNumber"), 16) >= mined + confirmations - 1:
                    return dict(receipt)
            await anyio.sleep(RECEIPT_POLL)
    assert scope.cancelled_caught
    raise ChainError("timeout", f"transaction {tx_hash} was not mined within {timeout} s")
