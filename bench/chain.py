"""Chain backends side by side: transactions/s and time to finality of the embedded ``local``
chain and of the ``evm`` subnet contract on anvil, and the EVM gas table.

* Throughput: ``--txs`` transfers between funded accounts. ``local``: signed transactions submitted to
  the ledger and sealed in blocks of up to 64 (a block is produced whenever 64 are pending and at the
  end); ``evm``: signed transactions from 8 accounts at once, each waited for until mined (anvil
  automines one block per transaction, so mined = final at ``confirmations = 1``).
* Time to finality: median seconds from submitting one transfer until it is in a sealed block
  (``local``: submit + produce_block; ``evm``: eth_sendRawTransaction until its receipt).
* Gas (evm): registration (bind + PoW register), ``setWeights`` with 32, 256 and 4096 uids (4096 only
  without ``--quick``: it needs 4096 registrations first) and the epoch posting for the same subnet
  sizes: ``postEpochChunk`` transactions of ``EPOCH_CHUNK`` uids each (gas of the largest chunk,
  number of chunks, total), every uid paid (the worst case: each chunk writes every stake).

Goals: every transaction fits in a 30 M gas block (Ethereum's limit), so a subnet of 4096 uids can
run on a real EVM network.

    python bench/chain.py [--quick] [--txs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

BLOCK_GAS = 30_000_000
TOKEN = 10**9


def key(name: str) -> Any:
    from tnode.keys import Keypair

    return Keypair.from_seed(name.encode().ljust(32, b"\0")[:32])


# --------------------------------------------------------------------------- local
def bench_local(txs: int) -> tuple[float, float]:
    from tnode.config import load_table
    from tnode.plugins.chain_local.config import LocalChainConfig
    from tnode.plugins.chain_local.genesis import genesis_from_config
    from tnode.plugins.chain_local.ledger import Ledger
    from tnode.plugins.chain_local.tx import Transaction

    senders = [key(f"s{i}") for i in range(8)]
    accounts = [{"coldkey": k.public_hex, "balance": 1000.0} for k in senders]
    cfg = load_table(LocalChainConfig, {"genesis": {"accounts": accounts}})
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "chain.sqlite", genesis_from_config(cfg, 1))
        try:
            dest = key("dest").public_hex
            nonces = {k.public_hex: ledger.nonce(k.public_hex) for k in senders}

            def tx(k: Any) -> Any:
                t = Transaction.create(k, chain=ledger.genesis_hash, nonce=nonces[k.public_hex], call="transfer",
                                       args={"dest": dest, "amount": 1})
                nonces[k.public_hex] += 1
                return t

            start = time.perf_counter()
            for i in range(txs):
                ledger.submit(tx(senders[i % len(senders)]))
                if ledger.pending_count() >= 64:
                    ledger.produce_block()
            ledger.produce_block()
            rate = txs / (time.perf_counter() - start)
            lat = []
            for i in range(20):
                t0 = time.perf_counter()
                ledger.submit(tx(senders[i % len(senders)]))
                ledger.produce_block()
                lat.append(time.perf_counter() - t0)
            return rate, statistics.median(lat)
        finally:
            ledger.close()


# --------------------------------------------------------------------------- evm
async def bench_evm(txs: int, sizes: list[int]) -> dict[str, Any]:
    from eth_account import Account
    from tnode.hyperparameters import Hyperparameters
    from tnode.plugins.chain_evm import pow as pow_
    from tnode.plugins.chain_evm.anvil import DEV_KEY, Anvil
    from tnode.plugins.chain_evm.client import EvmSubnets, _send_raw
    from tnode.plugins.chain_evm.epochs import compute_epoch
    from tnode.plugins.chain_evm.rpc import Rpc
    from tnode.weights import WeightVector

    out: dict[str, Any] = {"gas": {}, "epochs": {}}
    with Anvil(balance=10**9) as anvil:
        rpc = Rpc(anvil.url, timeout=120)
        dev = Account.from_key(DEV_KEY)
        client = await EvmSubnets.connect(rpc, await EvmSubnets.deploy(rpc, dev), tx_timeout=120)
        senders = [key(f"s{i}") for i in range(8)]
        for k in senders:
            await client.fund(dev, k, 1000 * TOKEN)
        from tnode.plugins.chain_evm.accounts import account_of

        dest = account_of(key("dest")).address
        locks: dict[str, Any] = {}

        async def one(k: Any) -> None:
            await _send_raw(rpc, account_of(k), dest, b"", 10**9, timeout=60, locks=locks)

        start = time.perf_counter()
        per = txs // len(senders)
        async with anyio.create_task_group() as tg:
            for k in senders:
                async def run(k: Any = k) -> None:
                    for _ in range(per):
                        await one(k)
                tg.start_soon(run)
        print(f"throughput part: {time.perf_counter() - start:.1f} s", file=sys.stderr)
        out["tps"] = per * len(senders) / (time.perf_counter() - start)
        lat = []
        for i in range(20):
            t0 = time.perf_counter()
            await one(senders[i % len(senders)])
            lat.append(time.perf_counter() - t0)
        out["finality"] = statistics.median(lat)

        for size in sizes:
            net = size  # one subnet per size
            hp = Hyperparameters(difficulty=1, min_difficulty=1, max_difficulty=1, weights_rate_limit=0, immunity_period=0, tempo=50,
                                 max_registrations_per_block=64, max_registrations_per_interval=65535,
                                 max_allowed_uids=max(size, 1), activity_cutoff=100_000,
                                 pow_block_window=200, burn=1e-9, min_burn=1e-9, max_burn=1e-9)
            await client.create_subnet(dev, net, "text", hp)
            cold = key("cold")
            validator = key(f"v-{size}")
            hotkeys = [validator] + [key(f"m-{size}-{i}") for i in range(size - 1)]

            async def reg(k: Any, net: int = net, cold: Any = cold) -> None:
                await client._as(k)
                head = await client.block_number()
                nonce = pow_.solve(bytes.fromhex(await client.block_hash(head)), k.public_bytes, 1, start_nonce=0)
                await client._send(account_of(k), "register", net, head, nonce, cold.public_bytes)

            t0 = time.perf_counter()
            if size == sizes[0]:  # the proof-of-work path: bind + register per hotkey
                for chunk in range(0, len(hotkeys), 32):
                    async with anyio.create_task_group() as tg:
                        for k in hotkeys[chunk:chunk + 32]:
                            tg.start_soon(reg, k)
                out["gas"]["register"] = client.gas_used["register"] + client.gas_used.get("bindKey", 0)
                out["gas"]["register (bind only)"] = client.gas_used.get("bindKey", 0)
            else:  # larger subnets: one burnedRegister transaction per uid, from 32 coldkeys at once
                payers = [key(f"payer-{i}") for i in range(32)]
                for p in payers:
                    await client.fund(dev, p, 10 * TOKEN)

                async def burn_all(p: Any, mine: list[Any], net: int = net) -> None:
                    for k in mine:
                        # the client's burned_register looks the new uid up (a full read): send directly
                        await client._send(await client._as(p), "burnedRegister", net, k.public_bytes, value=10**9)

                async with anyio.create_task_group() as tg:
                    for i, p in enumerate(payers):
                        tg.start_soon(burn_all, p, hotkeys[i::len(payers)])
                await client._as(validator)
                out["gas"]["burnedRegister"] = client.gas_used["burnedRegister"]
            print(f"[{size} uids] registered in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            vec = WeightVector(tuple(range(size)), tuple([1] + [65535] * (size - 1)))
            await client.set_weights(validator, vec, netuid=net)
            out["gas"][f"setWeights {size} uids"] = client.gas_used["setWeights"]
            head = await client.block_number()
            await rpc.call("anvil_mine", hex(50 - head % 50 + 1))
            view = await compute_epoch(client, net, (head // 50 + 1) * 50, None)
            emission = [max(1, e) for e in view.emission]
            await client.fund_reserve(dev, 10**21)
            chunks = await client.post_epoch(dev, net, (head // 50 + 1) * 50, emission)
            out["gas"][f"postEpochChunk {size} uids"] = max(chunks)
            out["epochs"][size] = chunks
            print(f"[{size} uids] weights and epoch done at {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        await rpc.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer transactions; gas for 32 and 256 uids only")
    ap.add_argument("--txs", type=int, default=0, help="transfers for the throughput figure")
    ap.add_argument("--sizes", default="", help="subnet sizes for the gas table, comma-separated")
    args = ap.parse_args()
    txs = args.txs or (400 if args.quick else 2000)
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else ([32, 256] if args.quick else [32, 256, 4096])
    local_tps, local_fin = bench_local(txs)
    evm = anyio.run(bench_evm, txs, sizes, backend="trio")
    print(f"{'backend':<8} {'tx/s':>10} {'finality (s)':>14}")
    print(f"{'local':<8} {local_tps:>10.0f} {local_fin:>14.4f}")
    print(f"{'evm':<8} {evm['tps']:>10.0f} {evm['finality']:>14.4f}")
    print()
    print(f"{'evm call':<28} {'gas':>12}")
    for name, gas in evm["gas"].items():
        print(f"{name:<28} {gas:>12,}")
    print()
    print(f"{'epoch posting':<20} {'chunks':>7} {'gas per chunk (max)':>20} {'gas total':>14}")
    for size, chunks in evm["epochs"].items():
        print(f"{str(size) + ' uids':<20} {len(chunks):>7} {max(chunks):>20,} {sum(chunks):>14,}")
    worst = max(evm["gas"].values())
    verdict = "PASS" if worst <= BLOCK_GAS else "FAIL"
    print(f"{verdict}: largest transaction {worst:,} gas, goal ≤ {BLOCK_GAS:,} (one Ethereum block)")


if __name__ == "__main__":
    main()
