"""Small components registered through a real PluginManager, for the core's tests.

A :class:`ProbePlugin` registers a ``probe`` type for every component kind. Each probe records
when it starts, becomes ready and stops into the plugin's shared ``journal``, so tests can check
start order, readiness and clean shutdown of a real node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import tnode
from tnode.config import KIND_ORDER, option
from tnode.pluginmanager import PluginManager


@dataclass(frozen=True)
class Limits:
    """A nested table of a probe's configuration."""

    rate: float = option(1.0, "Events per second.", ge=0)
    burst: int = option(4, "Burst size.", ge=1, le=100)


@dataclass(frozen=True)
class ProbeConfig:
    """A component that records its lifecycle (tests only)."""

    fail: Literal["never", "start", "run"] = option("never", "When to raise: never, before started(), after.")
    delay_ms: int = option(0, "Time spent setting up before started().", ge=0, le=10_000)
    model: str = option("", "Name of a [models.NAME] table this probe uses.", ref="models")
    tags: list[str] = option([], "Free-form tags.")
    mode: str = option("fast", "A string with a fixed set of values.", choices=["fast", "slow"])
    limits: Limits = option(Limits(), "A sub-table.")
    port: int | None = option(None, "An optional number.", ge=1, le=65535)


@dataclass(frozen=True)
class NeedsConfig:
    """A component with one required key (tests only)."""

    size: int = option(doc="A required size.", ge=1)


class Probe:
    """Records ``start`` / ``ready`` / ``stop`` in the plugin journal."""

    def __init__(self, journal: list[tuple[str, str, str]], kind: str, node: Any, name: str, config: Any) -> None:
        self.journal = journal
        self.kind = kind
        self.node = node
        self.name = name
        self.config = config

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        self.journal.append(("start", self.kind, self.name))
        if getattr(self.config, "delay_ms", 0):
            await anyio.sleep(self.config.delay_ms / 1000)
        if getattr(self.config, "fail", "never") == "start":
            raise RuntimeError(f"probe {self.name} refused to start")
        self.journal.append(("ready", self.kind, self.name))
        task_status.started()
        try:
            if getattr(self.config, "fail", "never") == "run":
                await anyio.sleep(0.01)
                raise RuntimeError(f"probe {self.name} broke while running")
            await anyio.sleep_forever()
        finally:
            self.journal.append(("stop", self.kind, self.name))


@dataclass(eq=False)  # pluggy tells plugins apart by equality
class ProbePlugin:
    """A plugin object: registers ``probe`` (and ``needs``) for the given kinds and records hook calls."""

    kinds: Iterable[str] = (*KIND_ORDER, "exporter")
    journal: list[tuple[str, str, str]] = field(default_factory=list)
    started_nodes: list[Any] = field(default_factory=list)
    stop_reasons: list[str] = field(default_factory=list)

    @tnode.hookimpl
    def tnode_add_component_kinds(self, declare: Any) -> None:
        declare(kind="exporter", section="exporters", after="validator")

    @tnode.hookimpl
    def tnode_register_components(self, register: Any) -> None:
        for kind in self.kinds:
            register(kind=kind, type="probe", factory=self._factory(kind), schema=ProbeConfig,
                     description="Records its lifecycle.")
        register(kind="exporter", type="needs", factory=self._factory("exporter"), schema=NeedsConfig)

    @tnode.hookimpl
    def tnode_node_started(self, node: Any) -> None:
        self.started_nodes.append(node)

    @tnode.hookimpl
    def tnode_node_stopping(self, node: Any, reason: str) -> None:
        self.stop_reasons.append(reason)

    def _factory(self, kind: str) -> Any:
        def build(node: Any, name: str, config: Any) -> Probe:
            return Probe(self.journal, kind, node, name, config)

        return build


def probe_manager(plugin: ProbePlugin | None = None) -> tuple[PluginManager, ProbePlugin]:
    """A plugin manager holding only the probe plugin (no built-ins), validated."""
    plugin = plugin or ProbePlugin()
    manager = PluginManager()
    manager.register(plugin, name="probes")
    manager.validate()
    return manager, plugin
