"""``[gateways.NAME] type = "http"``: an OpenAI-compatible HTTP server on the node's trio loop.

hypercorn's trio worker serves :class:`~tnode.plugins.gateway_http.app.GatewayApp` in the node's
own loop. Requests enter through the core's admission pipeline under the bus key
``gateway:<NAME>``, where this component's handler answers them with the configured router; the
handler refuses anything that did not come through this gateway (a network peer naming the key).
"""

from __future__ import annotations

import codecs
import os
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from tnode.errors import TaskError
from tnode.events import TaskReceived
from tnode.http import start_http
from tnode.interfaces import TaskResult

from .app import GatewayApp
from .config import HttpGatewayConfig
from .keys import load_keys


class HttpGateway:
    """The gateway component; see the module doc and docs/router.md."""

    def __init__(self, node: Any, name: str, config: HttpGatewayConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.route = f"gateway:{name}"
        base = Path(getattr(node.config, "base_dir", ".") or ".")
        file = (base / config.api_keys_file) if config.api_keys_file else None
        self.keys = load_keys(file, os.environ.get(config.api_keys_env, ""), env_name=config.api_keys_env)
        self.app = GatewayApp(node, self.route, config, self.keys)
        self.url = ""
        self.router: Any = None

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        self.router = self.node.require("router", self.config.router, key_path=f"gateways.{self.name}.router")
        if not self.keys:
            self.node.log.warning("gateway has no API keys: every request gets 401", gateway=self.name)
        undo = self.node.bus.serve(TaskReceived, self.handle, key=self.route)
        try:
            async with anyio.create_task_group() as tg:
                self.url = await start_http(tg, self.app, self.config.listen, log_name="tnode.gateway_http",
                                            key_path=f"gateways.{self.name}.listen")
                self.node.log.info("gateway serving", gateway=self.name, url=self.url,
                                   paths="/v1/models /v1/completions /v1/chat/completions")
                task_status.started()
        finally:
            undo()

    async def handle(self, task: TaskReceived) -> TaskResult:
        """Answer an admitted gateway request with the router (the bus handler)."""
        if not task.peer_id.startswith("http:"):
            raise TaskError("unknown_modality", f"{self.route} is served only to this node's HTTP gateway")
        prompt = str(task.body["prompt"]).encode("utf-8")
        sink = self.app.streams.get(str(task.body["stream"])) if task.body.get("stream") else None
        # Pieces end at UTF-8 boundaries, so a streamed chunk never holds half a character.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []

        async def emit(piece: str) -> None:
            if piece:
                pieces.append(piece)
                if sink is not None:
                    await sink.send(piece)

        async def on_token(token: int) -> None:
            await emit(decoder.decode(bytes([token])))

        with anyio.fail_after(max(task.deadline - time.monotonic(), 0.1)):
            ids, steps = await self.router.complete(np.frombuffer(prompt, dtype=np.uint8),
                                                    int(task.body["max_tokens"]),
                                                    temperature=float(task.body["temperature"]), on_token=on_token)
            await emit(decoder.decode(b"", final=True))
        miners = {}
        for step in steps:
            for row in step.miners(self.router.board):
                miners[row["hotkey"]] = {"uid": row["uid"], "status": row["status"]}
        return TaskResult({"text": "".join(pieces), "pieces": pieces, "tokens": len(ids),
                           "miners": list(miners.values())})
