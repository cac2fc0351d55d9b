"""tnode plugin: the client side of the network — a quality-routed mixture of experts
(``[routers.NAME] type = "moe"``) and ``tnode query``."""

from __future__ import annotations

from typing import Any

import tnode

from .config import MoeRouterConfig


@tnode.hookimpl
def tnode_add_component_kinds(declare: Any) -> None:
    # The core knows no routers: this plugin declares the kind (another router plugin may declare it identically).
    declare(kind="router", section="routers", after="chain",
            description="Asks the subnet's miners on this node's behalf and combines their answers.")


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    from .router import MoeRouter

    register(kind="router", type="moe", factory=MoeRouter, schema=MoeRouterConfig,
             description="Quality-routed mixture of experts: picks k miners per query (chain prior + own "
                         "measurements, Thompson/UCB exploration), mixes their answers, backs off failures.")


@tnode.hookimpl
def tnode_add_cli_commands(app: Any) -> None:
    from .cli import register_commands

    register_commands(app)
