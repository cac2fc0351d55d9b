"""Model workers over ZeroMQ: hand-off under load, a killed or frozen worker, start failures, shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import orjson
import pytest
import zmq
from tnode.errors import TaskError
from tnode.workers import READY, WorkerLost, WorkerPool, WorkerSpec, WorkerStartError

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent


def spec(factory: str = "doubler", **config: Any) -> WorkerSpec:
    return WorkerSpec(f"core_worker_models:{factory}", config, env={"PYTHONPATH": str(HERE)})


@contextlib.asynccontextmanager
async def running(pool: WorkerPool) -> AsyncIterator[WorkerPool]:
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        try:
            yield pool
        finally:
            tg.cancel_scope.cancel()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_thousands_of_requests_from_many_tasks_are_all_answered_in_order(tmp_path: Path) -> None:
    pool = WorkerPool(spec(), workers=2, name="load", directory=tmp_path, max_batch=32)
    tasks, per_task = 64, 50
    answered: dict[int, list[int]] = {}

    async def client(t: int) -> None:
        got = answered.setdefault(t, [])
        for i in range(per_task):
            x = np.array([t, i, t * 1000 + i], dtype=np.int64)
            y = await pool.infer(x, deadline=time.monotonic() + 30)
            assert y.tolist() == (2 * x).tolist()
            got.append(int(y[1]) // 2)

    with anyio.fail_after(60):
        async with running(pool), anyio.create_task_group() as tg:
            for t in range(tasks):
                tg.start_soon(client, t)
    assert all(answered[t] == list(range(per_task)) for t in range(tasks))
    assert pool.requests == tasks * per_task
    assert pool.batches < pool.requests  # requests from different tasks shared batches


async def test_sigkilled_worker_is_restarted_and_its_requests_fail_typed(tmp_path: Path) -> None:
    pool = WorkerPool(spec(delay=0.05), workers=2, name="kill", directory=tmp_path, max_batch=4)
    outcomes: list[str] = []

    async def client(t: int) -> None:
        for i in range(40):
            try:
                y = await pool.infer(np.array([t, i]), deadline=time.monotonic() + 20)
                assert y.tolist() == [2 * t, 2 * i]
                outcomes.append("ok")
            except WorkerLost:
                outcomes.append("lost")

    with anyio.fail_after(60):
        async with running(pool):
            async with anyio.create_task_group() as tg:
                for t in range(16):
                    tg.start_soon(client, t)
                while len(outcomes) < 20:
                    await anyio.sleep(0.01)
                victim = pool.pids()[0]
                os.kill(victim, signal.SIGKILL)
            assert pool.restarts == 1 and victim not in pool.pids() and len(pool.pids()) == 2
    assert outcomes.count("lost") >= 1  # the batch it held failed, typed
    assert outcomes.count("ok") + outcomes.count("lost") == 16 * 40  # and nothing hung
    assert pool.lost_requests == outcomes.count("lost")
    assert outcomes[-1] == "ok"  # the restarted pool kept serving


async def test_a_frozen_worker_is_declared_dead_by_missed_heartbeats(tmp_path: Path) -> None:
    pool = WorkerPool(spec(delay=0.3), workers=1, name="frozen", directory=tmp_path, heartbeat=0.2, liveness=3)
    with anyio.fail_after(30):
        async with running(pool):
            frozen = pool.pids()[0]
            async with anyio.create_task_group() as tg:
                result: list[BaseException] = []

                async def ask() -> None:
                    try:
                        await pool.infer(np.arange(3), deadline=time.monotonic() + 20)
                    except TaskError as exc:
                        result.append(exc)

                tg.start_soon(ask)
                await anyio.sleep(0.1)  # the batch is in the worker
                os.kill(frozen, signal.SIGSTOP)  # alive, but silent
                started = time.monotonic()
            assert isinstance(result[0], WorkerLost) and "heartbeats lost" in str(result[0])
            assert time.monotonic() - started < 3 * 0.2 + 1.0
            while not pool.pids() or pool.pids()[0] == frozen:
                await anyio.sleep(0.02)
            y = await pool.infer(np.arange(3), deadline=time.monotonic() + 20)
            assert y.tolist() == [0, 2, 4]
    assert gone(frozen)


def test_a_worker_exits_when_the_node_stops_heartbeating(tmp_path: Path) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    endpoint = f"ipc://{tmp_path}/w.ipc"
    router.bind(endpoint)
    args = {"endpoint": endpoint, "identity": "w0.1", "factory": "core_worker_models:doubler", "config": {},
            "heartbeat": 0.2, "liveness": 3, "parent": os.getpid()}
    proc = subprocess.Popen([sys.executable, "-m", "tnode.workers", orjson.dumps(args).decode()],
                            env={**os.environ, "PYTHONPATH": str(HERE)})
    try:
        assert router.poll(30_000), "the worker never said READY"
        assert router.recv_multipart()[1] == READY
        started = time.monotonic()
        assert proc.wait(timeout=10) == 2  # it gave up on the silent node by itself
        assert time.monotonic() - started < 3 * 0.2 + 1.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        router.close(linger=0)
        ctx.term()


async def test_shutdown_leaves_no_process_and_no_socket_file(tmp_path: Path) -> None:
    pool = WorkerPool(spec(), workers=3, name="stop", directory=tmp_path)
    with anyio.fail_after(30):
        async with running(pool):
            pids = pool.pids()
            socket_file = Path(pool.endpoint.removeprefix("ipc://"))
            assert socket_file.exists() and len(pids) == 3
            await pool.infer(np.zeros(4), deadline=time.monotonic() + 10)
    assert all(gone(pid) for pid in pids)
    assert not socket_file.exists()
    with pytest.raises(TaskError, match="unreachable"):
        await pool.infer(np.zeros(4))


async def test_a_model_that_cannot_load_fails_the_start_with_its_reason(tmp_path: Path) -> None:
    pool = WorkerPool(spec("broken"), workers=2, name="broken", directory=tmp_path)
    with anyio.fail_after(30), pytest.raises(WorkerStartError, match="no weights at /nowhere"):
        await pool.run()
    assert not list(tmp_path.glob("*.ipc"))


async def test_a_model_error_fails_that_batch_and_the_pool_keeps_serving(tmp_path: Path) -> None:
    pool = WorkerPool(spec(), workers=1, name="poison", directory=tmp_path)
    with anyio.fail_after(30):
        async with running(pool):
            with pytest.raises(TaskError, match="poisoned input") as info:
                await pool.infer(np.array([-1, 5]), deadline=time.monotonic() + 10)
            assert info.value.code == "internal" and not isinstance(info.value, WorkerLost)
            assert (await pool.infer(np.array([3.5]), deadline=time.monotonic() + 10)).tolist() == [7.0]
            assert pool.restarts == 0


async def test_a_request_past_its_deadline_times_out(tmp_path: Path) -> None:
    pool = WorkerPool(spec(delay=1.0), workers=1, name="slow", directory=tmp_path)
    with anyio.fail_after(30):
        async with running(pool):
            with pytest.raises(TaskError, match="timeout"):
                await pool.infer(np.zeros(2), deadline=time.monotonic() + 0.2)


async def test_stats_report_each_workers_resident_memory(tmp_path: Path) -> None:
    pool = WorkerPool(spec(weights=64_000_000), workers=1, name="rss", directory=tmp_path)
    with anyio.fail_after(30):
        async with running(pool):
            (worker,) = pool.stats()["workers"]
            assert worker["rss_bytes"] > 64_000_000  # the weights are resident in the worker
            assert pool.info == {"kind": "doubler", "weights": 64_000_000}


async def test_a_long_directory_falls_back_to_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    pool = WorkerPool(spec(), workers=1, name="deep", directory=deep)
    with anyio.fail_after(30):
        async with running(pool):
            assert len(pool.endpoint) < 110
            assert (await pool.infer(np.ones(2), deadline=time.monotonic() + 10)).tolist() == [2.0, 2.0]
