"""Configuration of ``[exporters.NAME] type = "hello"``."""

from __future__ import annotations

from dataclasses import dataclass

from tnode.config import option
from tnode.events import CORE_EVENTS

EVENT_NAMES = tuple(cls.__name__ for cls in CORE_EVENTS)


@dataclass(frozen=True)
class HelloConfig:
    """Writes one JSON line per bus event of the chosen types."""

    path: str = option("events.jsonl", "File to append to (relative to the node's data_dir).")
    events: list[str] = option(["NodeStarted", "NodeStopping"], "Event classes to record.", choices=EVENT_NAMES)
    greeting: str = option("hello", "Logged once when the exporter starts.")
    flush_every: int = option(1, "Flush the file after this many lines.", ge=1)
