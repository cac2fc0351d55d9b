"""Configuration of ``[gateways.NAME] type = "http"``: the OpenAI-compatible HTTP entry point."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tnode.config import option


def _loopback_host(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "[::1]") or host.startswith("127.")


@dataclass(frozen=True)
class HttpGatewayConfig:
    """``POST /v1/completions``, ``POST /v1/chat/completions`` and ``GET /v1/models``, backed by a router."""

    router: str = option(doc="The [routers.NAME] that answers (a text router).", ref="routers")
    listen: str = option("127.0.0.1:8080", "HOST:PORT the HTTP server listens on (port 0 picks a free one).")
    model: str = option("tnode-moe", "The one model name /v1/models lists and requests must name.")
    api_keys_file: str = option("", "TOML file of [keys] API key = client hotkey hex (relative to node.toml).")
    api_keys_env: str = option("TNODE_GATEWAY_KEYS", "Environment variable with more keys: KEY=HOTKEY[,KEY=HOTKEY].")
    max_body_bytes: int = option(65_536, "Largest request body; larger ones get 413.", ge=256)
    max_tokens: int = option(256, "Most tokens one request may ask for; more gets 413.", ge=1, le=4096)
    request_timeout: float = option(120.0, "Seconds one request may take, generation included.", ge=0.1)
    allow_remote: bool = option(False, "Allow listening on a non-loopback address.")

    def check(self) -> Iterator[tuple[str, str, str]]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not host:
            yield "listen", f"expected HOST:PORT, got {self.listen!r}", ""
        elif not self.allow_remote and not _loopback_host(host):
            yield ("listen", f"{self.listen!r} is not a loopback address", "set allow_remote = true to serve "
                                                                           "beyond this machine")
