"""``[exporters.NAME] type = "prometheus"``: /metrics, /healthz, /readyz and the dashboard.

The HTTP server is hypercorn's trio worker serving a small ASGI application; it runs in the
node's own trio loop, next to everything else, with no thread of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import anyio
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tnode.http import answer_lifespan, start_http

from .config import PrometheusConfig
from .metrics import NodeMetrics
from .state import NodeView

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"


def dashboard_html() -> bytes:
    """The dashboard page (static HTML + JS, no external resources)."""
    return resources.files(__package__).joinpath("dashboard.html").read_bytes()


class OperatorsApp:
    """The ASGI application: routes by path, GET/HEAD only."""

    def __init__(self, view: NodeView, metrics: NodeMetrics, *, dashboard: bool) -> None:
        self.view = view
        self.metrics = metrics
        self.dashboard = dashboard
        self._page = dashboard_html() if dashboard else b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        status, ctype, body = self.route(scope["method"], scope["path"])
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def route(self, method: str, path: str) -> tuple[int, bytes, bytes]:
        """(status, content type, body) for one request."""
        if method not in ("GET", "HEAD"):
            return 405, JSON, orjson.dumps({"error": "only GET and HEAD are served"})
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST.encode(), generate_latest(self.metrics.registry)
        if path == "/healthz":
            return 200, JSON, orjson.dumps({"status": "alive", "node": self.view.node.name})
        if path == "/readyz":
            ready, checks = self.view.readiness()
            return (200 if ready else 503), JSON, orjson.dumps({"ready": ready, **checks})
        if self.dashboard and path in ("/", "/index.html"):
            return 200, b"text/html; charset=utf-8", self._page
        if self.dashboard and path == "/api/state":
            return 200, JSON, orjson.dumps(self.view.snapshot())
        paths = ["/metrics", "/healthz", "/readyz"] + (["/", "/api/state"] if self.dashboard else [])
        return 404, JSON, orjson.dumps({"error": f"no such path {path!r}", "paths": paths})


class PrometheusExporter:
    """The metrics + health + dashboard component."""

    def __init__(self, node: Any, name: str, config: PrometheusConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.view = NodeView(node, history=config.history, alarms=config.alarms, min_peers=config.min_peers,
                             chain_stale_seconds=config.chain_stale_seconds)
        self.metrics = NodeMetrics(node, self.view)
        self.app = OperatorsApp(self.view, self.metrics, dashboard=config.dashboard)
        self.url = ""

    async def run(self, *, task_status: Any) -> None:
        subs = [*self.metrics.subscribe(), *self.view.subscribe()]
        try:
            async with anyio.create_task_group() as tg:
                self.url = await start_http(tg, self.app, self.config.listen, log_name="tnode.exporters.http",
                                            key_path="listen") + "/"
                await self.view.poll()
                tg.start_soon(self.view.poll_forever, self.config.poll_interval)
                self.view.started = True
                self.node.log.info("operators' endpoints serving", url=self.url,
                                   paths="/metrics /healthz /readyz" + (" / (dashboard)" if self.config.dashboard
                                                                         else ""))
                task_status.started()
        finally:
            for sub in subs:
                sub.close()

    def stats(self) -> dict[str, Any]:
        """``{"epochs_kept", "alarms_kept"}``: what the dashboard holds."""
        return {"epochs_kept": len(self.view.epochs), "alarms_kept": len(self.view.alarms)}
