"""Validator-side detectors: any node that reads the chain (an observer, a validator) can run them.

Each reads the metagraph every ``poll_interval`` seconds and takes one observation per epoch
(``block // tempo``): the weights matrix (rows: validators by uid) and the stake.

- ``weight_copy``: a validator whose weights sit much closer to the others' weights (this epoch's,
  or the previous epoch's as commit-reveal reveals them) than honest validators' do.
- ``cabal``: validators whose accumulated deviations from the stake-weighted median point the same
  way (cosine similarity, as FoolsGold compares update histories).
- ``self_dealing``: a validator giving miners of its own coldkey far more weight than the others do.

Findings carry the detector's configured ``action`` (default ``report``: for stakers and operators).
A chain authority running a detector with ``zero`` or ``scale`` scales the suspects' stake in its
epochs (the embedded chain does; see docs/collusion.md); validators' weights weigh miners only, so a
validator on the same node changes nothing for them.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from .base import PollingDetector
from .config import CabalConfig, SelfDealingConfig, WeightCopyConfig
from .signals import (
    FloatArray,
    clusters,
    copy_distances,
    copy_ratio,
    deviation_cosines,
    normalize_rows,
    others_mean,
)


def weighted_median(w: FloatArray, stake: FloatArray) -> FloatArray:
    """Per column, the stake-weighted median of the rows that set weights, renormalized."""
    rows = w.sum(axis=1) > 0
    if not rows.any():
        return np.zeros(w.shape[1])
    sub, s = w[rows], stake[rows].astype(np.float64)
    s = s / s.sum() if s.sum() > 0 else np.full(len(s), 1 / len(s))
    out = np.zeros(w.shape[1])
    for j in range(w.shape[1]):
        order = np.argsort(sub[:, j])
        cum = np.cumsum(s[order])
        out[j] = sub[order[np.searchsorted(cum, 0.5)], j]
    total = out.sum()
    return out / total if total > 0 else out


def pair_lag_distance(current: FloatArray, earlier: FloatArray) -> FloatArray:
    """Per row, the smallest L1 distance to another row of the previous observation."""
    out = np.full(current.shape[0], np.nan)
    for v in range(current.shape[0]):
        if current[v].sum() <= 0:
            continue
        best = [float(np.abs(current[v] - earlier[u]).sum()) for u in range(earlier.shape[0])
                if u != v and earlier[u].sum() > 0]
        if best:
            out[v] = min(best)
    return out


def copy_ratios(current: FloatArray, previous: FloatArray | None, stake: FloatArray) -> FloatArray:
    """Per row, the smallest copy ratio over: the others' mean now, the others' mean and each other
    row at the previous observation (NaN for rows without weights)."""
    ratios = [copy_ratio(copy_distances(current, current, stake))]
    if previous is not None and previous.shape == current.shape:
        ratios.append(copy_ratio(copy_distances(current, previous, stake)))
        ratios.append(copy_ratio(pair_lag_distance(current, previous)))
    stacked = np.vstack(ratios)
    out = np.full(current.shape[0], np.nan)
    for v in range(current.shape[0]):
        col = stacked[:, v][np.isfinite(stacked[:, v])]
        if col.size:
            out[v] = float(col.min())
    return out


class EpochDetector(PollingDetector):
    """Takes one (weights, stake) observation per epoch and hands it to :meth:`epoch`."""

    def __init__(self, node: Any, name: str, config: Any) -> None:
        super().__init__(node, name, config)
        self._epoch: int | None = None

    async def observe(self, mg: Any) -> None:
        if mg.weights is None:
            return
        epoch = mg.block // max(1, mg.hyperparameters.tempo)
        if epoch == self._epoch:
            return
        self._epoch = epoch
        w = normalize_rows(np.asarray(mg.weights, dtype=np.float64))
        stake = np.array([n.stake for n in mg.neurons], dtype=np.float64)
        if w.shape[0] != len(mg.neurons) or (w.sum(axis=1) > 0).sum() < 2:
            return
        await self.epoch(mg, w, stake)
        self.summarize()  # one info line per epoch observed, beside the summary_seconds ones

    async def epoch(self, mg: Any, w: FloatArray, stake: FloatArray) -> None:
        raise NotImplementedError


class WeightCopyDetector(EpochDetector):
    """``[collusion.NAME] type = "weight_copy"``: see :class:`WeightCopyConfig`."""

    type_name = "weight_copy"
    config: WeightCopyConfig

    def __init__(self, node: Any, name: str, config: WeightCopyConfig) -> None:
        super().__init__(node, name, config)
        self.previous: FloatArray | None = None
        self.ratios: dict[str, deque[float]] = {}

    async def epoch(self, mg: Any, w: FloatArray, stake: FloatArray) -> None:
        ratios = copy_ratios(w, self.previous, stake)
        self.previous = w
        for n in mg.neurons:
            if not np.isfinite(ratios[n.uid]):
                continue
            window = self.ratios.setdefault(n.hotkey, deque(maxlen=self.config.window))
            window.append(float(ratios[n.uid]))
            mean = float(np.mean(window))
            if len(window) >= self.config.min_epochs and mean <= self.config.max_ratio:
                await self.found((n.hotkey,), "weight_copy", 1.0 - mean,
                                 f"weights {mean:.2f}× as far from the others' as honest validators' over "
                                 f"{len(window)} epochs", uids=(n.uid,))


class CabalDetector(EpochDetector):
    """``[collusion.NAME] type = "cabal"``: see :class:`CabalConfig`."""

    type_name = "cabal"
    config: CabalConfig

    def __init__(self, node: Any, name: str, config: CabalConfig) -> None:
        super().__init__(node, name, config)
        self.deviations: deque[FloatArray] = deque(maxlen=config.window)

    async def epoch(self, mg: Any, w: FloatArray, stake: FloatArray) -> None:
        median = weighted_median(w, stake)
        dev = np.where(w.sum(axis=1, keepdims=True) > 0, w - median, 0.0)
        if self.deviations and self.deviations[-1].shape != dev.shape:
            self.deviations.clear()  # the subnet grew: start over
        self.deviations.append(dev)
        if len(self.deviations) < self.config.min_epochs:
            return
        total = np.sum(self.deviations, axis=0)
        size = np.abs(total).sum(axis=1) / len(self.deviations)
        cos = deviation_cosines(total)
        big = size >= self.config.min_deviation
        similar = (cos >= self.config.min_cosine) & big[:, None] & big[None, :]
        for group in clusters(similar):
            inner = [cos[i, j] for i in group for j in group if i < j]
            await self.found(tuple(mg.neurons[i].hotkey for i in group), "cabal", float(min(inner)),
                             f"{len(group)} validators deviate from the stake median the same way "
                             f"(cosine ≥ {min(inner):.2f}, mean L1 deviation {float(size[group].mean()):.2f} "
                             f"over {len(self.deviations)} epochs)", uids=tuple(group))


class SelfDealingDetector(EpochDetector):
    """``[collusion.NAME] type = "self_dealing"``: see :class:`SelfDealingConfig`."""

    type_name = "self_dealing"
    config: SelfDealingConfig

    async def epoch(self, mg: Any, w: FloatArray, stake: FloatArray) -> None:
        for v in mg.neurons:
            if w[v.uid].sum() <= 0:
                continue
            own = [n.uid for n in mg.neurons if n.coldkey == v.coldkey and n.uid != v.uid]
            if not own:
                continue
            share = float(w[v.uid, own].sum())
            others = float(others_mean(w, stake, v.uid)[own].sum())
            if share >= self.config.min_share and share >= self.config.over_consensus * others:
                await self.found((v.hotkey, *(mg.neurons[u].hotkey for u in own)), "self_dealing", share,
                                 f"gives {share:.0%} of its weight to uids {own} of its own coldkey; the others "
                                 f"give them {others:.0%}", uids=(v.uid, *own))
