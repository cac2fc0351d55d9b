"""``tnode status`` and ``tnode devnet``."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from tnode.cli_support import ConfigOpt, fail, run_trio, stderr_logs
from tnode.errors import ConfigError, KeyError_, TnodeError, find_error

console = Console()
err_console = Console(stderr=True)


_fail = fail  # the core's error printer (tnode.cli_support)
quiet_logs = stderr_logs


def register_commands(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("devnet")(devnet)


# --------------------------------------------------------------------------- status
def status(
    config: ConfigOpt = Path("node.toml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the chain.")] = 15.0,
    netuid: Annotated[int | None, typer.Option("--netuid", min=0,
                                               help="Subnet to show; default: the node's [node] netuid.")] = None,
) -> None:
    """Show a node's uid, stake, trust, incentive, dividends, emission and peers, read from the chain.

    Connects to the chain the node uses (its authority, or the node itself when it is the
    authority) with a temporary key; the node must be running.
    """
    from .remote import NodeTarget, read_status

    try:
        target = NodeTarget.from_config(config)
    except (ConfigError, KeyError_) as exc:
        raise _fail(str(exc), 78) from None
    doc = run_trio(read_status, target, timeout, netuid)
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    from .status import render_status

    console.print(render_status(doc))


# --------------------------------------------------------------------------- devnet
def devnet(
    miners: Annotated[int, typer.Option(min=1, help="Miner processes (models cycle transformer, ngram, "
                                                    "uniform, garbage).")] = 4,
    validators: Annotated[int, typer.Option(min=1, help="Validator processes (staked at genesis).")] = 2,
    epochs: Annotated[int, typer.Option(min=0, help="Stop after this many epochs with weights (0: run until "
                                                    "Ctrl-C).")] = 0,
    report: Annotated[Path | None, typer.Option(help="Write per-uid results as JSON here (with --epochs).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Directory for node configs, keys, logs "
                                                      "(default runs/devnet-<time>).")] = None,
    block_time: Annotated[float, typer.Option(min=0.05, help="Seconds per block.")] = 1.0,
    tempo: Annotated[int, typer.Option(min=2, help="Blocks per epoch.")] = 10,
    checkpoint: Annotated[str, typer.Option(help="Transformer checkpoint the transformer miners serve: a path, "
                                                 "'builtin' (the model shipped with tnode) or 'train' (train one "
                                                 "first with --train-steps).")] = "builtin",
    train_steps: Annotated[int, typer.Option(min=1, help="Training steps for --checkpoint train (the result is kept "
                                                         "next to the run directory and reused).")] = 400,
    base_port: Annotated[int, typer.Option(min=0, max=65000, help="First TCP port (0: free ports).")] = 0,
    registration: Annotated[str, typer.Option(help="How miners get uids: pow, burn or genesis.")] = "pow",
    live: Annotated[bool, typer.Option(help="Show the live metagraph view.")] = True,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="A node that exits is noted in the view "
                                             "instead of stopping the devnet (to watch the network lose a node).")
                          ] = False,
    models: Annotated[str, typer.Option(help="Comma-separated model types the miners cycle through, best first "
                                             "(default: the modality's own; text: transformer,ngram,uniform,garbage, "
                                             "image: unet,classical,blur,image_garbage).")] = "",
    modality: Annotated[str, typer.Option(help="What the network serves: text, image, or several comma-separated "
                                               "(text,image: one subnet per modality, netuid 1, 2, ...).")] = "text",
    emission_shares: Annotated[str, typer.Option(
        "--emission-shares", help="With several modalities: each subnet's share of the emission, comma-separated "
                                  "in the order of --modality (default: equal shares).")] = "",
    online_learning: Annotated[bool, typer.Option(
        "--online-learning", help="Add a miner serving an untrained transformer with [training.online]; the report "
                                  "gains its incentive per epoch and its p99 latency against a transformer miner "
                                  "without it (docs/learning.md).")] = False,
    online_checkpoint: Annotated[str, typer.Option(
        "--online-checkpoint", help="The weak checkpoint the --online-learning miner starts from "
                                    "(default: untrained weights).")] = "",
    adversaries: Annotated[str, typer.Option(
        "--adversaries", help="Attackers placed beside the honest nodes, comma-separated: relay, noisy-relay, lazy "
                              "(miners), copier, cabal (validators); adds an honest twin miner and the "
                              "detection checks to the report (docs/collusion.md).")] = "",
    chain: Annotated[str, typer.Option("--chain", help="The chain: local (the embedded chain, held by the authority) "
                                                      "or evm (a local anvil node with the subnet contract; the "
                                                      "authority posts epochs as keeper).")] = "local",
) -> None:
    """Start a local network (chain authority, validators, miners) as separate processes on 127.0.0.1."""
    import trio
    from tnode.pluginmanager import load_plugins

    from .devnet.plan import MODEL_CYCLES, DevnetOptions

    if chain not in ("local", "evm"):
        raise _fail(f"--chain must be local or evm (got {chain!r})", 2)
    if registration not in ("pow", "burn", "genesis"):
        raise _fail("--registration must be pow, burn or genesis", 2)
    modalities = [m.strip() for m in modality.split(",") if m.strip()]
    if not modalities or any(m not in MODEL_CYCLES for m in modalities) or len(set(modalities)) != len(modalities):
        raise _fail(f"--modality takes one or more of {', '.join(MODEL_CYCLES)}, comma-separated (got {modality!r})", 2)
    kinds = tuple(m.strip() for m in models.split(",") if m.strip())
    if len(modalities) > 1 and kinds:
        # Several subnets: each model goes to the subnet of the modality it belongs to.
        stray = [m for m in kinds if not any(m in MODEL_CYCLES[mod] for mod in modalities)]
        if stray:
            raise _fail(f"--models with several modalities takes each modality's own models "
                        f"({'; '.join(f'{mod}: ' + ', '.join(MODEL_CYCLES[mod]) for mod in modalities)}); "
                        f"not {', '.join(stray)}", 2)
    try:
        shares = tuple(float(x) for x in emission_shares.split(",") if x.strip())
    except ValueError:
        raise _fail(f"--emission-shares takes numbers, comma-separated (got {emission_shares!r})", 2) from None
    if shares and (len(shares) != len(modalities) or abs(sum(shares) - 1.0) > 1e-9 or min(shares) < 0):
        raise _fail(f"--emission-shares needs one non-negative share per modality ({len(modalities)}) "
                    f"summing to 1 (got {emission_shares!r})", 2)
    kinds = kinds or tuple(m for mod in modalities for m in MODEL_CYCLES[mod])
    registered = load_plugins().registry.types("model")
    unknown = [m for m in kinds if m not in registered]
    if unknown:
        raise _fail(f"--models: unknown model type(s) {', '.join(unknown)} (registered: {', '.join(registered)})", 2)
    if report is not None and not epochs:
        raise _fail("--report needs --epochs N (the report is written when the run ends)", 2)
    run_dir = run_dir or Path("runs") / time.strftime("devnet-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    from .devnet.adversaries import parse_adversaries

    try:
        adversary_types = parse_adversaries(adversaries)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    if adversary_types and modalities != ["text"]:
        raise _fail("--adversaries needs --modality text (the adversary miners are text models)", 2)
    if online_learning and modalities != ["text"]:
        raise _fail("--online-learning needs --modality text (the learning miner is a text model)", 2)
    if online_checkpoint and not online_learning:
        raise _fail("--online-checkpoint needs --online-learning", 2)
    if online_checkpoint and not Path(online_checkpoint).expanduser().is_file():
        raise _fail(f"--online-checkpoint {online_checkpoint}: no such file", 2)
    opts = DevnetOptions(adversaries=adversary_types, run_dir=run_dir.resolve(), miners=miners, validators=validators, block_time=block_time,
                         tempo=tempo, base_port=base_port, checkpoint=_checkpoint_option(checkpoint),
                         registration=registration, models=kinds, modality=",".join(modalities),
                         emission_shares=shares, keep_going=keep_going, chain=chain,
                         online_learning=online_learning,
                         online_checkpoint=str(Path(online_checkpoint).expanduser().resolve()) if online_checkpoint else "")
    try:
        with quiet_logs():
            result = trio.run(_devnet_main, opts, epochs, report, train_steps, live)
    except BaseException as exc:  # report the first meaningful cause, not a trio traceback
        cause = find_error(exc, TnodeError)
        if cause is not None:
            raise _fail(str(cause)) from None
        if isinstance(exc, ValueError):
            raise _fail(str(exc), 2) from None
        raise
    if result is not None and not result["checks"]["passed"]:
        raise typer.Exit(3)


def _checkpoint_option(value: str) -> str:
    """'builtin' and 'train' pass through; a path must exist and is made absolute (nodes run elsewhere)."""
    if value in ("builtin", "train"):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise _fail(f"--checkpoint {value}: no such file (give a path, 'builtin' or 'train')", 2)
    return str(path.resolve())


async def _devnet_main(opts: Any, epochs: int, report: Path | None, train_steps: int,
                       live: bool) -> dict[str, Any] | None:
    import dataclasses

    import anyio

    from .devnet.run import run_devnet
    from .devnet.training import ensure_checkpoint

    result: dict[str, Any] | None = None
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    console.print(f"{signal.Signals(signum).name}: stopping every node…")
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        if "transformer" in opts.models[:opts.miners] and opts.checkpoint == "train":
            checkpoint = await ensure_checkpoint(opts.run_dir, train_steps, console)
            opts = dataclasses.replace(opts, checkpoint=checkpoint)
        result = await run_devnet(opts, epochs=epochs, report_path=report, console=console, live=live)
        tg.cancel_scope.cancel()
    return result
