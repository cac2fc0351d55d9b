"""Online learning for a serving miner (``[training.NAME] type = "text"``), in one process with
real nodes and real libp2p on 127.0.0.1.

A miner serves an untrained byte transformer (the weakest checkpoint there is) while a client asks
it ``next_token`` tasks back to back (64-byte contexts from python_docs's held-out split). Phase 1
serves without training; phase 2 restarts the miner with ``[training.online]`` (own data:
python_docs's train split, busy_fraction 0.1). Per phase: request latencies (p50, p99) and the
served model's held-out cross-entropy at the end.

1. PASS when the served model's held-out loss after phase 2 is below the untrained one by ≥ 0.5 nats/byte.
2. PASS when phase 2's p99 latency is within 2× phase 1's.

    python bench/online.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import trio


def _transport() -> dict[str, Any]:
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0, "dht": False}


async def phase(tmp: Path, train_file: Path, windows: np.ndarray, held: np.ndarray, seconds: float,
                training: bool) -> dict[str, Any]:
    from tnode.node import Node
    from tnode.plugins.text.evaluate import cross_entropy

    doc: dict[str, Any] = {
        "log": {"level": "warning"}, "transport": _transport(),
        "datasets": {"own": {"type": "text_files", "path": str(train_file), "heldout_fraction": 0.02}},
        "models": {"main": {"type": "transformer", "d_model": 64, "n_layers": 2, "n_heads": 4, "context": 64,
                            "threads": 1}},
        "modalities": {"text": {"type": "text", "model": "main"}},
    }
    if training:
        doc["training"] = {"online": {"type": "text", "model": "main", "dataset": "own", "batch_size": 16,
                                      "lr": 3e-3, "swap_every": 5, "checkpoint_every": 50, "busy_fraction": 0.1}}
    miner = Node.from_dict(doc, data_dir=tmp / ("with" if training else "without"))
    client = Node.from_dict({"log": {"level": "warning"}, "transport": _transport()}, data_dir=tmp / "client")
    latencies: list[float] = []
    async with miner.running(), client.running():
        addr = miner.transport.listen_addrs()[0]
        served = miner.component("model", "main")
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            w = windows[i % len(windows)]
            t0 = time.perf_counter()
            await client.transport.request(addr, "text", "next_token", {"k": 16}, w.astype(np.uint8), timeout=10.0)
            latencies.append(time.perf_counter() - t0)
            i += 1
        loss = await anyio.to_thread.run_sync(cross_entropy, served, held)
        trainer = miner.component("training", "online")
        steps = trainer.step if trainer is not None else 0
        swaps = served.swaps
    lat = np.array(latencies[5:]) * 1000
    return {"requests": len(latencies), "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "loss": loss.nats, "steps": steps, "swaps": swaps}


async def main(quick: bool) -> int:
    from tnode.plugins.text.config import PythonDocsConfig
    from tnode.plugins.text.datasets import TokenDataset
    from tnode.plugins.text.evaluate import eval_windows

    seconds = 30.0 if quick else 120.0
    data = TokenDataset(None, "python_docs", PythonDocsConfig(), cache_dir=Path("data") / "datasets")
    await anyio.to_thread.run_sync(data.build)
    heldout = data.tokens("heldout")
    windows = eval_windows(heldout, windows=64, length=64, seed=4)
    held = eval_windows(heldout, windows=64, length=64, seed=5)
    with tempfile.TemporaryDirectory(prefix="tnode-bench-online-") as name:
        tmp = Path(name)
        train_file = tmp / "train.txt"
        train_file.write_bytes(np.asarray(data.tokens("train"), dtype=np.uint8).tobytes())
        without = await phase(tmp, train_file, windows, held, seconds, training=False)
        with_ = await phase(tmp, train_file, windows, held, seconds, training=True)
    print(f"\nserving next_token (64-byte contexts, one client back to back) for {seconds:.0f} s per phase")
    print(f"{'phase':<18} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'held-out nats/byte':>19} {'steps':>6} "
          f"{'swaps':>6}")
    for label, r in (("without training", without), ("online training", with_)):
        print(f"{label:<18} {r['requests']:>8} {r['p50']:8.2f} {r['p99']:8.2f} {r['loss']:19.3f} {r['steps']:>6} "
              f"{r['swaps']:>6}")
    gain = without["loss"] - with_["loss"]
    print(f"\n{'PASS' if gain >= 0.5 else 'FAIL'}: served held-out loss {without['loss']:.3f} → {with_['loss']:.3f} "
          f"nats/byte (−{gain:.3f}) goal: ≥ 0.5 lower while serving")
    ratio = with_["p99"] / without["p99"]
    print(f"{'PASS' if ratio <= 2.0 else 'FAIL'}: p99 {with_['p99']:.2f} ms vs {without['p99']:.2f} ms without "
          f"training ({ratio:.2f}×) goal: ≤ 2×")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s per phase instead of 120 s")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(trio.run(main, args.quick))
