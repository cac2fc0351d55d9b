"""Image serving through the node against the U-Net called directly, side by side, per workers mode.

Node: a client node sends signed ``denoise`` requests (32×32 RGB scenes, σ = 25) over real libp2p
(Noise, Yamux) on 127.0.0.1 to a miner node serving the shipped U-Net; answers are uint8 images.
``--workers 0,1,2`` measures the miner with ``[models.main] workers = 0`` (the model in the node's
process, one pass at a time off the event loop) and ``workers = N`` (tnode.workers processes behind
ZeroMQ, requests batched across them). Direct: the same checkpoint loaded in this process — one
image per call for 1 client, all 16 images in one forward pass for 16 clients (the best batching
can do). Each repeat's node run is paired with the direct run right after it; figures are medians
over repeats, ratio = node / direct requests per second (median of the paired ratios). The resident
memory of each worker (or of the node, in process) is printed after the start.

Goals, in every workers mode: node/direct ≥ 0.5 with 1 client (the network, the checks and the hop
to a worker cost at most as much as the model); ≥ 0.25 with 16 clients (the node's batches fill only
as fast as requests arrive).

    python bench/image_serving.py [--quick] [--workers 0,1,2] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import trio

CLIENTS = (1, 16)
GOALS = {1: 0.5, 16: 0.25}
SIGMA = 25.0


def inputs(count: int) -> list[np.ndarray]:
    from tnode.plugins.image.corrupt import add_noise
    from tnode.plugins.image.scenes import render_scene

    rng = np.random.default_rng(0)
    return [add_noise(render_scene(2 * i + 1)[0], SIGMA, rng) for i in range(count)]


async def drive(call: Any, n: int, concurrency: int) -> float:
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            await call(i)

    start = time.perf_counter()
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    return time.perf_counter() - start


def direct(model: Any, images: list[np.ndarray], n: int, concurrency: int) -> float:
    from tnode.contracts.image import Corruption

    how = Corruption("denoise", sigma=SIGMA)
    start = time.perf_counter()
    for i in range(0, n, concurrency):
        model.restore_batch([(images[j % len(images)], how) for j in range(i, min(i + concurrency, n))])
    return time.perf_counter() - start


def miner_doc(threads: int, workers: int) -> dict[str, Any]:
    return {"transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0},
            "models": {"main": {"type": "unet", "threads": threads, "workers": workers}},
            "modalities": {"image": {"type": "image", "model": "main"}},
            "log": {"level": "warning"}}


async def bench(quick: bool, threads: int, modes: list[int]) -> tuple[list[dict[str, Any]], dict[int, list[int]]]:
    from tnode.node import Node
    from tnode.plugins.image.config import UNetConfig
    from tnode.plugins.image.models import UNetModel

    repeats = 3 if quick else 5
    requests = {1: 40, 16: 160} if quick else {1: 150, 16: 480}
    images = inputs(32)
    reference = UNetModel(None, "direct", UNetConfig(threads=threads))
    reference.load()
    print(f"model: shipped U-Net ({reference.model.parameter_count():,} parameters), denoise 32×32×3")
    rows: list[dict[str, Any]] = []
    memory: dict[int, list[int]] = {}
    with tempfile.TemporaryDirectory(prefix="tnode-bench-image-") as tmp:
        client = Node.from_dict({"transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"],
                                               "announce_interval": 0.0, "streams_per_peer": 16},
                                 "log": {"level": "warning"}}, data_dir=Path(tmp) / "client")
        async with client.running():
            for workers in modes:
                miner = Node.from_dict(miner_doc(threads, workers), data_dir=Path(tmp) / f"miner-{workers}")
                async with miner.running():
                    stats = miner.component("model", "main").stats()
                    memory[workers] = ([w.get("rss_bytes", 0) for w in stats["workers"]] if workers
                                       else [stats["rss_bytes"]])
                    print(f"workers {workers}: resident MiB " + ", ".join(f"{b / 2**20:.0f}" for b in memory[workers])
                          + (" (each worker)" if workers else " (the node, model in process)"), flush=True)
                    await client.transport.connect(miner.transport.listen_addrs()[0])
                    for clients in CLIENTS:
                        rows.append(await _measure(client, miner, reference, images, workers, clients,
                                                   requests[clients], repeats))
                        r = rows[-1]
                        print(f"  {clients:>2} client(s): node {r['node_rps']:.1f} req/s, direct {r['direct_rps']:.1f}"
                              f" req/s, ratio {r['ratio']:.2f}", flush=True)
    return rows, memory


async def _measure(client: Any, miner: Any, reference: Any, images: list[np.ndarray], workers: int, clients: int,
                   n: int, repeats: int) -> dict[str, Any]:
    async def call(i: int) -> None:
        await client.transport.request(miner.peer_id, "image", "denoise", {"sigma": SIGMA},
                                       images[i % len(images)], timeout=60)

    await drive(call, 16, clients)  # warm streams, threads and workers
    node_rps, direct_rps, ratios = [], [], []
    for _ in range(repeats):
        node_s = await drive(call, n, clients)
        direct_s = await trio.to_thread.run_sync(direct, reference, images, n, clients)
        node_rps.append(n / node_s)
        direct_rps.append(n / direct_s)
        ratios.append(direct_s / node_s)
    return {"workers": workers, "clients": clients, "node_rps": statistics.median(node_rps),
            "direct_rps": statistics.median(direct_rps), "ratio": statistics.median(ratios), "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, per worker (default 1)")
    parser.add_argument("--workers", default="0,1,2", help="workers modes to measure (default 0,1,2)")
    args = parser.parse_args()
    try:
        modes = [int(w) for w in args.workers.split(",")]
    except ValueError:
        sys.exit(f"--workers: expected comma-separated integers, got {args.workers!r}")
    if any(w < 0 for w in modes):
        sys.exit("--workers: every mode must be 0 or more")
    from tnode.logs import configure_logging

    configure_logging("warning")
    logging.disable(logging.INFO)
    started = time.monotonic()
    rows, memory = trio.run(bench, args.quick, args.threads, modes)
    print(f"\nmedians of {rows[0]['repeats']} repeats; torch threads {args.threads} per process; "
          f"{os.cpu_count()} CPUs")
    print(f"{'workers':>7} {'clients':>7} {'node req/s':>11} {'direct req/s':>13} {'node/direct':>12}")
    for r in rows:
        print(f"{r['workers']:>7} {r['clients']:>7} {r['node_rps']:>11.1f} {r['direct_rps']:>13.1f} "
              f"{r['ratio']:>12.2f}")
    print("resident memory: " + "; ".join(
        f"workers {w}: " + ", ".join(f"{b / 2**20:.0f}" for b in mem) + " MiB" for w, mem in memory.items()))
    for r in rows:
        goal = GOALS[r["clients"]]
        verdict = "PASS" if r["ratio"] >= goal else "FAIL"
        print(f"{verdict}: node/direct {r['ratio']:.2f} with {r['clients']} client(s), workers {r['workers']} "
              f"(goal ≥ {goal})")
    print(f"{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
