"""Typed configuration: schemas declared next to each component, node.toml parsing and checks.

A schema is a frozen dataclass whose fields are declared with :func:`option`. The loader turns a
TOML table into an instance, refusing unknown keys, wrong types, out-of-range values and missing
required keys with errors that name the file, the key path, what was expected and, when a key
looks like a typo, the closest valid one.

A schema may also define ``check(self)``, yielding ``(key, message)`` or ``(key, message, hint)``
for problems that span several keys or need a parse (a multiaddr, a port); ``key`` is relative to
the schema's table ("" for the table itself). The loader reports them like any other error.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, MissingKeyError, UnknownKeyError, WrongTypeError


def option(
    default: Any = MISSING,
    doc: str = "",
    *,
    ge: float | None = None,
    le: float | None = None,
    choices: typing.Sequence[Any] | None = None,
    ref: str | None = None,
    secret: bool = False,
    allow_nonfinite: bool = False,
) -> Any:
    """Declare one configuration key of a schema dataclass.

    :param default: the default; omit it to make the key required. Mutable defaults (lists,
        dicts) are copied for every instance.
    :param doc: one sentence for the generated config reference.
    :param ge: / :param le: inclusive bounds for numbers.
    :param choices: the allowed values.
    :param ref: the value must be the name of a table in this section (e.g. ``"models"``).
    :param secret: never print the value (references show ``<secret>``).
    :param allow_nonfinite: accept ``nan``, ``inf`` and ``-inf`` for a float key (and floats
        inside it). Off by default: TOML spells them as plain values, they pass every range
        check (every comparison with NaN is false) and then break timers and arithmetic, so every
        float key refuses them with "expected a finite number" unless it opts in here.
    """
    meta = {"doc": doc, "ge": ge, "le": le, "choices": tuple(choices) if choices else None, "ref": ref, "secret": secret,
            "allow_nonfinite": allow_nonfinite}
    if default is MISSING:
        return dataclasses.field(metadata=meta)
    if isinstance(default, list | dict | set):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# --------------------------------------------------------------------------- type checking
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(arg)}"
    if origin is dict:
        return "table"
    if tp is type(None):
        return "nothing"
    if dataclasses.is_dataclass(tp):
        return "table"
    if tp is Any:
        return "any value"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, getattr(tp, "__name__", str(tp)))


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} {text}"


@dataclass
class _Ctx:
    file: str | None
    errors: list[ConfigError]

    def fail(self, cls: type[ConfigError], path: str, message: str, hint: str = "") -> None:
        self.errors.append(cls(message, file=self.file, key_path=path, hint=hint))


def _convert(tp: Any, value: Any, path: str, ctx: _Ctx, finite: bool = True) -> Any:
    """Check ``value`` against type ``tp``; returns the converted value or ``MISSING`` on error.

    ``finite`` refuses NaN and infinities wherever a float is expected (inside lists and tables too).
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if finite and float in args and isinstance(value, float) and not math.isfinite(value):
            ctx.fail(WrongTypeError, path, f"expected a finite number, got {value}")
            return MISSING
        for arg in args:
            if arg is type(None):
                continue
            sub = _Ctx(ctx.file, [])
            result = _convert(arg, value, path, sub, finite)
            if not sub.errors:
                return result
        ctx.fail(WrongTypeError, path, f"expected {_type_name(tp)}, got {_describe(value)}")
        return MISSING
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1) if isinstance(value, str) else []
        ctx.fail(
            WrongTypeError,
            path,
            f"expected one of {', '.join(repr(a) for a in allowed)}, got {_describe(value)}",
            f"did you mean {close[0]!r}?" if close else "",
        )
        return MISSING
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            ctx.fail(WrongTypeError, path, f"expected {_type_name(tp)}, got {_describe(value)}")
            return MISSING
        out = [_convert(arg, item, f"{path}[{i}]", ctx, finite) for i, item in enumerate(value)]
        return out
    if origin is dict:
        if not isinstance(value, dict):
            ctx.fail(WrongTypeError, path, f"expected a table, got {_describe(value)}")
            return MISSING
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is not Any:
            return {k: _convert(args[1], v, f"{path}.{k}", ctx, finite) for k, v in value.items()}
        return dict(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            ctx.fail(WrongTypeError, path, f"expected a table, got {_describe(value)}")
            return MISSING
        return _build(tp, value, path, ctx)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if finite and not math.isfinite(number):
                ctx.fail(WrongTypeError, path, f"expected a finite number, got {value}")
                return MISSING
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    ctx.fail(WrongTypeError, path, f"expected {_type_name(tp)}, got {_describe(value)}")
    return MISSING


def _check_constraints(f: dataclasses.Field[Any], value: Any, path: str, ctx: _Ctx) -> None:
    meta = f.metadata
    if isinstance(value, int | float) and not isinstance(value, bool):
        if meta.get("ge") is not None and value < meta["ge"]:
            ctx.fail(WrongTypeError, path, f"must be ≥ {meta['ge']}, got {value}")
        if meta.get("le") is not None and value > meta["le"]:
            ctx.fail(WrongTypeError, path, f"must be ≤ {meta['le']}, got {value}")
    choices = meta.get("choices")
    if choices:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v not in choices:
                close = difflib.get_close_matches(str(v), [str(c) for c in choices], n=1)
                ctx.fail(
                    WrongTypeError,
                    path,
                    f"expected one of {', '.join(repr(c) for c in choices)}, got {v!r}",
                    f"did you mean {close[0]!r}?" if close else "",
                )


def schema_fields(schema: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(schema)}


def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def _build(schema: type, table: Mapping[str, Any], path: str, ctx: _Ctx, ignore: frozenset[str] = frozenset()) -> Any:
    fields = schema_fields(schema)
    hints = _hints(schema)
    kwargs: dict[str, Any] = {}
    prefix = f"{path}." if path else ""
    for key, value in table.items():
        if key in ignore:
            continue
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            allowed = ", ".join(sorted(fields)) or "none"
            ctx.fail(
                UnknownKeyError,
                f"{prefix}{key}",
                f"unknown key (allowed keys: {allowed})",
                f"did you mean {close[0]!r}?" if close else "",
            )
            continue
        f = fields[key]
        converted = _convert(hints[key], value, f"{prefix}{key}", ctx, not f.metadata.get("allow_nonfinite", False))
        if converted is MISSING:
            continue
        _check_constraints(f, converted, f"{prefix}{key}", ctx)
        kwargs[key] = converted
    for name, f in fields.items():
        if name not in kwargs and f.default is MISSING and f.default_factory is MISSING and name not in table:
                ctx.fail(
                    MissingKeyError,
                    f"{prefix}{name}",
                    f"required key is missing (expected {_type_name(hints[name])}"
                    + (f": {f.metadata.get('doc')}" if f.metadata.get("doc") else "")
                    + ")",
                )
    if any(name not in kwargs and (f.default is MISSING and f.default_factory is MISSING) for name, f in fields.items()):
        return MISSING
    try:
        instance = schema(**kwargs)
    except (TypeError, ValueError) as exc:
        ctx.fail(WrongTypeError, path or "<root>", f"invalid values: {exc}")
        return MISSING
    check = getattr(instance, "check", None)
    if callable(check):
        # Checks spanning several keys (or needing a parse, like a multiaddr) live next to the schema
        # and report key paths relative to it, so `validate` and `run` refuse the same tables.
        for key, message, *hint in check() or ():
            ctx.fail(WrongTypeError, f"{prefix}{key}" if key else (path or "<root>"), message,
                     hint[0] if hint else "")
    return instance


def load_table(schema: type, table: Mapping[str, Any], *, file: str | None = None, path: str = "",
               ignore: frozenset[str] = frozenset()) -> Any:
    """Build a ``schema`` instance from a TOML table or raise :class:`tnode.errors.ConfigErrors`."""
    from .errors import ConfigErrors

    ctx = _Ctx(file, [])
    result = _build(schema, table, path, ctx, ignore)
    if ctx.errors:
        raise ConfigErrors(ctx.errors)
    return result


def collect_errors(schema: type, table: Mapping[str, Any], *, file: str | None, path: str,
                   ignore: frozenset[str] = frozenset()) -> tuple[Any, list[ConfigError]]:
    """Like :func:`load_table` but returns ``(instance or MISSING, errors)``."""
    ctx = _Ctx(file, [])
    result = _build(schema, table, path, ctx, ignore)
    return result, ctx.errors


def references(schema: type, instance: Any, path: str) -> list[tuple[str, str, str]]:
    """``(key path, section, name)`` for every ``ref=`` field of ``instance`` (recursing into sub-tables)."""
    out: list[tuple[str, str, str]] = []
    if instance is MISSING or instance is None:
        return out
    hints = _hints(schema)
    for name, f in schema_fields(schema).items():
        value = getattr(instance, name)
        tp = hints[name]
        if f.metadata.get("ref"):
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, str) and v:
                    out.append((f"{path}.{name}", f.metadata["ref"], v))
        elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
            out.extend(references(tp, value, f"{path}.{name}"))
    return out


# --------------------------------------------------------------------------- core sections
@dataclass(frozen=True)
class NodeSection:
    """Identity and storage of this node."""

    name: str = option("tnode", "Human-readable node name (shown in logs and `tnode status`).")
    data_dir: str = option(
        "./data/node", "Directory for keys, the chain database and checkpoints (relative to node.toml)."
    )
    hotkey: str = option("hotkey", "Name of the hotkey file in <data_dir>/keys: the node's signing key and peer id.")
    coldkey: str = option("coldkey", "Name of the coldkey file in <data_dir>/keys: owns stake and funds.")
    netuid: int = option(1, "Subnet this node takes part in.", ge=0)
    create_keys: bool = option(
        False, "Create missing hotkey/coldkey files (unencrypted) on start instead of refusing to run."
    )
    drain_seconds: float = option(5.0, "Grace period for components to stop on SIGINT/SIGTERM.", ge=0)


@dataclass(frozen=True)
class LogSection:
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = option("info", "Minimum level.")
    format: Literal["auto", "console", "json"] = option(
        "auto", "Renderer: console on a TTY and JSON otherwise when 'auto'."
    )


@dataclass(frozen=True)
class PluginsSection:
    """Plugin loading."""

    block: list[str] = option([], "Entry-point names of plugins not to load (built-in or external).")


# The component kinds the core itself knows: node.toml section → (component kind, singleton?), in
# start order. Plugins add kinds through the ``tnode_add_component_kinds`` hook; the registry
# (:class:`tnode.registry.ComponentRegistry`) holds the full table a node is parsed against.
SECTIONS: dict[str, tuple[str, bool]] = {
    "datasets": ("dataset", False),
    "models": ("model", False),
    "transport": ("transport", True),
    "chain": ("chain", True),
    "spam": ("spam_filter", False),
    "modalities": ("modality", False),
    "scorers": ("scorer", False),
    "validator": ("validator", True),
}
KIND_ORDER: tuple[str, ...] = tuple(kind for kind, _ in SECTIONS.values())
SECTION_OF_KIND: dict[str, str] = {kind: section for section, (kind, _) in SECTIONS.items()}
CORE_SECTIONS: dict[str, type] = {"node": NodeSection, "log": LogSection, "plugins": PluginsSection}


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; syntax errors become :class:`ConfigError` naming the file and line."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path), hint="create one with `tnode init`") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=str(path)) from None
