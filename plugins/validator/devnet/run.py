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
from rich.console import Console, Group
from rich.live import Live
from tnode.errors import ChainError, TnodeError
from tnode.events import EpochCompleted
from tnode.interfaces import Metagraph
from tnode.node import Node

from .adversaries import OBSERVER_DETECTORS, WARMUP_EPOCHS, adversary_report
from .online import Probe, baseline_miner, online_report
from .plan import DevnetOptions, DevnetPlan, NodeSpec, chain_client, evm_spec, make_plan, use_evm_chain
from .procs import Supervisor, tnode_command
from .quality import heldout_losses, heldout_task_scores
from .report import build_report
from .view import devnet_view

STARTUP_SECONDS = 120.0


class DevnetError(TnodeError):
    """The devnet could not start or a node died."""


@dataclass
class Progress:
    """What the devnet has seen so far; per subnet where the devnet runs several."""

    phase: str = "starting"
    epochs: int = 0  # epochs counted in every subnet (the fewest of any subnet)
    counting: bool = False
    counting_from: int = 0  # the block counting began: an epoch of an earlier block is not counted
    notes: list[str] = field(default_factory=list)
    mgs: dict[int, Metagraph] = field(default_factory=dict)  # netuid → latest metagraph
    epochs_by_subnet: dict[int, int] = field(default_factory=dict)
    emission_by_subnet: dict[int, dict[int, float]] = field(default_factory=dict)  # netuid → uid → tokens
    warmup: int = 0  # epochs still to pass before counting (adversaries: detectors judge first)
    exited: set[str] = field(default_factory=set)  # nodes that exited (with keep_going)
    incentives: list[tuple[int, tuple[float, ...]]] = field(default_factory=list)  # counted epochs: (block, incentive)
    probe: Probe | None = None  # --online-learning: latencies of the learning miner and its baseline

    @property
    def mg(self) -> Metagraph | None:
        """The first subnet's metagraph (the only one of a single-modality devnet)."""
        return self.mgs[min(self.mgs)] if self.mgs else None

    @property
    def emission_total(self) -> dict[int, float]:
        """uid → tokens paid in counted epochs, in the first subnet."""
        return self.emission_by_subnet.setdefault(min(self.mgs) if self.mgs else 1, {})

    def count_epoch(self, netuid: int, emission: tuple[float, ...]) -> None:
        self.epochs_by_subnet[netuid] = self.epochs_by_subnet.get(netuid, 0) + 1
        paid = self.emission_by_subnet.setdefault(netuid, {})
        for uid, e in enumerate(emission):
            paid[uid] = paid.get(uid, 0.0) + float(e)


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


def note_exits(supervisor: Supervisor, progress: Progress) -> None:
    """With ``keep_going``: a node that exited becomes a note in the view, once."""
    for p in supervisor.exited():
        if p.name not in progress.exited:
            progress.exited.add(p.name)
            progress.notes.append(f"{p.name} exited with code {p.popen.returncode}")


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
        "chain": chain_client(plan),
        # With adversaries the observer watches the chain for weight copiers and cabals.
        **({"collusion": OBSERVER_DETECTORS} if plan.options.adversaries else {}),
    }


def print_dashboard(observer: Node, console: Console) -> None:
    """Tell the operator where the observer's dashboard, metrics and event feed are."""
    url = observer.component("exporter", "dashboard").url
    feed = observer.component("exporter", "feed").endpoint
    console.print(f"dashboard: {url}  (metrics {url}metrics, state {url}api/state)", highlight=False, soft_wrap=True)
    console.print(f"events: tnode events --connect {feed}", highlight=False, soft_wrap=True)


def print_query_command(plan: DevnetPlan, console: Console) -> None:
    """Tell the operator how to ask the network from another terminal (``client/node.toml``)."""
    if plan.client is None:
        return
    for modality in plan.subnets.values():
        ask = 'text "def __init__(self" --max-tokens 32' if modality == "text" else "image denoise --in a.png --out b.png"
        console.print(f"query: tnode query {ask} -c {plan.client.config_path}", highlight=False, soft_wrap=True)


async def start_evm_chain(plan: DevnetPlan, supervisor: Supervisor, console: Console) -> None:
    """``chain = "evm"``: run ``tnode evm devchain`` (anvil with the contract and the genesis accounts)
    and point every node.toml at it."""
    chain_dir = plan.options.run_dir / "evm"
    chain_dir.mkdir(parents=True, exist_ok=True)
    spec, out = chain_dir / "spec.json", chain_dir / "chain.json"
    out.unlink(missing_ok=True)
    spec.write_text(json.dumps(evm_spec(plan), indent=2))
    supervisor.spawn("evm-chain", tnode_command("evm", "devchain", "--spec", str(spec), "--out", str(out)),
                     chain_dir / "devchain.log", cwd=chain_dir)
    deadline = anyio.current_time() + STARTUP_SECONDS
    while not out.exists():
        check_alive(supervisor)
        if anyio.current_time() > deadline:
            raise DevnetError(f"the EVM chain was not ready after {STARTUP_SECONDS:.0f} s (see {chain_dir})")
        await anyio.sleep(0.2)
    info = json.loads(out.read_text())
    use_evm_chain(plan, str(info["rpc_url"]), str(info["contract"]))
    console.print(f"evm chain: anvil at {info['rpc_url']}, contract {info['contract']}", highlight=False)


async def register_miners(chain: Any, plan: DevnetPlan, progress: Progress) -> None:
    """Burn-register every miner not yet registered (one block apart when the chain says so)."""
    pending = list(plan.miners)
    deadline = anyio.current_time() + 60.0
    while pending:
        mgs = {n: await chain.metagraph(netuid=n) for n in plan.subnets}
        pending = [m for m in pending if mgs[m.netuid].by_hotkey(m.hotkey.public_hex) is None]
        for miner in list(pending):
            try:
                uid = await chain.burned_register(miner.hotkey, miner.coldkey, netuid=miner.netuid)
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
    command = ("evm", "register") if plan.options.chain == "evm" else ("register",)
    procs = [supervisor.spawn(f"register-{m.name}", tnode_command(*command, "-c", str(m.config_path)),
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
        neuron = mg.by_hotkey(miner.hotkey.public_hex) if miner.netuid == mg.netuid else None
        if neuron is not None and not neuron.addrs:
            await chain.publish_addrs(miner.hotkey, [miner.p2p_addr], miner.hotkey.peer_id, netuid=mg.netuid)


def validators_ready(mg: Metagraph, plan: DevnetPlan) -> bool:
    """Every validator of ``mg``'s subnet has set weights at least once."""
    for v in plan.validators:
        if v.netuid != mg.netuid:
            continue
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
    progress = Progress(warmup=WARMUP_EPOCHS if opts.adversaries else 0)
    labels = {n.hotkey.public_hex: n.name.replace("validator", "val") + (f" {n.model}" if n.model else "")
              for n in plan.nodes}
    started = time.monotonic()
    console.print(f"devnet in {opts.run_dir}: 1 authority, {len(plan.validators)} validators, "
                  f"{len(plan.miners)} miners ({', '.join(m.model for m in plan.miners)})"
                  + (f", subnets {plan.subnets}" if len(plan.subnets) > 1 else ""))
    try:
        if opts.chain == "evm":
            await start_evm_chain(plan, supervisor, console)
        a = plan.authority
        supervisor.start(a.name, a.config_path, a.dir / "node.log")
        await wait_port(a.port, supervisor, STARTUP_SECONDS)
        observer = Node.from_dict(observer_doc(plan), data_dir=opts.run_dir / "observer",
                                  kinds=OBSERVER_KINDS | ({"collusion_detector"} if opts.adversaries else set()))
        async with observer.running():
            chain = observer.chain
            print_dashboard(observer, console)

            async def on_epoch(ev: EpochCompleted) -> None:
                if not progress.counting or ev.netuid not in plan.subnets:
                    return
                if ev.block < progress.counting_from:  # evm: a keeper posts an epoch after its block
                    return
                if progress.warmup > 0:
                    progress.warmup -= 1
                    progress.notes.append(f"warm-up epoch at block {ev.block} not counted")
                    return
                progress.count_epoch(ev.netuid, ev.emission)
                progress.incentives.append((ev.block, tuple(ev.incentive)))
                progress.epochs = min(progress.epochs_by_subnet.get(n, 0) for n in plan.subnets)

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
            print_query_command(plan, console)
            progress.phase = "waiting for validators' first weights"
            async with anyio.create_task_group() as probing:
                if opts.online_learning and plan.client is not None:
                    pair = [m for m in (next(m for m in plan.miners if m.online), baseline_miner(plan.miners)) if m]
                    progress.probe = Probe(plan.client.dir, {m.name: m.p2p_addr for m in pair})
                    probing.start_soon(progress.probe.run)
                with Live(console=console, auto_refresh=False, transient=False) as screen:
                    await watch(chain, plan, supervisor, progress, epochs, screen if live else None, labels)
                probing.cancel_scope.cancel()
            # The report describes the counted epochs: stop counting (the held-out evaluation takes a
            # while, epochs go on) and take the metagraphs as they are now.
            progress.counting = False
            progress.mgs = {n: await chain.metagraph(netuid=n) for n in plan.subnets}
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
        if plan.options.keep_going:
            note_exits(supervisor, progress)
        else:
            check_alive(supervisor)
        try:
            mgs = {n: await chain.metagraph(netuid=n) for n in plan.subnets}
        except ChainError as exc:
            progress.notes.append(f"metagraph read failed: {exc}")
            await anyio.sleep(plan.options.block_time)
            continue
        progress.mgs = mgs
        block = max(mg.block for mg in mgs.values())
        if block != last_block:
            last_block = block
            for mg in mgs.values():
                await publish_missing_addrs(chain, mg, plan.miners)
            if not progress.counting and all(validators_ready(mg, plan) for mg in mgs.values()):
                progress.counting = True
                progress.counting_from = block
                progress.phase = "counting epochs"
                if progress.probe is not None:
                    progress.probe.active = True
            if screen is not None:
                screen.update(Group(*(devnet_view(
                    mg, labels=labels, phase=progress.phase, epochs_done=progress.epochs, epochs_wanted=epochs,
                    emission_total=progress.emission_by_subnet.get(n, {}), notes=progress.notes)
                    for n, mg in mgs.items())), refresh=True)
        await anyio.sleep(min(plan.options.block_time / 2, 0.5))


async def subnet_report(plan: DevnetPlan, netuid: int, progress: Progress, seconds: float,
                        report_path: Path | None, console: Console) -> dict[str, Any]:
    """The report of one subnet: its miners' incentive against their held-out quality."""
    part = plan.part(netuid)
    mg = progress.mgs[netuid]
    miners = part.miners
    picture = None
    if part.options.modality == "text":
        losses = await heldout_losses(part)
    else:  # scored against a hidden truth: quality is the validators' own mean score on held-out tasks
        base = report_path or plan.options.run_dir / "report.json"
        picture = base.with_suffix(".png") if len(plan.subnets) == 1 else base.with_name(f"{base.stem}-{netuid}.png")
        losses = {k: -v for k, v in (await heldout_task_scores(part, picture=picture)).items()}
    report = build_report(
        mg,
        names={n.hotkey.public_hex: n.name for n in part.nodes},
        roles={n.hotkey.public_hex: n.role for n in part.nodes},
        models={m.hotkey.public_hex: m.model for m in miners},
        heldout_loss=losses,
        emission_total=progress.emission_by_subnet.get(netuid, {}),
        epochs=progress.epochs_by_subnet.get(netuid, 0),
        seconds=seconds,
        model_order=part.options.models,
    )
    report["miner_models"] = {m.name: m.doc.get("models", {}).get("main", {}) for m in miners}
    report["modality"] = part.options.modality
    if picture is not None:
        report["picture"] = str(picture)
        report["heldout_quality"] = "minus the validators' mean score on held-out tasks (heldout_loss)"
    checks = report["checks"]
    if plan.options.adversaries:
        checks.update(adversary_report(part, report, console))
        checks["passed"] = bool(checks["passed"] and checks["adversary_checks_passed"])
    if progress.probe is not None:
        report["online_learning"] = online = online_report(part, mg, progress.incentives, progress.probe)
        checks.update(online["checks"])
        checks["passed"] = bool(checks["passed"] and all(online["checks"].values()))
        lat = online["latency"]
        console.print(f"online learning: {online['miner']} incentive per epoch "
                      f"{' '.join(f'{x:.3f}' for x in online['incentive_per_epoch'][online['miner']])}; "
                      f"p99 {lat[online['miner']]['p99_ms']} ms vs {online['baseline']} "
                      f"{lat.get(online['baseline'], {}).get('p99_ms')} ms (ratio {online['p99_ratio']})")
    console.print(f"{'subnet ' + str(netuid) + ' (' + part.options.modality + '): ' if len(plan.subnets) > 1 else ''}"
                  f"incentive order {' > '.join(checks['incentive_order'])}: "
                  f"{'yes' if checks['incentive_ordered'] else 'NO'}; "
                  f"Spearman vs held-out quality {checks['spearman_incentive_vs_heldout_quality']:.3f}; "
                  f"garbage emission share {checks['garbage_emission_share']:.4%}")
    return report


SPLIT_TOLERANCE = 0.01  # relative: each subnet's measured share of emission vs its configured share


def emission_split(plan: DevnetPlan, progress: Progress) -> dict[str, Any]:
    """Each subnet's share of the emission paid in counted epochs, against its configured share."""
    paid = {n: sum(progress.emission_by_subnet.get(n, {}).values()) for n in plan.subnets}
    # Compare equal numbers of epochs: a subnet counted once more (the run stopped between two
    # subnets' epochs of the same block) is scaled back to the common count.
    counted = {n: progress.epochs_by_subnet.get(n, 0) for n in plan.subnets}
    common = min(counted.values())
    scaled = {n: paid[n] * common / counted[n] if counted[n] else 0.0 for n in plan.subnets}
    total = sum(scaled.values())
    out: dict[str, Any] = {}
    for (n, modality), share in zip(plan.subnets.items(), plan.options.shares(), strict=True):
        measured = scaled[n] / total if total else 0.0
        out[str(n)] = {"modality": modality, "configured": share, "measured": measured,
                       "within_tolerance": bool(total) and abs(measured - share) <= SPLIT_TOLERANCE * share}
    return out


async def finish(plan: DevnetPlan, progress: Progress, seconds: float, report_path: Path | None,
                 console: Console) -> dict[str, Any]:
    assert progress.mg is not None
    if len(plan.subnets) == 1:
        report = await subnet_report(plan, 1, progress, seconds, report_path, console)
    else:
        parts = {str(n): await subnet_report(plan, n, progress, seconds, report_path, console) for n in plan.subnets}
        split = emission_split(plan, progress)
        report = {"modality": plan.options.modality, "epochs": progress.epochs, "seconds": seconds,
                  "subnets": parts, "emission_split": split,
                  "checks": {"passed": all(p["checks"]["passed"] for p in parts.values())
                             and all(s["within_tolerance"] for s in split.values()),
                             "subnets_passed": {n: p["checks"]["passed"] for n, p in parts.items()},
                             "emission_split_within_1pct": all(s["within_tolerance"] for s in split.values())}}
        console.print("emission split: " + ", ".join(
            f"subnet {n} ({s['modality']}) {s['measured']:.4f} of {s['configured']:.4f}" for n, s in split.items()))
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {report_path}")
    return report
