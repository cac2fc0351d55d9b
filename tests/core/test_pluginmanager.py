"""Plugin loading: hook validation, blocking, autoload switch, tracing and registration errors."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
import tnode
from conftest import GOOD_PLUGIN, FakeDist, builtin_plugin_names
from core_probes import ProbePlugin, probe_manager
from tnode.config import KIND_ORDER, option
from tnode.errors import PluginError
from tnode.pluginmanager import PluginManager, load_plugins


@dataclass(frozen=True)
class EmptyConfig:
    """No options."""

    note: str = option("", "Unused.")


class Misspelt:
    @tnode.hookimpl
    def tnode_register_component(self, register: Any) -> None:  # missing the final "s"
        raise AssertionError("never called")


class ExtraArgument:
    @tnode.hookimpl
    def tnode_node_started(self, node: Any, when: float) -> None:
        raise AssertionError("never called")


def manager_with(plugin: object, name: str = "candidate") -> PluginManager:
    manager = PluginManager()
    manager.register(plugin, name=name)
    return manager


# --------------------------------------------------------------------------- hook validation
def test_misspelt_hook_name_is_rejected_by_validation() -> None:
    manager = manager_with(Misspelt(), "typo")
    with pytest.raises(PluginError, match="tnode_register_component") as info:
        manager.validate()
    assert "unknown hook" in str(info.value)


def test_hook_implementation_with_unknown_argument_is_a_plugin_error() -> None:
    with pytest.raises(PluginError, match=r"(?s)plugin 'extra'.*Argument\(s\) \{'when'\}"):
        manager_with(ExtraArgument(), "extra")


def test_implementation_may_take_fewer_arguments_than_the_spec() -> None:
    calls: list[str] = []

    class Partial:
        @tnode.hookimpl
        def tnode_node_stopping(self, node: Any) -> None:
            calls.append("stopping")

    manager = manager_with(Partial())
    manager.validate()
    manager.hook.tnode_node_stopping(node=None, reason="exit")
    assert calls == ["stopping"]


def test_registered_components_and_kinds_are_recorded() -> None:
    manager, _ = probe_manager()
    assert manager.infos["probes"].kinds == tuple(sorted((*KIND_ORDER, "exporter")))
    assert manager.registry.types("exporter") == ["needs", "probe"]
    assert manager.registry.get("exporter", "probe").plugin == "probes"


def test_duplicate_component_type_names_both_plugins() -> None:
    manager = PluginManager()
    manager.register(ProbePlugin(kinds=["model"]), name="first")
    manager.register(ProbePlugin(kinds=["model"]), name="second")
    with pytest.raises(PluginError, match="model/probe registered twice: by 'first' and by 'second'"):
        manager.validate()


def test_unknown_component_kind_is_refused_with_the_list_of_kinds() -> None:
    class Odd:
        @tnode.hookimpl
        def tnode_register_components(self, register: Any) -> None:
            register(kind="widget", type="x", factory=object, schema=EmptyConfig)

    with pytest.raises(PluginError, match="'odd' registers unknown component kind 'widget'.*kinds: dataset"):
        manager_with(Odd(), "odd").validate()


def test_schema_must_be_a_dataclass() -> None:
    class NoSchema:
        @tnode.hookimpl
        def tnode_register_components(self, register: Any) -> None:
            register(kind="model", type="x", factory=object, schema=dict)

    with pytest.raises(PluginError, match="schema of model/x must be a dataclass"):
        manager_with(NoSchema(), "noschema").validate()


def test_exception_in_registration_hook_names_the_plugin() -> None:
    class Broken:
        @tnode.hookimpl
        def tnode_register_components(self, register: Any) -> None:
            raise RuntimeError("missing weights file")

    with pytest.raises(PluginError, match="plugin 'broken' failed in tnode_register_components: missing weights"):
        manager_with(Broken(), "broken").validate()


# --------------------------------------------------------------------------- entry-point loading
def test_external_plugin_is_loaded_from_its_entry_point(fake_dist: FakeDist,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    fake_dist("ticker", "tnode_fixture_ticker", GOOD_PLUGIN)
    manager = load_plugins(block=builtin_plugin_names())
    info = manager.infos["ticker"]
    assert (info.builtin, info.version, info.distribution) == (False, "1.2.3", "tnode_fixture_ticker")
    assert info.kinds == ("exporter",)
    assert manager.registry.get("exporter", "ticker").plugin == "ticker"


def test_disable_autoload_env_skips_external_plugins(fake_dist: FakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dist("ticker", "tnode_fixture_ticker2", GOOD_PLUGIN)
    monkeypatch.setenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", "1")
    manager = load_plugins(block=builtin_plugin_names())
    assert "ticker" not in manager.infos
    assert manager.registry.types("exporter") == []


def test_blocked_plugin_is_not_even_imported(fake_dist: FakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    fake_dist("bomb", "tnode_fixture_bomb", "raise RuntimeError('imported a blocked plugin')\n")
    manager = load_plugins(block=[*builtin_plugin_names(), "bomb"])
    assert "bomb" not in manager.infos
    assert not set(builtin_plugin_names()) & set(manager.infos)


def test_plugin_that_fails_to_import_names_itself(fake_dist: FakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    fake_dist("bomb", "tnode_fixture_bomb2", "raise RuntimeError('no GPU here')\n")
    with pytest.raises(PluginError, match="plugin 'bomb' .*tnode_fixture_bomb2.* failed to import: RuntimeError: no GPU"):
        load_plugins(block=builtin_plugin_names())


def test_builtin_plugins_load_before_external_ones(fake_dist: FakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    # Named to sort before every built-in: order must still be built-in first.
    fake_dist("aaa_first", "tnode_fixture_aaa", GOOD_PLUGIN)
    manager = load_plugins()
    names = list(manager.infos)
    builtins = builtin_plugin_names()
    assert names[: len(builtins)] == builtins
    assert "aaa_first" in names[len(builtins):]
    assert all(manager.infos[n].builtin for n in builtins) and not manager.infos["aaa_first"].builtin


def test_blocking_a_builtin_plugin_removes_its_components() -> None:
    full = load_plugins(autoload_external=False)
    victim = next(name for name, info in full.infos.items() if info.kinds)
    kinds_types = {(s.kind, s.type) for s in full.registry.specs() if s.plugin == victim}
    blocked = load_plugins(block=[victim], autoload_external=False)
    assert victim not in blocked.infos
    assert not kinds_types & {(s.kind, s.type) for s in blocked.registry.specs()}


# --------------------------------------------------------------------------- tracing
def test_trace_env_logs_every_hook_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TNODE_TRACE_HOOKS", "1")
    with structlog.testing.capture_logs() as logs:
        manager, _ = probe_manager()
        manager.hook.tnode_node_started(node=SimpleNamespace(name="n"))
    calls = [(e["event"], e.get("hook")) for e in logs]
    assert ("hook call", "tnode_register_components") in calls
    assert ("hook call", "tnode_node_started") in calls
    assert ("hook done", "tnode_node_started") in calls
    started = next(e for e in logs if e["event"] == "hook call" and e["hook"] == "tnode_node_started")
    assert started["impls"] == ["probes"] and started["kwargs"] == ["node"]


def test_no_hook_trace_without_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TNODE_TRACE_HOOKS", raising=False)
    with structlog.testing.capture_logs() as logs:
        manager, _ = probe_manager()
        manager.hook.tnode_node_started(node=SimpleNamespace(name="n"))
    assert not [e for e in logs if e["event"].startswith("hook ")]


def test_loading_builtin_plugins_imports_no_heavy_library() -> None:
    # Every `tnode` command loads all plugins; torch (~1 s) and libp2p (~0.7 s) must wait until a
    # component is actually built, so registration hooks may only import light modules.
    code = ("import sys; from tnode.pluginmanager import load_plugins; load_plugins(autoload_external=False); "
            "print(' '.join(m for m in ('torch', 'libp2p', 'trio_websocket') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    heavy = result.stdout.split()
    if heavy:
        pytest.fail(f"loading plugins imported {heavy} (via {importers(code, heavy)}); "
                    "import heavy libraries inside component factories or methods instead")


def importers(code: str, heavy: list[str]) -> list[str]:
    """The tnode plugin modules that first import each of ``heavy`` (from ``python -X importtime``)."""
    lines = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                           timeout=120).stderr.splitlines()
    found = []
    for i, line in enumerate(lines):
        name = line.split("|")[-1]
        if name.strip() not in heavy:
            continue
        depth = len(name) - len(name.lstrip())
        for later in lines[i + 1:]:
            parent = later.split("|")[-1]
            if len(parent) - len(parent.lstrip()) < depth and "tnode.plugins." in parent:
                found.append(f"{parent.strip()} imports {name.strip()}")
                break
    return found


# --------------------------------------------------------------------------- late registration
def test_late_registered_plugin_with_a_misspelt_hook_is_refused() -> None:
    manager, _ = probe_manager()  # already validated
    with pytest.raises(PluginError, match="plugin 'late'.*tnode_register_component"):
        manager.register(Misspelt(), name="late")
    assert "late" not in manager.infos and manager.pm.get_plugin("late") is None


def test_late_registered_plugin_with_a_wrong_argument_is_refused() -> None:
    manager, _ = probe_manager()
    with pytest.raises(PluginError, match=r"(?s)plugin 'late' could not be registered.*\{'when'\}"):
        manager.register(ExtraArgument(), name="late")
    assert "late" not in manager.infos


def test_late_registered_plugin_gets_its_components_collected_with_the_same_checks() -> None:
    class Late:
        @tnode.hookimpl
        def tnode_register_components(self, register: Any) -> None:
            register(kind="scorer", type="late", factory=lambda node, name, config: None, schema=EmptyConfig)

    class Clash:
        @tnode.hookimpl
        def tnode_register_components(self, register: Any) -> None:
            register(kind="scorer", type="probe", factory=lambda node, name, config: None, schema=EmptyConfig)

    manager, _ = probe_manager()
    manager.register(Late(), name="late")
    assert manager.registry.get("scorer", "late").plugin == "late"
    assert manager.infos["late"].kinds == ("scorer",)
    with pytest.raises(PluginError, match="scorer/probe registered twice: by 'probes' and by 'clash'"):
        manager.register(Clash(), name="clash")
    assert "clash" not in manager.infos


# --------------------------------------------------------------------------- plugin-declared kinds
class Gadgets:
    @tnode.hookimpl
    def tnode_add_component_kinds(self, declare: Any) -> None:
        declare(kind="gadget", section="gadgets", after="chain", description="Things a node carries.")


def test_a_declared_kind_starts_right_after_its_anchor() -> None:
    manager = PluginManager()
    manager.register(Gadgets(), name="gadgets")
    manager.validate()
    order = manager.registry.kind_order()
    assert order[order.index("chain") + 1] == "gadget"
    assert manager.registry.sections()["gadgets"] == ("gadget", False)


@pytest.mark.parametrize(("declared", "message"), [
    ({"kind": "gadget", "section": "scorers"}, "section \\[scorers\\], which kind 'scorer' already uses"),
    ({"kind": "gadget", "section": "node"}, "a core section"),
    ({"kind": "gadget", "section": "gadgets", "after": "gizmo"}, "after unknown kind 'gizmo'"),
    ({"kind": "Gadget", "section": "gadgets"}, "expected a lower-case identifier"),
])
def test_bad_kind_declarations_name_the_plugin(declared: dict[str, Any], message: str) -> None:
    class Bad:
        @tnode.hookimpl
        def tnode_add_component_kinds(self, declare: Any) -> None:
            declare(**declared)

    with pytest.raises(PluginError, match=f"plugin 'bad'.*{message}"):
        manager_with(Bad(), name="bad").validate()


def test_the_same_kind_declared_differently_names_both_plugins() -> None:
    class Other:
        @tnode.hookimpl
        def tnode_add_component_kinds(self, declare: Any) -> None:
            declare(kind="gadget", section="widgets")

    manager = PluginManager()
    manager.register(Gadgets(), name="gadgets")
    manager.register(Other(), name="other")
    with pytest.raises(PluginError, match="kind 'gadget' declared twice, differently: by 'gadgets'.*by 'other'"):
        manager.validate()


def test_the_core_declares_no_kind_nothing_implements() -> None:
    manager = PluginManager()
    manager.validate()
    for kind in ("router", "collusion_detector", "exporter"):
        assert manager.registry.kind(kind) is None
