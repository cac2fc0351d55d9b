"""What the router knows about each miner: the chain's prior, its own measurements, backoff.

Pure and synchronous (no I/O), so selection and learning are tested without a network. Quality is
a reward in [0, 1] per answer (text: the probability the miner gave the true next token, as a
geometric mean over positions; image: PSNR / 50 dB; 0 for no answer), kept as decayed
pseudo-counts of a Beta distribution whose prior mean and strength come from the chain.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tnode.interfaces import Metagraph, Neuron

REFUSALS_THAT_BACK_OFF = frozenset({"timeout", "unreachable", "overloaded", "rate_limited", "unregistered",
                                    "too_large", "invalid_response", "internal", "unknown_modality"})
"""Failure codes after which a miner is skipped for a while (every code a miner or the network gives)."""


@dataclass
class MinerRecord:
    """One miner's standing in the router."""

    hotkey: str
    uid: int
    peer_id: str
    addrs: tuple[str, ...]
    prior: float  # chain's view in [0, 1]
    hits: float = 0.0  # decayed Σ reward
    misses: float = 0.0  # decayed Σ (1 − reward)
    weight: float = 0.0  # mixture weight (online EM), shares sum to 1 over the board
    sent: int = 0
    answered: int = 0
    failures: int = 0  # consecutive
    lates: int = 0  # consecutive answers cut off after k_min others came
    backoff_until: float = 0.0
    latency: float = 0.0  # EWMA of answered latencies, seconds
    last_error: str = ""
    errors: dict[str, int] = field(default_factory=dict)
    failed_request: int = 0  # highest number of a failed request (its queries count one failure)

    def mean(self, strength: float) -> float:
        """Posterior mean quality: prior worth ``strength`` observations plus the router's own."""
        a = self.prior * strength + self.hits
        b = (1.0 - self.prior) * strength + self.misses
        return a / (a + b) if a + b > 0 else 0.5


def chain_prior(mg: Metagraph, mix: Sequence[float]) -> dict[int, float]:
    """uid → the chain's view of each miner in [0, 1]: incentive, trust and the validators'
    stake-weighted weights (each scaled to its maximum over the subnet), combined by ``mix``."""
    n = mg.n
    if n == 0:
        return {}
    incentive = np.array([x.incentive for x in mg.neurons], dtype=np.float64)
    trust = np.array([x.trust for x in mg.neurons], dtype=np.float64)
    voted = np.zeros(n)
    if mg.weights is not None and np.asarray(mg.weights).shape == (n, n):
        stake = np.array([x.stake if x.validator_permit else 0.0 for x in mg.neurons])
        w = np.asarray(mg.weights, dtype=np.float64)
        rows = w.sum(axis=1, keepdims=True)
        voted = (stake[:, None] * np.divide(w, rows, out=np.zeros_like(w), where=rows > 0)).sum(axis=0)

    def scaled(v: np.ndarray) -> np.ndarray:
        top = float(v.max()) if v.size else 0.0
        return v / top if top > 0 else np.zeros_like(v)

    parts = [scaled(incentive), scaled(trust), scaled(voted)]
    total = sum(mix)
    combined: np.ndarray = np.sum([m * p for m, p in zip(mix, parts, strict=True)], axis=0) / total
    # A miner the chain knows nothing about still starts at 0.25, so exploration can find it.
    return {x.uid: float(0.25 + 0.5 * c) for x, c in zip(mg.neurons, combined, strict=True)}


LATE_STREAK = 3
"""Consecutive late answers after which a miner backs off like a failed one: a miner that never
answers in time (dead, with its connection not yet known to be gone, or overloaded) stops being
asked within a few queries instead of only losing quality."""


class Board:
    """Every miner the router may ask, their measurements and the exploration policy."""

    def __init__(self, *, strength: float, decay: float, backoff_base: float, backoff_max: float,
                 exploration: str = "thompson", ucb_c: float = 0.5, rng: np.random.Generator | None = None,
                 late_streak: int = LATE_STREAK) -> None:
        self.strength = strength
        self.late_streak = late_streak
        self.decay = decay
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.exploration = exploration
        self.ucb_c = ucb_c
        self.rng = rng or np.random.default_rng()
        self.miners: dict[str, MinerRecord] = {}

    # ------------------------------------------------------------------ chain
    def update(self, neurons: Iterable[Neuron], priors: dict[int, float], *, exclude: str = "") -> None:
        """Take the subnet's current miners: new ones join with the chain's prior, deregistered ones
        leave, the rest keep their measurements (their uid, addresses and prior are refreshed)."""
        seen: set[str] = set()
        for x in neurons:
            if x.hotkey == exclude or not (x.peer_id or x.addrs):
                continue  # a node without published addresses cannot be asked
            seen.add(x.hotkey)
            rec = self.miners.get(x.hotkey)
            prior = priors.get(x.uid, 0.25)
            if rec is None or rec.uid != x.uid:  # a uid taken over by a new registration starts afresh
                self.miners[x.hotkey] = MinerRecord(x.hotkey, x.uid, x.peer_id, tuple(x.addrs), prior)
            else:
                rec.peer_id, rec.addrs, rec.prior = x.peer_id, tuple(x.addrs), prior
        for gone in set(self.miners) - seen:
            del self.miners[gone]
        self._renormalize(fresh=True)

    def _renormalize(self, *, fresh: bool = False) -> None:
        recs = list(self.miners.values())
        if fresh:  # newcomers take their prior's share of the mixture
            for r in recs:
                if r.weight <= 0:
                    r.weight = r.prior / max(len(recs), 1)
        total = sum(r.weight for r in recs)
        for r in recs:
            r.weight = r.weight / total if total > 0 else 1.0 / len(recs)

    # ------------------------------------------------------------------ selection
    def available(self, now: float) -> list[MinerRecord]:
        """Miners not backing off at ``now``."""
        return [r for r in self.miners.values() if r.backoff_until <= now]

    def choose(self, k: int, now: float) -> list[MinerRecord]:
        """Up to ``k`` miners for one query: Thompson samples (or UCB1 bounds) of quality, highest first.
        When fewer than ``k`` are available, the ones whose backoff ends soonest fill in."""
        ready = self.available(now)
        if len(ready) < k:
            waiting = sorted((r for r in self.miners.values() if r.backoff_until > now), key=lambda r: r.backoff_until)
            ready += waiting[: k - len(ready)]
        if not ready:
            return []
        if self.exploration == "ucb":
            total = sum(r.sent for r in ready) + 1
            keys = [r.mean(self.strength) + self.ucb_c * math.sqrt(math.log(total + 1) / (r.sent + 1)) for r in ready]
        else:
            keys = [float(self.rng.beta(max(r.prior * self.strength + r.hits, 1e-3),
                                        max((1 - r.prior) * self.strength + r.misses, 1e-3))) for r in ready]
        order = sorted(range(len(ready)), key=lambda i: -keys[i])
        return [ready[i] for i in order[:k]]

    # ------------------------------------------------------------------ measurements
    def sent(self, hotkey: str) -> None:
        if (rec := self.miners.get(hotkey)) is not None:
            rec.sent += 1

    def answered(self, hotkey: str, latency: float, *, request: int | None = None) -> None:
        """A valid answer arrived: the backoff ends, the latency average moves. ``request`` numbers the
        (batched) request that carried it: an answer to a request sent before the failed one that
        backed the miner off (overlapping queries book their outcomes in any order) leaves the backoff."""
        rec = self.miners.get(hotkey)
        if rec is None:
            return
        rec.answered += 1
        if request is None or request > rec.failed_request:
            rec.failures = 0
            rec.lates = 0
            rec.backoff_until = 0.0
        rec.latency = latency if rec.answered == 1 else 0.8 * rec.latency + 0.2 * latency

    def failed(self, hotkey: str, code: str, now: float, *, request: int | None = None) -> None:
        """No usable answer: a zero reward, and a backoff doubling with each consecutive failure.
        ``request`` numbers the (batched) request that failed: the queries of one request each
        lose their reward but back the miner off once."""
        rec = self.miners.get(hotkey)
        if rec is None:
            return
        rec.last_error = code
        rec.errors[code] = rec.errors.get(code, 0) + 1
        self.reward(hotkey, 0.0)
        if request is not None:  # numbers only grow: one at or below it was in flight with it
            if request <= rec.failed_request:
                return
            rec.failed_request = request
        if code in REFUSALS_THAT_BACK_OFF:
            self._back_off(rec, now)

    def _back_off(self, rec: MinerRecord, now: float) -> None:
        rec.failures += 1
        rec.backoff_until = now + min(self.backoff_base * 2 ** (rec.failures - 1), self.backoff_max)

    def late(self, hotkey: str, now: float = 0.0) -> None:
        """Asked but cancelled once enough others answered: counted against its quality; the
        ``late_streak``-th late answer in a row (and each one after it) backs off like a failure."""
        rec = self.miners.get(hotkey)
        if rec is None:
            return
        rec.errors["late"] = rec.errors.get("late", 0) + 1
        self.reward(hotkey, 0.0)
        rec.lates += 1
        if self.late_streak and rec.lates >= self.late_streak:
            rec.last_error = "late"
            self._back_off(rec, now)

    def reward(self, hotkey: str, value: float) -> None:
        """One quality observation in [0, 1] (older ones decay)."""
        rec = self.miners.get(hotkey)
        if rec is None:
            return
        v = min(max(float(value), 0.0), 1.0)
        rec.hits = rec.hits * self.decay + v
        rec.misses = rec.misses * self.decay + (1.0 - v)

    def weights(self, hotkeys: Sequence[str]) -> np.ndarray:
        """Mixture weights of ``hotkeys`` renormalized over them (uniform when all are zero)."""
        w = np.array([self.miners[h].weight if h in self.miners else 0.0 for h in hotkeys], dtype=np.float64)
        total = w.sum()
        return w / total if total > 0 else np.full(len(hotkeys), 1.0 / max(len(hotkeys), 1))

    def learn_weights(self, hotkeys: Sequence[str], responsibilities: np.ndarray, rate: float) -> None:
        """Online EM step: within the answering subset, weights move toward each expert's mean
        responsibility for the true tokens; the subset keeps its total share."""
        recs = [self.miners[h] for h in hotkeys if h in self.miners]
        if not recs or rate <= 0 or len(recs) != len(hotkeys):
            return
        share = sum(r.weight for r in recs)
        for r, resp in zip(recs, responsibilities, strict=True):
            r.weight = (1 - rate) * r.weight + rate * float(resp) * share
        self._renormalize()
