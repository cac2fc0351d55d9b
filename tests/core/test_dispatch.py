"""tnode.dispatch: the one inbound pipeline (routes, ready rule, slots, refusals, events)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from tnode import dispatch
from tnode.errors import TaskError
from tnode.events import TaskCompleted, TaskRefused
from tnode.interfaces import InboundRequest, TaskResult
from tnode.node import Node
from tnode.testing import MemoryChain, plugin_manager

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).resolve().parents[2] / "docs" / "transport.md"
SENDER = "ab" * 32


def node_with(tmp_path: Path, modalities: dict[str, Any]) -> Node:
    doc = {"transport": {"type": "loopback"}, "modalities": modalities}
    return Node.from_dict(doc, data_dir=tmp_path, plugins=plugin_manager("echo", chain=MemoryChain()))


def request(route: str, *, timeout: float = 5.0, body: dict[str, Any] | None = None) -> InboundRequest:
    now = time.monotonic()
    return InboundRequest(SENDER, "peer", route, "echo", body or {"x": 1}, 0, 0, now + timeout, entry="test",
                          received_at=now)


def test_the_docs_table_is_the_refusal_set() -> None:
    text = DOCS.read_text()
    section = text[text.index("### Refusal codes"):]
    rows = re.findall(r"^\| `([a-z_]+)` \| (strike|no) \| (.+?) \|$", section, flags=re.M)
    assert {code: (strike == "strike", meaning) for code, strike, meaning in rows} == {
        r.code: (r.strike, r.meaning) for r in dispatch.REFUSALS.values()}
    assert {r.code for r in dispatch.REFUSALS.values() if r.strike} == dispatch.STRIKE_CODES
    assert not {"starting", "overloaded", "timeout", "internal"} & dispatch.STRIKE_CODES


async def test_tasks_wait_for_ready_but_a_before_ready_service_answers(tmp_path) -> None:
    node = node_with(tmp_path, {"echo": {"type": "echo"}})
    pipeline = dispatch.of(node)

    async def chain(call: dispatch.ServiceCall) -> TaskResult:
        return TaskResult({"call": call.task, "entry": call.entry})

    async def late(call: dispatch.ServiceCall) -> TaskResult:
        return TaskResult({})

    pipeline.serve_service("early", chain, before_ready=True)
    pipeline.serve_service("late", late)
    assert not node.ready.is_set()
    with pytest.raises(TaskError) as task:
        await pipeline.handle(request("echo"))
    with pytest.raises(TaskError) as service:
        await pipeline.handle(request(dispatch.service_route("late")))
    answer = await pipeline.handle(request(dispatch.service_route("early")))
    assert task.value.code == service.value.code == "starting"
    assert answer.body == {"call": "echo", "entry": "test"}


async def test_a_modality_is_routed_by_its_wire_name_not_its_table_name(tmp_path) -> None:
    node = node_with(tmp_path, {"main": {"type": "echo"}, "other": {"type": "echo", "serve_as": "mirror"}})
    async with node.running():
        pipeline = dispatch.of(node)
        assert pipeline.modalities() == ["echo", "mirror"]
        assert (await pipeline.handle(request("echo"))).body == {"x": 1}
        assert (await pipeline.handle(request("mirror"))).body == {"x": 1}
        with pytest.raises(TaskError) as unknown:
            await pipeline.handle(request("main"))
        with pytest.raises(TaskError) as service:
            await pipeline.handle(request("svc:main"))
    assert unknown.value.code == "unknown_modality" and "served: echo, mirror" in unknown.value.message
    assert service.value.code == "unknown_service"


async def test_no_slot_before_the_deadline_is_overloaded_and_events_say_so(tmp_path) -> None:
    node = node_with(tmp_path, {"echo": {"type": "echo", "delay_ms": 300}})
    seen: list[Any] = []

    async def on(event: Any) -> None:
        seen.append(event)

    async with node.running():
        node.bus.subscribe(TaskRefused, on, name="test-refused")
        node.bus.subscribe(TaskCompleted, on, name="test-completed")
        pipeline = dispatch.of(node)
        pipeline.configure(max_concurrent_tasks=1)
        codes: list[str] = []

        async def ask(timeout: float) -> None:
            try:
                await pipeline.handle(request("echo", timeout=timeout))
                codes.append("")
            except TaskError as exc:
                codes.append(exc.code)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, 2.0)
                await anyio.sleep(0.05)
                tg.start_soon(ask, 0.1)
            while len(seen) < 3:
                await anyio.sleep(0.01)
    assert sorted(codes) == ["", "overloaded"]
    refused = [e for e in seen if isinstance(e, TaskRefused)]
    completed = sorted((e.ok, e.code) for e in seen if isinstance(e, TaskCompleted))
    assert [(e.sender, e.code) for e in refused] == [(SENDER, "overloaded")]
    assert completed == [(False, "overloaded"), (True, "")]
