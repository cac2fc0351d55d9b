"""`tnode ping` and `tnode peers`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from tnode.cli_support import ConfigOpt, command_node, run_trio


def register_commands(app: Any) -> None:
    @app.command()
    def ping(
        target: Annotated[str, typer.Argument(help="Multiaddr with /p2p/<peer id>, or a peer id the node knows.")],
        count: Annotated[int, typer.Option("--count", "-n", help="Number of pings.")] = 3,
        config: ConfigOpt = Path("node.toml"),
    ) -> None:
        """Ping a peer with the standard libp2p ping protocol and print round-trip times."""

        async def main() -> list[float]:
            from libp2p.host.ping import PingService
            from libp2p.peer.id import ID

            # An ephemeral port and a throwaway identity: works beside the running node, even pinging it.
            async with command_node(config, kinds={"transport"}, fresh_hotkey=True) as node:
                transport = node.transport
                peer_id = await transport.connect(target)
                rtts = await PingService(transport.host).ping(ID.from_base58(peer_id), ping_amt=count)
                return [r / 1000.0 for r in rtts]

        rtts = run_trio(main)
        for i, rtt in enumerate(rtts, 1):
            typer.echo(f"ping {i}: {rtt:.3f} ms")

    @app.command()
    def peers(
        config: ConfigOpt = Path("node.toml"),
        wait: Annotated[float, typer.Option(help="Seconds to wait for bootstrap connections.")] = 2.0,
    ) -> None:
        """Start the transport, connect to the bootstrap peers and list known peers."""
        import trio
        from rich.console import Console
        from rich.table import Table

        async def main() -> list[Any]:
            async with command_node(config, kinds={"transport"}, fresh_hotkey=True) as node:
                await trio.sleep(wait)
                return node.transport.peers()

        table = Table(title="peers")
        for col in ("peer id", "connected", "addrs", "modalities", "version", "capacity"):
            table.add_column(col)
        for p in run_trio(main):
            table.add_row(p.peer_id, "yes" if p.connected else "no", "\n".join(p.addrs), ", ".join(p.modalities),
                          p.version, str(p.capacity))
        Console().print(table)
