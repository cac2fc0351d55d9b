"""Chain commands: ``tnode metagraph``, ``tnode register``, ``tnode stake add|remove``,
``tnode wallet balance|transfer`` and ``tnode chain info|verify``.

Each command starts the node's transport (on an ephemeral loopback port, never the node's own
listen address) and chain from node.toml (:func:`tnode.cli_support.command_node`): it opens the
embedded ledger when no process holds it, becomes a client of the node when the node runs as the
authority, and is a client of a remote authority otherwise. Amounts on the command line are
tokens; the chain counts base units.
"""

from __future__ import annotations

import functools
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from tnode.cli_support import ConfigOpt
from tnode.errors import ChainError

from .codec import TOKEN

console = Console()
KINDS = {"transport", "chain"}

stake_app = typer.Typer(no_args_is_help=True, help="Stake tokens on a hotkey (coldkey-owned).")
wallet_app = typer.Typer(no_args_is_help=True, help="Balances and transfers of the node's coldkey.")
chain_app = typer.Typer(no_args_is_help=True, help="The local chain: head, genesis, ledger verification.")


def _run(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` on trio; chain refusals and node errors become a one-line error."""
    from tnode.cli_support import run_trio

    return run_trio(fn, *args)


def _units(tokens: float) -> int:
    if tokens <= 0:
        raise typer.BadParameter("amount must be positive")
    return int(round(tokens * TOKEN))


def _fmt(units: int) -> str:
    return f"{units / TOKEN:,.9f}".rstrip("0").rstrip(".")


def _open(config: Path) -> Any:
    """The node's transport and chain for one command, on an ephemeral loopback port.

    When the node's own authority is running (it holds the ledger's lock), the command becomes a
    chain client of it instead of opening the ledger a second time; its transport then uses a
    throwaway identity (one peer id cannot dial itself) and :func:`_own_hotkey` still signs with
    the node's hotkey file.
    """
    from tnode.cli_support import command_node

    client = _running_authority(config)
    if client is None:
        return command_node(config, kinds=KINDS)
    return command_node(config, kinds=KINDS, overrides={"chain": {"mode": "client", "authority": client}},
                        fresh_hotkey=True)


def _running_authority(config: Path) -> str | None:
    """The multiaddr of the node ``config`` describes when it runs as this chain's authority, else ``None``."""
    import fcntl
    import os

    from tnode.assembly import apply_env_overrides
    from tnode.config import read_toml
    from tnode.keys import Keystore, read_keyfile_meta

    doc = apply_env_overrides(read_toml(config))
    chain, node, transport = (doc.get(k) if isinstance(doc.get(k), dict) else {} for k in ("chain", "node", "transport"))
    if chain.get("type") != "local" or chain.get("mode", "authority") != "authority":
        return None
    data_dir = Path(str(node.get("data_dir", "./data/node"))).expanduser()
    data_dir = data_dir if data_dir.is_absolute() else config.resolve().parent / data_dir
    lock = Path(str(data_dir / str(chain.get("db", "chain.sqlite"))) + ".lock")
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it: the command may open the ledger itself
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    listen = [a for a in transport.get("listen", []) if isinstance(a, str) and "/tcp/" in a and not a.endswith("/tcp/0")]
    if not listen:
        raise ChainError("authority_running", f"the authority of {config} is running on an ephemeral port; "
                                              "give it a fixed [transport] listen port to reach it")
    peer_id = read_keyfile_meta(Keystore(data_dir).path(str(node.get("hotkey", "hotkey")))).get("peer_id")
    return f"{listen[0].replace('/ip4/0.0.0.0/', '/ip4/127.0.0.1/')}/p2p/{peer_id}"


def _own_hotkey(node: Any) -> Any:
    """The node's hotkey from its file (the transport may use a throwaway identity, see :func:`_open`)."""
    import os

    from tnode.keys import Keystore

    store = Keystore(node.data_dir)
    if not store.path(node.config.node.hotkey).exists():
        return node.hotkey
    return store.load(node.config.node.hotkey, os.environ.get("TNODE_PASSPHRASE"))


def _netuid_option() -> Any:
    return typer.Option("--netuid", help="Subnet (netuid) to act on; default: the node's [node] netuid.", min=0)


def _chain(node: Any) -> Any:
    if node.chain is None:
        raise ChainError("no_chain", "node.toml has no [chain] section")
    return node.chain


# --------------------------------------------------------------------------- metagraph
def metagraph(
    config: ConfigOpt = Path("node.toml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
    block: Annotated[int | None, typer.Option(help="Show the subnet as of this block.")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Also show coldkeys, registration blocks, addresses.")] = False,
    netuid: Annotated[int | None, _netuid_option()] = None,
) -> None:
    """Print the subnet's neurons: stake, consensus results, permits, addresses."""

    async def main() -> Any:
        async with _open(config) as node:
            return await _chain(node).metagraph(block, netuid=netuid)

    mg = _run(main)
    if as_json:
        import orjson

        from .metagraph import to_wire

        typer.echo(orjson.dumps(to_wire(mg), option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"subnet {mg.netuid} at block {mg.block}: {mg.n} neurons", box=None,
                  header_style="bold underline", show_edge=False, pad_edge=False, padding=(0, 0, 0, 1))
    columns = ["uid", "hotkey", "stake", "rank", "trust", "cons", "incent", "divs", "emission", "vtrust", "vp",
               "upd", "act"]
    if wide:
        columns += ["coldkey", "reg", "addrs"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("hotkey", "coldkey", "addrs") else "right", no_wrap=True,
                         min_width=len(col))
    for n in mg.neurons:
        row = [str(n.uid), n.hotkey[:8], f"{n.stake:,.2f}", f"{n.rank:.3f}", f"{n.trust:.3f}", f"{n.consensus:.3f}",
               f"{n.incentive:.3f}", f"{n.dividends:.3f}", f"{n.emission:,.2f}", f"{n.validator_trust:.3f}",
               "*" if n.validator_permit else "", str(n.last_update), "*" if n.active else ""]
        if wide:
            row += [n.coldkey[:8], str(n.registered_at), " ".join(n.addrs)]
        table.add_row(*row)
    console.print(table)


# --------------------------------------------------------------------------- register
def register(
    config: ConfigOpt = Path("node.toml"),
    burn: Annotated[bool, typer.Option("--burn", help="Pay the burn cost from the coldkey instead of PoW.")] = False,
    processes: Annotated[int, typer.Option(help="Solver processes (0 = all cores).", min=0)] = 0,
    netuid: Annotated[int | None, typer.Option(
        "--netuid", min=0, help="Subnet to register in; default: the subnets of the modalities the node serves "
                                "(or its [node] netuid).")] = None,
) -> None:
    """Register the node's hotkey on the subnet (proof of work by default), then print its uid."""
    _run(_register, config, burn, processes, netuid)


def serving_subnets(subnets: dict[int, str], served: list[str], default: int) -> list[int]:
    """The subnets a miner serving ``served`` (modality names) registers in: each one named for a
    served modality, else the node's own ``default``."""
    found = [n for n, modality in subnets.items() if modality and modality in served]
    return found or [default]


async def _register(config: Path, burn: bool, processes: int, netuid: int | None) -> None:
    async with _open(config) as node:
        chain = _chain(node)
        hotkey = _own_hotkey(node)
        if netuid is not None:
            targets = [netuid]
        else:
            # Subnets name modalities by their wire name: serve_as, else the type.
            tables = (node.config.raw.get("modalities") or {}).values()
            served = [str(t.get("serve_as") or t.get("type", "")) for t in tables if isinstance(t, dict)]
            targets = serving_subnets(await chain.subnets(), served, node.netuid)
        for target in targets:
            existing = (await chain.metagraph(netuid=target)).by_hotkey(hotkey.public_hex)
            if existing is not None:
                console.print(f"hotkey {hotkey.public_hex[:16]}… is already registered in subnet {target} "
                              f"as uid {existing.uid}")
                continue
            if burn:
                cost = await chain.burn_cost(netuid=target)
                console.print(f"burning {_fmt(cost)} tokens from the coldkey to register in subnet {target}")
                uid = await chain.burned_register(hotkey, node.load_coldkey(), netuid=target)
            else:
                if not node.coldkey_public:
                    raise ChainError("no_coldkey",
                                     "the node has no coldkey file to own the hotkey (tnode keys new coldkey)")
                uid = await _register_pow(node, chain, processes, hotkey, target)
            console.print(f"[green]registered[/] hotkey {hotkey.public_hex[:16]}… in subnet {target} as uid {uid}")


async def _register_pow(node: Any, chain: Any, processes: int, hotkey: Any, netuid: int) -> int:
    from . import pow as pow_

    hyper = await chain.hyperparameters(netuid=netuid)
    window = hyper.pow_block_window
    cancel = threading.Event()
    interrupted = False

    async def watch_signals(scope: anyio.CancelScope) -> None:
        nonlocal interrupted
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                interrupted = True
                cancel.set()  # the solver threads stop at their next check
                scope.cancel()
                return

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_signals, tg.cancel_scope)
            while True:
                head = await chain.block_number()
                block_hash = bytes.fromhex(await chain.block_hash(head))
                difficulty = await chain.difficulty(netuid=netuid)
                task = progress.add_task(f"solving over block {head} (difficulty {difficulty:,})",
                                         total=float(difficulty), rate="")
                cancel.clear()

                async def expire(block: int = head) -> None:
                    # Give up on a block hash before it leaves the accepted window.
                    await chain.wait_for_block(block + max(1, window - 1))
                    cancel.set()

                async with anyio.create_task_group() as inner:
                    inner.start_soon(expire)
                    nonce = await anyio.to_thread.run_sync(functools.partial(
                        _solve, pow_, block_hash, hotkey.public_bytes, difficulty, processes, progress, task,
                        cancel))
                    inner.cancel_scope.cancel()
                progress.remove_task(task)
                if interrupted:
                    break
                if nonce is None:
                    continue  # the block went stale: solve again over a fresh one
                try:
                    uid = int(await chain.register(hotkey, node.coldkey_public, block=head, nonce=nonce,
                                                   netuid=netuid))
                except ChainError as exc:
                    if exc.code in ("stale_block", "too_many_registrations"):
                        console.print(f"[yellow]{exc}[/]; solving again")
                        continue
                    raise
                tg.cancel_scope.cancel()
                return uid
    raise KeyboardInterrupt


def _solve(pow_: Any, block_hash: bytes, hotkey: bytes, difficulty: int, processes: int, progress: Progress,
           task: Any, cancel: threading.Event) -> int | None:
    import time

    started = time.monotonic()

    def report(hashes: int) -> None:
        rate = hashes / max(1e-9, time.monotonic() - started)
        progress.update(task, completed=min(float(hashes), float(difficulty)), rate=f"{rate / 1e6:.2f} MH/s")

    return pow_.solve(block_hash, hotkey, difficulty, processes=processes or None, progress=report, cancel=cancel)


# --------------------------------------------------------------------------- stake and wallet
def _hotkey_option() -> Any:
    return typer.Option(help="Hotkey (hex) to stake on; default: the node's hotkey.")


@stake_app.command("add")
def stake_add(amount: Annotated[float, typer.Argument(help="Tokens to stake.")], config: ConfigOpt = Path("node.toml"),
              hotkey: Annotated[str | None, _hotkey_option()] = None) -> None:
    """Move tokens from the coldkey's balance to stake on a hotkey."""
    units = _units(amount)

    async def main() -> None:
        async with _open(config) as node:
            chain = _chain(node)
            hot = hotkey or _own_hotkey(node).public_hex
            cold = node.load_coldkey()
            await chain.add_stake(cold, hot, units)
            console.print(f"staked {_fmt(units)} on {hot[:16]}…; stake now {_fmt(await chain.stake(cold.public_hex, hot))}")

    _run(main)


@stake_app.command("remove")
def stake_remove(amount: Annotated[float, typer.Argument(help="Tokens to unstake.")],
                 config: ConfigOpt = Path("node.toml"), hotkey: Annotated[str | None, _hotkey_option()] = None) -> None:
    """Move stake from a hotkey back to the coldkey's balance."""
    units = _units(amount)

    async def main() -> None:
        async with _open(config) as node:
            chain = _chain(node)
            hot = hotkey or _own_hotkey(node).public_hex
            cold = node.load_coldkey()
            await chain.remove_stake(cold, hot, units)
            console.print(f"unstaked {_fmt(units)} from {hot[:16]}…; balance now "
                          f"{_fmt(await chain.balance(cold.public_hex))}")

    _run(main)


@wallet_app.command("balance")
def wallet_balance(config: ConfigOpt = Path("node.toml"),
                   coldkey: Annotated[str | None, typer.Option(help="Coldkey (hex); default: the node's.")] = None,
                   as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Free balance of a coldkey and its stake on the node's hotkey."""

    async def main() -> dict[str, Any]:
        async with _open(config) as node:
            chain = _chain(node)
            cold = coldkey or node.coldkey_public
            if not cold:
                raise ChainError("no_coldkey", "no coldkey given and the node has none")
            own = _own_hotkey(node).public_hex
            return {"coldkey": cold, "balance": await chain.balance(cold),
                    "hotkey": own, "stake": await chain.stake(cold, own)}

    info = _run(main)
    if as_json:
        import orjson

        typer.echo(orjson.dumps(info).decode())
        return
    console.print(f"coldkey {info['coldkey']}\n  balance {_fmt(info['balance'])}\n"
                  f"  stake on {info['hotkey'][:16]}… {_fmt(info['stake'])}")


@wallet_app.command("transfer")
def wallet_transfer(dest: Annotated[str, typer.Argument(help="Destination coldkey (hex).")],
                    amount: Annotated[float, typer.Argument(help="Tokens to send.")],
                    config: ConfigOpt = Path("node.toml")) -> None:
    """Send tokens from the node's coldkey."""
    units = _units(amount)

    async def main() -> None:
        async with _open(config) as node:
            chain = _chain(node)
            cold = node.load_coldkey()
            await chain.transfer(cold, dest, units)
            console.print(f"sent {_fmt(units)} to {dest[:16]}…; balance now {_fmt(await chain.balance(cold.public_hex))}")

    _run(main)


@chain_app.command("info")
def chain_info(config: ConfigOpt = Path("node.toml"), netuid: Annotated[int | None, _netuid_option()] = None) -> None:
    """Genesis hash, head, the subnets, a subnet's difficulty and burn, and supply."""

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with _open(config) as node:
            chain = _chain(node)
            head = await chain.block_number()
            totals = await chain.totals()
            chosen = chain.netuid if netuid is None else netuid
            info = {"genesis": chain.genesis_hash, "head": head, "netuid": chosen,
                    "difficulty": await chain.difficulty(netuid=chosen), "burn": await chain.burn_cost(netuid=chosen),
                    **totals}
            return info, await chain.subnet_info()

    info, subnets = _run(main)
    for name, value in info.items():
        shown = _fmt(value) if name in ("burn", "issuance", "pending_emission", "balances", "stakes") else value
        console.print(f"{name:>16}  {shown}")
    for sub in subnets:
        console.print(f"{'subnet ' + str(sub['netuid']):>16}  modality {sub['modality'] or '(any)'}  "
                      f"emission share {sub['emission_share']:g}  {sub['n']} uids")


@chain_app.command("verify")
def chain_verify(config: ConfigOpt = Path("node.toml")) -> None:
    """Re-check every block's hash, parent link, tx root and signatures of an authority's ledger; on a
    chain backend with its own check (evm: recompute every posted epoch), run that and exit 1 on a mismatch."""

    async def main() -> int | tuple[int, list[str]]:
        from tnode.node import Node

        node = Node.from_file(config, kinds={"chain"})
        chain = _chain(node)
        if hasattr(chain, "verify_history"):  # another backend: (items checked, one line per mismatch)
            async with node.running():
                checked, mismatches = await chain.verify_history()
                return int(checked), list(mismatches)
        if chain.config.mode != "authority":
            raise ChainError("not_authority", "verify needs the authority's node.toml (the ledger lives there)")
        async with node.running():
            assert chain.ledger is not None
            return int(await anyio.to_thread.run_sync(chain.ledger.verify_chain))

    result = _run(main)
    if isinstance(result, tuple):
        checked, mismatches = result
        for line in mismatches:
            console.print(f"[red]MISMATCH[/] {line}", highlight=False, soft_wrap=True)
        console.print(f"{checked} epoch(s) checked, {len(mismatches)} mismatch(es)")
        if mismatches:
            raise typer.Exit(1)
        return
    console.print(f"[green]ok[/]: {result} blocks verified")


def register_commands(app: typer.Typer) -> None:
    """Attach the chain commands to the ``tnode`` app."""
    app.command("metagraph")(metagraph)
    app.command("register")(register)
    app.add_typer(stake_app, name="stake")
    app.add_typer(wallet_app, name="wallet")
    app.add_typer(chain_app, name="chain")
