"""Model workers: inference in N processes behind one ZeroMQ ROUTER, batched across all requests.

The node binds a ROUTER socket on ``ipc://`` in its data dir; each worker process connects a DEALER,
loads its model once (``factory(config)`` from a :class:`WorkerSpec`), says READY and then answers
batches. Every request of the node goes through one queue: when a worker is idle it is sent up to
``max_batch`` queued inputs as one batch, so batches grow with the load (requests that arrive while
every worker is busy share the next pass), and N workers run N passes at once.

Messages are multipart: a one-byte kind, an orjson header, then one frame of raw bytes per array
(dtype and shape in the header; never pickle), encoded by ``tnode._worker_messages``; what runs
inside a worker process is ``tnode._worker_process``. Liveness follows the Paranoid Pirate pattern: both
sides send HEARTBEAT every ``heartbeat`` seconds; a peer silent for ``liveness`` intervals is dead.
A worker that dies or goes silent is killed and restarted, and the requests of the batch it held
fail with :class:`WorkerLost` (a ``TaskError``) — they are not retried, because the input that killed
one worker may kill the next; the client decides. Nothing waits forever: every wait has a deadline.

On trio the ZMQ file descriptor is edge-triggered and any zmq call may consume the edge, so one owner
task runs the socket: it drains with NOBLOCK until ``zmq.Again``, re-checks ``EVENTS`` and waits on
the FD with a short timeout as a guard against a missed edge (measured: ~0.9× raw pyzmq).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import numpy as np
import orjson
import zmq
from tnode._worker_messages import (
    ANSWER,
    BATCH,
    FAILED,
    HEARTBEAT,
    READY,
    STOP,
    array_frames,
    array_header,
    decode_arrays,
)
from tnode._worker_process import worker_main
from tnode.errors import TaskError, TnodeError

__all__ = ["BatchModel", "WorkerLost", "WorkerPool", "WorkerSpec", "WorkerStartError", "model_stats", "rss_bytes",
           "serve_model"]

_GUARD_BUSY = 0.005  # FD wait guard while batches are out: a missed edge costs at most this
_GUARD_IDLE = 0.1
_HOUSEKEEPING = 0.1  # how often processes are polled and liveness checked
_MAX_BACKOFF = 5.0
_IPC_PATH_MAX = 100  # sun_path holds 108 bytes on Linux


class BatchModel(Protocol):
    """What ``WorkerSpec.factory(config)`` returns inside a worker."""

    def infer(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One output array per input, in order (one forward pass for the whole list)."""
        ...


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker process builds its model: ``factory`` ("package.module:callable") is imported in
    the worker and called with ``config`` (JSON-able, sent as JSON) to return a :class:`BatchModel`.
    ``env`` adds environment variables for the worker process."""

    factory: str
    config: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


class WorkerLost(TaskError):
    """The worker running this request died or stopped answering; the request was not retried."""

    def __init__(self, message: str) -> None:
        super().__init__("internal", message)


class WorkerStartError(TnodeError):
    """A worker process could not load its model, so the pool did not start."""


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (``/proc/PID/statm``); 0 when it is gone."""
    try:
        resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident * os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- node side
@dataclass(eq=False)
class _Pending:
    item: np.ndarray
    deadline: float
    done: anyio.Event = field(default_factory=anyio.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None
    abandoned: bool = False

    def finish(self, result: np.ndarray | None = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


@dataclass(eq=False)
class _Worker:
    index: int
    identity: bytes
    proc: subprocess.Popen[bytes]
    started: float
    last_seen: float
    ready: bool = False
    batch: list[_Pending] | None = None
    batch_id: int = 0
    batch_sent: float = 0.0


class WorkerPool:
    """Runs a :class:`WorkerSpec` in ``workers`` processes and batches :meth:`infer` calls across them.

    :param name: names the socket file and the log lines (e.g. the model's component name).
    :param directory: where the ``ipc://`` socket file lives (the node's data dir); a short temporary
        directory is used instead when the path would not fit a Unix socket address.
    :param max_batch: most inputs sent to one worker in one batch.
    :param heartbeat: seconds between heartbeats, both ways.
    :param liveness: heartbeats a peer may miss before it counts as dead.
    :param start_timeout: seconds a worker may take to load its model.
    """

    def __init__(self, spec: WorkerSpec, *, workers: int, name: str, directory: Path | str, max_batch: int = 16,
                 heartbeat: float = 1.0, liveness: int = 3, start_timeout: float = 120.0, log: Any = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.spec = spec
        self.size = workers
        self.name = name
        self.directory = Path(directory)
        self.max_batch = max_batch
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.start_timeout = start_timeout
        self.log = log
        self.info: dict[str, Any] = {}  # what the first worker reported about its model (READY header)
        self.batches = 0
        self.requests = 0
        self.restarts = 0
        self.lost_requests = 0
        self.endpoint = ""
        self._queue: deque[_Pending] = deque()
        self._workers: list[_Worker | None] = [None] * workers
        self._by_identity: dict[bytes, _Worker] = {}
        self._generation = 0
        self._next_batch = 0
        self._respawn_at: dict[int, float] = {}
        self._backoff: dict[int, float] = {}
        self._reaping: list[subprocess.Popen[bytes]] = []
        self._wait_scope: anyio.CancelScope | None = None
        self._all_ready = anyio.Event()
        self._start_error: str | None = None
        self._running = False
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._sock: zmq.Socket[bytes] | None = None
        self._ipc_file: Path | None = None
        self._tmpdir: Path | None = None

    # ------------------------------------------------------------------ public
    async def infer(self, item: np.ndarray, *, deadline: float | None = None) -> np.ndarray:
        """The model's output for one input, computed in some worker's next batch.

        ``deadline`` is ``time.monotonic()``; past it the call raises ``TaskError("timeout")``.
        Raises :class:`WorkerLost` when the worker holding the request dies, ``TaskError("internal")``
        when the model raised, ``TaskError("unreachable")`` when the pool is not running.
        """
        if not self._running:
            raise TaskError("unreachable", f"model workers {self.name!r} are not running")
        pending = _Pending(np.ascontiguousarray(item), time.monotonic() + 3600.0 if deadline is None else deadline)
        self._queue.append(pending)
        if any(w is not None and w.ready and w.batch is None for w in self._workers):
            self._wake()
        try:
            with anyio.move_on_after(max(pending.deadline - time.monotonic(), 0.0)):
                await pending.done.wait()
        finally:
            if not pending.done.is_set():
                pending.abandoned = True  # skipped if still queued; its answer is dropped if not
        if pending.error is not None:
            raise pending.error
        if pending.result is None:
            raise TaskError("timeout", "the model did not answer before the deadline")
        return pending.result

    def stats(self) -> dict[str, Any]:
        """Counters and, per worker, its pid, state and resident memory (RSS read from /proc)."""
        workers = []
        for i, w in enumerate(self._workers):
            if w is None:
                workers.append({"index": i, "state": "restarting"})
                continue
            workers.append({"index": i, "pid": w.proc.pid, "state": "busy" if w.batch else ("idle" if w.ready else
                            "starting"), "rss_bytes": rss_bytes(w.proc.pid)})
        return {"workers": workers, "batches": self.batches, "requests": self.requests, "queued": len(self._queue),
                "restarts": self.restarts, "lost_requests": self.lost_requests, "endpoint": self.endpoint}

    def pids(self) -> list[int]:
        """Pids of the worker processes alive now."""
        return [w.proc.pid for w in self._workers if w is not None]

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the workers, report started once every one has loaded its model, serve until cancelled;
        then stop every worker and remove the socket file. Raises :class:`WorkerStartError` when a
        worker fails to load its model at start."""
        self._open()
        try:
            for i in range(self.size):
                self._spawn(i)
            failure = ""
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._own_socket)
                with anyio.move_on_after(self.start_timeout):
                    await self._all_ready.wait()
                if self._start_error is not None or not self._all_ready.is_set():
                    failure = self._start_error or f"not ready after {self.start_timeout:g} s"
                    tg.cancel_scope.cancel()
                else:
                    self._running = True
                    task_status.started()
                    await anyio.sleep_forever()
            raise WorkerStartError(f"model workers {self.name!r}: {failure}")
        finally:
            self._running = False
            with anyio.CancelScope(shield=True):
                await self._shutdown()

    # ------------------------------------------------------------------ processes
    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"workers-{self.name}-{os.getpid()}-{id(self):x}.ipc"
        if len(str(path)) > _IPC_PATH_MAX:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="tnode-w-"))
            path = self._tmpdir / f"{self.name[:20]}.ipc"
        self._ipc_file = path
        self.endpoint = f"ipc://{path}"
        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a vanished worker errors instead of vanishing
        sock.bind(self.endpoint)
        os.chmod(path, 0o600)  # only this user's processes may offer themselves as workers
        self._sock = sock

    def _spawn(self, index: int) -> None:
        self._generation += 1
        identity = f"w{index}.{self._generation}".encode()
        args = {"endpoint": self.endpoint, "identity": identity.decode(), "factory": self.spec.factory,
                "config": dict(self.spec.config), "heartbeat": self.heartbeat, "liveness": self.liveness,
                "parent": os.getpid()}
        env = {**os.environ, **self.spec.env}
        proc = subprocess.Popen([sys.executable, "-m", "tnode.workers", orjson.dumps(args).decode()], env=env,
                                stdin=subprocess.DEVNULL)
        now = time.monotonic()
        worker = _Worker(index, identity, proc, started=now, last_seen=now)
        self._workers[index] = worker
        self._by_identity[identity] = worker

    def _lose(self, worker: _Worker, why: str) -> None:
        """Kill ``worker``, fail the batch it held and schedule its restart."""
        self._workers[worker.index] = None
        self._by_identity.pop(worker.identity, None)
        if worker.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGKILL)
            self._reaping.append(worker.proc)
        lost = worker.batch or []
        for p in lost:
            p.finish(error=WorkerLost(f"model worker {worker.index} of {self.name!r} (pid {worker.proc.pid}) {why}"))
        self.lost_requests += len(lost)
        if self.log is not None:
            self.log.warning("model worker lost", pool=self.name, worker=worker.index, pid=worker.proc.pid,
                             reason=why, failed_requests=len(lost))
        delay = self._backoff.get(worker.index, 0.05)
        self._backoff[worker.index] = min(delay * 2, _MAX_BACKOFF)
        self._respawn_at[worker.index] = time.monotonic() + delay
        if not self._running and not self._all_ready.is_set() and self._start_error is None:
            self._start_error = f"worker {worker.index} {why} while loading"
            self._all_ready.set()

    def _housekeeping(self, now: float) -> None:
        for worker in list(self._by_identity.values()):
            code = worker.proc.poll()
            if code is not None:
                self._lose(worker, f"exited with code {code}")
            elif worker.ready and now - worker.last_seen > self.liveness * self.heartbeat:
                self._lose(worker, f"sent nothing for {now - worker.last_seen:.1f} s (heartbeats lost)")
            elif not worker.ready and now - worker.started > self.start_timeout:
                self._lose(worker, f"did not load its model within {self.start_timeout:g} s")
        for index, at in list(self._respawn_at.items()):
            if now >= at:
                del self._respawn_at[index]
                self.restarts += 1
                self._spawn(index)
        self._reaping = [p for p in self._reaping if p.poll() is None]

    async def _shutdown(self) -> None:
        for worker in list(self._by_identity.values()):
            self._send(worker, [STOP, b"{}"])
        stop_by = time.monotonic() + 2.0
        procs = [w.proc for w in self._by_identity.values()] + self._reaping
        while any(p.poll() is None for p in procs) and time.monotonic() < stop_by:
            await anyio.sleep(0.02)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for w in self._by_identity.values():
            for p in w.batch or []:
                p.finish(error=TaskError("unreachable", f"model workers {self.name!r} stopped"))
        while self._queue:
            self._queue.popleft().finish(error=TaskError("unreachable", f"model workers {self.name!r} stopped"))
        self._by_identity.clear()
        self._workers = [None] * self.size
        if self._sock is not None:
            self._sock.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        if self._ipc_file is not None:
            self._ipc_file.unlink(missing_ok=True)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    # ------------------------------------------------------------------ the socket's owner task
    def _wake(self) -> None:
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def _send(self, worker: _Worker, frames: list[Any]) -> bool:
        assert self._sock is not None
        try:
            self._sock.send_multipart([worker.identity, *frames], flags=zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH (gone) or EAGAIN (not reading): both mean lost
            self._lose(worker, f"could not be sent to ({exc.strerror})")
            return False
        return True

    async def _own_socket(self) -> None:
        sock = self._sock
        assert sock is not None
        fd = int(sock.getsockopt(zmq.FD))
        next_housekeeping = next_heartbeat = time.monotonic()
        while True:
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_message(frames)
            self._dispatch()
            now = time.monotonic()
            if now >= next_heartbeat:
                next_heartbeat = now + self.heartbeat
                for worker in list(self._by_identity.values()):
                    if worker.ready:
                        self._send(worker, [HEARTBEAT, b"{}"])
            if now >= next_housekeeping:
                next_housekeeping = now + _HOUSEKEEPING
                self._housekeeping(now)
                self._dispatch()  # a restarted or freed worker may take queued work
            if int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:  # sends above may have consumed the edge
                await anyio.lowlevel.checkpoint()
                continue
            busy = any(w.batch for w in self._by_identity.values())
            guard = min(_GUARD_BUSY if busy else _GUARD_IDLE, max(next_housekeeping - now, 0.0))
            with anyio.move_on_after(guard) as scope:
                self._wait_scope = scope
                await anyio.wait_readable(fd)
            self._wait_scope = None

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        worker = self._by_identity.get(frames[0].bytes)
        if worker is None or len(frames) < 3:
            return  # an earlier incarnation of a restarted worker, or not ours
        worker.last_seen = time.monotonic()
        kind = frames[1].bytes
        if kind == HEARTBEAT:
            return
        try:
            header = orjson.loads(frames[2].buffer)
        except orjson.JSONDecodeError:
            self._lose(worker, "sent a malformed header")
            return
        if kind == READY:
            worker.ready = True
            self._backoff.pop(worker.index, None)
            if not self.info:
                self.info = dict(header.get("info", {}))
            if all(w is not None and w.ready for w in self._workers):
                self._all_ready.set()
        elif kind == FAILED:
            if not self._running and self._start_error is None:
                self._start_error = f"worker {worker.index} could not load the model: {header.get('error')}"
                self._all_ready.set()
            self._lose(worker, f"could not load the model: {header.get('error')}")
        elif kind == ANSWER:
            self._on_answer(worker, header, frames[3:])

    def _on_answer(self, worker: _Worker, header: dict[str, Any], frames: list[zmq.Frame]) -> None:
        batch = worker.batch
        if batch is None or header.get("id") != worker.batch_id:
            return
        worker.batch = None
        if "error" in header:
            for p in batch:
                p.finish(error=TaskError("internal", f"the model failed: {header['error']}"))
            return
        try:
            outputs = decode_arrays(header.get("arrays"), frames)
            if len(outputs) != len(batch):
                raise ValueError(f"{len(outputs)} answers for {len(batch)} inputs")
        except (ValueError, TypeError) as exc:
            for p in batch:
                p.finish(error=TaskError("internal", f"model worker sent a bad answer: {exc}"))
            return
        for p, out in zip(batch, outputs, strict=True):
            p.finish(result=out)

    def _dispatch(self) -> None:
        """Give queued inputs to idle workers, up to ``max_batch`` each."""
        while self._queue:
            idle = next((w for w in self._workers if w is not None and w.ready and w.batch is None), None)
            if idle is None:
                return
            now = time.monotonic()
            batch: list[_Pending] = []
            while self._queue and len(batch) < self.max_batch:
                p = self._queue.popleft()
                if p.abandoned or p.deadline <= now:
                    p.done.set()  # its caller has given up (or is about to)
                    continue
                batch.append(p)
            if not batch:
                return
            self._next_batch += 1
            items = [p.item for p in batch]
            header = orjson.dumps({"id": self._next_batch, "arrays": array_header(items)})
            idle.batch, idle.batch_id, idle.batch_sent = batch, self._next_batch, now
            if self._send(idle, [BATCH, header, *array_frames(items)]):
                self.batches += 1
                self.requests += len(batch)


def model_stats(pool: WorkerPool | None) -> dict[str, Any]:
    """What a model component's ``stats()`` reports: its pool's workers (pid, state, RSS) and counters,
    or, with no pool (the model runs in the node's process), the node's own RSS."""
    if pool is None:
        return {"workers": 0, "rss_bytes": rss_bytes(os.getpid())}
    return {**pool.stats(), "workers_configured": pool.size}


async def serve_model(pool: WorkerPool, *, name: str, log: Any, task_status: Any) -> None:
    """Body of a model component's ``run`` when it has workers: start them, log ``model ready`` with
    each worker's resident MiB (``rss_mib``) and what the model reported, serve until cancelled."""
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        log.info("model ready", model=name, workers=pool.size, **pool.info,
                 rss_mib=[round(w.get("rss_bytes", 0) / 2**20) for w in pool.stats()["workers"]])
        task_status.started()
        await anyio.sleep_forever()


if __name__ == "__main__":  # a worker process, as WorkerPool._spawn starts it
    sys.exit(worker_main(orjson.loads(sys.argv[1])))
