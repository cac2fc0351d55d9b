"""The client half of the libp2p transport: requests to peers over pooled ``/tnode/task/1`` streams.

Each peer keeps a small pool of open streams (opening a stream costs ~2 ms, a reused one carries a
request in well under a millisecond); each stream carries one request/response pair at a time.
Requests ride the Noise session's authentication unless ``sign_requests`` is set (a peer that
refuses an unsigned request as ``bad_signature`` gets it again signed, and every later one);
answers must be signed by the peer asked and refer to the request's nonce.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trio
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from tnode import wire
from tnode.errors import TaskError, WireError
from tnode.interfaces import Reply

from .framing import read_frame

TASK_PROTOCOL = "/tnode/task/1"


@dataclass
class PeerState:
    peer_id: str
    addrs: list[str] = field(default_factory=list)
    idle: list[Any] = field(default_factory=list)
    open_streams: int = 0
    slots: trio.Semaphore | None = None
    connected: bool = False
    failures: int = 0
    next_dial: float = 0.0
    hotkey: str = ""
    announcement: Any = None
    lib_id: Any = None  # parsed libp2p ID, cached: base58 decoding on every request is measurable
    dial_lock: trio.Lock = field(default_factory=trio.Lock)
    must_sign: bool = False  # the peer refused an unsigned request: sign every request to it


class RequestClient:
    """Mixed into :class:`~.transport.Libp2pTransport`: ``request`` and the stream pool behind it.

    Uses the transport's ``config``, ``key``, ``verifier``, ``stats``, ``host``, ``_peer``,
    ``_resolve``, ``_ensure_connected``, ``_live_connections`` and ``log_peer_bug``.
    """

    config: Any
    key: Any
    verifier: Any
    stats: Any
    host: Any
    async def request(self, peer: str, modality: str, task: str, body: Mapping[str, Any],
                      payload: np.ndarray | bytes | None = None, *, timeout: float = 10.0,
                      dial: bool = True) -> Reply:
        """Send one task and return the verified answer; ``dial=False`` uses only a live connection."""
        peer_id = self._resolve(peer)
        state = self._peer(peer_id)
        if not state.hotkey:
            raise TaskError("unreachable", f"{peer_id} is not an Ed25519 peer id")
        start = time.perf_counter()
        sign = self.config.sign_requests or state.must_sign
        while True:
            nonce = os.urandom(16).hex()
            frame = wire.encode(self.key, kind="req", modality=modality, task=task, receiver=state.hotkey,
                                body={"args": dict(body), "timeout_ms": int(timeout * 1000)}, payload=payload,
                                nonce=nonce, sign=sign)
            msg = self._checked_answer(state, await self._exchange(state, frame, timeout, dial), nonce)
            left = timeout - (time.perf_counter() - start)
            if msg.code == "bad_signature" and not sign and left > 0:
                # The peer serves signed requests only (accept_unsigned_requests = false): sign from now on.
                state.must_sign = sign = True
                timeout = left
                continue
            break
        if msg.code:
            raise TaskError(msg.code, str(msg.body.get("error", "")))
        result = msg.body.get("result", {})
        if not isinstance(result, dict):
            raise TaskError("invalid_response", "result is not an object")
        return Reply(result, msg.payload, peer_id, msg.sender, time.perf_counter() - start)

    async def _exchange(self, state: PeerState, frame: bytes, timeout: float, dial: bool) -> bytes:
        """Send one request frame on a pooled or new stream and read the answer frame."""
        peer_id = state.peer_id
        stream = None
        raw: bytes | None = None
        carry = bytearray()  # a greedy read of the answer; anything left after it is the server's error
        assert state.slots is not None
        with trio.move_on_after(timeout) as scope:
            async with state.slots:
                try:
                    if state.idle:
                        stream = state.idle.pop()
                        try:
                            await stream.write(frame)
                            raw = await read_frame(stream, self.config.max_frame_bytes, carry=carry)
                        except (StreamError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                            raw = None
                        if raw is None:
                            # A pooled stream the server closed meanwhile (idle timeout): one retry on a
                            # fresh stream with the same frame; the replay guard runs it at most once.
                            await self._discard(state, stream)
                            stream = None
                    if stream is None:
                        stream = await self._connected_stream(state, dial)
                        carry.clear()
                        await stream.write(frame)
                        raw = await read_frame(stream, self.config.max_frame_bytes, carry=carry)
                except (StreamError, WireError, OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                        RuntimeError) as exc:
                    await self._discard(state, stream)
                    stream = None
                    raise TaskError("unreachable", f"{peer_id}: {type(exc).__name__}: {exc}") from None
                except Exception as exc:
                    if isinstance(exc, TaskError):
                        raise
                    await self._discard(state, stream)
                    stream = None
                    raise TaskError("unreachable", f"{peer_id}: {type(exc).__name__}: {exc}") from None
                if raw is None:
                    await self._discard(state, stream)
                    raise TaskError("unreachable", f"{peer_id} closed the stream before answering")
                if carry:  # bytes after the one answer: this stream is out of step, never reuse it
                    await self._discard(state, stream)
                else:
                    state.idle.append(stream)
        if scope.cancelled_caught:
            # The late answer would land on this stream: never reuse it.
            await self._discard(state, stream)
            raise TaskError("timeout", f"no answer from {peer_id} within {timeout:.3f} s")
        assert raw is not None
        return raw

    def _checked_answer(self, state: PeerState, raw: bytes, nonce: str) -> wire.Message:
        """The verified answer frame to the request with ``nonce``, signed by the peer asked."""
        peer_id = state.peer_id
        try:
            msg = self.verifier.verify_body(raw, expect_kind="res")
        except WireError as exc:
            self.stats["bad_responses"] += 1
            raise TaskError("invalid_response", f"{peer_id}: {exc.code}: {exc}") from None
        except Exception as exc:  # the decoder met input it does not expect: a bad answer, not a crash
            self.stats["bad_responses"] += 1
            self.log_peer_bug(peer_id, "response", exc)
            raise TaskError("invalid_response", f"{peer_id}: undecodable answer ({type(exc).__name__})") from None
        if msg.sender != state.hotkey:
            raise TaskError("invalid_response", f"answer signed by {msg.sender[:16]}…, not by {peer_id}")
        if msg.reply_to != nonce and not (msg.code and msg.reply_to == ""):
            # An empty reply_to is allowed only on refusals of frames the server could not parse.
            raise TaskError("invalid_response", "answer does not refer to this request")
        return msg

    async def _connected_stream(self, state: PeerState, dial: bool = True) -> Any:
        """A new task stream to the peer, dialing first when no live connection is left.

        The connection can close between the check and the stream (the remote hung up): then it is
        dialed once more. Nothing has been sent yet, so the retry cannot run a request twice. With
        ``dial=False`` a peer without a live connection is ``unreachable`` at once.
        """
        if state.lib_id is None:
            state.lib_id = ID.from_base58(state.peer_id)
        if not dial:
            if not self._live_connections(state.lib_id):
                raise TaskError("unreachable", f"{state.peer_id}: not connected")
        else:
            await self._ensure_connected(state)
        try:
            return await self._open_stream(state)
        except Exception:
            if self._live_connections(state.lib_id) or not dial:
                raise  # the connection is up and the stream itself failed, or dialing is not wanted
        await self._ensure_connected(state)
        return await self._open_stream(state)

    async def _open_stream(self, state: PeerState) -> Any:
        stream = await self.host.new_stream(state.lib_id, [TASK_PROTOCOL])
        state.open_streams += 1
        return stream

    async def _discard(self, state: PeerState, stream: Any) -> None:
        if stream is None:
            return
        state.open_streams = max(0, state.open_streams - 1)
        with trio.CancelScope(shield=True), contextlib.suppress(Exception):
            await stream.reset()
