"""The ``tnode evm`` commands.

- ``verify``: recompute every epoch posted on a subnet contract and compare (also reached as
  ``tnode chain verify -c node.toml`` for a node whose ``[chain]`` is ``evm``). Exits 0 when every
  posted epoch matches this machine's computation, 1 when one does not (each mismatch printed), 2
  when the chain cannot be read.
- ``register``: register the node's hotkey with the contract's proof of work.
- ``devchain``: a local anvil chain set up for a devnet (:mod:`.devchain`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio
import typer
from tnode.cli_support import ConfigOpt, run_trio
from tnode.errors import ChainError

evm_app = typer.Typer(help="The EVM chain backend.", no_args_is_help=True)


async def verify_contract(rpc_url: str, contract: str, netuid: int) -> tuple[int, list[str]]:
    """(number of epochs checked, one line per mismatch)."""
    from .client import EvmSubnets
    from .epochs import EpochBook
    from .rpc import Rpc

    rpc = Rpc(rpc_url)
    try:
        client = await EvmSubnets.connect(rpc, contract, netuid=netuid)
        book = EpochBook(client)
        alarms = await book.verify(netuid)
        lines = [f"epoch {a.block} (tx {a.tx_hash}): posted emission differs by up to {a.max_difference} base units"
                 for a in alarms]
        return book.checked, lines
    finally:
        await rpc.aclose()


@evm_app.command("verify")
def verify(
    contract: str = typer.Option(..., "--contract", help="0x address of the subnet contract."),
    rpc_url: str = typer.Option("http://127.0.0.1:8545", "--rpc-url", help="JSON-RPC endpoint."),
    netuid: int = typer.Option(1, "--netuid", help="Subnet to verify."),
) -> None:
    """Recompute every posted epoch of a subnet with tnode.yuma and compare with what the keeper posted."""
    try:
        checked, mismatches = anyio.run(verify_contract, rpc_url, contract, netuid, backend="trio")
    except ChainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in mismatches:
        typer.echo(f"MISMATCH {line}")
    typer.echo(f"{checked} epoch(s) checked, {len(mismatches)} mismatch(es)")
    raise typer.Exit(1 if mismatches else 0)


@evm_app.command("register")
def register(
    config: ConfigOpt = Path("node.toml"),
    netuid: Annotated[int | None, typer.Option("--netuid", min=0, help="Subnet; default: the node's [node] netuid.")]
    = None,
    processes: Annotated[int, typer.Option(min=0, help="Solver processes (0 = all cores).")] = 1,
    attempts: Annotated[int, typer.Option(min=1, help="Seals to try before giving up.")] = 5,
) -> None:
    """Register the node's hotkey on the subnet contract with proof of work, then print its uid."""
    uid = run_trio(_register, config, netuid, processes, attempts)
    typer.echo(f"registered as uid {uid}")


async def _register(config: Path, netuid: int | None, processes: int, attempts: int) -> int:
    from functools import partial

    from tnode.cli_support import command_node

    from . import pow as pow_

    async with command_node(config, kinds={"chain"}) as node:
        chain: Any = node.chain
        if chain is None or not hasattr(chain, "client"):
            raise ChainError("not_evm", f"{config}: [chain] type must be \"evm\"")
        if not node.coldkey_public:
            raise ChainError("no_coldkey", "the node has no coldkey file to own the hotkey (tnode keys new coldkey)")
        net = node.netuid if netuid is None else netuid
        hotkey = node.hotkey
        existing = (await chain.metagraph(netuid=net)).by_hotkey(hotkey.public_hex)
        if existing is not None:
            return int(existing.uid)
        last: ChainError | None = None
        for _ in range(attempts):
            head = await chain.block_number()
            block_hash = bytes.fromhex(await chain.block_hash(head))
            difficulty = await chain.difficulty(netuid=net)
            nonce = await anyio.to_thread.run_sync(partial(pow_.solve, block_hash, hotkey.public_bytes, difficulty,
                                                           processes=processes or None))
            if nonce is None:
                continue
            try:
                return int(await chain.register(hotkey, node.coldkey_public, block=head, nonce=nonce, netuid=net))
            except ChainError as exc:  # the seal went stale or the difficulty rose meanwhile: solve again
                if exc.code not in ("stale_block", "invalid_seal", "too_many_registrations", "unknown_block"):
                    raise
                last = exc
        raise ChainError("registration_failed", f"no accepted seal after {attempts} attempts (last: {last})")


@evm_app.command("devchain")
def devchain(
    spec: Annotated[Path, typer.Option("--spec", help="JSON spec: subnets, reserve, accounts (see docs/chain-evm.md).")],
    out: Annotated[Path, typer.Option("--out", help="Write {rpc_url, contract, chain_id} here when ready.")],
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Loopback port (0: a free one).")] = 0,
) -> None:
    """Run a local anvil chain with the subnet contract and the spec's accounts until SIGTERM (for devnets)."""
    import signal

    async def main() -> None:
        from .devchain import serve

        async with anyio.create_task_group() as tg:
            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(stop_on_signal)
            await serve(spec, out, port or None)

    run_trio(main)


def register_commands(app: typer.Typer) -> None:
    app.add_typer(evm_app, name="evm")
