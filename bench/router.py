"""The router's must-show figures: on a small in-process network, or on real ``tnode devnet`` processes.

In-process (default): four text miners of known quality (byte 4-gram models fit on disjoint shards
of the standard library's sources, 25 / 50 / 100 / 200 kB — more data, better model), real libp2p
on 127.0.0.1 and the local chain. ``--devnet``: ``tnode devnet --miners 4 --validators 2`` as
separate processes (transformer, n-gram, uniform and garbage miners, best first; validators keep
querying them); the bench joins as the devnet's query client (``client/node.toml``: no uid, no
stake) and measures on the python_docs dataset's held-out split. Either way the client's ``moe``
router asks k = 3 miners per query, k_min = 2.

1. Learning: the router answers held-out windows online — predicts, then learns the true tokens.
2. Held-out quality: on fresh windows, the cross-entropy (nats/byte) of the router's mixture next to
   each single miner's on the same windows (each miner asked directly).
   PASS when the mixture is at or below the best single miner.
3. Routing: the share of queries sent to each miner. PASS when it rises with the miner's quality
   (Spearman correlation with −cross-entropy > 0).
4. Failover: the best miner is killed mid-run (its process SIGKILLed on the devnet); queries keep
   going. PASS when ≥ 99 % succeed, p99 latency stays within the router's timeout, the router
   stops routing to the dead miner within 5 s because of its failures (it is backing off), and
   afterwards asks it only in backoff probes (≤ 5 % of queries).
5. Batching (in-process): 32 clients query at once (next token after 32 held-out bytes) through
   two more routers over the same miners, one batching (``batch_window_ms`` 2) and one not
   (``batch = false``), in alternating rounds. PASS when the median queries/s with batching is
   at least 1.5 × without.

    python bench/router.py [--quick] [--devnet]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trio

SIZES = (25_000, 50_000, 100_000, 200_000)
ROUTER = {"k": 3, "k_min": 2, "timeout": 2.0, "timeout_after_k_min": 0.05, "seed": 7, "backoff_base": 0.5,
          "mixture_rate": 0.1}
# The devnet's transformer miner shares a couple of cores with five other node processes and the
# validators' tasks: its answer often comes tens of milliseconds after the small models', so the
# router waits longer for it once k_min answered.
DEVNET_ROUTER = {**ROUTER, "timeout_after_k_min": 0.3}
DEVNET_STARTUP = 300.0


@dataclass
class Miner:
    """One miner as the bench sees it: a label, its hotkey and libp2p peer id."""

    label: str
    hotkey: str
    peer_id: str


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


async def single_ce(router: Any, miner: Miner, window: np.ndarray) -> float:
    """One miner's cross-entropy on ``window`` (asked directly, every position)."""
    from tnode.plugins.router import text_mix

    reply = await router.node.transport.request(miner.peer_id, "text", "next_token",
                                                {"k": router.config.max_top_k, "positions": "all"},
                                                window[:-1].astype(np.int32), timeout=10.0)
    pred = text_mix.parse_topk(reply.body, reply.payload, rows=len(window) - 1, k=router.config.max_top_k)
    return text_mix.cross_entropy(text_mix.dense(pred, router.config.floor), window[1:])


async def measure(router: Any, miners: list[Miner], windows: np.ndarray, counts: tuple[int, int, int],
                  kill: Callable[[Miner], None]) -> None:
    """Learn, compare the mixture with each single miner, then kill the best one and keep asking."""
    from tnode.plugins.router import text_mix

    learn_n, eval_n, fail_n = counts
    for w in windows[:learn_n]:
        mixed = await router.next_token(w[:-1], positions="all")
        router.learn_text(mixed, w[1:])
    mix_ce: list[float] = []
    singles: dict[str, list[float]] = {m.hotkey: [] for m in miners}
    missing: dict[str, int] = {m.hotkey: 0 for m in miners}  # eval queries a miner was asked but not used in
    for w in windows[learn_n: learn_n + eval_n]:
        mixed = await router.next_token(w[:-1], positions="all")
        for h in mixed.outcome.late + list(mixed.outcome.failures):
            missing[h] = missing.get(h, 0) + 1
        mix_ce.append(text_mix.cross_entropy(mixed.value, w[1:]))
        router.learn_text(mixed, w[1:])
        for m in miners:
            singles[m.hotkey].append(await single_ce(router, m, w))
    mixture = float(np.mean(mix_ce))
    ce = {h: float(np.mean(v)) for h, v in singles.items()}
    total_sent = sum(router.board.miners[m.hotkey].sent for m in miners)
    print(f"\nheld-out cross-entropy, nats/byte (lower is better), on {eval_n} windows; routing share; "
          f"late/failed: held-out queries a miner was asked but not in the mixture")
    print(f"  {'miner':<24}{'CE':>8}{'share':>9}{'weight':>9}{'answered':>10}{'late/failed':>13}")
    for m in miners:
        rec = router.board.miners[m.hotkey]
        print(f"  {m.label:<24}{ce[m.hotkey]:8.4f}{rec.sent / total_sent:9.3f}{rec.weight:9.3f}{rec.answered:10d}"
              f"{missing[m.hotkey]:13d}")
    print(f"  {'router mixture (k=' + str(router.config.k) + ')':<24}{mixture:8.4f}")
    best_h = min(ce, key=lambda h: ce[h])
    best = ce[best_h]
    print(f"{'PASS' if mixture <= best else 'FAIL'}: mixture cross-entropy {mixture:.4f} vs best single miner "
          f"{best:.4f} nats/byte (goal: at or below; {100 * (best - mixture) / best:+.1f} %)")
    share = [router.board.miners[h].sent for h in ce]
    rho = spearman(share, [-ce[h] for h in ce])
    print(f"{'PASS' if rho > 0 else 'FAIL'}: routing share vs quality, Spearman {rho:+.2f} (goal: > 0)")

    # Failover: kill the best miner and keep asking.
    dead = next(m for m in miners if m.hotkey == best_h)
    rec = router.board.miners[best_h]
    ok, latencies = 0, []
    kill_at = fail_n // 4
    killed_t, stopped_t, last_sent_t = 0.0, 0.0, 0.0
    errors_before: dict[str, int] = {}
    after_kill = probes = 0
    for i, w in enumerate(windows[learn_n + eval_n: learn_n + eval_n + fail_n]):
        if i == kill_at:
            kill(dead)
            killed_t = time.monotonic()
            errors_before = dict(rec.errors)
        before = rec.sent
        start = time.monotonic()
        try:
            await router.next_token(w[:-1], positions="last")
            ok += 1
        except Exception as exc:  # counted as a failed query
            print(f"  query {i} failed: {exc}", file=sys.stderr)
        now = time.monotonic()
        latencies.append(now - start)
        if i < kill_at:
            continue
        after_kill += 1
        asked = rec.sent > before
        if asked:
            last_sent_t = now
            if stopped_t:
                probes += 1
        elif not stopped_t and rec.backoff_until > now:  # skipped because it is backing off
            stopped_t = now
    success = ok / fail_n
    p99 = float(np.quantile(latencies, 0.99))
    stop_after = stopped_t - killed_t if stopped_t else float("inf")
    errors = {k: v - errors_before.get(k, 0) for k, v in rec.errors.items() if v > errors_before.get(k, 0)}
    print(f"\nfailover: {dead.label} killed after {kill_at} of {fail_n} queries; its errors since {errors}, "
          f"last asked {last_sent_t - killed_t:.2f} s after it died (a backoff probe), "
          f"backoff now {max(rec.backoff_until - time.monotonic(), 0):.1f} s")
    print(f"{'PASS' if success >= 0.99 else 'FAIL'}: {100 * success:.1f} % of queries succeeded (goal: ≥ 99 %)")
    print(f"{'PASS' if p99 <= router.config.timeout else 'FAIL'}: p99 latency {1000 * p99:.1f} ms "
          f"(goal: ≤ timeout {1000 * router.config.timeout:.0f} ms)")
    print(f"{'PASS' if stop_after <= 5.0 and errors else 'FAIL'}: routing to the dead miner stopped {stop_after:.2f} s "
          f"after it died, by its failures ({sum(errors.values())}) and backoff (goal: ≤ 5 s)")
    share_probes = probes / max(after_kill, 1)
    print(f"{'PASS' if share_probes <= 0.05 else 'FAIL'}: afterwards it was asked in {probes} backoff probes of "
          f"{after_kill} queries ({100 * share_probes:.1f} %; goal: ≤ 5 %)")


# --------------------------------------------------------------------------- batching
CLIENTS = 32
THROUGHPUT_GOAL = 1.5


async def queries_per_second(router: Any, windows: np.ndarray, clients: int, per_client: int,
                             latencies: list[float]) -> float:
    """``clients`` concurrent clients, each asking ``per_client`` next-token queries one after another;
    each answered query's latency goes to ``latencies``."""
    failed = 0

    async def client(i: int) -> None:
        nonlocal failed
        for j in range(per_client):
            began = time.monotonic()
            try:
                await router.next_token(windows[(i * per_client + j) % len(windows)])
            except Exception:  # counted, not fatal: a throughput figure with failures is flagged below
                failed += 1
            else:
                latencies.append(time.monotonic() - began)

    start = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client, i)
    if failed:
        print(f"  {failed} of {clients * per_client} queries failed", file=sys.stderr)
    return clients * per_client / (time.monotonic() - start)


async def throughput(net: Any, rounds: int, per_client: int) -> None:
    """Queries/s of the batching and the unbatched router over the same miners, alternating rounds."""
    from tnode import dispatch
    from tnode.plugins.router.localnet import heldout_windows

    windows = heldout_windows(net.heldout, 512, 32, seed=13)
    qps: dict[str, list[float]] = {"batched": [], "unbatched": []}
    served: dict[str, int] = {"batched": 0, "unbatched": 0}
    latencies: dict[str, list[float]] = {"batched": [], "unbatched": []}
    for _ in range(rounds):
        for name in qps:
            before = sum(dispatch.of(m).stats["served"] for m in net.miners)
            qps[name].append(await queries_per_second(net.router(name), windows, CLIENTS, per_client,
                                                      latencies[name]))
            served[name] += sum(dispatch.of(m).stats["served"] for m in net.miners) - before
    on, off = float(np.median(qps["batched"])), float(np.median(qps["unbatched"]))
    asked = rounds * CLIENTS * per_client * ROUTER["k"]
    print(f"\nbatching: {CLIENTS} concurrent clients, {rounds} rounds of {CLIENTS * per_client} queries each way "
          f"(k = {ROUTER['k']}); miner requests per miner asked: batched {served['batched'] / asked:.2f}, "
          f"unbatched {served['unbatched'] / asked:.2f}")
    print(f"  queries/s per round: batched {', '.join(f'{x:.0f}' for x in qps['batched'])}; "
          f"unbatched {', '.join(f'{x:.0f}' for x in qps['unbatched'])}")
    for name, lat in latencies.items():
        print(f"  {name} query latency: p50 {1000 * np.quantile(lat, 0.5):.1f} ms, "
              f"p99 {1000 * np.quantile(lat, 0.99):.1f} ms")
    ratio = on / off if off > 0 else float("inf")
    print(f"{'PASS' if ratio >= THROUGHPUT_GOAL else 'FAIL'}: {on:.0f} queries/s batched vs {off:.0f} unbatched at "
          f"{CLIENTS} concurrent clients, {ratio:.2f}× (medians; goal: ≥ {THROUGHPUT_GOAL}×)")


# --------------------------------------------------------------------------- in-process network
async def in_process(counts: tuple[int, int, int], rounds: int, per_client: int) -> None:
    from tnode.plugins.router.localnet import heldout_windows, local_net

    more = {"batched": {**ROUTER, "batch_window_ms": 2.0}, "unbatched": {**ROUTER, "batch": False}}
    with tempfile.TemporaryDirectory(prefix="tnode-bench-router-") as tmp:
        t0 = time.monotonic()
        async with local_net(Path(tmp), SIZES, router=ROUTER, more_routers=more) as net:
            router = net.router()
            print(f"network up in {time.monotonic() - t0:.1f} s: {len(net.miners)} miners, client {router.node.name}")
            miners = [Miner(net.labels[m.hotkey.public_hex], m.hotkey.public_hex, m.peer_id) for m in net.miners]
            index = {m.hotkey: i for i, m in enumerate(miners)}
            windows = heldout_windows(net.heldout, sum(counts), 64, seed=11)
            await throughput(net, rounds, per_client)  # first: the failover below kills a miner
            await measure(router, miners, windows, counts, lambda m: net.kill(index[m.hotkey]))


# --------------------------------------------------------------------------- tnode devnet
@contextlib.contextmanager
def devnet(run_dir: Path, log: Path) -> Any:
    """``tnode devnet --miners 4 --validators 2`` in its own session; SIGTERM (then SIGKILL) on exit."""
    argv = [sys.executable, "-c", "from tnode.cli import main; main()", "devnet", "--miners", "4",
            "--validators", "2", "--run-dir", str(run_dir), "--no-live", "--keep-going"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


async def wait_devnet(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the devnet printed the query command (miners up, validators starting)."""
    deadline = time.monotonic() + DEVNET_STARTUP
    while b"query: tnode query" not in log.read_bytes():
        if proc.poll() is not None:
            raise RuntimeError(f"tnode devnet exited with code {proc.returncode}:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"tnode devnet did not start within {DEVNET_STARTUP:.0f} s")
        await trio.sleep(0.5)


def devnet_miners(run_dir: Path) -> list[tuple[str, str, Path]]:
    """(label, hotkey, directory) of each devnet miner, from its node.toml and keys."""
    from tnode.keys import Keystore

    out = []
    for d in sorted(run_dir.glob("miner*"), key=lambda p: int(p.name[5:])):
        model = tomllib.loads((d / "node.toml").read_text())["models"]["main"]["type"]
        out.append((f"{d.name} {model}", Keystore(d / "data").load("hotkey").public_hex, d))
    return out


@contextlib.asynccontextmanager
async def devnet_client(run_dir: Path) -> AsyncIterator[Any]:
    """The devnet's query client with the bench's router settings."""
    from tnode.cli_support import command_node

    overrides = {"routers": {"text": {"type": "moe", "modality": "text", "refresh_interval": 2.0, **DEVNET_ROUTER}}}
    async with command_node(run_dir / "client" / "node.toml", kinds={"transport", "chain", "router"},
                            overrides=overrides) as node:
        yield node.component("router", "text")


async def heldout(run_dir: Path, count: int, length: int) -> np.ndarray:
    """Windows of the python_docs dataset's held-out split (the devnet's miners trained on its train split)."""
    from tnode.node import Node

    node = Node.from_dict({"node": {"name": "bench-heldout", "create_keys": True},
                           "datasets": {"docs": {"type": "python_docs"}}},
                          data_dir=run_dir / "bench-heldout", kinds={"dataset"})
    async with node.running():
        dataset = node.component("dataset", "docs")
        return np.asarray(dataset.sample_windows("heldout", count, length, np.random.default_rng(11)))


async def on_devnet(counts: tuple[int, int, int]) -> None:
    with tempfile.TemporaryDirectory(prefix="tnode-bench-router-devnet-") as tmp:
        run_dir, log = Path(tmp) / "run", Path(tmp) / "devnet.log"
        t0 = time.monotonic()
        with devnet(run_dir, log) as proc:
            await wait_devnet(proc, log)
            found = devnet_miners(run_dir)
            async with devnet_client(run_dir) as router:
                with trio.fail_after(60):  # the devnet publishes the miners' addresses block by block
                    while len([h for _, h, _ in found if h in router.board.miners]) < len(found):
                        await trio.sleep(1.0)
                        await router.refresh()
                print(f"devnet up in {time.monotonic() - t0:.1f} s: {len(found)} miner processes "
                      f"({', '.join(label for label, _, _ in found)}), 2 validators; client {router.node.hotkey.public_hex[:16]} "
                      f"(no uid, no stake)")
                miners = [Miner(label, h, router.board.miners[h].peer_id) for label, h, _ in found]
                dirs = {h: d for _, h, d in found}

                def kill(m: Miner) -> None:
                    pid = int((dirs[m.hotkey] / "node.pid").read_text())
                    os.killpg(pid, signal.SIGKILL)  # the node runs in its own session

                windows = await heldout(run_dir, sum(counts), 64)
                await measure(router, miners, windows, counts, kill)
            if proc.poll() is not None:
                print(f"the devnet exited early (code {proc.returncode})", file=sys.stderr)


async def main(quick: bool, on_the_devnet: bool) -> int:
    counts = (60, 30, 80) if quick else (200, 100, 300)
    rounds, per_client = (3, 4) if quick else (5, 8)
    await (on_devnet(counts) if on_the_devnet else in_process(counts, rounds, per_client))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer queries (about a minute)")
    parser.add_argument("--devnet", action="store_true", help="measure on `tnode devnet` processes")
    args = parser.parse_args()
    os.environ.setdefault("TNODE_DISABLE_PLUGIN_AUTOLOAD", "1")
    logging.disable(logging.WARNING)
    sys.exit(trio.run(main, args.quick, args.devnet))
