"""tnode plugin: the operators' view — a ZeroMQ event feed, Prometheus metrics, health endpoints,
the dashboard and ``tnode events``."""

from __future__ import annotations

from typing import Any

import tnode

from .config import PrometheusConfig, ZmqFeedConfig


@tnode.hookimpl
def tnode_add_component_kinds(declare: Any) -> None:
    # The core knows no exporters: this plugin (and any other exporter plugin, identically) declares the kind.
    declare(kind="exporter", section="exporters", after="validator",
            description="Publishes what the node does to operators (metrics, event feeds).")


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    # Every exporter this plugin provides is registered here, in one place.
    from .feed import ZmqFeed
    from .http import PrometheusExporter

    register(kind="exporter", type="zmq", factory=ZmqFeed, schema=ZmqFeedConfig,
             description="Publishes bus events on a ZeroMQ PUB socket (topic | JSON | u32 LE sequence).")
    register(kind="exporter", type="prometheus", factory=PrometheusExporter, schema=PrometheusConfig,
             description="Serves /metrics, /healthz, /readyz and the live dashboard over HTTP.")


@tnode.hookimpl
def tnode_add_cli_commands(app: Any) -> None:
    from .cli import register_commands

    register_commands(app)
