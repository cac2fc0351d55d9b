"""``tnode devnet``: start a local network of node processes, watch it, report, stop it.

The devnet process starts the chain authority, then the validators and miners (each ``tnode run``
in its own process), and joins the network itself as an observer: a node with only a transport and
a chain client. Through it, it registers the miners (burning from their genesis balance), publishes
the addresses of miners that have not published their own, shows the metagraph every block, and
counts epochs once every validator has set weights. It stops every process on Ctrl-C, SIGTERM, a
node crash or after the requested epochs.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.live import Live
from tnode.errors import ChainError, TnodeError
from tnode.events import EpochCompleted
from tnode.interfaces import Metagraph
from tnode.node import Node

from .plan import DevnetOptions, DevnetPlan, NodeSpec, make_plan
from .procs import Supervisor, tnode_command
from .quality import heldout_losses, heldout_task_scores
from .report import build_report
from .view import devnet_view

STARTUP_SECONDS = 120.0


class DevnetError(TnodeError):
    """The devnet could not start or a node died."""


@dataclass
class Progress:
    phase: str = "starting"
    epochs: int = 0
    counting: bool = False
    emission_total: dict[int, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    mg: Metagraph | None = None


async def wait_port(port: int, supervisor: Supervisor, timeout: float) -> None:
    """Wait until something listens on 127.0.0.1:``port``; fail early if a node process died."""
    deadline = anyio.current_time() + timeout
    while True:
        check_alive(supervisor)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if anyio.current_time() > deadline:
                raise DevnetError(f"nothing listens on port {port} after {timeout:.0f} s") from None
        await anyio.sleep(0.2)


def check_alive(supervisor: Supervisor) -> None:
    dead = supervisor.exited()
    if dead:
        p = dead[0]
        raise DevnetError(f"node {p.name} exited with code {p.popen.returncode}; last log lines:\n{p.tail()}")


# The observer's operators' view (see docs/operations.md); port 0 picks a free port, printed at start.
DASHBOARD_LISTEN = "127.0.0.1:0"
FEED_BIND = "tcp://127.0.0.1:*"
OBSERVER_KINDS = {"transport", "chain", "exporter"}


def observer_doc(plan: DevnetPlan) -> dict[str, Any]:
    return {
        "exporters": {"dashboard": {"type": "prometheus", "listen": DASHBOARD_LISTEN,
                                    "poll_interval": min(plan.options.block_time, 1.0)},
                      "feed": {"type": "zmq", "bind": FEED_BIND}},
        "node": {"name": "devnet-observer", "create_keys": True},
        "transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"],
                      "bootstrap": [plan.authority.p2p_addr]},
        "chain": {"type": "local", "mode": "client", "authority": plan.authority.p2p_addr,
                  "poll_interval": min(plan.options.block_time, 1.0)},
    }


def print_dashboard(observer: Node, console: Console) -> None:
    """Tell the operator where the observer's dashboard, metrics and event feed are."""
    url = observer.component("exporter", "dashboard").url
    feed = observer.component("exporter", "feed").endpoint
    console.print(f"dashboard: {url}  (metrics {url}metrics, state {url}api/state)", highlight=False, soft_wrap=True)
    console.print(f"events: tnode events --connect {feed}", highlight=False, soft_wrap=True)


async def register_miners(chain: Any, plan: DevnetPlan, progress: Progress) -> None:
    """Burn-register every miner not yet registered (one block apart when the chain says so)."""
    pending = list(plan.miners)
    deadline = anyio.current_time() + 60.0
    while pending:
        mg = await chain.metagraph()
        pending = [m for m in pending if mg.by_hotkey(m.hotkey.public_hex) is None]
        for miner in list(pending):
            try:
                uid = await chain.burned_register(miner.hotkey, miner.coldkey)
            except ChainError as exc:
                if exc.code != "too_many_registrations":
                    raise DevnetError(f"registering {miner.name} failed: {exc}") from exc
                break
            progress.notes.append(f"registered {miner.name} as uid {uid}")
            pending.remove(miner)
        if pending:
            if anyio.current_time() > deadline:
                raise DevnetError(f"could not register {[m.name for m in pending]} within 60 s")
            await anyio.sleep(plan.options.block_time)


async def register_miners_pow(plan: DevnetPlan, supervisor: Supervisor) -> None:
    """``tnode register -c <miner>/node.toml`` (proof of work) for every miner, in parallel.

    Runs before the miners start: the command opens the miner's own transport and chain client.
    """
    procs = [supervisor.spawn(f"register-{m.name}", tnode_command("register", "-c", str(m.config_path)),
                              m.dir / "register.log", cwd=m.dir) for m in plan.miners]
    deadline = anyio.current_time() + STARTUP_SECONDS
    while any(p.alive() for p in procs):
        if anyio.current_time() > deadline:
            raise DevnetError("proof-of-work registration did not finish in time")
        await anyio.sleep(0.2)
    for p in procs:
        supervisor.procs.remove(p)
        if p.popen.returncode != 0:
            raise DevnetError(f"{p.name} failed (exit {p.popen.returncode}):\n{p.tail()}")


async def publish_missing_addrs(chain: Any, mg: Metagraph, miners: list[NodeSpec]) -> None:
    """Publish the listen address of miners whose address the chain does not know yet.

    The devnet holds each node's keys (it made them), so it signs with the miner's own hotkey.
    """
    for miner in miners:
        neuron = mg.by_hotkey(miner.hotkey.public_hex)
        if neuron is not None and not neuron.addrs:
            await chain.publish_addrs(miner.hotkey, [miner.p2p_addr], miner.hotkey.peer_id)


def validators_ready(mg: Metagraph, plan: DevnetPlan) -> bool:
    """Every validator has set weights at least once."""
    for v in plan.validators:
        neuron = mg.by_hotkey(v.hotkey.public_hex)
        if neuron is None or neuron.last_update <= max(neuron.registered_at, 0):
            return False
    return True


async def run_devnet(opts: DevnetOptions, *, epochs: int = 0, report_path: Path | None = None,
                     console: Console | None = None, live: bool = True) -> dict[str, Any] | None:
    """Run the devnet until ``epochs`` epochs were counted (forever when 0) or a signal; returns the report."""
    console = console or Console()
    plan = make_plan(opts)
    supervisor = Supervisor()
    progress = Progress()
    labels = {n.hotkey.public_hex: n.name.replace("validator", "val") + (f" {n.model}" if n.model else "")
              for n in plan.nodes}
    started = time.monotonic()
    console.print(f"devnet in {opts.run_dir}: 1 authority, {len(plan.validators)} validators, "
                  f"{len(plan.miners)} miners ({', '.join(m.model for m in plan.miners)})")
    try:
        a = plan.authority
        supervisor.start(a.name, a.config_path, a.dir / "node.log")
        await wait_port(a.port, supervisor, STARTUP_SECONDS)
        observer = Node.from_dict(observer_doc(plan), data_dir=opts.run_dir / "observer", kinds=OBSERVER_KINDS)
        async with observer.running():
            chain = observer.chain
            print_dashboard(observer, console)

            async def on_epoch(ev: EpochCompleted) -> None:
                if not progress.counting:
                    return
                progress.epochs += 1
                for uid, e in enumerate(ev.emission):
                    progress.emission_total[uid] = progress.emission_total.get(uid, 0.0) + float(e)

            observer.bus.subscribe(EpochCompleted, on_epoch, name="devnet-epochs")
            console.print(f"registering miners ({opts.registration})")
            if opts.registration == "burn":
                await register_miners(chain, plan, progress)
            elif opts.registration == "pow":
                await register_miners_pow(plan, supervisor)
            # Miners first: a node listens once its model is loaded (models start before the transport),
            # so validators meet ready miners and their first scores mean something.
            console.print("starting miners")
            for spec in plan.miners:
                supervisor.start(spec.name, spec.config_path, spec.dir / "node.log")
            for spec in plan.miners:
                await wait_port(spec.port, supervisor, STARTUP_SECONDS)
            console.print("starting validators")
            for spec in plan.validators:
                supervisor.start(spec.name, spec.config_path, spec.dir / "node.log")
            progress.phase = "waiting for validators' first weights"
            with Live(console=console, auto_refresh=False, transient=False) as screen:
                await watch(chain, plan, supervisor, progress, epochs, screen if live else None, labels)
            if epochs:
                return await finish(plan, progress, time.monotonic() - started, report_path, console)
        return None
    finally:
        with anyio.CancelScope(shield=True):
            codes = supervisor.stop_all()
        bad = {k: v for k, v in codes.items() if v not in (0, -signal.SIGTERM, 130, None)}
        if bad:
            console.print(f"[yellow]nodes exited with codes {bad}; logs under {opts.run_dir}[/]")


async def watch(chain: Any, plan: DevnetPlan, supervisor: Supervisor, progress: Progress, epochs: int,
                screen: Live | None, labels: dict[str, str]) -> None:
    """Refresh the view every block until ``epochs`` epochs were counted (or forever)."""
    last_block = -1
    while not (epochs and progress.epochs >= epochs):
        check_alive(supervisor)
        try:
            mg = await chain.metagraph()
        except ChainError as exc:
            progress.notes.append(f"metagraph read failed: {exc}")
            await anyio.sleep(plan.options.block_time)
            continue
        progress.mg = mg
        if mg.block != last_block:
            last_block = mg.block
            await publish_missing_addrs(chain, mg, plan.miners)
            if not progress.counting and validators_ready(mg, plan):
                progress.counting = True
                progress.phase = "counting epochs"
            if screen is not None:
                screen.update(devnet_view(mg, labels=labels, phase=progress.phase, epochs_done=progress.epochs,
                                          epochs_wanted=epochs, emission_total=progress.emission_total,
                                          notes=progress.notes), refresh=True)
        await anyio.sleep(min(plan.options.block_time / 2, 0.5))


async def finish(plan: DevnetPlan, progress: Progress, seconds: float, report_path: Path | None,
                 console: Console) -> dict[str, Any]:
    assert progress.mg is not None
    miners = plan.miners
    picture = None
    if plan.options.modality == "text":
        losses = await heldout_losses(plan)
    else:  # scored against a hidden truth: quality is the validators' own mean score on held-out tasks
        picture = (report_path or plan.options.run_dir / "report.json").with_suffix(".png")
        losses = {k: -v for k, v in (await heldout_task_scores(plan, picture=picture)).items()}
    report = build_report(
        progress.mg,
        names={n.hotkey.public_hex: n.name for n in plan.nodes},
        roles={n.hotkey.public_hex: n.role for n in plan.nodes},
        models={m.hotkey.public_hex: m.model for m in miners},
        heldout_loss=losses,
        emission_total=progress.emission_total,
        epochs=progress.epochs,
        seconds=seconds,
        model_order=plan.options.models,
    )
    report["miner_models"] = {m.name: m.doc.get("models", {}).get("main", {}) for m in miners}
    report["modality"] = plan.options.modality
    if picture is not None:
        report["picture"] = str(picture)
        report["heldout_quality"] = "minus the validators' mean score on held-out tasks (heldout_loss)"
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {report_path}")
    checks = report["checks"]
    console.print(f"incentive order {' > '.join(checks['incentive_order'])}: "
                  f"{'yes' if checks['incentive_ordered'] else 'NO'}; "
                  f"Spearman vs held-out quality {checks['spearman_incentive_vs_heldout_quality']:.3f}; "
                  f"garbage emission share {checks['garbage_emission_share']:.4%}")
    return report
