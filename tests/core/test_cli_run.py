"""`tnode run` as a real process: clean stop on signals, clear failure when a component cannot start."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import GOOD_PLUGIN, FakeDist, builtin_plugin_names
from core_procs import NodeProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def run_env(fake_dist: FakeDist) -> dict[str, str]:
    site = fake_dist("ticker", "tnode_fixture_ticker_run", GOOD_PLUGIN)
    env = {k: v for k, v in os.environ.items() if k != "TNODE_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    env["COLUMNS"] = "200"
    return env


def write_config(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\nname = "runner"\ndata_dir = "data"\ncreate_keys = true\ndrain_seconds = 2.0\n\n'
                    f"[plugins]\nblock = {builtin_plugin_names()!r}\n\n{table}")
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_on_signal(tmp_path: Path, run_env: dict[str, str], signum: signal.Signals) -> None:
    config = write_config(tmp_path, '[exporters.t]\ntype = "ticker"\n')
    node = NodeProcess(["run", "-c", str(config), "--log-format", "json"], run_env, tmp_path)
    try:
        node.wait_for('"node running"')
        node.proc.send_signal(signum)
        rc = node.finish()
    finally:
        node.kill()
    assert rc == 0, node.stderr
    assert f'"signal":"{signum.name}"' in node.stderr
    assert (tmp_path / "data" / "keys" / "hotkey.json").exists()


def test_run_exits_non_zero_naming_the_component_that_failed_to_start(tmp_path: Path,
                                                                      run_env: dict[str, str]) -> None:
    config = write_config(tmp_path, '[exporters.t]\ntype = "ticker"\nport = 9\n')
    node = NodeProcess(["run", "-c", str(config)], run_env, tmp_path)
    try:
        rc = node.finish()
    finally:
        node.kill()
    assert rc == 1
    text = " ".join(node.stderr.split())
    assert "error: component 'exporters.t' failed to start: OSError: port 9 is already in use" in text
    assert "Traceback" not in node.stderr


def test_run_refuses_an_invalid_config_with_exit_78(tmp_path: Path, run_env: dict[str, str]) -> None:
    config = write_config(tmp_path, '[exporters.t]\ntype = "ticker"\nport = "nine"\n')
    node = NodeProcess(["run", "-c", str(config)], run_env, tmp_path)
    try:
        rc = node.finish()
    finally:
        node.kill()
    assert rc == 78
    text = " ".join(node.stderr.split())
    assert "exporters.t.port: expected integer, got string 'nine'" in text
    assert not (tmp_path / "data").exists(), "no keys or data may be created for an invalid config"


def test_run_echo_over_libp2p_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    from tnode.pluginmanager import load_plugins

    types = {(s.kind, s.type) for s in load_plugins(autoload_external=False).registry.specs()}
    if not {("transport", "libp2p"), ("modality", "echo")} <= types:
        pytest.skip("the echo and libp2p plugins are not registered yet")
    path = tmp_path / "node.toml"
    path.write_text('[node]\ndata_dir = "data"\ncreate_keys = true\n\n[transport]\ntype = "libp2p"\n'
                    'listen = ["/ip4/127.0.0.1/tcp/0"]\n\n[modalities.echo]\ntype = "echo"\n')
    env = {**os.environ, "TNODE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    node = NodeProcess(["run", "-c", str(path), "--log-format", "json"], env, tmp_path)
    try:
        node.wait_for('"node running"', timeout=30)
        node.proc.send_signal(signal.SIGTERM)
        rc = node.finish()
    finally:
        node.kill()
    assert rc == 0, node.stderr
