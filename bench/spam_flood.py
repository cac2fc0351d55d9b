"""Anti-spam under a flood: a staked validator's latency and success rate, alone and while N
unregistered senders flood the node it queries.

    python bench/spam_flood.py            # full run
    python bench/spam_flood.py --quick    # short run

Processes (all on 127.0.0.1): the **node** (local chain authority, libp2p transport, a modality,
the anti-spam filters), the **validator** (this process: a transport-only node whose hotkey holds a
uid and stake at genesis) and N **flooders** (transport-only nodes with fresh, unregistered
hotkeys, each keeping ``--in-flight`` requests outstanding as fast as the node answers them).

Phase 1 measures the validator's sequential requests alone; phase 2 repeats them while the
flooders run. Printed side by side: p50/p99 latency, success rate, the node's RSS, the cores each
process kept busy and the time the node's and the validator's loops waited for a core (from
/proc/<pid>/schedstat: on a small machine the flooders compete for the CPU); the flood's offered
rate and how it was refused; and, as a baseline for the cost of the filters themselves, their
in-process admission cost per request. ``--profile`` adds a cProfile of the node. Goal: p99 under
flood ≤ 2× p99 alone, success ≥ 99 %, RSS bounded. Every process is bounded in time and killed on
exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
# Cheapest refusal first: a flood of strangers is refused by one dict lookup, before the body is read.
FILTERS = {
    "registered": {"type": "registered_only"},
    "size": {"type": "limits"},
    "rate": {"type": "token_bucket", "rate": 1000.0, "burst": 2000.0},  # above the validator's own pace
    "priority": {"type": "stake_priority", "max_concurrent": 4, "max_queue": 64, "max_wait": 5.0},
}


# ============================================================================ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of ``pid`` in MiB, from /proc."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def runqueue_wait(pid: int | str) -> float:
    """Seconds the main thread of ``pid`` has spent runnable but waiting for a core (/proc schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):  # kernels without schedstats
        return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def transport_table(port: int | None = None) -> dict[str, Any]:
    listen = [f"/ip4/127.0.0.1/tcp/{port}"] if port else ["/ip4/127.0.0.1/tcp/" + str(free_port())]
    return {"type": "libp2p", "listen": listen}


def client_doc(data_dir: Path) -> dict[str, Any]:
    return {"node": {"data_dir": str(data_dir), "create_keys": True}, "transport": transport_table()}


def quiet_logs() -> None:
    import logging

    import libp2p.network.auto_connector  # noqa: F401  (sets its own logger to INFO on import)
    from tnode.logs import configure_logging

    configure_logging("warning", "json")
    logging.getLogger("libp2p.network.auto_connector").setLevel(logging.WARNING)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ============================================================================ the node under test
def serve(config_file: str, ready_file: str, stats_file: str, stop_file: str, limit: float,
          profile_file: str = "") -> None:
    """Run the node until ``stop_file`` appears (or ``limit`` seconds pass); then dump filter stats.

    With ``profile_file``, the whole run is profiled (cProfile) and the statistics written there.
    """
    import anyio
    import trio
    from tnode.node import Node

    quiet_logs()
    node = Node.from_file(config_file, create_keys=True)

    async def main() -> None:
        async with node.running():
            Path(ready_file).write_text(json.dumps({"addrs": node.transport.listen_addrs(),
                                                    "hotkey": node.hotkey.public_hex}))
            deadline = anyio.current_time() + limit
            while not Path(stop_file).exists() and anyio.current_time() < deadline:
                await anyio.sleep(0.05)
            stats = {name: flt.stats() for name, flt in node.components_of("spam_filter").items()}
            Path(stats_file).write_text(json.dumps(stats))

    if not profile_file:
        trio.run(main)
        return
    import cProfile

    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting for a core is not work
    profiler.enable()
    try:
        trio.run(main)
    finally:
        profiler.disable()
        profiler.dump_stats(profile_file)


# ============================================================================ a flooder
def flood(target: str, modality: str, body_json: str, data_dir: str, in_flight: int, seconds: float,
          ready_file: str, stop_file: str, out_file: str, nice: int = 0) -> None:
    """Send requests from a fresh hotkey, ``in_flight`` at a time, until told to stop.

    ``nice`` > 0 lowers this process's CPU priority: on a small machine the flooders otherwise
    compete with the node for the cores, which real attackers on their own machines do not.
    """
    if nice:
        os.nice(nice)
    import anyio
    import trio
    from tnode.errors import TaskError, TnodeError
    from tnode.node import Node

    quiet_logs()
    node = Node.from_dict(client_doc(Path(data_dir)), data_dir=data_dir)
    body = json.loads(body_json)
    codes: Counter[str] = Counter()

    async def worker(peer: str, stop_at: float) -> None:
        while anyio.current_time() < stop_at and not Path(stop_file).exists():
            try:
                await node.transport.request(peer, modality, "next_token", body, timeout=5.0)
                codes["ok"] += 1
            except TaskError as exc:
                codes[exc.code] += 1
            except TnodeError as exc:
                codes[type(exc).__name__] += 1
                await anyio.sleep(0.01)

    async def main() -> None:
        async with node.running():
            peer = await node.transport.connect(target)
            Path(ready_file).write_text("ready")
            began = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for _ in range(in_flight):
                    tg.start_soon(worker, peer, began + seconds)
            Path(out_file).write_text(json.dumps({"codes": dict(codes), "seconds": anyio.current_time() - began}))

    trio.run(main)


# ============================================================================ the validator (this process)
async def validator_phase(node: Any, peer: str, modality: str, body: dict[str, Any], count: int,
                          timeout: float) -> tuple[list[float], Counter[str]]:
    """``count`` sequential requests; returns the latencies of the successful ones and outcome counts."""
    from tnode.errors import TaskError, TnodeError

    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    for _ in range(count):
        began = time.perf_counter()
        try:
            await node.transport.request(peer, modality, "next_token", body, timeout=timeout)
        except TaskError as exc:
            outcomes[exc.code] += 1
            continue
        except TnodeError as exc:
            outcomes[type(exc).__name__] += 1
            continue
        latencies.append(time.perf_counter() - began)
        outcomes["ok"] += 1
    return latencies, outcomes


def filter_cost(n: int) -> dict[str, float]:
    """Microseconds per admission through the four filters, in process (no network)."""
    import trio
    from tnode.config import load_table
    from tnode.errors import TaskError
    from tnode.interfaces import InboundRequest, Metagraph, Neuron
    from tnode.plugins.antispam import bucket, config, limits, priority, registered
    from tnode.plugins.antispam.metaview import MetagraphView

    class Bare:
        chain = object()
        bus = None
        log = None

    node = Bare()
    view = MetagraphView.of(node)
    staked = "ab" * 32
    view.load(Metagraph(1, 1, tuple(Neuron(uid=i, hotkey=f"{i:064x}", coldkey="", stake=float(i)) for i in range(256))
                        + (Neuron(uid=256, hotkey=staked, coldkey="", stake=1e6),)))
    filters = [
        registered.RegisteredOnly(node, "registered", load_table(config.RegisteredOnlyConfig, {})),
        limits.Limits(node, "size", load_table(config.LimitsConfig, {})),
        bucket.TokenBucket(node, "rate", load_table(config.TokenBucketConfig, {"rate": 1e9, "burst": 1e9})),
        priority.StakePriority(node, "priority", load_table(config.StakePriorityConfig, {})),
    ]
    body = {"tokens": list(range(128)), "k": 16}

    def req(sender: str) -> InboundRequest:
        return InboundRequest(sender, "peer", "text", "next_token", body, 0, 1200)

    async def run() -> dict[str, float]:
        good, bad = req(staked), req("cd" * 32)
        began = time.perf_counter()
        for _ in range(n):
            releases = []
            for flt in filters:
                r = await flt.admit(good)
                if r is not None:
                    releases.append(r)
            for r in releases:
                r()
        admit_us = (time.perf_counter() - began) / n * 1e6
        began = time.perf_counter()
        for _ in range(n):
            try:
                for flt in filters:
                    await flt.admit(bad)
            except TaskError:
                pass
        refuse_us = (time.perf_counter() - began) / n * 1e6
        return {"admit_us": admit_us, "refuse_us": refuse_us}

    return trio.run(run)


def node_toml(root: Path, validator_hotkey: str, validator_coldkey: str, port: int, modality: str,
              delay_ms: int, filters: bool, tarpit: bool = True) -> Path:
    def tables(prefix: str, items: dict[str, dict[str, Any]]) -> str:
        out = []
        for name, table in items.items():
            out.append(f"[{prefix}.{name}]")
            out += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
            out.append("")
        return "\n".join(out)

    modality_table = {"type": modality}
    if modality == "echo" and delay_ms:
        modality_table["delay_ms"] = delay_ms
    text = f"""
[node]
name = "spam-flood"
data_dir = "{root / 'server'}"
create_keys = true

[log]
level = "warning"

[transport]
type = "libp2p"
listen = ["/ip4/127.0.0.1/tcp/{port}"]
{"" if tarpit else "tarpit_after = 0"}

[chain]
type = "local"
block_time = 1.0

[[chain.genesis.accounts]]
coldkey = "{validator_coldkey}"
hotkey = "{validator_hotkey}"
balance = 10.0
stake = 100.0
register = true

{tables("modalities", {modality: modality_table})}
{tables("spam", FILTERS) if filters else ""}
"""
    path = root / "node.toml"
    path.write_text(text)
    return path


# ============================================================================ child processes
class Children:
    """Starts this bench's child processes (each logging to its own file under ``root``) and waits for them."""

    def __init__(self, root: Path, script: Path, procs: list[subprocess.Popen[bytes]]) -> None:
        self.root, self.script, self.procs = root, script, procs

    def spawn(self, *argv: str, label: str = "") -> subprocess.Popen[bytes]:
        with open(self.root / f"{label or argv[0]}-{len(self.procs)}.log", "wb") as log:  # the child keeps a copy
            p = subprocess.Popen([sys.executable, str(self.script), *argv], stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(p)
        return p

    def wait_for(self, path: Path, proc: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
        """Wait until ``proc`` writes ``path``; exit with a pointer to the logs if it dies or takes too long."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start; see the logs in {self.root}")
            time.sleep(0.05)

    def close(self, *, keep: bool) -> None:
        """Kill the children still running; remove ``root`` unless ``keep`` (then say where it is)."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if keep:
            print(f"logs and data kept in {self.root}", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


# ============================================================================ orchestration
def orchestrate(args: argparse.Namespace) -> int:
    import trio
    from tnode.keys import Keypair
    from tnode.node import Node

    quiet_logs()
    cost = filter_cost(2_000 if args.quick else 20_000)
    root = Path(tempfile.mkdtemp(prefix="spam-flood-"))
    validator, cold = Keypair.generate(), Keypair.generate()
    port = free_port()
    config = node_toml(root, validator.public_hex, cold.public_hex, port, args.modality, args.delay_ms,
                       not args.no_filters, not args.no_tarpit)
    body = {"tokens": list(range(64)), "k": 8}
    procs: list[subprocess.Popen[bytes]] = []
    limit = args.seconds * 3 + 120
    profile = root / "serve.prof" if args.profile else None

    children = Children(root, HERE, procs)
    spawn, wait_for = children.spawn, children.wait_for

    ready, stats_file, stop = root / "ready.json", root / "stats.json", root / "stop"
    server = spawn("serve", str(config), str(ready), str(stats_file), str(stop), str(limit), str(profile or ""))
    finished = False
    try:
        wait_for(ready, server, "the node")
        target = next(a for a in json.loads(ready.read_text())["addrs"] if "/p2p/" in a)
        client = Node.from_dict(client_doc(root / "validator"), data_dir=root / "validator", hotkey=validator)
        results: dict[str, Any] = {}

        flooders: list[tuple[subprocess.Popen[bytes], Path]] = []

        def cpu_now() -> tuple[float, float, float]:
            """CPU seconds so far of the node, this process (the validator) and the flooders."""
            me = os.times()
            return (cpu_seconds(server.pid), me.user + me.system,
                    sum(cpu_seconds(p.pid) for p, _ in flooders if p.poll() is None))

        async def measured(phase: str) -> None:
            cpu, began = cpu_now(), time.monotonic()
            waits = runqueue_wait(server.pid), runqueue_wait("self")
            results[phase] = await validator_phase(client, peer, args.modality, body, args.requests, args.timeout)
            seconds = time.monotonic() - began
            results[f"{phase}_seconds"] = seconds
            # Cores kept busy during the phase: node, validator, flooders.
            results[f"{phase}_cpu"] = [(after - before) / seconds for before, after in zip(cpu, cpu_now(), strict=True)]
            results[f"rss_{phase}"] = rss_mib(server.pid)
            # Time spent waiting for a core, per validator request: node, validator.
            results[f"{phase}_wait"] = [(runqueue_wait(pid) - before) / args.requests
                                        for pid, before in zip((server.pid, "self"), waits, strict=True)]

        async def phases() -> None:
            nonlocal peer
            async with client.running():
                peer = await client.transport.connect(target)
                await validator_phase(client, peer, args.modality, body, 50, args.timeout)  # warm up
                results["rss_start"] = rss_mib(server.pid)
                await measured("alone")
                for i in range(args.flooders):
                    flag = root / f"flood-ready-{i}"
                    p = spawn("flood", target, args.modality, json.dumps(body), str(root / f"flooder-{i}"),
                              str(args.in_flight), str(args.seconds), str(flag), str(stop),
                              str(root / f"flood-{i}.json"), str(args.flood_nice))
                    flooders.append((p, flag))
                for p, flag in flooders:
                    await trio.to_thread.run_sync(wait_for, flag, p, "a flooder")
                await trio.sleep(1.0)  # let the flood reach full rate
                await measured("flood")

        peer = ""
        trio.run(phases)
        stop.write_text("stop")
        deadline = time.monotonic() + 30
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        report(args, results, cost, root)
        if profile is not None:
            print_profile(profile)
        finished = True
    finally:
        stop.touch()
        children.close(keep=args.keep or not finished)
    return 0


def print_profile(path: Path, top: int = 25) -> None:
    """The node's functions that took the most CPU time themselves (whole run, flood included)."""
    import io
    import pstats

    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    print("node profile (cProfile, sorted by own time):")
    print(text[text.find("   ncalls"):])


def report(args: argparse.Namespace, results: dict[str, Any], cost: dict[str, float], root: Path) -> None:
    (alone, out_a), (flood_lat, out_f) = results["alone"], results["flood"]
    flood_codes: Counter[str] = Counter()
    flood_secs = []
    for i in range(args.flooders):
        path = root / f"flood-{i}.json"
        if path.exists():
            doc = json.loads(path.read_text())
            flood_codes.update(doc["codes"])
            flood_secs.append(doc["seconds"])
    sent = sum(flood_codes.values())
    rate = sent / statistics.median(flood_secs) if flood_secs else 0.0
    stats = json.loads((root / "stats.json").read_text()) if (root / "stats.json").exists() else {}

    def ms(v: float) -> str:
        return f"{v * 1000:8.2f}"

    def success(outcomes: Counter[str]) -> float:
        return outcomes["ok"] / max(1, sum(outcomes.values())) * 100

    p50a, p50f = percentile(alone, 50), percentile(flood_lat, 50)
    p99a, p99f = percentile(alone, 99), percentile(flood_lat, 99)
    ratio = p99f / p99a if p99a else float("inf")
    print(f"spam_flood: node = local chain + libp2p + {args.modality}"
          + (f" (delay {args.delay_ms} ms)" if args.modality == "echo" else "")
          + (" + filters " + ", ".join(v["type"] for v in FILTERS.values()) if not args.no_filters else " (no filters)")
          + ("" if not args.no_tarpit else "; slow refusals off"))
    print(f"flood: {args.flooders} processes × {args.in_flight} in flight (nice {args.flood_nice}), "
          f"unregistered hotkeys; "
          f"{sent} requests, {rate:.0f} req/s offered; outcomes {dict(flood_codes)}")
    print(f"{'validator (' + str(args.requests) + ' sequential requests)':44s} {'alone':>10s} {'flood':>10s} {'ratio':>7s}")
    print(f"{'p50 latency (ms)':44s} {ms(p50a):>10s} {ms(p50f):>10s} {p50f / p50a:7.2f}")
    print(f"{'p99 latency (ms)':44s} {ms(p99a):>10s} {ms(p99f):>10s} {ratio:7.2f}")
    print(f"{'success (%)':44s} {success(out_a):10.2f} {success(out_f):10.2f}")
    if set(out_f) - {"ok"}:
        print(f"{'  failures under flood':44s} {dict(out_f)}")
    for i, who in enumerate(("node", "validator", "flooders")):
        print(f"{'CPU, cores busy: ' + who:44s} {results['alone_cpu'][i]:10.2f} {results['flood_cpu'][i]:10.2f}")
    for i, who in enumerate(("node", "validator")):
        print(f"{'waiting for a core per request (ms): ' + who:44s} {ms(results['alone_wait'][i]):>10s} "
              f"{ms(results['flood_wait'][i]):>10s}")
    if rate > 0:
        extra = (results["flood_cpu"][0] - results["alone_cpu"][0]) / rate * 1e6
        print(f"{'  node CPU per flood request (µs)':44s} {'':10s} {extra:10.0f}")
    print(f"{'node RSS (MiB), current / peak':44s} {results['rss_alone'][0]:6.1f}/{results['rss_alone'][1]:<6.1f}"
          f" {results['rss_flood'][0]:6.1f}/{results['rss_flood'][1]:<6.1f} (start {results['rss_start'][0]:.1f})")
    print(f"filter cost in process: admit {cost['admit_us']:.1f} µs, refuse {cost['refuse_us']:.1f} µs per request")
    for name, s in stats.items():
        print(f"  [spam.{name}] {s}")
    ok = ratio <= 2.0 and success(out_f) >= 99.0
    print(f"goal p99 ratio ≤ 2 and success ≥ 99 %: {'met' if ok else 'NOT met'}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]), sys.argv[7])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "flood":
        a = sys.argv[2:]
        flood(a[0], a[1], a[2], a[3], int(a[4]), float(a[5]), a[6], a[7], a[8], int(a[9]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run: fewer requests, fewer flooders")
    parser.add_argument("--flooders", type=int, default=None, help="flooding processes (default 4; quick 2)")
    parser.add_argument("--in-flight", type=int, default=16, help="requests each flooder keeps outstanding")
    parser.add_argument("--requests", type=int, default=None,
                        help="validator requests per phase (default 2000; quick 400)")
    parser.add_argument("--seconds", type=float, default=None, help="longest a flooder runs (default 120; quick 40)")
    parser.add_argument("--modality", default="echo", help="modality the node serves (echo or text)")
    parser.add_argument("--delay-ms", type=int, default=2, help="echo: simulated work per task")
    parser.add_argument("--timeout", type=float, default=5.0, help="validator request timeout (s)")
    parser.add_argument("--no-filters", action="store_true", help="run the node without spam filters")
    parser.add_argument("--no-tarpit", action="store_true",
                        help="answer abusive peers' refusals at once (transport tarpit_after = 0)")
    parser.add_argument("--profile", action="store_true", help="profile the node (cProfile) and print its top functions")
    parser.add_argument("--flood-nice", type=int, default=0,
                        help="run the flooders at this niceness (e.g. 10: their CPU does not compete with "
                             "the node's, as for attackers on other machines)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    args = parser.parse_args()
    args.flooders = args.flooders if args.flooders is not None else (2 if args.quick else 4)
    args.requests = args.requests if args.requests is not None else (400 if args.quick else 2000)
    args.seconds = args.seconds if args.seconds is not None else (40.0 if args.quick else 120.0)
    os.environ.setdefault("TNODE_DISABLE_PLUGIN_AUTOLOAD", "1")
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
