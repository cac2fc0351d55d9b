"""The component registry: (kind, type) → factory + schema, filled by plugins."""

from __future__ import annotations

import builtins
import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .config import KIND_ORDER
from .errors import PluginError, UnknownComponentTypeError


class Register(Protocol):
    def __call__(
        self, *, kind: str, type: str, factory: Callable[..., Any], schema: builtins.type, description: str = ""
    ) -> None: ...


@dataclass(frozen=True)
class ComponentSpec:
    kind: str
    type: str
    factory: Callable[..., Any]
    schema: builtins.type
    description: str
    plugin: str


class ComponentRegistry:
    """Holds every registered component implementation."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], ComponentSpec] = {}
        self.current_plugin = "<unknown>"

    def register(
        self, *, kind: str, type: str, factory: Callable[..., Any], schema: builtins.type, description: str = ""
    ) -> None:
        """Register ``factory`` as the implementation of ``type`` for component ``kind``."""
        if kind not in KIND_ORDER:
            raise PluginError(
                f"plugin {self.current_plugin!r} registers unknown component kind {kind!r} "
                f"(kinds: {', '.join(KIND_ORDER)})"
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
        order = {k: i for i, k in enumerate(KIND_ORDER)}
        return sorted(self._specs.values(), key=lambda s: (order[s.kind], s.type))

    def kinds_of_plugin(self, plugin: str) -> list[str]:
        return sorted({s.kind for s in self._specs.values() if s.plugin == plugin})
