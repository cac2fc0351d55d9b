"""Ask k miners at once; return when ``k_min`` answered and ``timeout_after_k_min`` more passed
(or everyone finished, or ``timeout``), cancelling the stragglers.

Each miner is asked through ``ask``: a request of its own by default, or the router's
:class:`~tnode.plugins.router.coalesce.Coalescer`, which may carry the query in a batched request
shared with other queries to that miner (cancelling a straggler then leaves that request to them)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from tnode.errors import TaskError, TnodeError
from tnode.interfaces import Reply

from .board import MinerRecord
from .coalesce import ask_direct, failure_code

Ask = Callable[[MinerRecord, str, str, Mapping[str, Any], Any, Callable[[Reply], Any], float],
               Awaitable[tuple[Any, float]]]
"""``ask(miner, modality, task, body, payload, parse, timeout)`` → (checked answer, latency)."""


@dataclass(frozen=True)
class Answered:
    """One miner's checked answer."""

    miner: MinerRecord
    value: Any
    latency: float


@dataclass
class Outcome:
    """What one fan-out gave: answers in arrival order, failures by hotkey, who was cut off."""

    answers: list[Answered] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # hotkey → error code
    late: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)  # hotkey → number of its (batched) request, answered or failed


async def fan_out(transport: Any, miners: Sequence[MinerRecord], modality: str, task: str, body: Mapping[str, Any],
                  payload: np.ndarray | bytes | None, parse: Callable[[Reply], Any], *, k_min: int, timeout: float,
                  timeout_after_k_min: float, ask: Ask | None = None) -> Outcome:
    """Send one signed task to every miner of ``miners`` concurrently (see the module doc).

    ``parse`` checks a reply and raises :class:`tnode.errors.TaskError` (``invalid_response``) when
    it is unusable; such a miner counts as failed. Never raises for a miner's failure.
    """
    async def direct(miner: MinerRecord, modality: str, task: str, body: Mapping[str, Any], payload: Any,
                     parse: Callable[[Reply], Any], timeout: float) -> tuple[Any, float, int | None]:
        return await ask_direct(transport, miner, modality, task, body, payload, parse, timeout)

    send = ask or direct

    out = Outcome()
    start = time.monotonic()
    enough = anyio.Event()
    finished = anyio.Event()
    pending = len(miners)
    need = min(k_min, len(miners))

    async def one(miner: MinerRecord) -> None:
        nonlocal pending
        try:
            value, latency, number = await send(miner, modality, task, body, payload, parse, timeout)
        except TaskError as exc:
            out.failures[miner.hotkey] = exc.code
            if isinstance(number := getattr(exc, "request", None), int):
                out.requests[miner.hotkey] = number
        except TnodeError as exc:  # a local failure the transport did not map to a code
            out.failures[miner.hotkey] = failure_code(exc)
        else:
            out.answers.append(Answered(miner, value, latency))
            if number is not None:
                out.requests[miner.hotkey] = number
        finally:
            pending -= 1
            if len(out.answers) >= need or pending == 0:
                enough.set()
            if pending == 0:
                finished.set()

    if not miners:
        return out
    async with anyio.create_task_group() as tg:
        for miner in miners:
            tg.start_soon(one, miner)
        with anyio.move_on_after(timeout):
            await enough.wait()
        if pending and len(out.answers) >= need:
            with anyio.move_on_after(min(timeout_after_k_min, max(timeout - (time.monotonic() - start), 0.0))):
                await finished.wait()
        tg.cancel_scope.cancel()
    done = {a.miner.hotkey for a in out.answers} | set(out.failures)
    for miner in miners:
        if miner.hotkey not in done:
            if len(out.answers) >= need:
                out.late.append(miner.hotkey)
            else:
                out.failures[miner.hotkey] = "timeout"
    out.elapsed = time.monotonic() - start
    return out
