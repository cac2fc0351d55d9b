"""Tests of the hello plugin: a real node, assembled from a node.toml-shaped dict, runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import tnode_hello
from tnode.errors import ComponentStartError, ConfigErrors, WrongTypeError
from tnode.node import Node
from tnode.pluginmanager import PluginManager
from typer.testing import CliRunner

pytestmark = pytest.mark.anyio


def plugins() -> PluginManager:
    """Only this plugin, registered exactly as the entry point would register it."""
    manager = PluginManager()
    manager.register(tnode_hello, name="hello")
    manager.validate()
    return manager


def make_node(tmp_path: Path, **table: Any) -> Node:
    doc = {"exporters": {"log": {"type": "hello", **table}}}
    return Node.from_dict(doc, data_dir=tmp_path, plugins=plugins())


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_node_events_are_written_as_json_lines(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    async with node.running():
        with anyio.fail_after(5):
            while not (tmp_path / "events.jsonl").exists() or not lines(tmp_path / "events.jsonl"):
                await anyio.sleep(0.01)
    records = lines(tmp_path / "events.jsonl")
    assert [r["event"] for r in records] == ["NodeStarted", "NodeStopping"]
    assert records[0]["peer_id"] == node.peer_id
    assert records[0]["components"] == ["exporters.log"]
    assert records[1]["reason"] == "exit"


async def test_unwritable_path_stops_the_node_from_starting(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    node = make_node(tmp_path, path="taken")
    with pytest.raises(ComponentStartError) as info:
        async with node.running():
            pass
    assert info.value.key_path == "exporters.log"
    assert isinstance(info.value.cause, IsADirectoryError)


def test_unknown_event_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        make_node(tmp_path, events=["NodeStarted", "NodeStrated"])
    (err,) = info.value.errors
    assert isinstance(err, WrongTypeError)
    assert err.key_path == "exporters.log.events"
    assert err.hint == "did you mean 'NodeStarted'?"


def test_hello_command() -> None:
    import typer

    app = typer.Typer()
    plugins().hook.tnode_add_cli_commands(app=app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from collapsing the app into one command
        """Nothing."""

    result = CliRunner().invoke(app, ["hello", "operator"])
    assert result.exit_code == 0
    assert result.output == "hello, operator!\n"


async def test_refused_tasks_from_another_node_are_logged(tmp_path: Path) -> None:
    # tnode.testing: an in-memory chain and a loopback network stand in for the real ones.
    from tnode.errors import TaskError
    from tnode.testing import LoopbackNetwork, MemoryChain, plugin_manager

    chain, network = MemoryChain(), LoopbackNetwork()
    manager = plugin_manager(chain=chain, network=network, extra=[tnode_hello])
    base = {"transport": {"type": "loopback"}, "chain": {"type": "memory"}}
    served = Node.from_dict({**base, "exporters": {"log": {"type": "hello", "events": ["TaskRefused"]}}},
                            data_dir=tmp_path / "served", plugins=manager)
    asking = Node.from_dict(base, data_dir=tmp_path / "asking", plugins=manager)
    async with served.running(), asking.running():
        with pytest.raises(TaskError) as refused:
            await asking.transport.request(served.peer_id, "text", "next_token", {"tokens": [1, 2]}, timeout=2.0)
        assert refused.value.code == "unknown_modality"
        with anyio.fail_after(5):
            while not lines(tmp_path / "served" / "events.jsonl"):
                await anyio.sleep(0.01)
    (record,) = [r for r in lines(tmp_path / "served" / "events.jsonl") if r["event"] == "TaskRefused"]
    assert record["code"] == "unknown_modality" and record["sender"] == asking.hotkey.public_hex
