"""Yuma consensus: one epoch as a pure, vectorized function of weights, stake and previous bonds.

Layout. ``weights`` and ``bonds`` are dense ``(n_rows, n_uids)`` matrices: row ``i`` holds what the
validator with uid ``row_uids[i]`` set (``row_uids`` defaults to ``0..n_rows-1``, i.e. row index =
uid), column ``j`` is uid ``j``. Only validators have rows, so a 4096-uid subnet with 128 permits is
a 128 × 4096 problem. Per-validator vectors (``stake``, ``active``, ``validator_permit``,
``last_update``) may be given per row (length ``n_rows``) or per uid (length ``n_uids``; when both
lengths are equal they are read per uid). ``registered_at`` is per uid.

Semantics (those of subtensor's ``epoch``, without liquid alpha / Yuma 3):

1. Active stake ``A``: stake normalized, zeroed for inactive and non-permitted validators,
   normalized again.
2. Weights ``W``: rows of non-permitted validators, self-weights (``W[i, row_uids[i]]``) and
   outdated weights (``last_update[i] <= registered_at[j]``: set before uid ``j`` was last
   registered, so they were meant for its previous owner) are zeroed; rows are normalized to 1.
3. Consensus ``C_j``: the stake-weighted κ-quantile of column ``j`` — the largest value ``w`` among
   the column's entries from validators with active stake such that ``Σ_i A_i·[W_ij ≥ w] ≥ κ``
   (subtensor's ``weighted_median_col``; with κ = 0 it is the column maximum).
4. Clipped weights ``W̄ = min(W, C)``; validator trust ``Tv_i = Σ_j W̄_ij``.
5. Ranks ``R_j = Σ_i A_i W̄_ij``; incentive ``I = R / ΣR`` (``rank`` is reported normalized, equal
   to incentive, as subtensor stores it); trust ``T_j = R_j / Σ_i A_i W_ij``.
6. Bonds: ``W̃ = W + β(W̄ − W)`` (β = ``bonds_penalty``), ``ΔB_ij = A_i W̃_ij / Σ_k A_k W̃_kj``,
   previous bonds column-normalized, ``B = colnorm(α·ΔB + (1−α)·B_prev)`` with
   ``α = 1 − bonds_moving_average``. Rows without a permit hold no previous bonds (subtensor
   clears them when a permit is lost); ``reset_bonds`` drops the previous bonds of given uids.
7. Dividends ``D_i = Σ_j B_ij I_j``, normalized.
8. Emission: incentive goes to miners and dividends to validators, together normalized on
   ``Σ(I + D)`` (each half sums to 1/2 when both exist). With no incentive and no dividends the
   whole emission follows active stake, or stake when no stake is active.

Numerics. Everything runs in float32 on numpy arrays. No multi-threaded BLAS or OpenMP kernels:
on a small machine shared with other work their worker threads spin and stall on each other,
costing more than the products they speed up. A large subnet (from 128 × 4096) instead shares
its work with one helper thread: the previous bonds are converted while the weights are
prepared, and steps 3–7 run on two halves of the uid columns, which meet only in sums (numpy
releases the GIL in its heavy loops; with the other core busy this runs like one thread).

The quantile sorts only the validator dimension: each column's entries are packed into 64-bit
keys ``(float bits << 32) | stake units`` (float bits of non-negative numbers order like the
numbers), sorted row-wise, and the stake units in sorted order are cumulated. Active stake is
rounded to integer units of 2⁻³¹ of the total (subtensor's fixed point has 2⁻³²), so cumulative
stake is exact and identical on every machine; a stake sum within ``n_rows`` units of the κ
boundary counts as reaching it, so exact ties (two equal validators at κ = 0.5, or 0.49 + 0.51 at
κ = 0.51) resolve as in exact arithmetic whatever the rounding. Buffers are reused per thread and
shape, which keeps the hot path free of page faults.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

U16_MAX = 65535
STAKE_UNITS = 1 << 31  # active stake resolution of the consensus quantile (fits the low half of a key)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class YumaParams:
    """Consensus parameters (defaults: κ = 0.5, β = 1, bonds EMA memory 0.9)."""

    kappa: float = 0.5
    """Stake fraction that must weight a uid at least as high as its consensus weight."""
    bonds_penalty: float = 1.0
    """β: how much of the weight above consensus is kept out of bonds (1 = bond only clipped weight)."""
    bonds_moving_average: float = 0.9
    """Memory of the bonds EMA; the new-bond rate is ``α = 1 − bonds_moving_average``."""

    def __post_init__(self) -> None:
        for name in ("kappa", "bonds_penalty", "bonds_moving_average"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"YumaParams.{name} must be a number in [0, 1], got {value!r}")

    @property
    def alpha(self) -> float:
        """Bonds EMA rate ``1 − bonds_moving_average``."""
        return 1.0 - self.bonds_moving_average


@dataclass(frozen=True, slots=True)
class EpochResult:
    """What one epoch computed. Per-uid vectors have length ``n_uids`` (float64); validator-only
    quantities (dividends, validator trust) are zero for uids without a row."""

    row_uids: npt.NDArray[np.int64]
    """The uid of each weight/bond row."""
    active_stake: FloatArray
    """Normalized stake of active, permitted validators (the stake that counts)."""
    consensus: FloatArray
    rank: FloatArray
    """Normalized ranks (as subtensor stores them; equal to incentive)."""
    trust: FloatArray
    incentive: FloatArray
    dividends: FloatArray
    validator_trust: FloatArray
    server_emission: FloatArray
    """Share of the epoch's emission paid as incentive (sums to 1/2 when validators earn too)."""
    validator_emission: FloatArray
    """Share paid as dividends (or, with no incentive and no dividends, by stake)."""
    emission_share: FloatArray
    """``server_emission + validator_emission``: sums to 1, or 0 when there is no stake at all."""
    emission: FloatArray
    """``emission_share · total_emission`` (not rounded; the ledger decides how to round)."""
    bonds: npt.NDArray[np.float32] = field(repr=False)
    """New bonds, ``(n_rows, n_uids)``, each column summing to 1 or 0."""


# ----------------------------------------------------------------------------------------- helpers
def quantize_weights(weights: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """Row-wise u16 max-upscale, as the chain stores a weight vector: ``round(w / max(w) · 65535)``
    (halves round up); an all-zero row stays zero. Works on a vector or a matrix of rows."""
    w = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    top = w.max(axis=-1, keepdims=True) if w.size else np.zeros(w.shape[:-1] + (1,))
    scaled = np.divide(w * U16_MAX, top, out=np.zeros_like(w), where=top > 0)
    return np.minimum(np.floor(scaled + 0.5), U16_MAX).astype(np.uint16)


def quantize_bonds(bonds: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """Column-wise u16 max-upscale with truncation, as subtensor stores bonds:
    ``floor(b / max_i(b) · 65535)``; an all-zero column stays zero."""
    b = np.asarray(bonds, dtype=np.float64)
    if b.ndim != 2:
        raise ValueError("bonds must be a 2-D matrix")
    top = b.max(axis=0, keepdims=True) if b.size else np.zeros((1, b.shape[1]))
    scaled = np.divide(b * U16_MAX, top, out=np.zeros_like(b), where=top > 0)
    # The tiny epsilon keeps exact products such as 0.25·65535 from truncating one unit low.
    return np.minimum(np.floor(scaled + 1e-9), U16_MAX).astype(np.uint16)


def weighted_quantile_cols(stake: npt.ArrayLike, values: npt.ArrayLike, kappa: float) -> FloatArray:
    """Stake-weighted κ-quantile of every column of ``values`` (rows weighted by ``stake``).

    The largest entry ``w`` of the column (among rows with stake) with
    ``Σ_i stake_i·[values_ij ≥ w] ≥ κ·Σ stake``; 0 when no row has stake. This is the consensus
    step of :func:`epoch`, exposed for direct use and testing.
    """
    s = _as_float_vector(stake, "stake")
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] != len(s):
        raise ValueError(f"values must be (len(stake), n) = ({len(s)}, n), got shape {v.shape}")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError("values must be finite and non-negative")
    if not 0.0 <= kappa <= 1.0:
        raise ValueError(f"kappa must be in [0, 1], got {kappa!r}")
    total = s.sum()
    a = s / total if total > 0 else s
    return _consensus(np.ascontiguousarray(v) + np.float32(0.0), a, kappa).astype(np.float64)


# ------------------------------------------------------------------------------------------- epoch
def epoch(
    weights: npt.ArrayLike,
    stake: npt.ArrayLike,
    bonds: npt.ArrayLike | None,
    params: YumaParams,
    *,
    active: npt.ArrayLike | None = None,
    validator_permit: npt.ArrayLike | None = None,
    last_update: npt.ArrayLike | None = None,
    registered_at: npt.ArrayLike | None = None,
    row_uids: npt.ArrayLike | None = None,
    reset_bonds: npt.ArrayLike | None = None,
    total_emission: float = 1.0,
) -> EpochResult:
    """Run one Yuma epoch (see the module docstring for layout and semantics).

    :param weights: ``(n_rows, n_uids)`` non-negative weights (any scale; rows are normalized),
        e.g. the chain's u16 values.
    :param stake: stake per row or per uid (any unit).
    :param bonds: previous bonds ``(n_rows, n_uids)`` (any column scale) or None for none.
    :param params: κ, β and the bonds EMA memory.
    :param active: validators that set weights recently enough (default: all).
    :param validator_permit: validators allowed to set weights (default: all).
    :param last_update: block of each validator's last weights; with ``registered_at`` masks
        outdated weights.
    :param registered_at: block each uid was last registered, per uid.
    :param row_uids: uid of each row (default ``0..n_rows-1``); distinct, in ``[0, n_uids)``.
    :param reset_bonds: per-uid mask of columns whose previous bonds are dropped (e.g. uids
        registered since the last epoch, so a new owner does not inherit the old one's bonds).
    :param total_emission: amount distributed this epoch; ``emission`` is its split.
    :raises ValueError: on inconsistent shapes, negative or non-finite values.
    """
    w_in = np.asarray(weights)
    if w_in.ndim != 2:
        raise ValueError(f"weights must be a 2-D (n_rows, n_uids) matrix, got shape {w_in.shape}")
    n_rows, n_uids = w_in.shape
    if n_rows > n_uids:
        raise ValueError(f"more weight rows ({n_rows}) than uids ({n_uids}): every row is one uid")
    if not math.isfinite(total_emission) or total_emission < 0:
        raise ValueError(f"total_emission must be finite and non-negative, got {total_emission!r}")
    uids = _row_uids(row_uids, n_rows, n_uids)
    stake_rows, stake_uids = _stake(stake, n_rows, n_uids, uids)
    act = _per_row(active, "active", n_rows, n_uids, uids, bool)
    permit = _per_row(validator_permit, "validator_permit", n_rows, n_uids, uids, bool)
    updated = _per_row(last_update, "last_update", n_rows, n_uids, uids, np.int64)
    registered = _per_uid(registered_at, "registered_at", n_uids, np.int64)
    reset = _per_uid(reset_bonds, "reset_bonds", n_uids, bool)

    # 1. Active stake (float64: it is small and its sums decide emission fallbacks).
    s_total = stake_rows.sum()
    s = stake_rows / s_total if s_total > 0 else stake_rows.copy()
    a = s.copy()
    if act is not None:
        a[~act] = 0.0
    if permit is not None:
        a[~permit] = 0.0
    a_total = a.sum()
    if a_total > 0:
        a /= a_total

    ws = _workspace(n_rows, n_uids)
    # On a large subnet one helper thread takes half of the uid columns (and first converts the
    # previous bonds, which do not depend on the weights, while this thread prepares the weights).
    split = n_uids // 2 if _parallel(n_rows, n_uids) else 0
    pending: list[Future[Any]] = []
    try:
        previous: Callable[[], tuple[npt.NDArray[np.float32] | None, FloatArray]]
        if split:
            pending.append(_pool().submit(_previous_bonds, bonds, reset, permit, ws))
            previous = pending[0].result
        else:
            previous = _cached(lambda: _previous_bonds(bonds, reset, permit, ws))
        w = _masked_weights(w_in, ws, uids, permit, updated, registered)
        # 3–7 run per block of uid columns; blocks meet only in the sums below.
        job = _Columns(w, a, _StakeUnits.of(a, params.kappa, n_rows), params, ws, previous)
        if split:
            pending.append(_pool().submit(job.run, 0, split))
            vt_b, d_b = job.run(split, n_uids)
            vt_a, d_a = pending[-1].result()
            validator_trust, dividends_rows = vt_a + vt_b, d_a + d_b
        else:
            validator_trust, dividends_rows = job.run(0, n_uids)
    finally:
        wait(pending)  # never return (or raise) while the helper still uses this thread's buffers
    consensus, ranks, preranks, new_bonds = job.consensus, job.ranks, job.preranks, job.bonds
    trust = np.divide(ranks, preranks, out=np.zeros_like(ranks), where=preranks > 0)
    r_total = ranks.sum()
    incentive = ranks / r_total if r_total > 0 else np.zeros_like(ranks)
    d_total = dividends_rows.sum()  # Σ_j B_ij R_j: normalizing removes the 1/ΣR of incentive
    if d_total > 0:
        dividends_rows /= d_total

    # 8. Emission split.
    dividends = _scatter(dividends_rows, uids, n_uids)
    combined = incentive + dividends
    e_total = combined.sum()
    if e_total > 0:
        server = incentive / e_total
        validator = dividends / e_total
    else:
        server = np.zeros(n_uids)
        if a_total > 0:
            validator = _scatter(a, uids, n_uids)
        elif stake_uids is not None:
            total = stake_uids.sum()
            validator = stake_uids / total if total > 0 else np.zeros(n_uids)
        else:
            validator = _scatter(s, uids, n_uids)
    share = server + validator
    return EpochResult(
        row_uids=uids,
        active_stake=_scatter(a, uids, n_uids),
        consensus=consensus.astype(np.float64),
        rank=incentive.copy(),
        trust=trust,
        incentive=incentive,
        dividends=dividends,
        validator_trust=_scatter(validator_trust, uids, n_uids),
        server_emission=server,
        validator_emission=validator,
        emission_share=share,
        emission=share * float(total_emission),
        bonds=new_bonds,
    )


# ------------------------------------------------------------------------------------- internals
class _Workspace:
    """Buffers reused across epochs of one shape (allocating 2–4 MB arrays each time costs page
    faults). Each is created on first use: :func:`weighted_quantile_cols` needs only the keys."""

    def __init__(self, n_rows: int, n_uids: int) -> None:
        self.shape = (n_rows, n_uids)
        self._buffers: dict[str, npt.NDArray[Any]] = {}

    def _get(self, name: str, shape: tuple[int, ...], dtype: type) -> npt.NDArray[Any]:
        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = np.empty(shape, dtype=dtype)
        return buf

    def matrix(self, name: str) -> npt.NDArray[np.float32]:
        """A float32 (n_rows, n_uids) buffer: "w", "clipped", "tmp" or "prev"."""
        return self._get(name, self.shape, np.float32)

    def key_buffers(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """Consensus buffers: (n_uids, n_rows) int64 sort keys, int32 transposed float bits, and
        the flat int64 running stake."""
        n_rows, n_uids = self.shape
        return (self._get("keys", (n_uids, n_rows), np.int64), self._get("bits", (n_uids, n_rows), np.int32),
                self._get("cum", (n_uids * n_rows,), np.int64))


_local = threading.local()


def _workspace(n_rows: int, n_uids: int) -> _Workspace:
    cache: dict[tuple[int, int], _Workspace] = _local.__dict__.setdefault("cache", {})
    ws = cache.get((n_rows, n_uids))
    if ws is None:
        if len(cache) >= 2:  # subnets change size slowly; keep the few most recent shapes
            cache.pop(next(iter(cache)))
        ws = cache[(n_rows, n_uids)] = _Workspace(n_rows, n_uids)
    return ws


def _masked_weights(w_in: npt.NDArray[Any], ws: _Workspace, uids: npt.NDArray[np.int64],
                    permit: npt.NDArray[np.bool_] | None, updated: npt.NDArray[np.int64] | None,
                    registered: npt.NDArray[np.int64] | None) -> npt.NDArray[np.float32]:
    """Step 2: the weights as float32 in a reused buffer, masked and row-normalized. Masked entries
    are assigned 0, so only the remaining ones need to be finite and non-negative."""
    w = ws.matrix("w")
    np.copyto(w, w_in, casting="same_kind")
    if permit is not None and not permit.all():
        w[~permit] = 0.0
    w[np.arange(len(uids)), uids] = 0.0
    if updated is not None and registered is not None and len(uids):
        # Only uids registered at or after the oldest weights can be outdated: usually a handful.
        cols = np.flatnonzero(registered >= updated.min())
        if cols.size:
            sub = w[:, cols]
            sub[updated[:, None] <= registered[cols][None, :]] = 0.0
            w[:, cols] = sub
    row_sum = w.sum(axis=1)  # float32 pairwise summation
    if not np.isfinite(row_sum).all() or (w.size and w.min() < 0):
        raise ValueError("weights must be finite and non-negative")
    inv = np.divide(np.float32(1.0), row_sum, out=np.zeros_like(row_sum), where=row_sum > 0)
    np.multiply(w, inv[:, None], out=w)
    return w


@dataclass(frozen=True, slots=True)
class _StakeUnits:
    """Active stake as integer units for the exact quantile (see the module docstring)."""

    units: npt.NDArray[np.int64]
    total: int
    limit: int
    """A position is the quantile iff the units before it are ≤ limit and through it > limit."""

    @classmethod
    def of(cls, a: FloatArray, kappa: float, n_rows: int) -> _StakeUnits:
        units = np.rint(a * STAKE_UNITS).astype(np.int64)
        total = int(units.sum())
        # The quantile is the first entry with cum(≤ entry) > total − κ·total. Rows without stake
        # add nothing to cum, so they are never picked. Rounding each stake moves a sum of n_rows
        # of them by less than n_rows units: that much slack makes exact ties (0.49 + 0.51 at
        # κ = 0.51) resolve as in exact arithmetic. With κ = 0 nothing exceeds total − κ·total;
        # capping at total − 1 picks the largest entry of a row with stake.
        limit = min(math.floor(total - kappa * total) + n_rows, total - 1)
        return cls(units, total, limit)


class _Columns:
    """Steps 3–7 of the epoch for blocks of uid columns; blocks write disjoint columns of the
    shared outputs, so two threads can run two blocks at once."""

    def __init__(self, w: npt.NDArray[np.float32], a: FloatArray, stake: _StakeUnits, params: YumaParams,
                 ws: _Workspace, previous: Callable[[], tuple[npt.NDArray[np.float32] | None, FloatArray]]) -> None:
        n_rows, n_uids = w.shape
        self.w, self.a32, self.stake, self.params, self.ws = w, a.astype(np.float32), stake, params, ws
        self.previous = previous
        self.consensus = np.zeros(n_uids, dtype=np.float32)
        self.ranks = np.zeros(n_uids)
        self.preranks = np.zeros(n_uids)
        self.bonds = np.empty((n_rows, n_uids), dtype=np.float32)  # returned: a fresh array
        self.clipped, self.tmp = ws.matrix("clipped"), ws.matrix("tmp")  # created here, not in two threads
        if stake.total:
            _transpose_bits(w, ws)

    def run(self, c0: int, c1: int) -> tuple[FloatArray, FloatArray]:
        """Columns ``c0:c1``: returns their parts of Σ_j W̄_ij (validator trust) and Σ_j B_ij R_j."""
        cols = slice(c0, c1)
        if self.stake.total:
            self.consensus[cols] = _quantiles(self.ws, c0, c1, self.stake)
        w = self.w[:, cols]
        clipped = np.minimum(w, self.consensus[None, cols], out=self.clipped[:, cols])
        ranks = _vecmat(self.a32, clipped)
        self.ranks[cols] = ranks
        self.preranks[cols] = _vecmat(self.a32, w)
        prev, prev_sum = self.previous()
        bonds = self.bonds[:, cols]
        _bonds(w, clipped, ranks, self.a32, None if prev is None else prev[:, cols], prev_sum[cols],
               self.params, self.tmp[:, cols], bonds)
        return clipped.sum(axis=1).astype(np.float64), _matvec(bonds, ranks.astype(np.float32))


def _cached(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` evaluated once, on first call."""
    box: list[Any] = []

    def get() -> Any:
        if not box:
            box.append(fn())
        return box[0]

    return get


def _consensus(w: npt.NDArray[np.float32], a: FloatArray, kappa: float) -> npt.NDArray[np.float32]:
    """Column-wise κ-quantile of ``w`` (C-contiguous, rows ≥ 0) weighted by normalized stake ``a``."""
    n_rows, n_uids = w.shape
    stake = _StakeUnits.of(a, kappa, n_rows)
    if stake.total == 0 or n_uids == 0:
        return np.zeros(n_uids, dtype=np.float32)
    ws = _workspace(n_rows, n_uids)
    _transpose_bits(w, ws)
    return _quantiles(ws, 0, n_uids, stake)


def _transpose_bits(w: npt.NDArray[np.float32], ws: _Workspace) -> None:
    """The float bits of ``w`` transposed, one uid per row, into the workspace."""
    _, bits, _ = ws.key_buffers()
    # torch's blocked transposing copy (single-threaded, ~5× numpy's strided copy).
    torch.from_numpy(bits).copy_(torch.from_numpy(w.view(np.int32)).T)


def _quantiles(ws: _Workspace, c0: int, c1: int, stake: _StakeUnits) -> npt.NDArray[np.float32]:
    """The κ-quantiles of uids ``c0:c1`` from the transposed bits (see :func:`_transpose_bits`)."""
    keys, bits, cum = ws.key_buffers()
    n_rows = keys.shape[1]
    keys, bits, cum = keys[c0:c1], bits[c0:c1], cum[c0 * n_rows:c1 * n_rows]
    n_uids = c1 - c0
    halves = keys.view(np.uint32).reshape(n_uids, n_rows, 2)  # little-endian: [..., 1] is the high half
    np.copyto(halves[..., 1], bits, casting="unsafe")  # non-negative float bits: int32 → uint32 as is
    np.copyto(halves[..., 0], stake.units.astype(np.uint32))
    keys.sort(axis=1)  # numpy's vectorized int64 sort
    # A running sum of whole keys carries their low halves correctly modulo 2**32 (the high halves
    # overflow harmlessly), so it yields the cumulative stake units without extracting them. Each
    # row holds every validator's units once (summing to ``total``), so at row i the running sum's
    # low half is (i·total + units of row i up to j) mod 2**32.
    np.cumsum(keys.reshape(-1), out=cum)
    row_start = np.arange(0, n_uids * n_rows, n_rows, dtype=np.int64)
    row_last = row_start + (n_rows - 1)
    row_base = (np.arange(n_uids, dtype=np.int64) * stake.total) & _LOW32
    # k = how many leading positions of each row have cumulative units ≤ limit (the row's last
    # position exceeds it: total > limit): a branchless binary search, all rows at once.
    pos = row_start.copy()
    step = 1 << max(0, (n_rows - 1).bit_length() - 1) if n_rows > 1 else 0
    while step:
        units_so_far = (cum[np.minimum(pos + (step - 1), row_last)] - row_base) & _LOW32
        pos += np.where(units_so_far <= stake.limit, step, 0)
        step >>= 1
    return halves[np.arange(n_uids), pos - row_start, 1].view(np.float32)


_LOW32 = 0xFFFFFFFF
_SPLIT_MIN_ENTRIES = 1 << 19  # measured: below this (4096 × 128), a second thread costs more than it saves
_pool_lock = threading.Lock()
_pool_executor: ThreadPoolExecutor | None = None


def _parallel(n_rows: int, n_uids: int) -> bool:
    """Whether a subnet is large enough to share work with the helper thread."""
    return n_rows * n_uids >= _SPLIT_MIN_ENTRIES and (os.cpu_count() or 1) > 1


def _pool() -> ThreadPoolExecutor:
    """One helper thread for large epochs, started on first use."""
    global _pool_executor
    with _pool_lock:
        if _pool_executor is None:
            _pool_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tnode-yuma")
        return _pool_executor


def _forget_pool_in_child() -> None:
    # A forked child has no copy of the helper thread: it must start its own.
    global _pool_executor, _pool_lock
    _pool_executor, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _previous_bonds(
    previous: npt.ArrayLike | None,
    reset: npt.NDArray[np.bool_] | None,
    permit: npt.NDArray[np.bool_] | None,
    ws: _Workspace,
) -> tuple[npt.NDArray[np.float32] | None, FloatArray]:
    """Previous bonds as float32 (rows without a permit zeroed) and their column sums (0 for reset
    columns); ``(None, zeros)`` without previous bonds."""
    n_rows, n_uids = ws.shape
    if previous is None:
        return None, np.zeros(n_uids)
    prev_in = np.asarray(previous)
    if prev_in.shape != (n_rows, n_uids):
        raise ValueError(f"bonds must have the weights' shape {(n_rows, n_uids)}, got {prev_in.shape}")
    prev = ws.matrix("prev")
    np.copyto(prev, prev_in, casting="same_kind")
    if permit is not None and not permit.all():
        prev[~permit] = 0.0  # a validator without a permit holds no bonds (subtensor clears them)
    prev_sum = prev.sum(axis=0).astype(np.float64)
    if not np.isfinite(prev_sum).all() or (prev.size and prev.min() < 0):
        raise ValueError("bonds must be finite and non-negative")
    if reset is not None and reset.any():
        prev_sum[reset] = 0.0  # a zero coefficient in _bonds drops those columns
    return prev, prev_sum


def _bonds(
    w: npt.NDArray[np.float32],
    clipped: npt.NDArray[np.float32],
    ranks: FloatArray,
    a32: npt.NDArray[np.float32],
    prev: npt.NDArray[np.float32] | None,
    prev_sum: FloatArray,
    params: YumaParams,
    tmp: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> None:
    """``out = colnorm(α·colnorm(A∘W̃) + (1−α)·colnorm(B_prev))`` for a block of columns. The
    column sums are known in closed form: one outer product of coefficients and in-place passes
    (``prev`` and ``tmp`` are scratch)."""
    beta, alpha = params.bonds_penalty, params.alpha
    if beta == 1.0:
        wb, wb_sum = clipped, ranks  # Σ_i A_i W̄_ij is the rank already computed
    elif beta == 0.0:
        wb = w
        wb_sum = _vecmat(a32, w)
    else:
        wb = np.subtract(clipped, w, out=tmp)
        wb *= np.float32(beta)
        wb += w
        wb_sum = _vecmat(a32, wb)
    has_new = wb_sum > 0
    has_prev = prev_sum > 0
    # Column sum after the EMA of two column-normalized matrices: α·[new] + (1−α)·[prev].
    norm = alpha * has_new + (1.0 - alpha) * has_prev
    ok = norm > 0
    c_new = np.divide(alpha, wb_sum * norm, out=np.zeros_like(wb_sum), where=has_new & ok)
    c_prev = np.divide(1.0 - alpha, prev_sum * norm, out=np.zeros_like(prev_sum), where=has_prev & ok)
    np.multiply.outer(a32, c_new.astype(np.float32), out=out)  # A_i·c_j, then ·W̃_ij in place
    out *= wb
    if prev is not None and has_prev.any():
        np.multiply(prev, c_prev.astype(np.float32)[None, :], out=prev)
        out += prev


# Matrix-vector products go through einsum rather than BLAS: multi-threaded BLAS wakes worker
# threads that, on a small busy machine, cost more than the product itself.
def _vecmat(v: npt.NDArray[np.float32], m: npt.NDArray[np.float32]) -> FloatArray:
    """``v @ m`` for a (rows,) vector and a (rows, cols) float32 matrix, as float64."""
    return np.einsum("i,ij->j", v, m).astype(np.float64)


def _matvec(m: npt.NDArray[np.float32], v: npt.NDArray[np.float32]) -> FloatArray:
    """``m @ v`` for a (rows, cols) float32 matrix, as float64."""
    return np.einsum("ij,j->i", m, v).astype(np.float64)


def _scatter(values: FloatArray, uids: npt.NDArray[np.int64], n_uids: int) -> FloatArray:
    out = np.zeros(n_uids)
    out[uids] = values
    return out


def _as_float_vector(x: npt.ArrayLike, name: str) -> FloatArray:
    v = np.asarray(x, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a vector, got shape {v.shape}")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    return v


def _row_uids(row_uids: npt.ArrayLike | None, n_rows: int, n_uids: int) -> npt.NDArray[np.int64]:
    if row_uids is None:
        return np.arange(n_rows, dtype=np.int64)
    uids = np.asarray(row_uids)
    if uids.shape != (n_rows,) or (uids.size and not np.issubdtype(uids.dtype, np.integer)):
        raise ValueError(f"row_uids must be {n_rows} integers (one per weight row), got {uids!r}")
    uids = uids.astype(np.int64)
    if uids.size and (uids.min() < 0 or uids.max() >= n_uids or np.unique(uids).size != n_rows):
        raise ValueError(f"row_uids must be distinct uids in [0, {n_uids})")
    return uids


def _stake(stake: npt.ArrayLike, n_rows: int, n_uids: int,
           uids: npt.NDArray[np.int64]) -> tuple[FloatArray, FloatArray | None]:
    """Stake per row, plus stake per uid when it was given per uid."""
    s = _as_float_vector(stake, "stake")
    if len(s) == n_uids:
        return s[uids], s
    if len(s) == n_rows:
        return s, None
    raise ValueError(f"stake must have one entry per row ({n_rows}) or per uid ({n_uids}), got {len(s)}")


def _per_row(x: npt.ArrayLike | None, name: str, n_rows: int, n_uids: int,
             uids: npt.NDArray[np.int64], dtype: type) -> npt.NDArray[Any] | None:
    if x is None:
        return None
    v = np.asarray(x)
    if v.ndim != 1 or len(v) not in (n_rows, n_uids):
        raise ValueError(f"{name} must have one entry per row ({n_rows}) or per uid ({n_uids}), got shape {v.shape}")
    v = v.astype(dtype)
    return v[uids] if len(v) == n_uids else v


def _per_uid(x: npt.ArrayLike | None, name: str, n_uids: int, dtype: type) -> npt.NDArray[Any] | None:
    if x is None:
        return None
    v = np.asarray(x)
    if v.shape != (n_uids,):
        raise ValueError(f"{name} must have one entry per uid ({n_uids}), got shape {v.shape}")
    return v.astype(dtype)
