"""Yuma epoch benchmark: tnode's vectorized epoch next to a straightforward numpy reference.

The reference (below, same run) is the direct vectorized transcription of the epoch in float64:
mask and normalize, then for the consensus a full argsort of every column, the stake
gathered in sorted order and cumulated, clip, ranks, trust, bonds EMA, dividends, emission. Both
get the same inputs (u16 weights as the chain stores them, as float64 like the ledger passes them;
lognormal stake, previous bonds from an earlier epoch, a few inactive validators and freshly
registered uids) and must agree to 1e-4. The two are timed in alternation (medians), so both see
the same machine load. From 4096 × 128 up, tnode's epoch hands part of its work to one helper
thread; ``--serial`` turns that off to show the single-thread figures.

Goals: ≤ 20 ms median at 4096 uids × 128 validators, and ≥ 10× the reference there.

The reference's few matrix-vector products run on single-threaded BLAS: OpenBLAS worker threads
keep spinning for about 0.1 s after each call, which on a 2-core machine takes a core away from
whatever is measured next (tnode's epoch uses torch's thread pool for three kernels).

    python bench/yuma.py [--quick] [--serial]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS (see the docstring)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from tnode.plugins.chain_local import yuma  # noqa: E402
from tnode.plugins.chain_local.yuma import EpochResult, YumaParams, epoch, quantize_weights  # noqa: E402

GOAL_MS = 20.0
GOAL_RATIO = 10.0


def reference_epoch(weights: np.ndarray, stake: np.ndarray, bonds: np.ndarray, params: YumaParams, *,
                    active: np.ndarray, last_update: np.ndarray, registered_at: np.ndarray,
                    total_emission: float = 1.0) -> dict[str, np.ndarray]:
    """Straightforward float64 epoch; rows are uids 0..n_rows-1, all permitted."""
    n_rows, n_uids = weights.shape
    s = stake / stake.sum()
    a = np.where(active, s, 0.0)
    a = a / a.sum()
    w = weights.astype(np.float64)
    w[np.arange(n_rows), np.arange(n_rows)] = 0.0
    w[last_update[:, None] <= registered_at[None, :]] = 0.0
    rs = w.sum(axis=1, keepdims=True)
    w = np.divide(w, rs, out=np.zeros_like(w), where=rs > 0)
    # Consensus: full sort of every column, cumulative stake in sorted order.
    order = np.argsort(w, axis=0)
    sorted_w = np.take_along_axis(w, order, axis=0)
    cum = np.cumsum(a[order], axis=0)
    k = np.minimum((cum <= 1.0 - params.kappa).sum(axis=0), n_rows - 1)
    consensus = sorted_w[k, np.arange(n_uids)]
    clipped = np.minimum(w, consensus)
    vtrust = clipped.sum(axis=1)
    ranks = a @ clipped
    pre = a @ w
    trust = np.divide(ranks, pre, out=np.zeros_like(ranks), where=pre > 0)
    incentive = ranks / ranks.sum()
    wb = w + params.bonds_penalty * (clipped - w)
    delta = a[:, None] * wb
    delta = _colnorm(delta)
    prev = _colnorm(bonds.astype(np.float64))
    new = _colnorm(params.alpha * delta + (1.0 - params.alpha) * prev)
    dividends = new @ incentive
    dividends = dividends / dividends.sum()
    d_full = np.zeros(n_uids)
    d_full[:n_rows] = dividends
    vt_full = np.zeros(n_uids)
    vt_full[:n_rows] = vtrust
    total = incentive.sum() + d_full.sum()
    return {"consensus": consensus, "trust": trust, "incentive": incentive, "dividends": d_full,
            "validator_trust": vt_full, "bonds": new,
            "emission": (incentive + d_full) / total * total_emission}


def _colnorm(m: np.ndarray) -> np.ndarray:
    cs = m.sum(axis=0, keepdims=True)
    return np.divide(m, cs, out=np.zeros_like(m), where=cs > 0)


def make_inputs(n_uids: int, n_validators: int, seed: int) -> dict[str, Any]:
    """A subnet like a real one: miners of varied quality, validators agreeing with noise."""
    rng = np.random.default_rng(seed)
    quality = rng.random(n_uids) ** 2
    noise = 1.0 + 0.3 * rng.standard_normal((n_validators, n_uids))
    raw = np.clip(quality[None, :] * noise, 0.0, None)
    raw[rng.random(raw.shape) < 0.2] = 0.0  # each validator skips some miners
    weights = quantize_weights(raw).astype(np.float64)  # what the chain stores
    stake = rng.lognormal(10.0, 1.5, n_validators)
    active = rng.random(n_validators) > 0.05
    active[0] = True
    last_update = rng.integers(900, 1000, n_validators)
    registered_at = rng.integers(0, 800, n_uids)
    fresh = rng.choice(np.arange(n_validators, n_uids), size=max(1, n_uids // 100), replace=False)
    registered_at[fresh] = rng.integers(950, 1000, fresh.size)  # weights older than these are outdated
    bonds = rng.random((n_validators, n_uids)) * (weights > 0)
    return {"weights": weights, "stake": stake, "bonds": bonds, "active": active,
            "last_update": last_update, "registered_at": registered_at}


def interleaved_medians(fast: Callable[[], object], ref: Callable[[], object], rounds: int,
                        fast_per_round: int) -> tuple[float, float]:
    """Median ms of each, measured in alternation so that both see the same machine load."""
    fast()
    ref()  # warm-up (workspace buffers, first-touch pages)
    fast_times, ref_times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        ref()
        ref_times.append(time.perf_counter() - start)
        for _ in range(fast_per_round):
            start = time.perf_counter()
            fast()
            fast_times.append(time.perf_counter() - start)
    return statistics.median(fast_times) * 1e3, statistics.median(ref_times) * 1e3


def check_agreement(fast: EpochResult, ref: dict[str, np.ndarray], label: str) -> float:
    worst = 0.0
    for name, expected in ref.items():
        got = np.asarray(getattr(fast, name), dtype=np.float64)
        err = float(np.abs(got - expected).max()) if expected.size else 0.0
        worst = max(worst, err)
        assert err <= 1e-4, f"{label}: {name} differs from the reference by {err:.2e}"
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--serial", action="store_true", help="no helper thread in tnode's epoch")
    args = parser.parse_args()
    if args.serial:
        yuma._SPLIT_MIN_ENTRIES = 1 << 62
    rounds, per_round = (5, 5) if args.quick else (15, 10)
    params = YumaParams()
    print(f"{'uids':>5} {'vals':>5} {'tnode ms':>9} {'reference ms':>13} {'ratio':>7} {'max |diff|':>11}")
    verdicts = []
    for n_uids in (256, 1024, 4096):
        for n_val in (64, 128):
            x = make_inputs(n_uids, n_val, seed=n_uids + n_val)
            kwargs = {"active": x["active"], "last_update": x["last_update"], "registered_at": x["registered_at"]}

            def fast(x: dict[str, Any] = x, kwargs: dict[str, Any] = kwargs) -> EpochResult:
                return epoch(x["weights"], x["stake"], x["bonds"], params, **kwargs)

            def ref(x: dict[str, Any] = x, kwargs: dict[str, Any] = kwargs) -> dict[str, np.ndarray]:
                return reference_epoch(x["weights"], x["stake"], x["bonds"], params, **kwargs)

            diff = check_agreement(fast(), ref(), f"{n_uids}x{n_val}")
            t_fast, t_ref = interleaved_medians(fast, ref, rounds, per_round)
            ratio = t_ref / t_fast
            print(f"{n_uids:>5} {n_val:>5} {t_fast:>9.2f} {t_ref:>13.2f} {ratio:>6.1f}x {diff:>11.1e}")
            if (n_uids, n_val) == (4096, 128):
                verdicts.append((f"4096x128 median {t_fast:.2f} ms <= {GOAL_MS:.0f} ms", t_fast <= GOAL_MS))
                verdicts.append((f"4096x128 {ratio:.1f}x the reference >= {GOAL_RATIO:.0f}x", ratio >= GOAL_RATIO))
    for text, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")


if __name__ == "__main__":
    main()
