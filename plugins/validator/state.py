"""What a validator remembers between steps: score averages per uid and pending weight commits.

Averages are keyed by uid and remember the hotkey they were earned by: when the chain shows a
different hotkey on a uid (the uid was pruned and re-registered) its history is dropped. The
state is saved as JSON (atomic replace) so a restarted validator keeps its averages and can still
reveal the weights it committed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tnode.interfaces import Neuron
from tnode.weights import WeightVector


@dataclass
class UidRecord:
    """Score history of one uid."""

    hotkey: str
    ema: float = 0.0
    count: int = 0  # scored answers
    last_step: int = -1  # step this uid was last queried (-1: never)


@dataclass
class PendingCommit:
    """A weight commit waiting for its reveal window (the u16 vector it committed to, as lists for JSON)."""

    block: int
    uids: list[int]
    values: list[int]
    salt: str
    version_key: int

    @property
    def weights(self) -> WeightVector:
        """The committed vector, to reveal as it was hashed."""
        return WeightVector(tuple(self.uids), tuple(self.values))


@dataclass
class ValidatorState:
    """Score averages per uid, the step counter and pending commits."""

    alpha: float
    records: dict[int, UidRecord] = field(default_factory=dict)
    step: int = 0
    last_weights_block: int | None = None
    pending: list[PendingCommit] = field(default_factory=list)

    # ------------------------------------------------------------------ metagraph sync
    def sync(self, neurons: Iterable[Neuron]) -> list[int]:
        """Follow the metagraph: reset uids whose hotkey changed, forget uids that vanished.

        :returns: the uids that were reset.
        """
        seen: set[int] = set()
        reset: list[int] = []
        for neuron in neurons:
            seen.add(neuron.uid)
            record = self.records.get(neuron.uid)
            if record is None:
                self.records[neuron.uid] = UidRecord(neuron.hotkey)
            elif record.hotkey != neuron.hotkey:
                self.records[neuron.uid] = UidRecord(neuron.hotkey)
                reset.append(neuron.uid)
        for uid in [u for u in self.records if u not in seen]:
            del self.records[uid]
        return reset

    # ------------------------------------------------------------------ scores
    def update(self, uid: int, hotkey: str, score: float) -> float:
        """Fold one score into the uid's moving average; returns the new average."""
        record = self.records.get(uid)
        if record is None or record.hotkey != hotkey:
            record = self.records[uid] = UidRecord(hotkey)
        score = min(1.0, max(0.0, score)) if math.isfinite(score) else 0.0
        record.ema = self.alpha * score + (1.0 - self.alpha) * record.ema
        record.count += 1
        return record.ema

    def mark_queried(self, uids: Iterable[int]) -> None:
        for uid in uids:
            if uid in self.records:
                self.records[uid].last_step = self.step

    def scores(self) -> dict[int, float]:
        return {uid: r.ema for uid, r in self.records.items()}

    # ------------------------------------------------------------------ selection
    def pick(self, candidates: Sequence[int], size: int, rng: np.random.Generator) -> list[int]:
        """Choose up to ``size`` uids (all when ``size`` is 0), favouring the stale and the uncertain.

        A uid's chance grows with the steps since it was last queried and with how few answers it
        has been scored on, so every miner is measured and new ones quickly.
        """
        if size <= 0 or size >= len(candidates):
            return list(candidates)
        weights = np.empty(len(candidates))
        for i, uid in enumerate(candidates):
            record = self.records.get(uid)
            last = record.last_step if record else -1
            count = record.count if record else 0
            age = self.step - last if last >= 0 else self.step + 1
            weights[i] = (1.0 + age) * (1.0 + 1.0 / math.sqrt(1.0 + count))
        chosen = rng.choice(len(candidates), size=size, replace=False, p=weights / weights.sum())
        return sorted(candidates[i] for i in chosen)

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "step": self.step,
            "last_weights_block": self.last_weights_block,
            "records": {str(uid): asdict(r) for uid, r in self.records.items()},
            "pending": [asdict(p) for p in self.pending],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], alpha: float) -> ValidatorState:
        state = cls(alpha=alpha, step=int(doc.get("step", 0)), last_weights_block=doc.get("last_weights_block"))
        for uid, rec in doc.get("records", {}).items():
            state.records[int(uid)] = UidRecord(**rec)
        state.pending = [PendingCommit(**p) for p in doc.get("pending", [])]
        return state

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, alpha: float) -> ValidatorState:
        """The saved state, or a fresh one when there is no file.

        :raises ValueError: the file exists but is not a validator state.
        """
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls(alpha=alpha)
        try:
            return cls.from_json(json.loads(text), alpha)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"{path}: not a validator state file ({type(exc).__name__}: {exc})") from None
