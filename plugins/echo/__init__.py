"""tnode plugin: the echo modality (answers with what it received)."""

from __future__ import annotations

from typing import Any

import tnode

from .config import EchoConfig


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    from .modality import EchoModality

    register(kind="modality", type="echo", factory=EchoModality, schema=EchoConfig,
             description="Answers every task with the body and payload it received.")
