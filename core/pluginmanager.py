"""The plugin manager: loads plugins from the ``tnode`` entry-point group in a fixed order.

Order: blocked names are blocked → built-in plugins (modules under ``tnode.plugins``) load in
name order → external plugins load in name order (skipped under
``TNODE_DISABLE_PLUGIN_AUTOLOAD``) → every hook implementation is validated against the specs
(``check_pending``), so a misspelt hook name fails loudly at start-up → kinds are declared
(``tnode_add_component_kinds``) → components are registered (``tnode_register_components``).
A plugin registered after that goes through the same checks at once.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy
import structlog

from . import hookspecs
from .errors import PluginError
from .registry import ComponentRegistry

GROUP = "tnode"
DISABLE_AUTOLOAD_ENV = "TNODE_DISABLE_PLUGIN_AUTOLOAD"
TRACE_ENV = "TNODE_TRACE_HOOKS"
log = structlog.get_logger("tnode.plugins")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    version: str
    distribution: str
    builtin: bool
    kinds: tuple[str, ...] = ()


@dataclass
class PluginManager:
    """pluggy's manager plus tnode's loading rules and the component registry."""

    pm: pluggy.PluginManager = field(default_factory=lambda: pluggy.PluginManager("tnode"))
    registry: ComponentRegistry = field(default_factory=ComponentRegistry)
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    blocked: tuple[str, ...] = ()
    _validated: bool = False
    _collected: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get(TRACE_ENV) == "1":
            self._trace()

    def _trace(self) -> None:
        def before(hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
            log.info("hook call", hook=hook_name, impls=[i.plugin_name for i in hook_impls], kwargs=sorted(kwargs))

        def after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
            exc = outcome.exception
            log.info("hook done", hook=hook_name, error=repr(exc) if exc else None)

        self.pm.add_hookcall_monitoring(before, after)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ loading
    def load(self, *, block: tuple[str, ...] | list[str] = (), autoload_external: bool | None = None) -> None:
        """Load plugins from entry points following the documented order."""
        self.blocked = tuple(block)
        for name in self.blocked:
            self.pm.set_blocked(name)
        if autoload_external is None:
            autoload_external = not os.environ.get(DISABLE_AUTOLOAD_ENV)
        eps = sorted(md.entry_points(group=GROUP), key=lambda ep: ep.name)
        builtin = [ep for ep in eps if ep.value.startswith("tnode.plugins.")]
        external = [ep for ep in eps if not ep.value.startswith("tnode.plugins.")]
        seen: set[str] = set()
        for ep in builtin + (external if autoload_external else []):
            if ep.name in seen or ep.name in self.blocked:
                continue
            seen.add(ep.name)
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must name itself
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}") from exc
            dist = ep.dist
            self.register(
                module,
                name=ep.name,
                version=dist.version if dist else "?",
                distribution=dist.name if dist else "?",
                builtin=ep in builtin,
            )
        self.validate()

    def register(self, module: ModuleType | object, *, name: str, version: str = "?", distribution: str = "?",
                 builtin: bool = False) -> None:
        """Register one plugin object (module or instance).

        Before :meth:`validate` (while :meth:`load` runs) the plugin waits for validation with the
        others. After it, the plugin is validated against the hook specs and its kinds and
        components are collected at once, with the same checks; a plugin that fails them is
        unregistered again and :class:`PluginError` names it.
        """
        if name in self.blocked:
            return
        try:
            self.pm.register(module, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"plugin {name!r} could not be registered: {exc}") from exc
        modname = getattr(module, "__name__", type(module).__name__)
        self.infos[name] = PluginInfo(name, modname, version, distribution, builtin)
        if not self._validated:
            return
        try:
            self._check_specs()
            self._collect((name,))
        except PluginError:
            self.pm.unregister(name=name)
            self.registry.forget_plugin(name)
            self._collected.discard(name)
            del self.infos[name]
            raise

    def validate(self) -> None:
        """Reject hook implementations that match no spec, then collect kinds and components."""
        self._check_specs()
        self._collect(tuple(self.infos))
        self._validated = True

    def _check_specs(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or "?"
            raise PluginError(f"plugin {name!r}: {exc}") from exc

    def _collect(self, names: tuple[str, ...]) -> None:
        """Call the assembly hooks of plugins ``names``: every kind first, then every component.

        A plugin is collected once: validating again collects only plugins not seen before.
        """
        names = tuple(n for n in names if n not in self._collected)
        self._collected.update(names)
        for hook, callback in (("tnode_add_component_kinds", self.registry.declare_kind),
                               ("tnode_register_components", self.registry.register)):
            arg = "declare" if hook == "tnode_add_component_kinds" else "register"
            impls = {impl.plugin_name: impl for impl in getattr(self.pm.hook, hook).get_hookimpls()}
            for name in names:
                impl = impls.get(name)
                if impl is None:
                    continue
                self.registry.current_plugin = name
                if os.environ.get(TRACE_ENV) == "1":
                    log.info("hook call", hook=hook, plugin=name)
                try:
                    # Called one plugin at a time so the registry knows who registers what.
                    impl.function(**{arg: callback})
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(f"plugin {name!r} failed in {hook}: {exc}") from exc
                finally:
                    self.registry.current_plugin = "<unknown>"
        for name in names:
            info = self.infos.get(name)
            if info is not None:
                self.infos[name] = PluginInfo(info.name, info.module, info.version, info.distribution, info.builtin,
                                              tuple(self.registry.kinds_of_plugin(name)))

    @property
    def hook(self) -> Any:
        return self.pm.hook


def import_module(name: str) -> ModuleType:
    return importlib.import_module(name)


def load_plugins(block: tuple[str, ...] | list[str] = (), autoload_external: bool | None = None) -> PluginManager:
    """A plugin manager with every installed plugin loaded and validated."""
    manager = PluginManager()
    manager.load(block=block, autoload_external=autoload_external)
    return manager
