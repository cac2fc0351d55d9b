"""tnode plugin "hello": hook implementations only.

Heavy or optional imports happen inside the hooks, so `tnode --help` stays fast and a plugin
that is installed but unused costs nothing.
"""

from typing import Any

import tnode

from .config import HelloConfig


@tnode.hookimpl
def tnode_add_component_kinds(declare: Any) -> None:
    # The core knows no exporters; every plugin that provides one declares the kind, identically.
    declare(kind="exporter", section="exporters", after="validator")


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    from .event_log import EventLog

    register(kind="exporter", type="hello", factory=EventLog, schema=HelloConfig,
             description="Greets on start and writes chosen bus events to a JSON-lines file.")


@tnode.hookimpl
def tnode_add_cli_commands(app: Any) -> None:
    from .cli import register_commands

    register_commands(app)
