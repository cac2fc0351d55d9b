"""Node assembly and lifecycle: start order, readiness, start failures, hooks and shutdown."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import anyio
import pytest
import tnode
from conftest import GOOD_PLUGIN, FakeDist, builtin_plugin_names
from core_probes import ProbePlugin, probe_manager
from tnode.errors import (
    ComponentStartError,
    ConfigErrors,
    KeyFileNotFound,
    MissingComponentError,
    UnknownKeyError,
)
from tnode.events import NodeStarted, NodeStopping
from tnode.keys import Keypair
from tnode.node import ComponentFailed, Node, open_node

pytestmark = pytest.mark.anyio

# Written in the reverse of the start order on purpose.
ALL_KINDS_DOC: dict[str, Any] = {
    "exporters": {"e": {"type": "probe"}},
    "validator": {"type": "probe"},
    "scorers": {"s": {"type": "probe"}},
    "modalities": {"m": {"type": "probe", "delay_ms": 5}},
    "spam": {"f": {"type": "probe"}},
    "chain": {"type": "probe", "delay_ms": 5},
    "transport": {"type": "probe"},
    "models": {"small": {"type": "probe", "delay_ms": 5}, "big": {"type": "probe"}},
    "datasets": {"d": {"type": "probe"}},
}
START_ORDER = ["dataset", "model", "model", "transport", "chain", "spam_filter", "modality", "scorer", "validator",
               "exporter"]


def build(tmp_path: Path, doc: dict[str, Any], plugin: ProbePlugin | None = None, **kw: Any) -> tuple[Node, ProbePlugin]:
    manager, plugin = probe_manager(plugin)
    return Node.from_dict(doc, data_dir=tmp_path, plugins=manager, **kw), plugin


async def test_components_start_in_kind_order_each_after_the_previous_is_ready(tmp_path: Path) -> None:
    node, plugin = build(tmp_path, ALL_KINDS_DOC)
    async with node.running():
        steps = list(plugin.journal)
    starts = [kind for step, kind, _ in steps if step == "start"]
    assert starts == START_ORDER
    # Strictly sequential: every start is immediately followed by that component's ready.
    assert [s for s, _, _ in steps] == ["start", "ready"] * len(START_ORDER)
    assert [n for s, k, n in steps if s == "start" and k == "model"] == ["small", "big"]


def test_require_returns_a_component_or_names_the_key_that_wants_it(tmp_path: Path) -> None:
    node, _ = build(tmp_path, ALL_KINDS_DOC)
    assert node.require("model", "small", key_path="x.model") is node.component("model", "small")
    with pytest.raises(MissingComponentError) as err:
        node.require("model", "huge", key_path="modalities.m.model")
    assert err.value.key_path == "modalities.m.model"
    assert err.value.message == "[models.huge] is not configured"


async def test_node_ready_is_set_and_node_started_published_after_all_components(tmp_path: Path) -> None:
    node, plugin = build(tmp_path, ALL_KINDS_DOC)
    seen: list[NodeStarted] = []
    ready_when_published: list[bool] = []

    async def on_started(ev: NodeStarted) -> None:
        seen.append(ev)
        ready_when_published.append(node.ready.is_set())

    node.bus.subscribe(NodeStarted, on_started, name="test")
    assert not node.ready.is_set()
    async with node.running():
        assert node.ready.is_set()
        assert len(plugin.journal) == 2 * len(START_ORDER)
        with anyio.fail_after(1):
            while not seen:
                await anyio.sleep(0.001)
    (event,) = seen
    assert event.peer_id == node.peer_id
    assert event.components[:3] == ("datasets.d", "models.small", "models.big")
    assert len(event.components) == len(START_ORDER)
    assert ready_when_published == [True]


async def test_lifecycle_hooks_are_called_and_node_stopping_is_published(tmp_path: Path) -> None:
    node, plugin = build(tmp_path, {"exporters": {"e": {"type": "probe"}}})
    stopping: list[str] = []

    async def on_stopping(ev: NodeStopping) -> None:
        stopping.append(ev.reason)

    node.bus.subscribe(NodeStopping, on_stopping, name="test")
    async with node.running():
        assert plugin.started_nodes == [node]
        assert plugin.stop_reasons == []
    assert plugin.stop_reasons == ["exit"]
    assert stopping == ["exit"]
    assert plugin.journal[-1] == ("stop", "exporter", "e")


async def test_component_failing_at_start_raises_component_start_error_naming_it(tmp_path: Path) -> None:
    doc = {"datasets": {"d": {"type": "probe"}}, "models": {"broken": {"type": "probe", "fail": "start"}},
           "exporters": {"e": {"type": "probe"}}}
    node, plugin = build(tmp_path, doc)
    with pytest.raises(ComponentStartError) as info:  # itself, not wrapped in an exception group
        async with node.running():
            pytest.fail("the node must not run")
    err = info.value
    assert err.component == err.key_path == "models.broken" and err.type == "probe"
    assert isinstance(err.cause, RuntimeError)
    assert str(err) == "component 'models.broken' failed to start: RuntimeError: probe broken refused to start"
    # The dataset that did start was stopped; the exporter after the failure never started.
    assert ("stop", "dataset", "d") in plugin.journal
    assert not any(k == "exporter" for _, k, _ in plugin.journal)
    assert not node.ready.is_set()


async def test_component_failing_while_running_stops_the_node(tmp_path: Path) -> None:
    doc = {"models": {"ok": {"type": "probe"}}, "exporters": {"flaky": {"type": "probe", "fail": "run"}}}
    node, plugin = build(tmp_path, doc)
    with pytest.raises(ComponentFailed) as info:
        with anyio.fail_after(5):
            async with node.running():
                await anyio.sleep_forever()
    assert info.value.component == "exporters.flaky"
    assert ("stop", "model", "ok") in plugin.journal


async def test_only_requested_kinds_are_started(tmp_path: Path) -> None:
    node, plugin = build(tmp_path, ALL_KINDS_DOC, kinds={"model", "chain"})
    async with node.running():
        pass
    assert [k for s, k, _ in plugin.journal if s == "start"] == ["model", "model", "chain"]
    assert node.component("transport") is None and node.transport is None
    assert node.chain is node.component("chain")


async def test_component_lookup(tmp_path: Path) -> None:
    node, _ = build(tmp_path, ALL_KINDS_DOC)
    assert list(node.components_of("model")) == ["small", "big"]
    assert node.component("model", "big").name == "big"
    assert node.component("model", "nope") is None
    assert node.component("model").name == "small"
    assert node.transport.kind == "transport"


def test_from_dict_creates_keys_with_mode_0600_and_uses_the_hotkey_as_peer_id(tmp_path: Path) -> None:
    node, _ = build(tmp_path, {"exporters": {"e": {"type": "probe"}}})
    for name in ("hotkey", "coldkey"):
        path = tmp_path / "keys" / f"{name}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert node.peer_id == node.hotkey.peer_id
    assert node.coldkey_public and node.coldkey_public != node.hotkey.public_hex
    assert node.load_coldkey().public_hex == node.coldkey_public
    assert node.data_dir == tmp_path


def test_given_keys_are_used(tmp_path: Path) -> None:
    hot, cold = Keypair.from_seed(b"h" * 32), Keypair.from_seed(b"c" * 32)
    node, _ = build(tmp_path, {"exporters": {"e": {"type": "probe"}}}, hotkey=hot, coldkey=cold)
    assert node.hotkey is hot and node.coldkey_public == cold.public_hex
    assert node.load_coldkey() is cold


def test_invalid_config_is_refused_before_any_component_is_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        build(tmp_path, {"exporters": {"e": {"type": "probe", "dealy_ms": 1}}})
    assert isinstance(info.value.errors[0], UnknownKeyError)


def test_from_file_refuses_to_run_without_a_hotkey(tmp_path: Path, fake_dist: FakeDist,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    fake_dist("ticker", "tnode_fixture_ticker_node", GOOD_PLUGIN)
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\ndata_dir = "data"\n\n[plugins]\nblock = {builtin_plugin_names()!r}\n\n'
                    '[exporters.t]\ntype = "ticker"\n')
    with pytest.raises(KeyFileNotFound, match="tnode init"):
        Node.from_file(path)
    node = Node.from_file(path, create_keys=True)
    assert node.data_dir == tmp_path / "data"
    assert (tmp_path / "data" / "keys" / "hotkey.json").exists()
    assert list(node.components_of("exporter")) == ["t"]


async def test_open_node_starts_only_the_requested_kinds(tmp_path: Path, fake_dist: FakeDist,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    fake_dist("ticker", "tnode_fixture_ticker_open", GOOD_PLUGIN)
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\ndata_dir = "data"\ncreate_keys = true\n\n[plugins]\nblock = {builtin_plugin_names()!r}\n\n'
                    '[exporters.a]\ntype = "ticker"\n\n[exporters.b]\ntype = "ticker"\n')
    async with open_node(path, kinds={"exporter"}) as node:
        assert node.ready.is_set()
        assert list(node.components_of("exporter")) == ["a", "b"]
    async with open_node(path, kinds={"chain"}) as node:
        assert node.ready.is_set() and node.components_of("exporter") == {}


class GadgetPlugin(ProbePlugin):
    """The probes plus a kind the core does not know, declared to start right after the chain."""

    @tnode.hookimpl
    def tnode_add_component_kinds(self, declare: Any) -> None:
        super().tnode_add_component_kinds(declare)
        declare(kind="gadget", section="gadgets", after="chain")


async def test_a_plugin_declared_kind_is_parsed_and_started_in_its_declared_order(tmp_path: Path) -> None:
    plugin = GadgetPlugin(kinds=("chain", "transport", "modality", "gadget"))
    doc = {"modalities": {"m": {"type": "probe"}}, "gadgets": {"x": {"type": "probe", "delay_ms": 5}},
           "chain": {"type": "probe"}, "transport": {"type": "probe"}}
    node, _ = build(tmp_path, doc, plugin)
    assert [c.key_path for c in node.component_configs()] == ["transport", "chain", "gadgets.x", "modalities.m"]
    async with node.running():
        pass
    started = [(kind, name) for event, kind, name in plugin.journal if event == "ready"]
    assert started == [("transport", "transport"), ("chain", "chain"), ("gadget", "x"), ("modality", "m")]
