"""Hook specifications: how plugins assemble a node.

Hooks run while a node is being put together (synchronously, through pluggy); runtime traffic
goes over the event bus instead, so no hook is ever called per message. Hook names follow
``tnode_<verb>_<noun>``. Calls are keyword-only, and an implementation may accept fewer
arguments than its spec, so a hook can gain arguments without breaking plugins.

Load order: plugins named in ``[plugins] block`` are blocked first, then built-in plugins load
(entry points whose module lives in ``tnode.plugins``), then external ones (skipped when
``TNODE_DISABLE_PLUGIN_AUTOLOAD`` is set), then every hook implementation is validated against
these specs (``check_pending``), then every plugin's ``tnode_add_component_kinds`` runs, then
every plugin's ``tnode_register_components``. A plugin registered after that
(:meth:`tnode.pluginmanager.PluginManager.register`) is validated and collected at once, so a late
plugin passes the same checks. No hook is pluggy-*historic*: the manager calls the assembly hooks
itself, one plugin at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .node import Node
    from .registry import DeclareKind, Register

hookspec = pluggy.HookspecMarker("tnode")


# -------------------------------------------------------------------------------------------------
# Assembly
# -------------------------------------------------------------------------------------------------


@hookspec
def tnode_add_component_kinds(declare: DeclareKind) -> None:
    """Declare component kinds the core does not know.

    Call ``declare(kind=..., section=..., singleton=False, after="", description="")`` once per
    kind. ``section`` is the node.toml section its components are configured in (``[section]``
    when ``singleton``, else ``[section.NAME]`` tables); the kind's components start after those
    of kind ``after`` (after every kind known at that point when empty). The core's own kinds
    are ``dataset``, ``model``, ``transport``, ``chain``, ``spam_filter``, ``modality``,
    ``scorer``, ``validator`` and ``exporter``, started in that order.

    :param declare: the kind declaration callback of the node's component registry.

    Called once per plugin, before any plugin's ``tnode_register_components``, so a kind may be
    declared by one plugin and implemented by another. Two plugins may declare the same kind
    identically; declaring it differently, reusing a section, or naming an unknown ``after`` is an
    error naming the plugins.
    """


@hookspec
def tnode_register_components(register: Register) -> None:
    """Register component implementations.

    Call ``register(kind=..., type=..., factory=..., schema=..., description=...)`` once per
    implementation. ``kind`` is one of the core's component kinds or one a plugin declared with
    :func:`tnode_add_component_kinds`; ``type`` is the value node.toml uses in the component's
    ``type`` key; ``factory(node, name, config)`` builds the component; ``schema`` is the frozen
    dataclass of its configuration (see :func:`tnode.config.option`; its ``check()`` method
    reports problems spanning several keys). A factory must not do I/O (no sockets, no files
    written): ``tnode validate`` builds every component to run its checks; I/O starts in ``run``.

    :param register: the registration callback of the node's component registry.

    Called once per plugin, one plugin at a time (so the registry knows who registers what). A
    plugin registered after loading (:meth:`tnode.pluginmanager.PluginManager.register`) is
    validated against these specs and called at once, with the same checks. Registering the same
    (kind, type) twice is an error naming both plugins.
    """


@hookspec
def tnode_add_cli_commands(app: Any) -> None:
    """Add commands to the ``tnode`` command line.

    :param app: the root ``typer.Typer`` application; add commands or sub-apps to it.

    Called once when the CLI starts, after plugins are loaded, one plugin at a time. A command
    name another plugin (or the core) already uses is an error naming both; use
    :mod:`tnode.cli_support` for the error printer, the trio runner and ``-c/--config``.
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
    "tnode_add_component_kinds",
    "tnode_register_components",
    "tnode_add_cli_commands",
    "tnode_node_started",
    "tnode_node_stopping",
)
