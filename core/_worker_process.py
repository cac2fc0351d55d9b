"""What runs inside a model worker process of a :class:`tnode.workers.WorkerPool` (internal).

The pool starts ``python -m tnode.workers ARGS`` (ARGS: the endpoint, the worker's identity, the
model's factory and config, heartbeat and liveness as JSON), which calls :func:`worker_main`: connect
a DEALER to the pool's ROUTER, load the model once, say READY (or FAILED with the reason), then
answer batches. Inference runs in a thread so the main thread keeps heartbeating during a long
pass; the worker exits when told to STOP, when the node's heartbeats stop for ``liveness``
intervals, or when its parent process changes (the node is gone).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

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

__all__ = ["worker_main"]


def _load_model(factory: str, config: Mapping[str, Any]) -> Any:
    module_name, _, attr = factory.partition(":")
    if not attr:
        raise ValueError(f"factory {factory!r} is not 'package.module:callable'")
    model = getattr(importlib.import_module(module_name), attr)(config)
    if not callable(getattr(model, "infer", None)):
        raise TypeError(f"{factory} returned {type(model).__name__}, which has no infer(inputs)")
    return model


def worker_main(args: Mapping[str, Any]) -> int:
    """Body of a worker process: connect, load the model once, answer batches until told to stop or
    until the node is gone (its heartbeats stop or the parent process changes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C goes to the node, which stops us
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, str(args["identity"]).encode())
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(str(args["endpoint"]))
    try:
        model = _load_model(str(args["factory"]), args["config"])
    except Exception as exc:  # reported to the node, which names it in its start error
        sock.send_multipart([FAILED, orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})])
        time.sleep(0.2)  # let the message leave before the context closes
        return 1
    info = getattr(model, "info", None)
    sock.send_multipart([READY, orjson.dumps({"pid": os.getpid(), "info": info() if callable(info) else {}})])
    try:
        return _serve(ctx, sock, model, float(args["heartbeat"]), int(args["liveness"]), int(args["parent"]))
    finally:
        sock.close(linger=0)
        ctx.term()


def _serve(ctx: zmq.Context[zmq.Socket[bytes]], sock: zmq.Socket[bytes], model: Any, heartbeat: float,
           liveness: int, parent: int) -> int:
    # Inference runs in a thread so that this thread keeps heartbeating during a long pass; the thread
    # signals completion on an inproc PAIR so one poll() waits for both.
    done_rx = ctx.socket(zmq.PAIR)
    done_rx.bind("inproc://done")
    done_tx = ctx.socket(zmq.PAIR)
    done_tx.connect("inproc://done")
    jobs: queue.Queue[tuple[int, list[np.ndarray]] | None] = queue.Queue()
    results: deque[tuple[int, list[np.ndarray] | None, str]] = deque()

    def infer_loop() -> None:
        while (job := jobs.get()) is not None:
            batch_id, inputs = job
            try:
                outputs = [np.asarray(o) for o in model.infer(inputs)]
                results.append((batch_id, outputs, ""))
            except Exception as exc:  # reported to the node as this batch's answer
                results.append((batch_id, None, f"{type(exc).__name__}: {exc}"))
            done_tx.send(b"")

    thread = threading.Thread(target=infer_loop, name="infer", daemon=True)
    thread.start()
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(done_rx, zmq.POLLIN)
    backlog: deque[list[zmq.Frame]] = deque()
    busy = False
    last_seen = time.monotonic()
    next_heartbeat = last_seen + heartbeat
    try:
        while True:
            events = dict(poller.poll(int(max(next_heartbeat - time.monotonic(), 0.0) * 1000) + 1))
            now = time.monotonic()
            if sock in events:
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    last_seen = now
                    if frames[0].bytes == STOP:
                        return 0
                    if frames[0].bytes == BATCH:
                        backlog.append(frames)
            if done_rx in events:
                while True:
                    try:
                        done_rx.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                while results:
                    batch_id, outputs, error = results.popleft()
                    if outputs is None:
                        sock.send_multipart([ANSWER, orjson.dumps({"id": batch_id, "error": error})])
                    else:
                        header = orjson.dumps({"id": batch_id, "arrays": array_header(outputs)})
                        sock.send_multipart([ANSWER, header, *array_frames(outputs)], copy=False)
                    busy = False
            while not busy and backlog:
                frames = backlog.popleft()
                try:
                    header = orjson.loads(frames[1].buffer)
                    inputs = decode_arrays(header["arrays"], frames[2:])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    sock.send_multipart([ANSWER, orjson.dumps({"id": _batch_id(frames),
                                                               "error": f"bad batch: {exc}"})])
                    continue
                jobs.put((header["id"], inputs))
                busy = True
            if now >= next_heartbeat:
                sock.send(HEARTBEAT, zmq.SNDMORE)
                sock.send(b"{}")
                next_heartbeat = now + heartbeat
            if now - last_seen > liveness * heartbeat or os.getppid() != parent:
                return 2  # the node is gone: nobody will collect our answers
    finally:
        jobs.put(None)
        done_rx.close(linger=0)
        done_tx.close(linger=0)


def _batch_id(frames: list[zmq.Frame]) -> Any:
    with contextlib.suppress(Exception):
        return orjson.loads(frames[1].buffer).get("id")
    return None
