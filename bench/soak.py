"""Soak: a node under mixed hostile load for N minutes, against the same node serving alone.

    python bench/soak.py              # 5 minutes of soak
    python bench/soak.py --quick      # 1 minute
    python bench/soak.py --minutes 30

Processes (all on 127.0.0.1): the **node** (local chain authority, libp2p, the echo modality, the
anti-spam filters, as in ``bench/spam_flood.py``), the **validator** (this process: a registered,
staked hotkey sending sequential legitimate requests) and four **attackers**, each bounded in time:

- ``fuzz``: validly signed frames whose header values are wrong (odd dtypes and shapes, huge and
  negative numbers, nested containers, long strings and nonces), each on a fresh stream;
- ``stall``: streams that send half of a maximal frame and then nothing;
- ``churn``: connect / disconnect cycles from a rotating set of fresh peer ids;
- ``flood``: an unregistered sender with many requests in flight.

Phase 1 measures the validator alone; phase 2 repeats it for ``--minutes`` while the attackers
run, sampling the node's RSS and open file descriptors every few seconds. Goals (one line each):
legitimate success ≥ 99.9 %, p99 ≤ 2× p99 alone, RSS and fds flat: the median of the last quarter
of the samples at most ``--rss-bound`` MiB / ``--fd-bound`` descriptors above the first quarter's.
Every process is bounded in time and killed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

import spam_flood as sf  # noqa: E402  (shares the node, the flooder and the measuring helpers)

ATTACKS = ("fuzz", "stall", "churn", "flood")


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


# ============================================================================ hostile frames
def hostile_header(rng: random.Random, key: Any, receiver: str) -> tuple[dict[str, Any], bytes, bytes]:
    """A signed header with one or more wrong values, and the body and payload it describes."""
    from tnode import wire

    body = b"{}"
    payload = bytes(rng.randrange(64))
    weird: list[Any] = [[1], {"a": 1}, None, True, -1, 2**63, 2**64 + 1, -(2**63), 1.5, "x" * 40_000, [[[]]],
                        "float32", "complex128", "object", "<f4", "S10", ""]
    header: dict[str, Any] = {
        "v": 1, "k": "req", "m": "echo", "t": "echo", "s": key.public_hex, "r": receiver,
        "n": os.urandom(16).hex(), "ts": int(time.time() * 1000), "h": wire.body_hash(body, payload),
        "bl": len(body), "pl": len(payload), "pd": {"dtype": "uint8", "shape": [len(payload)]}, "re": "", "c": "",
    }
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(["pd.dtype", "pd.shape", "pd", "n", "ts", "m", "t", "re", "c", "bl", "pl", "extra"])
        if field == "pd.dtype":
            header["pd"] = {**(header["pd"] if isinstance(header["pd"], dict) else {}), "dtype": rng.choice(weird)}
        elif field == "pd.shape":
            header["pd"] = {"dtype": "uint8", "shape": rng.choice(
                [[2**63], [0] * 65, [2**32, 2**32, 2**32], [-1], [1.5], "1", [[1]], [True], []])}
        elif field == "pd":
            header["pd"] = rng.choice(weird)
        elif field == "n":
            header["n"] = rng.choice(["a" * 32_000, "", "zz", 7])
        elif field in ("bl", "pl"):
            header[field] = rng.choice(weird)
        elif field == "extra":
            header["pd"] = {"dtype": "uint8", "shape": [len(payload)], "order": "F"}
        else:
            header[field] = rng.choice(weird)
    try:
        header["sig"] = key.sign(wire.signing_bytes(header)).hex()
    except Exception:  # a value orjson cannot serialize: send it unsigned, it is refused all the same
        header["sig"] = ""
    return header, body, payload


def hostile_frame(rng: random.Random, key: Any, receiver: str) -> bytes:
    import orjson
    from tnode import wire

    header, body, payload = hostile_header(rng, key, receiver)
    raw = orjson.dumps(header, option=orjson.OPT_PASSTHROUGH_DATACLASS)
    if rng.random() < 0.1:  # now and then, a header that is not even JSON
        raw = raw[: rng.randrange(1, len(raw))]
    inner = wire.PREFIX.pack(len(raw)) + raw + body + payload
    return wire.PREFIX.pack(len(inner)) + inner


# ============================================================================ attackers
def attack(kind: str, target: str, data_dir: str, seconds: float, ready_file: str, stop_file: str,
           out_file: str) -> None:
    """Run one attacker until ``seconds`` pass or ``stop_file`` appears; write its counts."""
    import anyio
    import trio
    from libp2p.peer.id import ID
    from tnode.node import Node

    sf.quiet_logs()
    counts: Counter[str] = Counter()
    node = Node.from_dict(sf.client_doc(Path(data_dir)), data_dir=data_dir)
    rng = random.Random(7)

    def going(stop_at: float) -> bool:
        return anyio.current_time() < stop_at and not Path(stop_file).exists()

    async def fuzz(peer: str, stop_at: float) -> None:
        receiver = node.transport._peer(peer).hotkey
        pid = ID.from_base58(peer)
        while going(stop_at):
            try:
                stream = await node.transport.host.new_stream(pid, [node.transport.TASK_PROTOCOL])
                await stream.write(hostile_frame(rng, node.hotkey, receiver))
                with trio.move_on_after(2):
                    await stream.read(65536)
                await stream.reset()
                counts["sent"] += 1
            except Exception as exc:
                counts[type(exc).__name__] += 1
                await trio.sleep(0.05)
                with trio.move_on_after(2):
                    await node.transport.connect(target)
            await trio.sleep(0.02)

    async def stall(peer: str, stop_at: float) -> None:
        from tnode import wire

        pid = ID.from_base58(peer)
        size = 8 * 1024 * 1024 - 8

        async def one() -> None:
            while going(stop_at):
                try:
                    stream = await node.transport.host.new_stream(pid, [node.transport.TASK_PROTOCOL])
                    await stream.write(wire.PREFIX.pack(size) + bytes(size // 2))
                    counts["stalled"] += 1
                    with trio.move_on_after(max(0.0, stop_at - anyio.current_time())):
                        while await stream.read(65536):  # until the node gives up on it
                            pass
                    counts["closed_by_node"] += 1
                except Exception as exc:
                    counts[type(exc).__name__] += 1
                    await trio.sleep(0.2)
                    with trio.move_on_after(2):
                        await node.transport.connect(target)

        async with trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(one)

    async def churn(peer: str, stop_at: float) -> None:
        import multiaddr
        from tnode.keys import Keypair
        from tnode.plugins.libp2p.host import build_host

        addr = multiaddr.Multiaddr(target.split("/p2p/")[0])
        pid = ID.from_base58(peer)
        while going(stop_at):
            host = build_host(Keypair.generate(), max_connections=4, listen=[])
            try:
                async with host.run([]):
                    for _ in range(20):  # a few cycles per fresh identity
                        if not going(stop_at):
                            break
                        try:
                            with trio.fail_after(5):
                                await host.get_network().dial_addr(addr, pid)
                                await host.disconnect(pid)
                            counts["cycles"] += 1
                        except Exception as exc:
                            counts[type(exc).__name__] += 1
                            await trio.sleep(0.1)
                    with trio.CancelScope(shield=True), trio.move_on_after(5):
                        await host.close()
            except Exception as exc:
                counts[f"host:{type(exc).__name__}"] += 1
                await trio.sleep(0.2)

    async def main() -> None:
        async with node.running():
            peer = await node.transport.connect(target)
            Path(ready_file).write_text("ready")
            began = anyio.current_time()
            await {"fuzz": fuzz, "stall": stall, "churn": churn}[kind](peer, began + seconds)
            Path(out_file).write_text(json.dumps({"counts": dict(counts), "seconds": anyio.current_time() - began}))

    trio.run(main)


# ============================================================================ orchestration
def orchestrate(args: argparse.Namespace) -> int:
    import logging

    import trio
    from tnode.keys import Keypair
    from tnode.node import Node

    sf.quiet_logs()
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # the dead node's dial errors are counted, not printed
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    validator, cold = Keypair.generate(), Keypair.generate()
    config = sf.node_toml(root, validator.public_hex, cold.public_hex, sf.free_port(), "echo", args.delay_ms, True)
    body = {"tokens": list(range(64)), "k": 8}
    soak_seconds = args.minutes * 60
    procs: list[subprocess.Popen[bytes]] = []

    children = sf.Children(root, HERE, procs)

    def spawn(*argv: str) -> subprocess.Popen[bytes]:
        return children.spawn(*argv, label=f"{argv[0]}-{argv[1]}" if argv[0] == "attack" else argv[0])

    wait_for = children.wait_for

    ready, stats_file, stop = root / "ready.json", root / "stats.json", root / "stop"
    server = spawn("serve", str(config), str(ready), str(stats_file), str(stop), str(soak_seconds * 2 + 300), "")
    results: dict[str, Any] = {"samples": []}
    finished = False
    try:
        wait_for(ready, server, "the node")
        target = next(a for a in json.loads(ready.read_text())["addrs"] if "/p2p/" in a)
        client = Node.from_dict(sf.client_doc(root / "validator"), data_dir=root / "validator", hotkey=validator)

        async def legit_for(seconds: float) -> tuple[list[float], Counter[str]]:
            from tnode.errors import TaskError, TnodeError

            latencies: list[float] = []
            outcomes: Counter[str] = Counter()
            stop_at = time.monotonic() + seconds
            while time.monotonic() < stop_at and server.poll() is None:
                began = time.perf_counter()
                try:
                    await client.transport.request(peer, "echo", "next_token", body, timeout=args.timeout)
                    latencies.append(time.perf_counter() - began)
                    outcomes["ok"] += 1
                except TaskError as exc:
                    outcomes[exc.code] += 1
                except TnodeError as exc:
                    outcomes[type(exc).__name__] += 1
                await trio.sleep(args.gap_ms / 1000)
            return latencies, outcomes

        async def sampler(stop_at: float) -> None:
            began = time.monotonic()
            while time.monotonic() < stop_at and server.poll() is None:
                results["samples"].append((time.monotonic() - began, sf.rss_mib(server.pid)[0], fd_count(server.pid)))
                await trio.sleep(args.sample_seconds)

        async def phases() -> None:
            nonlocal peer
            async with client.running():
                peer = await client.transport.connect(target)
                await legit_for(2.0)  # warm up
                results["alone"] = await legit_for(args.alone_seconds)
                attackers = []
                for kind in args.attacks:
                    flag = root / f"ready-{kind}"
                    if kind == "flood":
                        p = spawn("flood", target, "echo", json.dumps(body), str(root / "flood"), str(args.in_flight),
                                  str(soak_seconds), str(flag), str(stop), str(root / "flood.json"), "0")
                    else:
                        p = spawn("attack", kind, target, str(root / kind), str(soak_seconds), str(flag), str(stop),
                                  str(root / f"{kind}.json"))
                    attackers.append((p, flag, kind))
                for p, flag, kind in attackers:
                    await trio.to_thread.run_sync(wait_for, flag, p, f"the {kind} attacker")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sampler, time.monotonic() + soak_seconds)
                    results["soak"] = await legit_for(soak_seconds)
                results["alive"] = server.poll() is None

        peer = ""
        trio.run(phases)
        stop.write_text("stop")
        deadline = time.monotonic() + 60
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        report(args, results, root)
        finished = True
    finally:
        stop.touch()
        children.close(keep=args.keep or not finished)
    return 0


def _quarter_growth(values: list[float]) -> float:
    """Median of the last quarter minus median of the first quarter (0 with too few samples)."""
    q = len(values) // 4
    if q < 1:
        return 0.0
    return statistics.median(values[-q:]) - statistics.median(values[:q])


def report(args: argparse.Namespace, results: dict[str, Any], root: Path) -> None:
    (alone, out_a), (soak, out_s) = results["alone"], results["soak"]
    p99a, p99s = sf.percentile(alone, 99), sf.percentile(soak, 99)
    success = out_s["ok"] / max(1, sum(out_s.values())) * 100
    samples = results["samples"]
    rss = [s[1] for s in samples]
    fds = [s[2] for s in samples if s[2] >= 0]
    print(f"soak: {args.minutes:g} min, node = local chain + libp2p + echo + filters; "
          f"attackers {', '.join(args.attacks)}")
    for kind in args.attacks:
        path = root / f"{kind}.json"
        doc = json.loads(path.read_text()) if path.exists() else {}
        counts = doc.get("counts") or doc.get("codes") or {}
        print(f"  {kind:6s} {counts}")
    print(f"{'validator (sequential requests)':36s} {'alone':>10s} {'soak':>10s}")
    print(f"{'requests':36s} {sum(out_a.values()):10d} {sum(out_s.values()):10d}")
    print(f"{'p50 latency (ms)':36s} {sf.percentile(alone, 50) * 1e3:10.2f} {sf.percentile(soak, 50) * 1e3:10.2f}")
    print(f"{'p99 latency (ms)':36s} {p99a * 1e3:10.2f} {p99s * 1e3:10.2f}")
    if set(out_s) - {"ok"}:
        print(f"  failures during the soak: {dict(out_s)}")
    print("node over time (s, RSS MiB, fds):")
    step = max(1, len(samples) // 12)
    for t, r, f in samples[::step]:
        print(f"  {t:7.1f} {r:8.1f} {f:6d}")
    rss_growth, fd_growth = _quarter_growth(rss), _quarter_growth([float(f) for f in fds])
    ratio = p99s / p99a if p99a else float("inf")
    alive = results.get("alive", False)
    lines = [
        (alive and success >= 99.9, f"{success:.3f} % legitimate success{'' if alive else ' (node died)'}",
         "success >= 99.9 %"),
        (ratio <= 2.0, f"p99 {p99s * 1e3:.2f} ms = {ratio:.2f}x alone ({p99a * 1e3:.2f} ms)", "p99 <= 2x alone"),
        (rss_growth <= args.rss_bound, f"RSS grew {rss_growth:+.1f} MiB (first to last quarter, max {max(rss, default=0):.0f})",
         f"RSS flat (<= {args.rss_bound:g} MiB growth)"),
        (fd_growth <= args.fd_bound, f"fds grew {fd_growth:+.0f} (max {max(fds, default=0)})",
         f"fds flat (<= {args.fd_bound} growth)"),
    ]
    for ok, figure, goal in lines:
        print(f"{'PASS' if ok else 'FAIL'}: {figure} {goal}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sf.serve(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]), sys.argv[7])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "flood":
        a = sys.argv[2:]
        sf.flood(a[0], a[1], a[2], a[3], int(a[4]), float(a[5]), a[6], a[7], a[8], int(a[9]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "attack":
        a = sys.argv[2:]
        attack(a[0], a[1], a[2], float(a[3]), a[4], a[5], a[6])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one minute of soak")
    parser.add_argument("--minutes", type=float, default=None, help="length of the soak (default 5; quick 1)")
    parser.add_argument("--alone-seconds", type=float, default=None, help="the baseline phase (default 30; quick 10)")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="pause between the validator's requests")
    parser.add_argument("--in-flight", type=int, default=8, help="the flooder's requests outstanding")
    parser.add_argument("--delay-ms", type=int, default=2, help="echo: simulated work per task")
    parser.add_argument("--timeout", type=float, default=5.0, help="validator request timeout (s)")
    parser.add_argument("--sample-seconds", type=float, default=2.0, help="RSS / fd sampling period")
    parser.add_argument("--rss-bound", type=float, default=64.0, help="allowed RSS growth, MiB")
    parser.add_argument("--fd-bound", type=int, default=64, help="allowed growth in open descriptors")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"comma-separated attackers to run (default all: {','.join(ATTACKS)})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    args = parser.parse_args()
    args.attacks = [a for a in args.attacks.split(",") if a]
    unknown = sorted(set(args.attacks) - set(ATTACKS))
    if unknown:
        parser.error(f"--attacks: unknown {', '.join(unknown)} (known: {', '.join(ATTACKS)})")
    args.minutes = args.minutes if args.minutes is not None else (1.0 if args.quick else 5.0)
    args.alone_seconds = args.alone_seconds if args.alone_seconds is not None else (10.0 if args.quick else 30.0)
    os.environ.setdefault("TNODE_DISABLE_PLUGIN_AUTOLOAD", "1")
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
