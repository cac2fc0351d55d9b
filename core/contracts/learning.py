"""Learning from the network (``tnode.contracts.learning``): how a trainer asks other miners.

A trainer that distils from the network needs, for the windows of text it trains on, the
next-token distributions other miners give at every position. A :class:`TeacherSource` is the
component that knows the miners and asks them (the router plugin implements it as
``[teachers.NAME] type = "router"``); the trainer (the text plugin's ``tnode train --teachers
network`` and its ``[training]`` component) batches, rate-limits and caches on top of it. Both
sides import only this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Teacher:
    """A miner a trainer may learn from: its hotkey (the cache key) and its uid on the subnet."""

    hotkey: str
    uid: int


@dataclass(frozen=True, slots=True)
class TeacherReply:
    """One teacher's answer for a batch of windows, checked as untrusted input.

    On success ``ids`` (int64) and ``logprobs`` (float32) have shape (windows, positions, k): row
    ``b, i`` holds the k most likely next tokens after tokens ``0..i`` of window ``b`` and their
    log-probabilities, as the text modality's ``next_token`` task answers with ``positions = "all"``.
    On failure both are ``None`` and ``error`` is the wire error code (``timeout``,
    ``rate_limited``, ``too_large``, ``invalid_response``, ``backoff``...).
    """

    hotkey: str
    ids: np.ndarray | None = None
    logprobs: np.ndarray | None = None
    error: str = ""
    latency: float = 0.0

    @property
    def ok(self) -> bool:
        return self.ids is not None and self.logprobs is not None and not self.error


class TeacherSource(Protocol):
    """Asks other miners of the subnet for next-token distributions of token windows."""

    name: str
    max_tasks: int  # most windows one request may carry

    def teachers(self) -> list[Teacher]:
        """The miners that can be asked now, ordered by uid (this node itself excluded)."""
        ...

    async def ask(self, hotkey: str, windows: np.ndarray, *, k: int, timeout: float) -> TeacherReply:
        """One signed, batched request to teacher ``hotkey``.

        :param windows: int array (windows, positions) of token ids, ``windows ≤ max_tasks``.
        :param k: log-probabilities asked per position.
        :param timeout: seconds to wait at most.
        :returns: the checked answer, or a reply with ``error`` set; never raises for the teacher's
            failure or refusal.
        """
        ...


GATING_FORMAT = "tnode-gating/1"
"""``format`` of the ``gating`` section a distilled checkpoint keeps (hotkeys, uids, the gate, its
running ``mean`` weight per teacher, windows ``answered``)."""


def gating_weights(checkpoint: Mapping[str, Any]) -> dict[str, float]:
    """Teacher hotkey → the learned gate's mean weight (summing to 1) from a checkpoint's state.

    ``ValueError`` when the checkpoint holds no gating of :data:`GATING_FORMAT`.
    """
    saved = checkpoint.get("gating")
    if not isinstance(saved, Mapping) or saved.get("format") != GATING_FORMAT:
        raise ValueError(f"the checkpoint holds no gating of format {GATING_FORMAT} (train with --teachers network)")
    hotkeys = [str(h) for h in saved.get("hotkeys", [])]
    means = [max(float(v), 0.0) for v in saved.get("mean", [])]
    if len(hotkeys) != len(means) or not hotkeys:
        raise ValueError("the checkpoint's gating names no teachers")
    total = sum(means)
    return {h: (m / total if total > 0 else 1.0 / len(hotkeys)) for h, m in zip(hotkeys, means, strict=True)}
