"""Proof-of-work throughput: seals/s per core and over cores, next to the raw hashlib loop limit.

Baseline: the tightest Python loop over the same hash (blake2b of 72 bytes with a copied
midstate), measured in the same run. Goals: ≥80% of that limit on one core, near-linear scaling.

    python bench/pow.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import struct
import time

from tnode.plugins.chain_local import pow as pow_


def raw_loop(n: int) -> float:
    base = hashlib.blake2b(os.urandom(64), digest_size=32)
    copy = base.copy
    pack = struct.Struct("<Q").pack
    t = time.perf_counter()
    for i in range(n):
        h = copy()
        h.update(pack(i))
        h.digest()
    return n / (time.perf_counter() - t)


def search_rate(n: int) -> float:
    t = time.perf_counter()
    pow_.search(os.urandom(32), os.urandom(32), 2**200, 0, n)  # practically never succeeds
    return n / (time.perf_counter() - t)


def solver_rate(processes: int, seconds: float) -> float:
    import threading

    cancel = threading.Event()
    counts: list[tuple[float, int]] = []
    threading.Timer(seconds, cancel.set).start()
    start = time.perf_counter()
    pow_.solve(os.urandom(32), os.urandom(32), 2**62, processes=processes, cancel=cancel,
               progress=lambda h: counts.append((time.perf_counter() - start, h)), poll=0.05)
    # Rate over the steady part (after the workers started).
    (t0, h0), (t1, h1) = counts[len(counts) // 4], counts[-1]
    return (h1 - h0) / max(t1 - t0, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 200_000 if args.quick else 1_000_000
    reps = 3 if args.quick else 5
    raw = statistics.median(raw_loop(n) for _ in range(reps))
    one = statistics.median(search_rate(n) for _ in range(reps))
    secs = 2.0 if args.quick else 5.0
    s1 = solver_rate(1, secs)
    cores = os.cpu_count() or 1
    sn = solver_rate(cores, secs)
    print(f"raw hashlib loop limit : {raw / 1e6:.2f} MH/s per core (blake2b-256, midstate copy)")
    print(f"search loop, 1 core    : {one / 1e6:.2f} MH/s  ({one / raw:.0%} of the limit; goal ≥80%: "
          f"{'PASS' if one >= 0.8 * raw else 'FAIL'})")
    print(f"solver, 1 process      : {s1 / 1e6:.2f} MH/s  ({s1 / raw:.0%} of the limit)")
    print(f"solver, {cores} processes    : {sn / 1e6:.2f} MH/s  (scaling {sn / s1:.2f}x over 1 process on {cores} cores; "
          f"goal near-linear: {'PASS' if sn >= 0.8 * cores * s1 else 'FAIL'})")


if __name__ == "__main__":
    main()
