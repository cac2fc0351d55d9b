"""Logging: structlog everywhere, console on a TTY and JSON otherwise, peer id on every line.

Standard-library loggers (py-libp2p, anyio, ...) are routed through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import orjson
import structlog

Format = Literal["auto", "console", "json"]
_LIBRARY_LOGGERS = ("libp2p", "multiaddr", "trio", "anyio", "asyncio")


class _LibraryLevel(logging.Filter):
    """Drops library records below ``level``, whatever level the library gave its own child loggers
    (py-libp2p sets some to INFO when their module is imported, possibly after logging is set up)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            return True
        return not any(record.name == n or record.name.startswith(n + ".") for n in _LIBRARY_LOGGERS)


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    # A log line must never fail: integer keys (uids) are written as strings, unknown types with str().
    return orjson.dumps(obj, default=default or str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(level: str = "info", fmt: Format = "auto", *, peer_id: str | None = None,
                      stream: Any = None) -> None:
    """Configure structlog and the standard library logging for this process.

    :param peer_id: bound to every line (the last 8 characters are enough to tell nodes apart).
    """
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)())
        if fmt == "console"
        else structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info if fmt == "json" else (lambda _l, _m, e: e),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    library_level = max(numeric, logging.WARNING) if numeric < logging.WARNING else numeric
    handler.addFilter(_LibraryLevel(library_level))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _LIBRARY_LOGGERS:
        lib = logging.getLogger(name)
        # py-libp2p detaches its logger on import; route it back through ours.
        lib.propagate = True
        lib.handlers[:] = []
        lib.setLevel(library_level)
    structlog.contextvars.clear_contextvars()
    if peer_id:
        structlog.contextvars.bind_contextvars(peer=peer_id[-8:])
