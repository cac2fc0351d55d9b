"""Image serving through the node against the U-Net called directly, side by side.

Node: a client node sends signed ``denoise`` requests (32×32 RGB scenes, σ = 25) over real libp2p
(Noise, Yamux) on 127.0.0.1 to a miner node serving the shipped U-Net; answers are uint8 images.
Direct: the same model object in the same process — one image per call for 1 client, all 16 images
in one forward pass for 16 clients (the best batching can do). The image modality batches
concurrent requests too (``max_batch`` 16, requests that arrive while a pass runs join the next
one), so with 16 clients the node's passes hold several images each. Medians over repeats;
ratio = node / direct requests per second.

Goals: node/direct ≥ 0.5 with 1 client (the network and checks cost at most as much as the model);
≥ 0.25 with 16 clients (the node's batches fill only as fast as requests arrive).

    python bench/image_serving.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
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
    with trio.fail_after(120):
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


async def bench(quick: bool, threads: int) -> list[dict[str, Any]]:
    from tnode.node import Node

    repeats = 3 if quick else 5
    requests = {1: 40, 16: 160} if quick else {1: 150, 16: 480}
    images = inputs(32)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tnode-bench-image-") as tmp:
        miner = Node.from_dict({
            "transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0},
            "models": {"main": {"type": "unet", "threads": threads}},
            "modalities": {"image": {"type": "image", "model": "main"}},
            "log": {"level": "warning"}}, data_dir=Path(tmp) / "miner")
        client = Node.from_dict({"transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"],
                                               "announce_interval": 0.0, "streams_per_peer": 16},
                                 "log": {"level": "warning"}}, data_dir=Path(tmp) / "client")
        async with miner.running(), client.running():
            model = miner.component("model", "main")
            print(f"model: shipped U-Net ({model.model.parameter_count():,} parameters), denoise 32×32×3")
            await client.transport.connect(miner.transport.listen_addrs()[0])
            for clients in CLIENTS:
                n = requests[clients]

                async def call(i: int) -> None:
                    await client.transport.request(miner.peer_id, "image", "denoise", {"sigma": SIGMA},
                                                   images[i % len(images)], timeout=60)

                await drive(call, 16, clients)  # warm streams and threads
                node_s, direct_s = [], []
                for _ in range(repeats):
                    node_s.append(await drive(call, n, clients))
                    direct_s.append(await trio.to_thread.run_sync(direct, model, images, n, clients))
                rows.append({"clients": clients, "node_rps": statistics.median(n / s for s in node_s),
                             "direct_rps": statistics.median(n / s for s in direct_s), "repeats": repeats})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    from tnode.logs import configure_logging

    configure_logging("warning")
    logging.disable(logging.INFO)
    started = time.monotonic()
    rows = trio.run(bench, args.quick, args.threads)
    print(f"\nmedians of {rows[0]['repeats']} repeats; torch threads {args.threads}; {os.cpu_count()} CPUs")
    print(f"{'clients':>7} {'node req/s':>11} {'direct req/s':>13} {'node/direct':>12}")
    for r in rows:
        print(f"{r['clients']:>7} {r['node_rps']:>11.1f} {r['direct_rps']:>13.1f} {r['node_rps'] / r['direct_rps']:>12.2f}")
    for r in rows:
        ratio, goal = r["node_rps"] / r["direct_rps"], GOALS[r["clients"]]
        verdict = "PASS" if ratio >= goal else "FAIL"
        print(f"{verdict}: node/direct {ratio:.2f} with {r['clients']} client(s) (goal ≥ {goal})")
    print(f"{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
