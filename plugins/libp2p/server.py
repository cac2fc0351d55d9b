"""The server side of ``/tnode/task/1``: every inbound stream, frame by frame.

Each frame is verified (size, structure, signature, freshness, replay, body hash), translated to
an :class:`tnode.interfaces.InboundRequest` and handed to :mod:`tnode.dispatch` (spam filters,
execution slot, the modality or service it names); the answer, or the refusal code dispatch gave,
goes back signed by this node. What stays here is the transport's own: framing, read deadlines,
signer-peer binding, and strikes (tarpit) for the refusal codes that are the sender's fault.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from typing import TYPE_CHECKING, Any

import trio
from libp2p.network.stream.exceptions import StreamError
from tnode import dispatch, wire
from tnode.errors import TaskError, WireError
from tnode.events import TaskRefused
from tnode.interfaces import InboundRequest
from tnode.keys import public_key_from_peer_id

from .framing import FrameBudgetExhausted, FrameReadTimeout, StreamIdle, read_frame

if TYPE_CHECKING:
    from .transport import Libp2pTransport

class TaskServer:
    """Serves the streams peers open to this node; state (stats, tarpit, slots) lives on the transport."""

    def __init__(self, transport: Libp2pTransport) -> None:
        self.t = transport
        self.dispatcher = dispatch.of(transport.node)

    async def serve_stream(self, stream: Any) -> None:
        """Serve one inbound stream until it ends; nothing a peer sends can raise out of here."""
        remote = ""
        try:
            remote = stream.muxed_conn.peer_id.to_base58()
            await self._serve_frames(stream, remote)
        except (StreamError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        except Exception as exc:  # a bug reached by a peer's input: refuse this stream, keep serving others
            self.t.stats["errors"] += 1
            self.t.log_peer_bug(remote, "stream", exc)
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.reset()
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.close()

    async def _serve_frames(self, stream: Any, remote: str) -> None:
        cfg = self.t.config
        carry = bytearray()  # bytes a peer sent past one frame (a pipelined next request)
        while True:
            try:
                data = await read_frame(stream, cfg.max_frame_bytes, idle_seconds=cfg.stream_idle_seconds,
                                        frame_seconds=cfg.frame_read_seconds, budget=self.t.budget, peer=remote,
                                        carry=carry)
            except StreamIdle:
                self.t.stats["idle_closed"] += 1
                return
            except FrameReadTimeout as exc:
                # A stalled or very slow peer: it may not be reading either, so no answer, just a reset.
                self.t.stats["read_timeouts"] += 1
                self.t.tarpit.strike(remote, exc.code)
                self.t.node.bus.publish_nowait(TaskRefused(remote, "", exc.code, str(exc)))
                self.t.log.debug("stalled stream reset", remote=remote, reason=str(exc))
                await stream.reset()
                return
            except WireError as exc:
                # Oversized, truncated or over budget: the stream cannot be re-synchronised; answer and reset.
                if isinstance(exc, FrameBudgetExhausted):
                    self.t.stats["budget_refused"] += 1
                self.t.tarpit.strike(remote, exc.code)
                receiver = ""
                with contextlib.suppress(ValueError):
                    receiver = public_key_from_peer_id(remote).hex()
                with trio.move_on_after(cfg.frame_read_seconds):
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
        """The response frame to one request frame, and its refusal code ("" when served).

        Whatever goes wrong inside is answered as a refusal: one peer's frame never ends the stream's
        task, the transport or the node.
        """
        try:
            return await self._answer(data, remote)
        except Exception as exc:
            self.t.stats["errors"] += 1
            self.t.log_peer_bug(remote, "handle", exc)
            return self._error_frame(None, _hotkey_of(remote), "internal", type(exc).__name__), "internal"

    async def _answer(self, data: bytes, remote: str) -> tuple[bytes, str]:
        received = time.monotonic()
        try:
            msg = self._verify(data, remote)
        except WireError as exc:
            self.t.stats["refused"] += 1
            self.t.node.bus.publish_nowait(TaskRefused(remote, "", exc.code, str(exc)))
            self.t.log.debug("frame refused", remote=remote, code=exc.code, reason=str(exc))
            return self._error_frame(None, _hotkey_of(remote), exc.code, str(exc)), exc.code
        except Exception as exc:  # the decoder met input it does not expect: refuse the frame, not the node
            self.t.stats["refused"] += 1
            self.t.stats["errors"] += 1
            self.t.log_peer_bug(remote, "decode", exc)
            self.t.node.bus.publish_nowait(TaskRefused(remote, "", "invalid_request", type(exc).__name__))
            return self._error_frame(None, _hotkey_of(remote), "invalid_request",
                                     f"frame could not be decoded ({type(exc).__name__})"), "invalid_request"
        args = msg.body.get("args", {})
        timeout_ms = msg.body.get("timeout_ms", 10_000)
        if not isinstance(args, dict) or not isinstance(timeout_ms, int | float) or not math.isfinite(timeout_ms):
            return self._refused(msg, remote, "invalid_request", "body must be {args: object, timeout_ms: number}")
        payload = msg.payload
        if payload is None or isinstance(payload, bytes):
            dtype, shape = ("bytes" if payload is not None else ""), None
        else:
            dtype, shape = payload.dtype.name, payload.shape
        request = InboundRequest(msg.sender, remote, msg.modality, msg.task, args, msg.payload_bytes, msg.frame_bytes,
                                 received + max(timeout_ms / 1000.0, 0.0), payload, dtype, shape, "libp2p", received)
        try:
            result = await self.dispatcher.handle(request)
        except TaskError as exc:
            return self._error_frame(msg, msg.sender, exc.code, exc.message), exc.code
        self.t.stats["served"] += 1
        return wire.encode(self.t.key, kind="res", modality=msg.modality, task=msg.task, receiver=msg.sender,
                           body={"result": result.body}, payload=result.payload, reply_to=msg.nonce), ""

    def _verify(self, data: bytes, remote: str) -> wire.Message:
        """Structure, then signer == connection peer (cheap, before the signature check), then the rest."""
        frame = wire.decode_body(data, self.t.config.max_frame_bytes)
        expected = _hotkey_of(remote)
        if frame.header.get("s") != expected:
            raise WrongSender(f"frame signed by {str(frame.header.get('s'))[:16]}…, but the connection is "
                              f"authenticated as {remote}: a request must be signed by its connection's peer")
        session = expected if self.t.config.accept_unsigned_requests else None
        return self.t.verifier.verify(frame, expect_kind="req", session_sender=session)

    def _refused(self, msg: wire.Message, remote: str, code: str, reason: str) -> tuple[bytes, str]:
        """A refusal the transport makes itself (a body it cannot hand to dispatch)."""
        self.t.node.bus.publish_nowait(TaskRefused(remote, msg.sender, code, reason))
        return self._error_frame(msg, msg.sender, code, reason), code


class WrongSender(WireError):
    """A request signed by another key than the connection's authenticated peer."""

    code = "wrong_sender"


@functools.lru_cache(maxsize=4096)  # a pure function of the connection's peer id, asked once per frame
def _hotkey_of(peer_id: str) -> str:
    """The hex Ed25519 key of a peer id ("" for a peer id that is not an Ed25519 identity)."""
    try:
        return public_key_from_peer_id(peer_id).hex()
    except Exception:  # any malformed peer id
        return ""
