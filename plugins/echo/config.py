"""Configuration of the echo modality."""

from __future__ import annotations

from dataclasses import dataclass

from tnode.config import option


@dataclass(frozen=True)
class EchoConfig:
    """Echo modality: answers every task with the body and payload it received (transport tests, benchmarks)."""

    serve_as: str = option("", "Name peers reach this modality under on the wire (and validators ask it by); "
                               "empty: its type, \"echo\". The table name is only how node.toml refers to it.")
    delay_ms: int = option(0, "Artificial delay before answering, in milliseconds.", ge=0)
