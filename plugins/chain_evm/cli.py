"""``tnode evm verify``: recompute every epoch posted on a subnet contract and compare.

Exits 0 when every posted epoch matches this machine's computation, 1 when one does not (each
mismatch printed), 2 when the chain cannot be read.
"""

from __future__ import annotations

import anyio
import typer
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


def register_commands(app: typer.Typer) -> None:
    app.add_typer(evm_app, name="evm")
