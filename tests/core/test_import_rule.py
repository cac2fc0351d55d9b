"""The import rule: plugins import only the core's public API and never each other; contracts stay generic.

docs/plugin-authors.md ("Contracts and the import rule") states the rule this test enforces.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
CORE = ROOT / "core"
CONTRACTS = CORE / "contracts"

PUBLIC = {
    "tnode", "tnode.events", "tnode.errors", "tnode.interfaces", "tnode.config", "tnode.keys",
    "tnode.wire", "tnode.bus", "tnode.node", "tnode.weights", "tnode.hyperparameters", "tnode.yuma",
    "tnode.cli_support", "tnode.dispatch", "tnode.workers", "tnode.batching", "tnode.http",
}
"""Core modules a plugin may import, besides ``tnode.contracts.*`` (see tnode's package docstring)."""

GENERIC_FOR_CONTRACTS = {"tnode.errors", "tnode.interfaces", "tnode.config", "tnode.weights", "tnode.hyperparameters"}
"""What a contract module may build on: the core's generic types, no other contract, no plugin."""

KNOWN_EXCEPTIONS = {
    ("plugins/chain_local/cli.py", "tnode.assembly"): "reads a node.toml with env overrides to find a running authority",
    ("plugins/validator/cli.py", "tnode.pluginmanager"): "the devnet command lists the registered model types",
}
"""Imports of private core modules still in built-in plugins' CLI code, each with why; the list only shrinks."""


def _imports(path: Path, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in ``path``, relative ones resolved against ``package``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            if module in ("tnode", "tnode.contracts"):
                # ``from tnode import wire`` imports the module tnode.wire.
                for alias in node.names:
                    yield node.lineno, f"{module}.{alias.name}"


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    parts[0] = "tnode.plugins" if parts[0] == "plugins" else "tnode"
    if parts[-1] == "__init__":
        parts.pop()
    else:
        parts = parts[:-1]  # a module's package is its folder
    return ".".join(parts)


def _is_core_attribute(module: str) -> bool:
    """``from tnode import hookimpl`` names an attribute, not a module."""
    name = module.removeprefix("tnode.")
    return module.count(".") == 1 and not (CORE / f"{name}.py").exists() and not (CORE / name).is_dir()


def plugin_violations(root: Path = PLUGINS) -> list[str]:
    """Every import in a plugin that breaks the rule, as ``file:line: module (why)``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        own = "tnode.plugins." + path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else ""
        for line, module in _imports(path, _package_of(path)):
            if not (module == "tnode" or module.startswith("tnode.")):
                continue  # third-party and standard library
            if module.startswith("tnode.plugins"):
                if own and (module == own or module.startswith(own + ".")):
                    continue
                if module == "tnode.plugins" and not own:
                    continue
                found.append(f"{rel}:{line}: {module} (another plugin: talk through events or components)")
            elif module.startswith("tnode.contracts") or module in PUBLIC or _is_core_attribute(module):
                continue
            elif (rel, module) not in KNOWN_EXCEPTIONS:
                found.append(f"{rel}:{line}: {module} (not the core's public API)")
    return found


def test_plugins_import_only_the_public_api_and_never_each_other() -> None:
    assert plugin_violations() == []


def test_known_exceptions_are_still_needed() -> None:
    for (rel, module), why in KNOWN_EXCEPTIONS.items():
        path = ROOT / rel
        modules = {m for _, m in _imports(path, _package_of(path))} if path.exists() else set()
        assert module in modules, f"{rel} no longer imports {module} ({why}): drop it from KNOWN_EXCEPTIONS"


def test_the_rule_catches_a_plugin_importing_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The checker itself must see both kinds of breach, or the test above proves nothing.
    fake_root = tmp_path
    scoring = fake_root / "plugins" / "scoring"
    scoring.mkdir(parents=True)
    (scoring / "probs.py").write_text(
        "from tnode.plugins.text.checks import check_topk\nfrom tnode.registry import Registry\n"
        "from tnode.contracts.text import TopKPrediction\nfrom .config import X\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", fake_root)
    found = plugin_violations(fake_root / "plugins")
    assert found == [
        "plugins/scoring/probs.py:1: tnode.plugins.text.checks (another plugin: talk through events or components)",
        "plugins/scoring/probs.py:2: tnode.registry (not the core's public API)",
    ]


@pytest.mark.parametrize("path", sorted(CONTRACTS.glob("*.py")), ids=lambda p: p.name)
def test_contracts_build_only_on_generic_core_types(path: Path) -> None:
    for line, module in _imports(path, "tnode.contracts"):
        if module == "tnode" or module.startswith("tnode."):
            assert module in GENERIC_FOR_CONTRACTS, f"{path.name}:{line}: a contract imports {module}"


def test_plugins_never_import_the_testing_kit() -> None:
    # tnode.testing is for plugins' tests; a node must never run on the in-memory chain by accident.
    for path in sorted(PLUGINS.rglob("*.py")):
        modules = {m for _, m in _imports(path, _package_of(path))}
        assert "tnode.testing" not in modules, f"{path.relative_to(ROOT)} imports tnode.testing"
