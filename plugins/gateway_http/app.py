"""The gateway's ASGI application: OpenAI's completions, chat completions and models endpoints.

Each request is authenticated by its API key (→ the client's hotkey), bounded in size, translated
into an :class:`tnode.interfaces.InboundRequest` and handed to the node's admission pipeline
(:mod:`tnode.dispatch`), so spam filters, stake priority and execution slots apply per key exactly
as they apply to a peer on the network. Refusal codes map to HTTP statuses.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import orjson
from anyio.streams.memory import MemoryObjectSendStream
from tnode import dispatch
from tnode.errors import TaskError
from tnode.http import answer_lifespan
from tnode.interfaces import InboundRequest

from .config import HttpGatewayConfig
from .keys import lookup

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

STATUS = {"unregistered": 403, "rate_limited": 429, "overloaded": 503, "starting": 503, "too_large": 413,
          "invalid_request": 400, "timeout": 504, "unreachable": 502, "invalid_response": 502}
STREAM_BUFFER = 64  # pieces a slow HTTP client may fall behind before generation waits for it


class HttpError(Exception):
    """An error answered as OpenAI's error document."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind


def _refused(exc: TaskError) -> HttpError:
    """A refusal or failure of the admission pipeline or the router, as an HTTP error."""
    return HttpError(STATUS.get(exc.code, 500), exc.message or exc.code, exc.code,
                     "rate_limit_error" if exc.code == "rate_limited" else "server_error")


def _error(exc: HttpError) -> tuple[int, bytes]:
    return exc.status, orjson.dumps({"error": {"message": exc.message, "type": exc.kind, "code": exc.code,
                                               "param": None}})


def chat_prompt(messages: Any) -> str:
    """The chat messages as one prompt the byte models continue: ``role: content`` lines, then ``assistant:``."""
    if not isinstance(messages, list) or not messages:
        raise HttpError(400, "messages must be a non-empty list", "invalid_messages")
    lines = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("content"), str) or not isinstance(m.get("role"), str):
            raise HttpError(400, f"messages[{i}] must have a string role and content", "invalid_messages")
        lines.append(f"{m['role']}: {m['content']}")
    return "\n".join(lines) + "\nassistant:"


class GatewayApp:
    """Routes by method and path; see the module doc."""

    def __init__(self, node: Any, route: str, config: HttpGatewayConfig, keys: Mapping[str, str]) -> None:
        self.node = node
        self.route = route  # the bus key the gateway's handler serves
        self.config = config
        self.keys = keys
        # stream id → channel of pieces, filled by the gateway's handler while the router generates
        self.streams: dict[str, MemoryObjectSendStream[str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self.serve(scope, receive, send)
        except HttpError as exc:
            status, body = _error(exc)
            await self._reply(send, status, body)

    @staticmethod
    async def _reply(send: Send, status: int, body: bytes, ctype: bytes = b"application/json") -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
        await send({"type": "http.response.body", "body": body})

    def _hotkey(self, scope: Scope) -> str:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        hotkey = lookup(self.keys, token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if hotkey is None:
            raise HttpError(401, "missing or unknown API key (Authorization: Bearer KEY)", "invalid_api_key")
        return hotkey

    async def _body(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        limit = self.config.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HttpError(413, f"request body of {int(declared)} bytes exceeds {limit}", "request_too_large")
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # refused before the rest is read
                raise HttpError(413, f"request body exceeds {limit} bytes", "request_too_large")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            doc = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"the body is not JSON: {exc}", "invalid_json") from None
        if not isinstance(doc, dict):
            raise HttpError(400, "the body must be a JSON object", "invalid_json")
        return doc

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        routes = {("GET", "/v1/models"), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions")}
        if (method, path) not in routes:
            known = {p for _, p in routes}
            if path in known:
                raise HttpError(405, f"{method} is not allowed on {path}", "method_not_allowed")
            raise HttpError(404, f"no such path {path!r} (paths: {', '.join(sorted(known))})", "not_found")
        hotkey = self._hotkey(scope)
        if path == "/v1/models":
            await self._reply(send, 200, orjson.dumps({"object": "list", "data": [
                {"id": self.config.model, "object": "model", "created": 0, "owned_by": "tnode"}]}))
            return
        doc = await self._body(scope, receive)
        if doc.get("model") != self.config.model:
            raise HttpError(404, f"model {doc.get('model')!r} does not exist (models: {self.config.model})",
                            "model_not_found")
        chat = path == "/v1/chat/completions"
        if chat:
            prompt = chat_prompt(doc.get("messages"))
        else:
            given = doc.get("prompt")
            if isinstance(given, list) and len(given) == 1:
                given = given[0]
            if not isinstance(given, str) or not given:
                raise HttpError(400, "prompt must be a non-empty string", "invalid_prompt")
            prompt = given
        max_tokens = doc.get("max_completion_tokens", doc.get("max_tokens", 16))
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise HttpError(400, "max_tokens must be a positive integer", "invalid_max_tokens")
        if max_tokens > self.config.max_tokens:
            raise HttpError(413, f"max_tokens = {max_tokens} exceeds this gateway's {self.config.max_tokens}",
                            "max_tokens_too_large")
        temperature = doc.get("temperature", 0.0)
        if not isinstance(temperature, int | float) or isinstance(temperature, bool) or not 0 <= temperature <= 2:
            raise HttpError(400, "temperature must be a number in [0, 2]", "invalid_temperature")
        client = scope.get("client") or ("?", 0)
        body: dict[str, Any] = {"prompt": prompt, "max_tokens": max_tokens, "temperature": float(temperature)}
        stream = bool(doc.get("stream"))
        if stream:  # the handler sends each piece to this request's channel as it is generated
            body["stream"] = secrets.token_hex(16)
        request = InboundRequest(sender=hotkey, peer_id=f"http:{client[0]}:{client[1]}", modality=self.route,
                                 task="complete", body=body, payload_bytes=0, frame_bytes=len(prompt.encode()),
                                 deadline=time.monotonic() + self.config.request_timeout)
        ident = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        created = int(time.time())
        if stream:
            await self._stream(send, request, ident, created, chat)
            return
        try:
            result = await dispatch.of(self.node).handle(request)
        except TaskError as exc:
            raise _refused(exc) from None
        text, tokens = str(result.body["text"]), int(result.body["tokens"])
        usage = {"prompt_tokens": len(prompt.encode()), "completion_tokens": tokens,
                 "total_tokens": len(prompt.encode()) + tokens}
        if chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "length"}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        await self._reply(send, 200, orjson.dumps({
            "id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
            "model": self.config.model, "choices": [choice], "usage": usage,
            "tnode": {"miners": result.body["miners"]}}))

    async def _stream(self, send: Send, request: InboundRequest, ident: str, created: int, chat: bool) -> None:
        """Server-sent events in OpenAI's chunk shape, one per piece as the router generates it, then ``[DONE]``.

        The request is admitted like any other; a refusal before the first piece is an HTTP error, a
        failure after it an ``error`` event that ends the stream."""
        stream_id = str(request.body["stream"])
        tx, rx = anyio.create_memory_object_stream[str](STREAM_BUFFER)
        self.streams[stream_id] = tx
        failed: list[TaskError] = []
        started = False

        async def generate() -> None:
            try:
                await dispatch.of(self.node).handle(request)
            except TaskError as exc:
                failed.append(exc)
            finally:
                await tx.aclose()

        async def start() -> None:
            nonlocal started
            if not started:
                started = True
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})

        try:
            async with anyio.create_task_group() as tg, rx:
                tg.start_soon(generate)
                index = 0
                async for piece in rx:
                    await start()
                    await self._event(send, self._chunk(ident, created, chat, piece, index))
                    index += 1
        finally:
            self.streams.pop(stream_id, None)
        if failed and not started:
            raise _refused(failed[0])
        await start()
        if failed:
            status, doc = _error(_refused(failed[0]))
            await send({"type": "http.response.body", "body": b"data: " + doc + b"\n\n"})
            return
        await self._event(send, self._chunk(ident, created, chat, None, index))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    @staticmethod
    async def _event(send: Send, chunk: dict[str, Any]) -> None:
        await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n",
                    "more_body": True})

    def _chunk(self, ident: str, created: int, chat: bool, piece: str | None, index: int) -> dict[str, Any]:
        """One streamed chunk; ``piece`` None is the last one (``finish_reason``)."""
        finish = "length" if piece is None else None
        if chat:
            delta = {} if piece is None else ({"role": "assistant", "content": piece} if index == 0
                                              else {"content": piece})
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish}
        return {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion", "created": created,
                "model": self.config.model, "choices": [choice]}
