"""The component registry: component kinds and (kind, type) → factory + schema, filled by plugins.

The core declares the kinds it needs itself (:data:`tnode.config.SECTIONS`); plugins declare
further kinds with ``tnode_add_component_kinds`` (name, node.toml section, singleton or named
tables, and the kind it starts after) and register implementations with
``tnode_register_components``.
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .config import CORE_SECTIONS, SECTIONS
from .errors import PluginError, UnknownComponentTypeError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Register(Protocol):
    def __call__(
        self, *, kind: str, type: str, factory: Callable[..., Any], schema: builtins.type, description: str = ""
    ) -> None: ...


class DeclareKind(Protocol):
    def __call__(self, *, kind: str, section: str, singleton: bool = False, after: str = "",
                 description: str = "") -> None: ...


@dataclass(frozen=True)
class KindSpec:
    """One component kind: its node.toml section and where it starts."""

    kind: str
    section: str
    singleton: bool
    after: str  # the kind this one starts after ("" for the core's own kinds: they keep their order)
    description: str
    plugin: str  # "tnode" for the core's own kinds


@dataclass(frozen=True)
class ComponentSpec:
    kind: str
    type: str
    factory: Callable[..., Any]
    schema: builtins.type
    description: str
    plugin: str


class ComponentRegistry:
    """Holds every component kind and every registered component implementation."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], ComponentSpec] = {}
        self._kinds: dict[str, KindSpec] = {
            kind: KindSpec(kind, section, singleton, "", "", "tnode") for section, (kind, singleton) in SECTIONS.items()
        }
        self.current_plugin = "<unknown>"

    # ------------------------------------------------------------------ kinds
    def declare_kind(self, *, kind: str, section: str, singleton: bool = False, after: str = "",
                     description: str = "") -> None:
        """Declare component ``kind``, configured in ``[section]`` (one table when ``singleton``,
        else ``[section.NAME]`` tables), started after the components of kind ``after`` (after
        every kind declared so far when empty)."""
        who = self.current_plugin
        for label, value in (("kind", kind), ("section", section)):
            if not isinstance(value, str) or not _NAME.match(value):
                raise PluginError(f"plugin {who!r} declares a kind with {label} {value!r}: "
                                  "expected a lower-case identifier")
        if section in CORE_SECTIONS:
            raise PluginError(f"plugin {who!r} declares kind {kind!r} in section [{section}], a core section")
        if after and after not in self._kinds:
            raise PluginError(f"plugin {who!r} declares kind {kind!r} after unknown kind {after!r} "
                              f"(kinds: {', '.join(self.kind_order())})")
        new = KindSpec(kind, section, bool(singleton), after, description, who)
        old = self._kinds.get(kind)
        if old is not None:
            if (old.section, old.singleton, old.after) == (new.section, new.singleton, new.after):
                return  # two plugins may both declare the kind they implement, identically
            raise PluginError(f"component kind {kind!r} declared twice, differently: by {old.plugin!r} "
                              f"(section [{old.section}]) and by {who!r} (section [{section}])")
        taken = self.sections().get(section)
        if taken is not None:
            raise PluginError(f"plugin {who!r} declares kind {kind!r} in section [{section}], which kind "
                              f"{taken[0]!r} already uses")
        self._kinds[kind] = new

    def kind_order(self) -> tuple[str, ...]:
        """Every kind in start order: the core's kinds, each followed by the kinds declared after it."""
        order: list[str] = []
        pending = [k for k in self._kinds.values() if k.plugin != "tnode"]
        for spec in self._kinds.values():
            if spec.plugin == "tnode":
                order.append(spec.kind)
        # Declared kinds go right after their anchor, in declaration order; those naming no anchor last.
        for spec in pending:
            if spec.after:
                anchor = order.index(spec.after)
                while anchor + 1 < len(order) and self._kinds[order[anchor + 1]].after == spec.after:
                    anchor += 1
                order.insert(anchor + 1, spec.kind)
            else:
                order.append(spec.kind)
        return tuple(order)

    def sections(self) -> dict[str, tuple[str, bool]]:
        """node.toml section → (kind, singleton?), in start order."""
        return {self._kinds[k].section: (k, self._kinds[k].singleton) for k in self.kind_order()}

    def section_of(self, kind: str) -> str:
        spec = self._kinds.get(kind)
        return spec.section if spec else kind

    def kind(self, kind: str) -> KindSpec | None:
        return self._kinds.get(kind)

    # ------------------------------------------------------------------ components
    def register(
        self, *, kind: str, type: str, factory: Callable[..., Any], schema: builtins.type, description: str = ""
    ) -> None:
        """Register ``factory`` as the implementation of ``type`` for component ``kind``."""
        if kind not in self._kinds:
            raise PluginError(
                f"plugin {self.current_plugin!r} registers unknown component kind {kind!r} "
                f"(kinds: {', '.join(self.kind_order())}; a plugin declares new kinds with "
                "tnode_add_component_kinds)"
            )
        if not (dataclasses.is_dataclass(schema) and isinstance(schema, builtins.type)):
            raise PluginError(f"plugin {self.current_plugin!r}: schema of {kind}/{type} must be a dataclass")
        key = (kind, type)
        if key in self._specs:
            other = self._specs[key].plugin
            raise PluginError(
                f"component {kind}/{type} registered twice: by {other!r} and by {self.current_plugin!r}"
            )
        self._specs[key] = ComponentSpec(kind, type, factory, schema, description or (schema.__doc__ or "").strip(),
                                         self.current_plugin)

    def get(self, kind: str, type: str, *, file: str | None = None, key_path: str = "") -> ComponentSpec:
        try:
            return self._specs[(kind, type)]
        except KeyError:
            allowed = self.types(kind)
            close = difflib.get_close_matches(type, allowed, n=1)
            raise UnknownComponentTypeError(
                f"unknown {kind} type {type!r} (registered: {', '.join(allowed) or 'none'})",
                file=file,
                key_path=key_path,
                hint=f"did you mean {close[0]!r}?" if close else "is the plugin that provides it installed?",
            ) from None

    def types(self, kind: str) -> list[str]:
        return sorted(t for k, t in self._specs if k == kind)

    def specs(self) -> list[ComponentSpec]:
        order = {k: i for i, k in enumerate(self.kind_order())}
        return sorted(self._specs.values(), key=lambda s: (order[s.kind], s.type))

    def kinds_of_plugin(self, plugin: str) -> list[str]:
        return sorted({s.kind for s in self._specs.values() if s.plugin == plugin})

    def plugins(self) -> set[str]:
        """Names of the plugins that registered a component or declared a kind."""
        return {s.plugin for s in self._specs.values()} | {k.plugin for k in self._kinds.values()}

    def forget_plugin(self, plugin: str) -> None:
        """Drop what ``plugin`` registered (its registration failed half-way)."""
        self._specs = {k: s for k, s in self._specs.items() if s.plugin != plugin}
        self._kinds = {k: s for k, s in self._kinds.items() if s.plugin != plugin}
