"""tnode plugin: the client side of the network — a quality-routed mixture of experts
(``[routers.NAME] type = "moe"``) and ``tnode query``."""

from __future__ import annotations

from typing import Any

import tnode

from .config import MoeRouterConfig, RouterTeachersConfig


@tnode.hookimpl
def tnode_add_component_kinds(declare: Any) -> None:
    # The core knows no routers: this plugin declares the kind (another router plugin may declare it identically).
    declare(kind="router", section="routers", after="chain",
            description="Asks the subnet's miners on this node's behalf and combines their answers.")
    declare(kind="teachers", section="teachers", after="router",
            description="Other miners a trainer learns from (tnode.contracts.learning.TeacherSource).")


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    from .router import MoeRouter

    register(kind="router", type="moe", factory=MoeRouter, schema=MoeRouterConfig,
             description="Quality-routed mixture of experts: picks k miners per query (chain prior + own "
                         "measurements, Thompson/UCB exploration), mixes their answers, backs off failures.")

    from .teachers import RouterTeachers

    register(kind="teachers", type="router", factory=RouterTeachers, schema=RouterTeachersConfig,
             description="The router's miners as distillation teachers: batched next_token requests for "
                         "every position of token windows, checked row by row.")


@tnode.hookimpl
def tnode_add_cli_commands(app: Any) -> None:
    from .cli import register_commands

    register_commands(app)
