"""Distillation from the network's miners with a learned gate, on a small in-process network
(real nodes, real libp2p on 127.0.0.1, the local chain; every request signed and admitted).

Teachers of known quality serve text as miners: the byte transformer shipped with tnode (trained on
python_docs), a byte 3-gram fit on the student's own training text, the uniform model and a garbage
spammer. The client node holds a uid and stake, a ``moe`` router and ``[teachers.net] type =
"router"``. A small student transformer is trained twice for the same steps, on the same windows
of python_docs's train split from the same initial weights: alone (next-token loss only) and with
``--teachers network`` (half next-token loss, half KL toward the gated mixture of the teachers).

1. Held-out loss (nats/byte on python_docs's held-out split) along both runs.
   PASS when the distilled student ends below the one trained alone.
2. Gating: each teacher's mean gate weight. PASS when the weights rank the teachers in the order of
   their quality (transformer > 3-gram > uniform > garbage).

    python bench/distill.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import trio

QUALITY = ("transformer", "3-gram", "uniform", "garbage")  # best first


def _transport() -> dict[str, Any]:
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0, "dht": False}


def _models(train_file: Path) -> dict[str, dict[str, Any]]:
    return {
        "transformer": {"models": {"m": {"type": "transformer", "checkpoint": "builtin", "threads": 1}}},
        "3-gram": {"datasets": {"own": {"type": "text_files", "path": str(train_file), "heldout_fraction": 0.01}},
                   "models": {"m": {"type": "ngram", "dataset": "own", "order": 3}}},
        "uniform": {"models": {"m": {"type": "uniform"}}},
        "garbage": {"models": {"m": {"type": "garbage", "seed": 5}}},
    }


@contextlib.asynccontextmanager
async def network(tmp: Path, train_file: Path) -> AsyncIterator[tuple[Any, dict[str, str]]]:
    """The client node (chain authority, router, teachers) and one miner per teacher model."""
    from tnode.keys import Keypair
    from tnode.node import Node

    models = _models(train_file)
    chot, ccold = Keypair.generate(), Keypair.generate()
    keys = {label: Keypair.generate() for label in models}
    accounts = [{"coldkey": ccold.public_hex, "hotkey": chot.public_hex, "stake": 100.0, "register": True}]
    accounts += [{"coldkey": Keypair.generate().public_hex, "hotkey": k.public_hex, "register": True}
                 for k in keys.values()]
    log = {"level": "warning"}
    client = Node.from_dict({
        "log": log, "transport": _transport(),
        "chain": {"type": "local", "block_time": 0.2, "genesis": {"accounts": accounts},
                  "hyperparameters": {"max_registrations_per_block": len(models) + 1}},
        "routers": {"main": {"type": "moe", "modality": "text", "refresh_interval": 1.0}},
        "teachers": {"net": {"type": "router", "router": "main"}},
    }, data_dir=tmp / "client", hotkey=chot, coldkey=ccold)
    labels: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(client.running())
        authority = client.transport.listen_addrs()[0]
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        for label, tables in models.items():
            miner = Node.from_dict({
                "log": log, "transport": _transport(),
                "chain": {"type": "local", "mode": "client", "authority": authority, "request_timeout": 5.0},
                **tables,
                "modalities": {"text": {"type": "text", "model": "m", "max_batch": 32}},
            }, data_dir=tmp / label, hotkey=keys[label])
            ready = anyio.Event()

            async def serve(node: Any = miner, ready: anyio.Event = ready) -> None:
                async with node.running():
                    await client.chain.publish_addrs(node.hotkey, node.transport.listen_addrs(), node.peer_id)
                    ready.set()
                    await anyio.sleep_forever()

            tg.start_soon(serve)
            with anyio.fail_after(120):
                await ready.wait()
            labels[keys[label].public_hex] = label
        await client.component("router").refresh()
        yield client, labels


async def main(quick: bool) -> int:
    from tnode.plugins.text.config import PythonDocsConfig
    from tnode.plugins.text.datasets import TokenDataset
    from tnode.plugins.text.network_train import NetworkSettings, distill_with
    from tnode.plugins.text.train import TrainSettings, train
    from tnode.plugins.text.transformer import Shape

    steps = 80 if quick else 300
    settings = TrainSettings(steps=steps, batch_size=16, lr=4e-3, warmup=20, shape=Shape(64, 2, 4, 64), seed=3,
                             checkpoint_every=max(1, steps // 4), eval_windows=128, threads=1)
    with tempfile.TemporaryDirectory(prefix="tnode-bench-distill-") as name:
        tmp = Path(name)
        t0 = time.monotonic()
        data = TokenDataset(None, "python_docs", PythonDocsConfig(), cache_dir=Path("data") / "datasets")
        await anyio.to_thread.run_sync(data.build)
        train_tokens, heldout = data.tokens("train"), data.tokens("heldout")
        train_file = tmp / "train.txt"
        train_file.write_bytes(np.asarray(train_tokens, dtype=np.uint8).tobytes())
        print(f"python_docs: {len(train_tokens):,} train / {len(heldout):,} held-out bytes; student "
              f"{settings.shape}, {steps} steps × {settings.batch_size} windows", flush=True)

        curves: dict[str, dict[int, float]] = {"alone": {}, "distilled": {}}

        def recorder(run: str) -> Any:
            def on_step(p: Any) -> None:
                if p.heldout is not None:
                    curves[run][p.step] = p.heldout.nats
            return on_step

        t1 = time.monotonic()
        alone = await anyio.to_thread.run_sync(lambda: train(train_tokens, heldout, tmp / "alone.pt", settings,
                                                             resume=False, progress=recorder("alone")))
        alone_s = time.monotonic() - t1
        async with network(tmp / "net", train_file) as (client, labels):
            print(f"network of {len(labels)} miners up in {time.monotonic() - t0:.1f} s", flush=True)
            source = client.component("teachers", "net")
            t1 = time.monotonic()
            done = await distill_with(source, train_tokens, heldout, tmp / "distilled.pt", settings,
                                      NetworkSettings(k=32, rps=0.0, timeout=10.0, alpha=0.5),
                                      resume=False, progress=recorder("distilled"))
            distilled_s = time.monotonic() - t1
        from tnode.plugins.text.distill import gating_rows
        from tnode.plugins.text.transformer import load_checkpoint

        _, state = load_checkpoint(tmp / "distilled.pt")
        rows = {labels[r["hotkey"]]: r for r in gating_rows(state)}

    print(f"\nheld-out cross-entropy (nats/byte), {settings.eval_windows} windows of {settings.shape.context} bytes")
    print(f"{'step':>6}  {'alone':>8}  {'distilled':>9}")
    for step in sorted(curves["alone"]):
        print(f"{step:>6}  {curves['alone'][step]:8.3f}  {curves['distilled'].get(step, float('nan')):9.3f}")
    print(f"{'end':>6}  {alone.heldout.nats:8.3f}  {done.result.heldout.nats:9.3f}   "
          f"({alone_s:.0f} s alone, {distilled_s:.0f} s distilled; {done.requests} requests, "
          f"failures {done.failures or 'none'})")
    print("\ngating (mean weight over the teachers that answered; context-free: softmax of the bias)")
    print(f"{'teacher':<12} {'uid':>4} {'mean weight':>12} {'context-free':>13} {'windows':>8}")
    for label in QUALITY:
        r = rows[label]
        print(f"{label:<12} {r['uid']:>4} {r['mean_weight']:12.3g} {r['prior_weight']:13.3f} {r['answered']:>8}")
    print()
    gain = alone.heldout.nats - done.result.heldout.nats
    ok = gain > 0
    print(f"{'PASS' if ok else 'FAIL'}: distilled held-out {done.result.heldout.nats:.3f} vs alone "
          f"{alone.heldout.nats:.3f} nats/byte (−{gain:.3f}) goal: distilled < alone after {steps} steps")
    weights = [rows[label]["mean_weight"] for label in QUALITY]
    ranked = all(a > b for a, b in zip(weights, weights[1:], strict=False))
    print(f"{'PASS' if ranked else 'FAIL'}: gate weights " + " > ".join(f"{label} {w:.3g}" for label, w in
                                                                       zip(QUALITY, weights, strict=True))
          + " goal: ranked by teacher quality")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="80 steps instead of 300")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.WARNING)
    sys.exit(trio.run(main, args.quick))
