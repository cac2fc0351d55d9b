"""Text serving through the node against the torch model called directly, side by side.

Node: a client node sends signed ``next_token`` requests over real libp2p (Noise, Yamux) on
127.0.0.1 to a miner node, whose text modality batches them into forward passes of the shipped
byte transformer and answers with the top-k log-probabilities. Direct: the same weights, loaded in the
same process, called with ``next_token_logprobs`` on the same inputs — one sequence at a time for 1
client, all 16 sequences stacked into one call for 16 clients (the best batching can do).

Workloads: ``all`` (a validator's task: every position of a 64-token window, k = 16) and ``last``
(a client's query: the last position only, k = 16). tokens/s counts the context tokens the model
reads (64 per request). Medians over repeats; ratio = node / direct throughput.

Modes: ``--workers 0,2`` measures the miner with ``[models.main] workers = 0`` (inference in the
node's process, as a thread) and ``workers = 2`` (tnode.workers processes behind ZeroMQ, batched
across them), each against the same direct figure; ratio lines compare each mode with workers = 0.

    python bench/text_serving.py [--quick] [--workers 0,1,2]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import trio

SEQ = 64
K = 16
CLIENTS = (1, 16)
WORKLOADS = ("all", "last")
TIME_LIMIT = 600.0  # the whole run stops (with what it has) after this long


def inputs(count: int, length: int) -> list[np.ndarray]:
    """Windows of real text (tnode's own sources), uint8 token ids, fixed seed."""
    from tnode.plugins.text.tokenizer import encode

    root = Path(__file__).resolve().parent.parent
    text = encode("".join(p.read_text() for p in sorted((root / "plugins" / "text").glob("*.py"))))
    starts = np.random.default_rng(0).integers(0, len(text) - length, count)
    return [text[s : s + length] for s in starts]


async def drive(call: Callable[[int], Awaitable[None]], n: int, concurrency: int) -> tuple[float, list[float]]:
    """Run ``n`` calls with ``concurrency`` workers; wall seconds and each call's latency."""
    todo = iter(range(n))
    latencies: list[float] = []

    async def worker() -> None:
        for i in todo:
            t = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    return time.perf_counter() - start, latencies


def direct(model: Any, seqs: list[np.ndarray], n: int, concurrency: int) -> float:
    """The model alone: ``n`` sequences, ``concurrency`` of them stacked per call; wall seconds."""
    batch = np.stack([s.astype(np.int64) for s in seqs])
    start = time.perf_counter()
    for i in range(0, n, concurrency):
        rows = np.arange(i, min(i + concurrency, n)) % len(seqs)
        model.next_token_logprobs(batch[rows])
    return time.perf_counter() - start


def miner_doc(checkpoint: str, threads: int, workers: int = 0) -> dict[str, Any]:
    model: dict[str, Any] = {"type": "transformer", "threads": threads, "workers": workers}
    if checkpoint:
        model["checkpoint"] = checkpoint
    return {
        "transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0},
        "models": {"main": model},
        "modalities": {"text": {"type": "text", "model": "main", "max_batch": 16, "max_top_k": K, "top_k": K,
                                "max_sequence_length": 256}},
        "log": {"level": "warning"},
    }


async def bench(quick: bool, threads: int, modes: list[int]) -> list[dict[str, Any]]:
    """Measure every (workers, workload, clients) row; keys and data live in a temporary directory."""
    from tnode.plugins.text.config import TransformerConfig
    from tnode.plugins.text.transformer import BUILTIN_CHECKPOINT, TransformerModel

    checkpoint = str(BUILTIN_CHECKPOINT) if BUILTIN_CHECKPOINT.is_file() else ""
    reference = TransformerModel(None, "direct", TransformerConfig(checkpoint=checkpoint, threads=threads))
    reference.load()  # the direct baseline: the same weights called in this process
    rows: list[dict[str, Any]] = []
    for workers in modes:
        with tempfile.TemporaryDirectory(prefix="tnode-bench-text-") as tmp:
            rows += [{**r, "workers": workers} for r in await _bench(quick, threads, Path(tmp), workers, reference)]
    return rows


async def _bench(quick: bool, threads: int, tmp: Path, workers: int, reference: Any) -> list[dict[str, Any]]:
    from tnode.node import Node
    from tnode.plugins.text.transformer import BUILTIN_CHECKPOINT

    repeats = 3 if quick else 5
    requests = {1: 40, 16: 160} if quick else {1: 150, 16: 640}  # per repeat
    checkpoint = str(BUILTIN_CHECKPOINT) if BUILTIN_CHECKPOINT.is_file() else ""
    miner = Node.from_dict(miner_doc(checkpoint, threads, workers), data_dir=tmp / "miner")
    client = Node.from_dict({"transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"],
                                           "announce_interval": 0.0, "streams_per_peer": 16},
                             "log": {"level": "warning"}}, data_dir=tmp / "client")
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIME_LIMIT
    async with miner.running(), client.running():
        served = miner.component("model", "main")
        model = reference
        shape = model.model.shape
        if checkpoint and workers == 0:
            print(f"model: {BUILTIN_CHECKPOINT.name} ({model.model.parameter_count():,} parameters, "
                  f"{shape.n_layers} layers, d_model {shape.d_model}, context {shape.context})")
        elif workers == 0:
            print(f"model: NO CHECKPOINT at {BUILTIN_CHECKPOINT}: an UNTRAINED transformer of the default shape "
                  f"({shape.n_layers} layers, d_model {shape.d_model}, context {shape.context}) — same cost, "
                  "meaningless answers")
        length = min(SEQ, shape.context)
        seqs = inputs(64, length)
        addr = miner.transport.listen_addrs()[0]
        await client.transport.connect(addr)
        # with workers the pool batches (and counts); in process the modality's batcher does
        batcher = served.pool if served.pool is not None else miner.component("modality", "text").batcher
        for positions in WORKLOADS:
            for clients in CLIENTS:
                n = requests[clients]
                body = {"k": K, "positions": positions}

                async def call(i: int, body: dict[str, Any] = body) -> None:
                    await client.transport.request(miner.peer_id, "text", "next_token", body, seqs[i % len(seqs)],
                                                   timeout=60)

                await drive(call, min(n, 32), clients)  # warm streams, threads and caches
                node_s, direct_s, fill, p50 = [], [], [], []
                for _ in range(repeats):
                    if time.monotonic() > deadline:
                        break
                    b0, r0 = batcher.batches, batcher.requests
                    wall, latencies = await drive(call, n, clients)
                    node_s.append(wall)
                    p50.append(statistics.median(latencies))
                    fill.append((batcher.requests - r0) / max(1, batcher.batches - b0))
                    direct_s.append(await trio.to_thread.run_sync(direct, model, seqs, n, clients))
                if not node_s:
                    break
                node_rps = statistics.median(n / s for s in node_s)
                direct_rps = statistics.median(n / s for s in direct_s)
                rows.append({"positions": positions, "clients": clients, "requests": n, "repeats": len(node_s),
                             "node_rps": node_rps, "direct_rps": direct_rps, "tokens": length,
                             "batch_fill": statistics.median(fill), "p50_ms": 1e3 * statistics.median(p50)})
        if served.pool is not None:
            mib = [round(w.get("rss_bytes", 0) / 2**20) for w in served.stats()["workers"]]
            print(f"workers = {workers}: resident memory per worker {mib} MiB")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and repeats (seconds instead of a minute)")
    parser.add_argument("--workers", default="0,2", help="comma-separated [models.main] workers values to measure "
                        "(default 0,2: in process, then two worker processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for the node and the direct calls "
                        "alike (default 1: steadier on a small machine shared with other work)")
    args = parser.parse_args()
    import torch
    from tnode.logs import configure_logging

    configure_logging("warning")
    logging.disable(logging.INFO)  # py-libp2p sets levels on some of its own loggers
    started = time.monotonic()
    modes = [int(w) for w in args.workers.split(",")]
    rows = trio.run(bench, args.quick, args.threads, modes)
    print(f"\nnext_token, {rows[0]['tokens'] if rows else SEQ} tokens per request, k={K}; medians of "
          f"{rows[0]['repeats'] if rows else 0} repeats; torch threads {torch.get_num_threads()}; "
          f"{os.cpu_count()} CPUs")
    head = (f"{'workers':>7} {'positions':<9} {'clients':>7} {'node req/s':>11} {'direct req/s':>13} {'node tok/s':>11} "
            f"{'direct tok/s':>13} {'node/direct':>12} {'node p50 ms':>12} {'batch fill':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        t = r["tokens"]
        print(f"{r['workers']:>7} {r['positions']:<9} {r['clients']:>7} {r['node_rps']:>11.1f} {r['direct_rps']:>13.1f} "
              f"{r['node_rps'] * t:>11.0f} {r['direct_rps'] * t:>13.0f} {r['node_rps'] / r['direct_rps']:>12.2f} "
              f"{r['p50_ms']:>12.1f} {r['batch_fill']:>11.1f}")
    base = {(r["positions"], r["clients"]): r["node_rps"] for r in rows if r["workers"] == 0}
    for r in rows:
        if r["workers"] and (r["positions"], r["clients"]) in base:
            print(f"ratio {r['positions']:<4} {r['clients']:>2} clients: node req/s workers={r['workers']} / workers=0 "
                  f"= {r['node_rps'] / base[r['positions'], r['clients']]:.2f}; node/direct "
                  f"{r['node_rps'] / r['direct_rps']:.2f}")
    print(f"\nbatch fill: requests per forward pass in the miner's batcher (its worker pool when workers > 0); node p50: latency of one request "
          f"seen by its client (includes the batcher's batch_wait_ms); {time.monotonic() - started:.0f} s")
    if not rows:
        sys.exit("no measurement finished within the time limit")


if __name__ == "__main__":
    main()
