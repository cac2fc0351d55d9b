"""The router's must-show figures on a small in-process network (real libp2p on 127.0.0.1).

Four text miners of known quality (byte 4-gram models fit on disjoint shards of the standard
library's sources, 25 / 50 / 100 / 200 kB — more data, better model) and a client node whose
``moe`` router asks k = 3 of them per query, k_min = 2.

1. Learning: the router answers held-out windows online — predicts, then learns the true tokens.
2. Held-out quality: on fresh windows, the cross-entropy (nats/byte) of the router's mixture next to
   each single miner's on the same windows (each miner asked directly).
   PASS when the mixture is at or below the best single miner.
3. Routing: the share of queries sent to each miner. PASS when it rises with the miner's quality
   (Spearman correlation with −cross-entropy > 0).
4. Failover: the best miner is killed mid-run; queries keep going. PASS when ≥ 99 % succeed, p99
   latency stays within the router's timeout and the router stops asking the dead miner within 5 s.

    python bench/router.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import trio

SIZES = (25_000, 50_000, 100_000, 200_000)
ROUTER = {"k": 3, "k_min": 2, "timeout": 2.0, "timeout_after_k_min": 0.05, "seed": 7, "backoff_base": 0.5,
          "mixture_rate": 0.1}


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


async def single_ce(router: Any, miner: Any, window: np.ndarray) -> float:
    """One miner's cross-entropy on ``window`` (asked directly, every position)."""
    from tnode.plugins.router import text_mix

    reply = await router.node.transport.request(miner.peer_id, "text", "next_token",
                                                {"k": router.config.max_top_k, "positions": "all"},
                                                window[:-1].astype(np.int32), timeout=10.0)
    pred = text_mix.parse_topk(reply.body, reply.payload, rows=len(window) - 1, k=router.config.max_top_k)
    return text_mix.cross_entropy(text_mix.dense(pred, router.config.floor), window[1:])


async def main(quick: bool) -> int:
    from tnode.plugins.router import text_mix
    from tnode.plugins.router.localnet import heldout_windows, local_net

    learn_n, eval_n, fail_n, length = (60, 30, 80, 64) if quick else (200, 100, 300, 64)
    with tempfile.TemporaryDirectory(prefix="tnode-bench-router-") as tmp:
        t0 = time.monotonic()
        async with local_net(Path(tmp), SIZES, router=ROUTER) as net:
            router = net.router()
            print(f"network up in {time.monotonic() - t0:.1f} s: {len(net.miners)} miners, client {router.node.name}")
            windows = heldout_windows(net.heldout, learn_n + eval_n + fail_n, length, seed=11)
            for w in windows[:learn_n]:
                mixed = await router.next_token(w[:-1], positions="all")
                router.learn_text(mixed, w[1:])
            mix_ce, singles = [], {m.hotkey.public_hex: [] for m in net.miners}
            for w in windows[learn_n: learn_n + eval_n]:
                mixed = await router.next_token(w[:-1], positions="all")
                mix_ce.append(text_mix.cross_entropy(mixed.value, w[1:]))
                router.learn_text(mixed, w[1:])
                for m in net.miners:
                    singles[m.hotkey.public_hex].append(await single_ce(router, m, w))
            mixture = float(np.mean(mix_ce))
            ce = {h: float(np.mean(v)) for h, v in singles.items()}
            total_sent = sum(r.sent for r in router.board.miners.values())
            print("\nheld-out cross-entropy, nats/byte (lower is better), and routing share")
            print(f"  {'miner':<22}{'CE':>8}{'share':>9}{'weight':>9}{'answered':>10}")
            for m in net.miners:
                h = m.hotkey.public_hex
                rec = router.board.miners[h]
                print(f"  {net.labels[h]:<22}{ce[h]:8.4f}{rec.sent / total_sent:9.3f}{rec.weight:9.3f}{rec.answered:10d}")
            print(f"  {'router mixture (k=3)':<22}{mixture:8.4f}")
            best_h = min(ce, key=lambda h: ce[h])
            best = ce[best_h]
            verdict = "PASS" if mixture <= best else "FAIL"
            print(f"{verdict}: mixture cross-entropy {mixture:.4f} vs best single miner {best:.4f} nats/byte "
                  f"(goal: at or below; {100 * (best - mixture) / best:+.1f} %)")
            hot = list(ce)
            share = [router.board.miners[h].sent for h in hot]
            rho = spearman(share, [-ce[h] for h in hot])
            print(f"{'PASS' if rho > 0 else 'FAIL'}: routing share vs quality, Spearman {rho:+.2f} (goal: > 0)")

            # Failover: kill the best miner and keep asking.
            dead = next(i for i, m in enumerate(net.miners) if m.hotkey.public_hex == best_h)
            ok, latencies, last_sent_to_dead = 0, [], None
            kill_at = fail_n // 4
            killed_t = 0.0
            for i, w in enumerate(windows[learn_n + eval_n:]):
                if i == kill_at:
                    net.kill(dead)
                    killed_t = time.monotonic()
                before = router.board.miners[best_h].sent
                start = time.monotonic()
                try:
                    mixed = await router.next_token(w[:-1], positions="last")
                    ok += 1
                except Exception as exc:  # counted as a failed query
                    print(f"  query {i} failed: {exc}", file=sys.stderr)
                latencies.append(time.monotonic() - start)
                if i >= kill_at and router.board.miners[best_h].sent > before:
                    last_sent_to_dead = time.monotonic()
            success = ok / fail_n
            p99 = float(np.quantile(latencies, 0.99))
            stop_after = (last_sent_to_dead - killed_t) if last_sent_to_dead else 0.0
            rec = router.board.miners[best_h]
            print(f"\nfailover: {net.labels[best_h]} killed after {kill_at} of {fail_n} queries; its errors: "
                  f"{rec.errors}")
            print(f"{'PASS' if success >= 0.99 else 'FAIL'}: {100 * success:.1f} % of queries succeeded (goal: ≥ 99 %)")
            print(f"{'PASS' if p99 <= ROUTER['timeout'] else 'FAIL'}: p99 latency {1000 * p99:.1f} ms "
                  f"(goal: ≤ timeout {1000 * ROUTER['timeout']:.0f} ms)")
            print(f"{'PASS' if stop_after <= 5.0 else 'FAIL'}: last query sent to the dead miner {stop_after:.2f} s "
                  f"after it died (goal: ≤ 5 s)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer queries (about a minute)")
    args = parser.parse_args()
    os.environ.setdefault("TNODE_DISABLE_PLUGIN_AUTOLOAD", "1")
    logging.disable(logging.WARNING)
    sys.exit(trio.run(main, args.quick))
