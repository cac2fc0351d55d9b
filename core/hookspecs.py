"""Hook specifications: how plugins assemble a node.

Hooks run while a node is being put together (synchronously, through pluggy); runtime traffic
goes over the event bus instead, so no hook is ever called per message. Hook names follow
``tnode_<verb>_<noun>``. Calls are keyword-only, and an implementation may accept fewer
arguments than its spec, so a hook can gain arguments without breaking plugins.

Load order: plugins named in ``[plugins] block`` are blocked first, then built-in plugins load
(entry points whose module lives in ``tnode.plugins``), then external ones (skipped when
``TNODE_DISABLE_PLUGIN_AUTOLOAD`` is set), then every hook implementation is validated against
these specs (``check_pending``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .node import Node
    from .registry import Register

hookspec = pluggy.HookspecMarker("tnode")


# -------------------------------------------------------------------------------------------------
# Assembly
# -------------------------------------------------------------------------------------------------


@hookspec(historic=True)
def tnode_register_components(register: Register) -> None:
    """Register component implementations.

    Call ``register(kind=..., type=..., factory=..., schema=..., description=...)`` once per
    implementation. ``kind`` is one of the component kinds (``transport``, ``chain``,
    ``modality``, ``scorer``, ``spam_filter``, ``collusion_detector``, ``dataset``, ``model``,
    ``validator``, ``router``, ``exporter``); ``type`` is the value node.toml uses in the
    component's ``type`` key; ``factory(node, name, config)`` builds the component; ``schema``
    is the frozen dataclass of its configuration (see :func:`tnode.config.option`).

    :param register: the registration callback of the node's component registry.

    This hook is *historic*: plugins registered late are still called. Registering the same
    (kind, type) twice is an error naming both plugins.
    """


@hookspec
def tnode_add_cli_commands(app: Any) -> None:
    """Add commands to the ``tnode`` command line.

    :param app: the root ``typer.Typer`` application; add commands or sub-apps to it.

    Called once when the CLI starts, after plugins are loaded.
    """


# -------------------------------------------------------------------------------------------------
# Lifecycle
# -------------------------------------------------------------------------------------------------


@hookspec
def tnode_node_started(node: Node) -> None:
    """Called once every component of ``node`` has started and ``node.ready`` is set.

    :param node: the running node.

    Must not block: start long-running work as a component instead.
    """


@hookspec
def tnode_node_stopping(node: Node, reason: str) -> None:
    """Called when ``node`` begins shutting down, before components are cancelled.

    :param node: the node.
    :param reason: why it stops (``"signal SIGTERM"``, ``"component failed: ..."``, ``"exit"``).
    """


HOOKSPECS: tuple[str, ...] = (
    "tnode_register_components",
    "tnode_add_cli_commands",
    "tnode_node_started",
    "tnode_node_stopping",
)
