"""The ``hello`` exporter: subscribes to bus events and appends them to a JSON-lines file."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import IO, Any

import anyio
import tnode.events

from .config import HelloConfig


class EventLog:
    """A component: built by ``factory(node, name, config)``, run by the node."""

    def __init__(self, node: Any, name: str, config: HelloConfig) -> None:
        # No I/O here: the node builds every component before starting any of them.
        self.node = node
        self.name = name
        self.config = config
        self.path = Path(node.data_dir) / config.path
        self.written = 0
        self._file: IO[str] | None = None

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        # Set-up errors (e.g. an unwritable path) raise before started(): the node refuses to run
        # and names this component.
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
        subscriptions = [
            self.node.bus.subscribe(getattr(tnode.events, event), self._write, name=f"{self.name}:{event}",
                                    maxsize=1024, when_full="drop_newest")
            for event in self.config.events
        ]
        self.node.log.info(self.config.greeting, exporter=self.name, path=str(self.path))
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            for sub in subscriptions:
                sub.close()
            self._file.close()

    async def _write(self, event: tnode.events.Event) -> None:
        if self._file is None or self._file.closed:
            return
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        line = {"event": type(event).__name__, "time": time.time(), "node": self.node.name, **fields}
        self._file.write(json.dumps(line, default=str) + "\n")
        self.written += 1
        if self.written % self.config.flush_every == 0:
            self._file.flush()
