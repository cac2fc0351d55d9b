"""API keys → client hotkeys: who a gateway request is, for the admission pipeline."""

from __future__ import annotations

import hmac
import tomllib
from collections.abc import Mapping
from pathlib import Path

from tnode.errors import ConfigError

_HEX = frozenset("0123456789abcdef")


def _hotkey(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or not set(value.lower()) <= _HEX:
        raise ConfigError(f"expected a hotkey as 64 hex digits, got {value!r}", key_path=where)
    return value.lower()


def load_keys(file: Path | None, env_value: str, *, env_name: str) -> dict[str, str]:
    """API key → hotkey hex from a TOML file (``[keys] KEY = "HOTKEY"``) and an environment value
    (``KEY=HOTKEY,KEY=HOTKEY``); bad entries are :class:`ConfigError` naming where."""
    keys: dict[str, str] = {}
    if file is not None:
        try:
            doc = tomllib.loads(file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read API keys: {exc}", file=str(file), key_path="keys") from None
        table = doc.get("keys")
        if not isinstance(table, Mapping):
            raise ConfigError("expected a [keys] table of API key = hotkey", file=str(file), key_path="keys")
        for key, hotkey in table.items():
            keys[str(key)] = _hotkey(hotkey, f"{file}: keys.{key}")
    for item in filter(None, (part.strip() for part in env_value.split(","))):
        key, sep, hotkey = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=HOTKEY entries separated by commas, got {item[:12]!r}...",
                              key_path=env_name)
        keys[key] = _hotkey(hotkey, env_name)
    return keys


def lookup(keys: Mapping[str, str], presented: str) -> str | None:
    """The hotkey of ``presented`` (compared in constant time per key), or ``None``."""
    found = None
    for key, hotkey in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = hotkey
    return found
