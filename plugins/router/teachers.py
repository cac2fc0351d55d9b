"""``[teachers.NAME] type = "router"``: the subnet's miners as teachers
(:class:`tnode.contracts.learning.TeacherSource`).

The miners come from a router's board (read from the metagraph, with their addresses); a request
is the text modality's batched ``next_token`` task with ``positions = "all"``, signed by this node's
hotkey and sent over the node's transport, so the miners admit it by their own rules (rate limits
per hotkey, stake priority, registration). Answers are checked as untrusted input row by row; a
failure is reported to the board, so the router's backoff also spares a failing teacher.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import numpy as np
from tnode.contracts.learning import Teacher, TeacherReply
from tnode.errors import ConfigError, TaskError, TnodeError

from . import text_mix
from .config import RouterTeachersConfig


class RouterTeachers:
    """The ``router`` teacher source; see the module doc and docs/learning.md."""

    def __init__(self, node: Any, name: str, config: RouterTeachersConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.max_tasks = config.max_tasks
        self.router: Any = None
        self.asked = 0
        self.failed: dict[str, int] = {}

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        key = f"teachers.{self.name}.router"
        if self.config.router:
            self.router = self.node.require("router", self.config.router, key_path=key)
        else:
            routers = self.node.components_of("router")
            if len(routers) != 1:
                raise ConfigError(f"expected exactly one [routers.NAME], found {len(routers)}", key_path=key,
                                  hint="name the router: router = \"main\"")
            self.router = next(iter(routers.values()))
        task_status.started()
        await anyio.sleep_forever()

    @property
    def modality(self) -> str:
        return self.config.modality or self.router.config.modality

    def teachers(self) -> list[Teacher]:
        """The board's miners with an address, by uid."""
        if self.router is None:
            return []
        recs = [r for r in self.router.board.miners.values() if r.peer_id or r.addrs]
        return [Teacher(r.hotkey, r.uid) for r in sorted(recs, key=lambda r: r.uid)]

    async def ask(self, hotkey: str, windows: np.ndarray, *, k: int, timeout: float) -> TeacherReply:
        """One batched ``next_token`` request (``positions = "all"``) to ``hotkey``; never raises for its failure."""
        board = self.router.board if self.router is not None else None
        rec = board.miners.get(hotkey) if board is not None else None
        if rec is None:
            return TeacherReply(hotkey, error="unknown")
        windows = np.asarray(windows)
        if windows.ndim != 2 or not 1 <= windows.shape[0] <= self.max_tasks:
            raise ValueError(f"windows must be (1..{self.max_tasks}, positions), got {windows.shape}")
        now = time.monotonic()
        if self.config.respect_backoff and rec.backoff_until > now:
            return TeacherReply(hotkey, error="backoff")
        rows, positions = windows.shape
        self.asked += 1
        board.sent(hotkey)
        try:
            reply = await self.node.transport.request(
                rec.peer_id or rec.addrs[0], self.modality, "next_token",
                {"k": k, "positions": "all", "batch": rows}, np.ascontiguousarray(windows, dtype=np.uint8),
                timeout=timeout)
            ids, logprobs = _parse(reply.body, reply.payload, rows=rows, positions=positions, k=k)
        except TaskError as exc:
            return self._failure(hotkey, exc.code)
        except TnodeError as exc:  # a local failure the transport did not map to a code
            return self._failure(hotkey, "timeout" if "Timeout" in type(exc).__name__ else "unreachable")
        board.answered(hotkey, reply.latency)
        return TeacherReply(hotkey, ids, logprobs, latency=reply.latency)

    def _failure(self, hotkey: str, code: str) -> TeacherReply:
        self.failed[code] = self.failed.get(code, 0) + 1
        self.router.board.failed(hotkey, code, time.monotonic())
        return TeacherReply(hotkey, error=code)


def _parse(body: Any, payload: Any, *, rows: int, positions: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A batched ``positions = "all"`` answer, every row checked like a single answer."""
    if not isinstance(payload, np.ndarray) or payload.ndim != 3 or payload.shape[:2] != (rows, positions):
        shape = getattr(payload, "shape", None)
        raise TaskError("invalid_response", f"expected a ({rows}, {positions}, k) payload, got {shape}")
    ids_rows = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids_rows, list) or len(ids_rows) != rows:
        raise TaskError("invalid_response", f"body.ids must be a list of {rows} rows")
    preds = [text_mix.parse_topk({"ids": ids_rows[b]}, payload[b], rows=positions, k=k) for b in range(rows)]
    if len({p.ids.shape for p in preds}) != 1:
        raise TaskError("invalid_response", "rows of one answer carry different numbers of log-probabilities")
    return np.stack([p.ids for p in preds]), np.stack([p.logprobs for p in preds])
