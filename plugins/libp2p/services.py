"""Running optional py-libp2p services (DHT, gossipsub) so that their failure never stops the node."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import trio
from libp2p.tools.anyio_service import background_trio_service


async def run_isolated(log: Any, what: str, services: Sequence[Any], *, on_stop: Callable[[], None] | None = None,
                       task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run ``services`` until cancelled; an error in any of them is logged, not raised.

    ``task_status.started`` receives ``True`` once they run, ``False`` if they could not start.
    These services are optional (discovery, announcements): the request/response path keeps
    working without them, so their crash must not cancel the transport's nursery.
    """
    started = False
    try:
        async with contextlib.AsyncExitStack() as stack:
            for service in services:
                await stack.enter_async_context(background_trio_service(service))
            started = True
            task_status.started(True)
            await trio.sleep_forever()
    except Exception as exc:  # an ExceptionGroup from the service's nursery included
        log.warning(f"{what} stopped; the node goes on without it", error=repr(exc)[:500])
        if not started:
            task_status.started(False)
    finally:
        if on_stop is not None:
            with contextlib.suppress(Exception):
                on_stop()
