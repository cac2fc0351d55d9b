"""tnode plugin: an OpenAI-compatible HTTP gateway into the node (``[gateways.NAME] type = "http"``)."""

from __future__ import annotations

from typing import Any

import tnode

from .config import HttpGatewayConfig


@tnode.hookimpl
def tnode_add_component_kinds(declare: Any) -> None:
    # A gateway is a way into the node; its requests go through the core's admission pipeline.
    declare(kind="gateway", section="gateways", after="validator",
            description="Lets programs outside the network ask through this node (HTTP APIs).")


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    from .gateway import HttpGateway

    register(kind="gateway", type="http", factory=HttpGateway, schema=HttpGatewayConfig,
             description="OpenAI-compatible /v1/completions, /v1/chat/completions and /v1/models, backed by a "
                         "router; API keys map to client hotkeys.")
