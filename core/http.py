"""Serving an ASGI application on the node's trio loop (``tnode.http``), for plugins with an HTTP face.

Hypercorn's trio worker runs the application inside the caller's task group: :func:`start_http`
binds, returns the bound base URL and refuses an address it cannot listen on as a
:class:`~tnode.errors.ConfigError` at the caller's key path. :func:`answer_lifespan` answers an
ASGI ``lifespan`` scope (tnode's applications keep no state to set up or tear down).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ConfigError


async def answer_lifespan(receive: Callable[[], Awaitable[dict[str, Any]]],
                          send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Complete the startup and shutdown messages of an ASGI ``lifespan`` scope."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def start_http(task_group: Any, app: Any, listen: str, *, log_name: str, key_path: str) -> str:
    """Serve ``app`` on ``listen`` (``host:port``) in ``task_group``; the bound URL, without a trailing ``/``."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [listen]
    config.accesslog = None
    config.errorlog = logging.getLogger(log_name)
    config.graceful_timeout = 0.5
    try:
        binds = await task_group.start(serve, app, config)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {listen!r}: {exc}", key_path=key_path) from None
    return str(binds[0]).rstrip("/")
