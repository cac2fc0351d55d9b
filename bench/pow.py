"""Proof-of-work throughput: seals/s per core and over cores, next to the raw hashlib loop limit.

Baseline (same run): the tightest Python loop over the same hash — BLAKE2b-256 of 72 bytes with
the 64-byte prefix state copied, ``h = copy(); h.update(nonce8); h.digest()`` — on one core, and
the same loop in one process per core at once (what the machine gives right now).

Measured: the solver's hot loop in this process, and ``pow.solve`` with 1 and with all-core
worker processes (steady rate from its progress reports, after start-up).
Goals: ≥ 80% of the raw loop per core, and near-linear scaling (≥ 85% of cores × one process).

    python bench/pow.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import statistics
import struct
import threading
import time

from tnode.plugins.chain_local import pow as pow_

GOAL_PER_CORE = 0.80
GOAL_SCALING = 0.85


def raw_loop(seconds: float) -> float:
    """Seals/s of the bare loop (no comparison, no nonce bookkeeping)."""
    copy = hashlib.blake2b(os.urandom(64), digest_size=32).copy
    nonce = struct.pack("<Q", 12345)
    count, batch = 0, 20_000
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(batch):
            h = copy()
            h.update(nonce)
            h.digest()
        count += batch
    return count / (time.perf_counter() - start)


def hot_loop(seconds: float) -> float:
    """Seals/s of the solver's inner loop (``pow._scan``) in this process, never succeeding."""
    state = hashlib.blake2b(os.urandom(66), digest_size=32)
    his = [struct.pack("<Q", hi)[:6] for hi in range(1 << 16)]
    bound = bytes(32)  # nothing is below zero
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        pow_._scan(state.copy, his, bound)
        count += len(his)
    return count / (time.perf_counter() - start)


def raw_parallel(processes: int, seconds: float) -> float:
    with multiprocessing.get_context("forkserver").Pool(processes) as pool:
        return sum(pool.map(raw_loop, [seconds] * processes))


def solver_rate(processes: int, seconds: float) -> float:
    cancel = threading.Event()
    samples: list[tuple[float, int]] = []
    timer = threading.Timer(seconds, cancel.set)
    timer.start()
    pow_.solve(os.urandom(32), os.urandom(32), 2**62, processes=processes, cancel=cancel, poll=0.05,
               progress=lambda n: samples.append((time.perf_counter(), n)))
    timer.cancel()
    steady = [s for s in samples if s[1] > 0][:-1]  # from the first counted unit; the last is post-stop
    (t0, n0), (t1, n1) = steady[0], steady[-1]
    return (n1 - n0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter measurements")
    args = parser.parse_args()
    secs, reps = (1.0, 3) if args.quick else (3.0, 5)
    cores = os.cpu_count() or 1
    raw1 = statistics.median(raw_loop(secs) for _ in range(reps))
    hot = statistics.median(hot_loop(secs) for _ in range(reps))
    rawn = raw_parallel(cores, secs * 2)
    s1 = statistics.median(solver_rate(1, secs * 2) for _ in range(max(1, reps // 2)))
    sn = statistics.median(solver_rate(cores, secs * 2) for _ in range(max(1, reps // 2)))
    mh = 1e6
    print(f"raw hashlib loop, 1 core          {raw1 / mh:6.2f} MH/s   (BLAKE2b-256 of 72 B, midstate copy)")
    print(f"raw hashlib loop, {cores} processes     {rawn / mh:6.2f} MH/s   ({rawn / raw1:.2f}x one core)")
    print(f"solver hot loop, in process       {hot / mh:6.2f} MH/s   {hot / raw1:6.1%} of raw")
    print(f"solve(), 1 process                {s1 / mh:6.2f} MH/s   {s1 / raw1:6.1%} of raw")
    print(f"solve(), {cores} processes              {sn / mh:6.2f} MH/s   {sn / s1:.2f}x one process, "
          f"{sn / rawn:.1%} of the raw loop on {cores} processes")
    checks = [
        (f"solver per core {s1 / raw1:.1%} of the raw loop >= {GOAL_PER_CORE:.0%}", s1 >= GOAL_PER_CORE * raw1),
        (f"{cores} processes {sn / s1:.2f}x one process >= {GOAL_SCALING * cores:.2f}x", sn >= GOAL_SCALING * cores * s1),
    ]
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")


if __name__ == "__main__":
    main()
