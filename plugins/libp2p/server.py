"""The server side of ``/tnode/task/1``: every inbound stream, frame by frame.

Each frame is verified (size, structure, signature, freshness, replay, body hash) before the spam
filters and before any handler, then dispatched on the bus as :class:`tnode.events.TaskReceived`
to the modality it names; the answer (or a typed refusal) goes back signed by this node.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio
from libp2p.network.stream.exceptions import StreamError
from tnode import wire
from tnode.errors import NoHandler, RequestTimeout, TaskError, WireError
from tnode.events import TaskCompleted, TaskReceived, TaskRefused
from tnode.interfaces import InboundRequest, TaskResult
from tnode.keys import public_key_from_peer_id

from .framing import read_frame

if TYPE_CHECKING:
    from .transport import Libp2pTransport

ALWAYS_SERVED = frozenset({"chain"})  # the chain service answers before the node is fully up


class TaskServer:
    """Serves the streams peers open to this node; state (stats, tarpit, slots) lives on the transport."""

    def __init__(self, transport: Libp2pTransport) -> None:
        self.t = transport

    async def serve_stream(self, stream: Any) -> None:
        remote = stream.muxed_conn.peer_id.to_base58()
        try:
            while True:
                try:
                    data = await read_frame(stream, self.t.config.max_frame_bytes)
                except WireError as exc:
                    # Oversized or truncated: the stream cannot be re-synchronised; answer and reset.
                    self.t.tarpit.strike(remote, exc.code)
                    receiver = ""
                    with contextlib.suppress(ValueError):
                        receiver = public_key_from_peer_id(remote).hex()
                    await self._refuse(stream, remote, "", exc.code, str(exc), reply_to="", receiver=receiver)
                    await stream.reset()
                    return
                if data is None:
                    return
                response, refusal = await self._handle_frame(data, remote)
                if refusal:
                    self.t.tarpit.strike(remote, refusal)  # counts only refusals for abuse
                    delay = self.t.tarpit.delay(remote)
                    if delay:
                        await trio.sleep(delay)
                await stream.write(response)
        except (StreamError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.close()

    async def _refuse(self, stream: Any, remote: str, sender: str, code: str, reason: str, *, reply_to: str,
                      receiver: str) -> None:
        self.t.stats["refused"] += 1
        self.t.node.bus.publish_nowait(TaskRefused(remote, sender, code, reason))
        self.t.log.debug("request refused", remote=remote, code=code, reason=reason)
        frame = wire.encode(self.t.key, kind="res", modality="", task="", receiver=receiver,
                            body={"error": reason}, reply_to=reply_to, code=code)
        with contextlib.suppress(Exception):
            await stream.write(frame)

    def _error_frame(self, msg: wire.Message | None, receiver: str, code: str, reason: str) -> bytes:
        return wire.encode(self.t.key, kind="res", modality=msg.modality if msg else "", task=msg.task if msg else "",
                           receiver=receiver, body={"error": reason}, reply_to=msg.nonce if msg else "", code=code)

    async def _handle_frame(self, data: bytes, remote: str) -> tuple[bytes, str]:
        """The response frame to one request frame, and its refusal code ("" when served)."""
        received = time.monotonic()
        try:
            msg = self.t.verifier.verify_body(data, expect_kind="req")
        except WireError as exc:
            self.t.stats["refused"] += 1
            self.t.node.bus.publish_nowait(TaskRefused(remote, "", exc.code, str(exc)))
            self.t.log.debug("frame refused", remote=remote, code=exc.code, reason=str(exc))
            receiver = ""
            with contextlib.suppress(Exception):
                receiver = public_key_from_peer_id(remote).hex()
            return self._error_frame(None, receiver, exc.code, str(exc)), exc.code
        args = msg.body.get("args", {})
        timeout_ms = msg.body.get("timeout_ms", 10_000)
        if not isinstance(args, dict) or not isinstance(timeout_ms, int | float) or not math.isfinite(timeout_ms):
            return self._refused(msg, remote, "invalid_request", "body must be {args: object, timeout_ms: number}")
        deadline = received + min(max(timeout_ms / 1000.0, 0.0), self.t.config.max_task_seconds)
        if not self.t.node.ready.is_set() and msg.modality not in ALWAYS_SERVED:
            return self._refused(msg, remote, "starting", "node is starting")
        releases: list[Callable[[], None]] = []
        ok = False
        code = ""
        try:
            inbound = InboundRequest(msg.sender, remote, msg.modality, msg.task, args, msg.payload_bytes,
                                     msg.frame_bytes, deadline)
            for flt in self.t.node.components_of("spam_filter").values():
                release = await flt.admit(inbound)
                if release is not None:
                    releases.append(release)
            remaining = deadline - time.monotonic()
            with trio.move_on_after(max(remaining, 0)) as slot_scope:
                await self.t._inflight.acquire()
            if slot_scope.cancelled_caught:
                raise TaskError("overloaded", "no execution slot before the deadline")
            try:
                result = await self.t.node.bus.request(
                    TaskReceived(msg.modality, msg.task, args, msg.payload, msg.sender, remote, deadline, received),
                    timeout=max(deadline - time.monotonic(), 0.0),
                )
            finally:
                self.t._inflight.release()
            if not isinstance(result, TaskResult):
                raise TaskError("internal", f"handler returned {type(result).__name__}, not TaskResult")
            ok = True
            self.t.stats["served"] += 1
            return wire.encode(self.t.key, kind="res", modality=msg.modality, task=msg.task, receiver=msg.sender,
                               body={"result": result.body}, payload=result.payload, reply_to=msg.nonce), ""
        except TaskError as exc:
            code = exc.code
            return self._refused(msg, remote, exc.code, exc.message)
        except NoHandler:
            code = "unknown_modality"
            served = ", ".join(k for k in self.t.node.bus.served_keys(TaskReceived) if not k.startswith("_")) or "none"
            return self._refused(msg, remote, code, f"modality {msg.modality!r} is not served here (served: {served})")
        except RequestTimeout:
            code = "timeout"
            return self._refused(msg, remote, code, "deadline passed before the answer was ready")
        except Exception as exc:  # a handler bug must not kill the stream
            code = "internal"
            self.t.stats["errors"] += 1
            self.t.log.error("task handler failed", modality=msg.modality, task=msg.task, error=repr(exc))
            return self._refused(msg, remote, code, f"{type(exc).__name__}")
        finally:
            for release in releases:
                with contextlib.suppress(Exception):
                    release()
            self.t.node.bus.publish_nowait(TaskCompleted(msg.modality, msg.task, msg.sender, ok, code,
                                                       time.monotonic() - received))

    def _refused(self, msg: wire.Message, remote: str, code: str, reason: str) -> tuple[bytes, str]:
        if code in ("rate_limited", "unregistered", "overloaded", "too_large", "starting", "invalid_request"):
            self.t.node.bus.publish_nowait(TaskRefused(remote, msg.sender, code, reason))
        return self._error_frame(msg, msg.sender, code, reason), code
