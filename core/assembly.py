"""Turning a node.toml document into validated component configurations.

:func:`parse_config` checks core sections, component sections, component types and schemas,
references between components and the topology, and returns a :class:`NodeConfig`, or raises
:class:`tnode.errors.ConfigErrors` listing every problem found.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from .config import (
    CORE_SECTIONS,
    KIND_ORDER,
    LogSection,
    NodeSection,
    PluginsSection,
    collect_errors,
    read_toml,
    references,
)
from .errors import (
    ConfigError,
    ConfigErrors,
    MissingComponentError,
    MissingKeyError,
    TopologyError,
    UnknownComponentTypeError,
    UnknownKeyError,
    WrongTypeError,
)
from .registry import ComponentRegistry, ComponentSpec

ENV_PREFIX = "TNODE_"
ENV_SKIP = {"TNODE_PASSPHRASE", "TNODE_DISABLE_PLUGIN_AUTOLOAD", "TNODE_TRACE_HOOKS", "TNODE_COLDKEY_PASSPHRASE"}


@dataclass(frozen=True)
class ComponentConfig:
    """One configured component instance."""

    section: str
    name: str  # table name; the section name for singletons
    kind: str
    type: str
    spec: ComponentSpec
    config: Any

    @property
    def key_path(self) -> str:
        return self.section if self.section == self.name else f"{self.section}.{self.name}"


@dataclass(frozen=True)
class NodeConfig:
    """A fully validated node configuration."""

    file: str | None
    base_dir: Path
    node: NodeSection
    log: LogSection
    plugins: PluginsSection
    components: tuple[ComponentConfig, ...]
    raw: Mapping[str, Any] = field(default_factory=dict)
    kind_order: tuple[str, ...] = KIND_ORDER  # the registry's start order (core and plugin-declared kinds)

    @property
    def data_dir(self) -> Path:
        path = Path(self.node.data_dir).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    def of_kind(self, kind: str) -> list[ComponentConfig]:
        return [c for c in self.components if c.kind == kind]

    def ordered(self) -> list[ComponentConfig]:
        order = {k: i for i, k in enumerate(self.kind_order)}
        return sorted(self.components, key=lambda c: order[c.kind])


def apply_env_overrides(doc: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``TNODE_<SECTION>__<KEY>[__<KEY>...]=<TOML value>`` overrides a key (secrets, ports).

    The value is parsed as a TOML value when it parses (``8080``, ``true``, ``["a"]``) and taken
    as a string otherwise.
    """
    environ = os.environ if environ is None else environ
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_SKIP or "__" not in name:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        try:
            parsed: Any = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        table = doc
        for part in path[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                break
        else:
            table[path[-1]] = parsed
    return doc


def _component(section: str, name: str, table: Any, registry: ComponentRegistry, file: str | None,
               errors: list[ConfigError]) -> ComponentConfig | None:
    kind, singleton = registry.sections()[section]
    path = section if singleton else f"{section}.{name}"
    if not isinstance(table, dict):
        errors.append(WrongTypeError(f"expected a table with a 'type' key, got {type(table).__name__}",
                                     file=file, key_path=path))
        return None
    type_name = table.get("type")
    if type_name is None:
        allowed = registry.types(kind)
        errors.append(MissingKeyError(f"missing 'type' (registered {kind} types: {', '.join(allowed) or 'none'})",
                                      file=file, key_path=f"{path}.type"))
        return None
    if not isinstance(type_name, str):
        errors.append(WrongTypeError(f"'type' must be a string, got {type(type_name).__name__}", file=file,
                                     key_path=f"{path}.type"))
        return None
    try:
        spec = registry.get(kind, type_name, file=file, key_path=f"{path}.type")
    except UnknownComponentTypeError as exc:
        errors.append(exc)
        return None
    instance, errs = collect_errors(spec.schema, table, file=file, path=path, ignore=frozenset({"type"}))
    errors.extend(errs)
    if instance is MISSING:
        return None
    return ComponentConfig(section, name, kind, type_name, spec, instance)


def parse_config(doc: Mapping[str, Any], registry: ComponentRegistry, *, file: str | None = None,
                 base_dir: Path | None = None) -> NodeConfig:
    """Validate a node.toml document against the registry; raises :class:`ConfigErrors`."""
    errors: list[ConfigError] = []
    sections = registry.sections()
    allowed_top = list(CORE_SECTIONS) + list(sections)
    core: dict[str, Any] = {}
    for key in doc:
        if key not in allowed_top:
            close = difflib.get_close_matches(key, allowed_top, n=1)
            errors.append(UnknownKeyError(f"unknown section (allowed: {', '.join(allowed_top)})", file=file,
                                          key_path=key, hint=f"did you mean {close[0]!r}?" if close else ""))
    for section, schema in CORE_SECTIONS.items():
        table = doc.get(section, {})
        if not isinstance(table, dict):
            errors.append(WrongTypeError(f"expected a table, got {type(table).__name__}", file=file, key_path=section))
            core[section] = schema()
            continue
        instance, errs = collect_errors(schema, table, file=file, path=section)
        errors.extend(errs)
        core[section] = instance if instance is not MISSING else schema()
    components: list[ComponentConfig] = []
    for section, (_kind, singleton) in sections.items():
        if section not in doc:
            continue
        value = doc[section]
        if singleton:
            comp = _component(section, section, value, registry, file, errors)
            if comp:
                components.append(comp)
            continue
        if not isinstance(value, dict):
            errors.append(WrongTypeError(f"expected a table of named [{section}.NAME] tables", file=file,
                                         key_path=section))
            continue
        for name, table in value.items():
            if name == "type" and not isinstance(table, dict):
                errors.append(WrongTypeError(
                    f"[{section}] holds named tables: write [{section}.<name>] with type = {table!r}",
                    file=file, key_path=f"{section}.type"))
                continue
            comp = _component(section, name, table, registry, file, errors)
            if comp:
                components.append(comp)
    names = {section: {c.name for c in components if c.section == section} for section in sections}
    for comp in components:
        for path, ref_section, ref_name in references(comp.spec.schema, comp.config, comp.key_path):
            if ref_section not in names:
                continue
            if ref_name not in names[ref_section]:
                close = difflib.get_close_matches(ref_name, sorted(names[ref_section]), n=1)
                errors.append(MissingComponentError(
                    f"refers to [{ref_section}.{ref_name}], which is not configured "
                    f"(configured: {', '.join(sorted(names[ref_section])) or 'none'})",
                    file=file, key_path=path, hint=f"did you mean {close[0]!r}?" if close else ""))
    if not errors:  # cycles are only meaningful once every reference resolves
        errors.extend(_reference_cycles(components, file))
    errors.extend(_topology(components, file, any(s in doc for s in sections)))
    if errors:
        raise ConfigErrors(errors)
    return NodeConfig(
        file=file,
        base_dir=base_dir or (Path(file).parent if file else Path.cwd()),
        node=core["node"],
        log=core["log"],
        plugins=core["plugins"],
        components=tuple(components),
        raw=doc,
        kind_order=registry.kind_order(),
    )


def _reference_cycles(components: list[ComponentConfig], file: str | None) -> list[ConfigError]:
    """A component may refer to another (a scorer wrapping a scorer); it must never reach itself."""
    edges: dict[tuple[str, str], list[tuple[str, tuple[str, str]]]] = {}
    for comp in components:
        for path, ref_section, ref_name in references(comp.spec.schema, comp.config, comp.key_path):
            edges.setdefault((comp.section, comp.name), []).append((path, (ref_section, ref_name)))
    errors: list[ConfigError] = []
    reported: set[frozenset[tuple[str, str]]] = set()
    for start in edges:
        for path, target in edges[start]:
            if target == start:
                errors.append(ConfigError(f"refers to its own table [{start[0]}.{start[1]}]: a component "
                                          "cannot wrap itself", file=file, key_path=path,
                                          hint=f"name another [{start[0]}.NAME] table"))
                reported.add(frozenset([start]))
                continue
            # Depth-first from the target: does any chain of references lead back to start?
            stack = [(target, [start, target])]
            while stack:
                node, trail = stack.pop()
                for _, nxt in edges.get(node, []):
                    if nxt == start:
                        cycle = frozenset(trail)
                        if cycle not in reported:
                            reported.add(cycle)
                            full = [*trail, start]
                            same = len({sec for sec, _ in full}) == 1
                            names = [n if same else f"{sec}.{n}" for sec, n in full]
                            errors.append(ConfigError(f"references form a cycle: {' → '.join(names)}",
                                                      file=file, key_path=path))
                    elif nxt not in trail:
                        stack.append((nxt, [*trail, nxt]))
    return errors


def _topology(components: list[ComponentConfig], file: str | None, any_section: bool) -> list[ConfigError]:
    kinds = {c.kind for c in components}
    errors: list[ConfigError] = []
    needs_transport = sorted({c.kind for c in components if c.kind in {"modality", "validator", "spam_filter"}})
    if needs_transport and "transport" not in kinds:
        errors.append(MissingComponentError(
            f"a [transport] is required by the configured {', '.join(needs_transport)} components",
            file=file, key_path="transport", hint='add [transport] with type = "libp2p"'))
    if "validator" in kinds:
        if "chain" not in kinds:
            errors.append(MissingComponentError("[validator] needs a [chain] to read the metagraph and set weights",
                                                file=file, key_path="chain", hint='add [chain] with type = "local"'))
        if "scorer" not in kinds:
            errors.append(TopologyError("[validator] needs at least one [scorers.NAME]", file=file,
                                        key_path="scorers", hint='e.g. [scorers.ce] type = "cross_entropy"'))
        if "modality" not in kinds:
            errors.append(TopologyError("[validator] needs at least one [modalities.NAME] to make tasks",
                                        file=file, key_path="modalities"))
    if not any_section:
        errors.append(MissingComponentError("no components configured: the node would do nothing", file=file,
                                            key_path="", hint="start from `tnode init`"))
    return errors


def load_config_file(path: str | Path, registry: ComponentRegistry, *, environ: Mapping[str, str] | None = None,
                     ) -> NodeConfig:
    path = Path(path)
    doc = apply_env_overrides(read_toml(path), environ)
    return parse_config(doc, registry, file=str(path), base_dir=path.resolve().parent)


def load_plugins_for(doc: Mapping[str, Any], file: str | None = None) -> Any:
    """Load plugins honouring ``[plugins] block`` of ``doc``."""
    from .pluginmanager import load_plugins

    table = doc.get("plugins", {}) if isinstance(doc, Mapping) else {}
    block = table.get("block", []) if isinstance(table, dict) else []
    if not isinstance(block, list) or not all(isinstance(b, str) for b in block):
        raise ConfigErrors([WrongTypeError("expected a list of plugin names", file=file, key_path="plugins.block")])
    return load_plugins(block=block)
